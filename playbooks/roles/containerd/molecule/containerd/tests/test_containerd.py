"""The containerd role per containerd major: Debian's 1.x on the master (kubeadm's pause image pinned), 2.x from
an artifacts folder on the worker (kubelab's unit, no kubeadm yet); kubelab's shipped runtime checks on both."""

from __future__ import annotations

import re
import tomllib
from typing import Any

import pytest

from provisioner.checks.test_nodes import (  # noqa: F401 (collected here)
    test_containerd_active,
    test_containerd_systemd_cgroup,
    test_crictl_talks_to_containerd,
)

PAUSE = "registry.k8s.io/pause:3.10.2"  # what prepare.yml's stand-in kubeadm lists


def test_crictl_and_ctr_reach_containerd(host: Any) -> None:
    crictl = host.file("/etc/crictl.yaml").content_string
    assert "runtime-endpoint: unix:///run/containerd/containerd.sock" in crictl
    assert "image-endpoint: unix:///run/containerd/containerd.sock" in crictl
    assert host.check_output("ctr version | grep -c Version") == "2"  # client and server answer


@pytest.mark.groups("masters")
def test_debian_containerd_1x_pins_the_pause_image_kubeadm_lists(host: Any) -> None:
    assert host.service("containerd").is_enabled
    assert re.search(r" 1\.\d+\.\d+", host.check_output("containerd --version"))  # bookworm's package
    written = host.file("/etc/containerd/config.toml").content_string
    assert "version = 2" in written and "# Sandbox image from kubeadm v1.36.4." in written
    # What containerd really loaded (its merged config), in the config-v2 table names.
    cri = tomllib.loads(host.check_output("containerd config dump"))["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["sandbox_image"] == PAUSE
    assert cri["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is True
    assert cri["containerd"]["default_runtime_name"] == "runc"
    assert cri["restrict_oom_score_adj"] is True  # the local provider's setting


@pytest.mark.groups("workers")
def test_containerd_2x_from_the_folder_runs_from_kubelabs_unit(host: Any) -> None:
    unit = host.check_output("systemctl show -p FragmentPath -p ExecStart -p UnitFileState containerd")
    assert "FragmentPath=/etc/systemd/system/containerd.service" in unit
    assert "path=/usr/local/bin/containerd " in unit and "UnitFileState=enabled" in unit
    assert re.search(r" 2\.\d+\.\d+", host.check_output("/usr/local/bin/containerd --version"))
    assert not host.package("containerd").is_installed  # nothing from Debian's package


@pytest.mark.groups("workers")
def test_containerd_2x_loaded_a_version_3_config_without_a_pin_until_kubeadm(host: Any) -> None:
    written = host.file("/etc/containerd/config.toml").content_string
    assert "version = 3\n" in written and "until kubeadm is installed" in written
    plugins = tomllib.loads(host.check_output("/usr/local/bin/containerd config dump"))["plugins"]
    runtime = plugins["io.containerd.cri.v1.runtime"]
    assert runtime["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is True
    assert runtime["restrict_oom_score_adj"] is True
    assert plugins["io.containerd.cri.v1.images"]["pinned_images"].get("sandbox") != PAUSE
