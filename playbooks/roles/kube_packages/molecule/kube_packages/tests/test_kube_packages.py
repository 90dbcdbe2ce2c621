"""What the kube_packages role sets on each node, on a node from the image that holds the installed binaries."""

from __future__ import annotations

from typing import Any

import pytest

from provisioner.checks.labfacts import LabFacts
from provisioner.checks.test_nodes import test_kubernetes_packages_pinned_and_held  # noqa: F401 (collected here)

pytestmark = pytest.mark.groups("k8s_cluster")


def test_the_kubelet_gets_this_nodes_private_ip(host: Any, lab: LabFacts, node: str) -> None:
    defaults = host.file("/etc/default/kubelet")
    assert defaults.mode == 0o644
    assert f"KUBELET_EXTRA_ARGS=--node-ip={lab.nodes[node]}\n" in defaults.content_string


def test_the_kubelet_is_enabled_for_kubeadm_to_start(host: Any) -> None:
    assert host.service("kubelet").is_enabled


def test_containerd_pins_the_sandbox_image_kubeadm_lists(host: Any) -> None:
    pause = next(i for i in host.check_output("kubeadm config images list").split() if "/pause:" in i)
    assert pause in host.file("/etc/containerd/config.toml").content_string
