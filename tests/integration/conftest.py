"""Fixtures for integration tests on real `local` namespace nodes (root only).

`local_lab(name=..., node_subnet=..., masters=1, workers=0, lb="none", lb_nodes=2, os="debian-12", **overrides)`
builds spec -> plan -> lab folder in a temporary KUBELAB_HOME, brings the nodes up with LocalProvider and
returns a `locallab.LocalLab`; every lab made through the fixture is destroyed at teardown, also when the test
fails. `local_lab` is function-scoped, `local_lab_module` is the same factory with module scope (one lab shared
by the tests of a module). `locallab.running_local_lab(home, name, node_subnet, ...)` is the context manager
underneath, `locallab.leftovers(name, subnet)` lists what a lab left on the host, `locallab.crash(name)` kills a
lab's processes like an ended host session (its netns, links, rules and cgroups stay), `locallab.sweep(name)`
removes everything of a test lab, alive or not (teardown of last resort), `locallab.fail_if_left(name, subnet)`
sweeps and fails after a destroy that left anything, and `locallab.kubelab_cli(home, *args)` runs the CLI.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from hosttools import require_tools
from locallab import LocalLab, running_local_lab

from provisioner.providers.local import TOOLS as LOCAL_TOOLS


def _factory(stack: ExitStack, home: Path) -> Callable[..., LocalLab]:
    if os.geteuid() != 0:
        pytest.skip("local namespace nodes need root")
    require_tools(*LOCAL_TOOLS)

    def make(name: str, node_subnet: str, **kwargs: Any) -> LocalLab:
        return stack.enter_context(running_local_lab(home, name, node_subnet, **kwargs))

    return make


@pytest.fixture
def local_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., LocalLab]]:
    """Factory: `local_lab(name="it-local-x", node_subnet="10.77.101.0/24", workers=1)` -> running LocalLab."""
    with ExitStack() as stack:
        yield _factory(stack, tmp_path_factory.mktemp("kubelab-home"))


@pytest.fixture(scope="module")
def local_lab_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., LocalLab]]:
    """Like `local_lab`, but the labs live until the module's tests are done."""
    with ExitStack() as stack:
        yield _factory(stack, tmp_path_factory.mktemp("kubelab-home"))
