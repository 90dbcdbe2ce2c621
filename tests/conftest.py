"""Shared by every test folder: pytest puts this folder on sys.path, so tests import `hosttools`
(`from hosttools import require_tool`) to name the Debian package of a missing host program."""

from __future__ import annotations

import pytest

# `make test` hands whole files to two workers in this order (--dist loadfile --no-loadscope-reorder): the longest
# modules first, so the short ones fill the end and neither worker idles while the other finishes a long module.
# Figures of one clean-clone run (2026-12-07): the HA module 32 min, the role scenarios 22 min, the single-master
# module 14 min, the Vagrant VM 7.4 min; every other integration module 1-3 min, unit and render tests seconds.
LONGEST_FIRST = (
    "integration/test_kubeadm_ha.py",
    "integration/test_molecule.py",
    "integration/test_kubeadm_single.py",
    "vagrant/test_libvirt_lab.py",
    "integration/",
)


def _rank(item: pytest.Item) -> int:
    path = item.path.as_posix()
    return next((i for i, part in enumerate(LONGEST_FIRST) if f"/tests/{part}" in path), len(LONGEST_FIRST))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_rank)  # stable: a module's tests keep their order
