"""A one-master cluster after the kube_upgrade role's steps: every part on the target, the cluster healthy."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from provisioner.checks.test_cluster import (  # noqa: F401 (collected here)
    test_etcd_members_healthy,
    test_readyz_through_the_endpoint,
    test_system_and_cni_pods_running,
)

FOLDER = Path(os.environ.get("KUBELAB_MOLECULE_UPGRADE_ARTIFACTS") or "~/.cache/kubelab/test-artifacts").expanduser()
TARGET = json.loads((FOLDER / "artifacts.json").read_text())["kubernetes_version"]

pytestmark = pytest.mark.groups("masters")


def test_kubeadm_kubelet_and_kubectl_are_the_target(host: Any) -> None:
    assert host.check_output("kubeadm version -o short") == f"v{TARGET}"
    assert host.check_output("kubelet --version") == f"Kubernetes v{TARGET}"
    client = json.loads(host.check_output("kubectl version --client -o json"))["clientVersion"]["gitVersion"]
    assert client == f"v{TARGET}"


def test_the_node_and_the_control_plane_run_the_target(host: Any, node: str) -> None:
    kubectl = "kubectl --kubeconfig /etc/kubernetes/admin.conf"
    reported = json.loads(host.check_output(f"{kubectl} get node {node} -o json"))["status"]["nodeInfo"]
    assert reported["kubeletVersion"] == f"v{TARGET}"
    pods = json.loads(host.check_output(f"{kubectl} -n kube-system get pods -o json"))["items"]
    images = {
        c["name"]: c["image"]
        for pod in pods
        for c in pod["spec"]["containers"]
        if c["name"] in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy")
    }
    assert len(images) == 4 and all(image.endswith(f":v{TARGET}") for image in images.values()), images
