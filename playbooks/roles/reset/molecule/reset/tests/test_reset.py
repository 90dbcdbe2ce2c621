"""The reset role on a node with planted Kubernetes leftovers: exactly those are gone, the node's own things stay."""

from __future__ import annotations

import re
from typing import Any

import pytest

from provisioner.checks.labfacts import LabFacts

pytestmark = pytest.mark.groups("k8s_cluster")


def test_cni_and_kube_proxy_links_gone_others_kept(host: Any) -> None:
    links = host.check_output("ip -o link show")
    for gone in ("cni0", "flannel.1", "kube-ipvs0"):
        assert not re.search(rf" {re.escape(gone)}[:@]", links), links
    assert re.search(r" keep0[:@]", links), links


def test_kubernetes_rules_and_tables_gone_others_kept(host: Any) -> None:
    rules = host.check_output("iptables-save")
    assert not re.search(r"KUBE-|cali", rules), rules
    assert "--dport 22 -j ACCEPT" in rules and ":KEEP-ME" in rules and "-s 10.99.0.0/24 -j MASQUERADE" in rules
    tables = host.check_output("nft list tables")
    assert "kube-proxy" not in tables and "table inet keepme" in tables


def test_cni_files_and_the_lab_kubeconfig_gone(host: Any, lab: LabFacts) -> None:
    assert not host.file("/var/lib/cni").exists
    # Emptied but kept: containerd's CRI plugin watches the folder.
    assert host.file("/etc/cni/net.d").is_directory and host.check_output("ls -A /etc/cni/net.d") == ""
    assert host.file("/root/keep").content_string == "not Kubernetes"
    assert not (lab.root / "kubeconfig").exists()
