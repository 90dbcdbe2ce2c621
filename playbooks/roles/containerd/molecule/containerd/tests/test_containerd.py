"""The containerd role on a prepared node: kubelab's shipped runtime checks, and the config containerd really loaded."""

from __future__ import annotations

import re
import tomllib
from typing import Any

from provisioner.checks.test_nodes import (  # noqa: F401 (collected here)
    test_containerd_active,
    test_containerd_systemd_cgroup,
    test_crictl_talks_to_containerd,
)


def test_debian_containerd_enabled_with_the_written_config(host: Any) -> None:
    assert host.service("containerd").is_enabled
    assert re.search(r" 1\.\d+\.\d+", host.check_output("containerd --version"))  # bookworm's package: 1.x
    written = host.file("/etc/containerd/config.toml").content_string
    assert "version = 2" in written
    # kubeadm is not installed before the packages phase: no sandbox image is pinned yet, and the file says so.
    assert "sandbox_image" not in written and "until kubeadm is installed" in written


def test_containerd_loaded_what_the_role_wrote(host: Any) -> None:
    # What containerd really loaded (its merged config), in the config-v2 table names.
    cri = tomllib.loads(host.check_output("containerd config dump"))["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is True
    assert cri["containerd"]["default_runtime_name"] == "runc"
    assert cri["restrict_oom_score_adj"] is True  # the local provider's setting
    crictl = host.file("/etc/crictl.yaml").content_string
    assert "runtime-endpoint: unix:///run/containerd/containerd.sock" in crictl
    assert "image-endpoint: unix:///run/containerd/containerd.sock" in crictl
    assert host.check_output("ctr version | grep -c Version") == "2"  # client and server answer
