"""Debian 13 (trixie) nodes: the local provider builds them from its own cached trixie image, and the prepare
and runtime phases leave them passing `kubelab verify --only nodes` (trixie's containerd package)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from locallab import fail_if_left
from locallab import kubelab_cli as kubelab

pytestmark = pytest.mark.integration
NAME, SUBNET = "it-local-trixie", "10.77.110.0/24"


def test_trixie_node_up_to_runtime_passes_the_node_checks(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("local namespace nodes need root")
    flags = ["--name", NAME, "--provider", "local", "--os", "debian-13", "--node-subnet", SUBNET, "--no-image"]
    flags += ["--masters", "1", "--workers", "0", "--containerd-source", "distro"]
    try:
        up = kubelab(tmp_path, "up", *flags, "--until", "runtime")
        assert up.returncode == 0, up.stdout + up.stderr
        release = kubelab(tmp_path, "ssh", "--name", NAME, "master-1", "--", "cat", "/etc/debian_version")
        assert release.stdout.startswith("13."), release.stdout + release.stderr
        verify = kubelab(tmp_path, "verify", "--name", NAME, "--only", "nodes")
        assert verify.returncode == 0, verify.stdout + verify.stderr
        passed = {line.split()[2] for line in verify.stdout.splitlines() if line.split()[3:4] == ["PASS"]}
        assert {"swap_off", "containerd_active", "containerd_systemd_cgroup", "sysctl[net.ipv4.ip_forward]"} <= passed
    finally:
        kubelab(tmp_path, "destroy", "--name", NAME, "--yes")
        fail_if_left(NAME, SUBNET)
