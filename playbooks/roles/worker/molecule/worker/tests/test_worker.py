"""A worker joined by the worker role: kubelab's shipped kubelet check, the node registered, no join secret left."""

from __future__ import annotations

import json
from typing import Any

import pytest

from provisioner.checks.labfacts import LabFacts
from provisioner.checks.test_nodes import test_kubelet_running_with_node_ip  # noqa: F401 (collected here)


@pytest.mark.groups("workers")
def test_the_worker_is_registered_with_its_private_ip(
    host: Any, lab: LabFacts, node: str, node_hosts: dict[str, Any]
) -> None:
    master = node_hosts[lab.init_master]
    registered = json.loads(master.check_output(f"kubectl get node {node} -o json"))
    addresses = {a["type"]: a["address"] for a in registered["status"]["addresses"]}
    assert addresses["InternalIP"] == lab.nodes[node]
    assert host.file("/etc/kubernetes/kubelet.conf").exists


@pytest.mark.groups("workers")
def test_no_join_config_or_token_is_left(host: Any, lab: LabFacts, node_hosts: dict[str, Any]) -> None:
    assert not host.file("/etc/kubernetes/kubelab/kubeadm-join.yaml").exists
    tokens = node_hosts[lab.init_master].check_output("kubeadm token list -o json")
    assert "kubelab join of" not in tokens
