"""`kubelab verify --check NAMES`: only the named checks run; a name no check has is refused with the list."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioner import verify
from provisioner.lab import LabDir


def test_known_checks_become_one_pytest_selection() -> None:
    names = verify.parse_checks("etcd_members_healthy, nodes_ready_with_private_ips")
    assert names == {"etcd_members_healthy", "nodes_ready_with_private_ips"}
    argv = verify.pytest_argv(LabDir(Path("/tmp/lab")), {"cluster"}, checks=names)
    assert argv[argv.index("-k") + 1] == "test_etcd_members_healthy or test_nodes_ready_with_private_ips"


def test_an_unknown_check_is_refused_naming_the_real_ones() -> None:
    with pytest.raises(
        verify.VerifyError, match=r"unknown check\(s\) etcd_is_fine; the checks: .*etcd_members_healthy"
    ):
        verify.parse_checks("etcd_is_fine")


def test_no_selection_runs_every_check() -> None:
    assert verify.parse_checks(None) is None
    assert "-k" not in verify.pytest_argv(LabDir(Path("/tmp/lab")), {"cluster"})
