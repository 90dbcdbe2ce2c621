"""Real Kubernetes labs in the tests: `ClusterLab` (the CLI, SSH and kubectl of one lab made from the built
artifacts folder) and `destroyed_after` (destroy the lab at the end, also after a failure, and fail if it left
anything on the host)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from locallab import fail_if_left, kubelab_cli, sweep


@dataclass
class ClusterLab:
    """One lab named ``name`` in KUBELAB_HOME ``home``; ``console`` collects every CLI output (secrets scan)."""

    name: str
    home: Path
    folder: Path  # the artifacts folder; its bin/kubectl is the host's kubectl
    version: str
    console: list[str] = field(default_factory=list)

    @property
    def root(self) -> Path:
        return self.home / "labs" / self.name

    def cli(self, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
        done = kubelab_cli(self.home, *args, timeout=timeout)
        self.console += [done.stdout, done.stderr]
        return done

    def ssh(self, node: str, command: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return kubelab_cli(self.home, "ssh", node, "--name", self.name, "--", command, timeout=timeout)

    def kubectl(self, *args: str) -> subprocess.CompletedProcess[str]:
        argv = [str(self.folder / "bin" / "kubectl"), "--kubeconfig", str(self.root / "kubeconfig"), *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=120)

    def server(self) -> str:
        """The API server URL of the lab kubeconfig."""
        return self.kubectl("config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}").stdout


@contextmanager
def destroyed_after(home: Path, name: str, subnet: str) -> Iterator[None]:
    """`kubelab destroy` the lab when the body ends, however it ends; sweep and fail if that left anything."""
    try:
        yield
    finally:
        done = kubelab_cli(home, "destroy", "--name", name, "--yes")
        if done.returncode != 0:
            sweep(name)
            pytest.fail(f"kubelab destroy of {name} failed: {done.stderr}")
        fail_if_left(name, subnet)
