"""`kubeadm init` by the control-plane phase: kubelab's shipped checks, the lab kubeconfig, the folder's images."""

from __future__ import annotations

import ipaddress
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from provisioner.checks.labfacts import LabFacts
from provisioner.checks.test_cluster import (  # noqa: F401 (collected here)
    test_etcd_members_are_the_masters,
    test_etcd_members_healthy,
    test_kubeconfig_server_is_the_endpoint,
    test_readyz_through_the_endpoint,
)
from provisioner.checks.test_nodes import test_kubelet_running_with_node_ip  # noqa: F401

SCENARIO_LAB = yaml.safe_load((Path(__file__).parents[1] / "lab.yml").read_text())


def _host_kubectl(lab: LabFacts, *args: str) -> str:
    """kubectl from the artifacts folder on the host, through the lab kubeconfig."""
    argv = [str(lab.artifacts_dir / "bin" / "kubectl"), "--kubeconfig", str(lab.root / "kubeconfig"), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=True).stdout


def test_the_lab_kubeconfig_is_private_and_reaches_the_api_on_the_edge_port(lab: LabFacts) -> None:
    assert (lab.root / "kubeconfig").stat().st_mode & 0o777 == 0o600
    server = yaml.safe_load((lab.root / "kubeconfig").read_text())["clusters"][0]["cluster"]["server"]
    assert server == f"https://{lab.nodes[lab.init_master]}:{SCENARIO_LAB['api_port']}"
    assert _host_kubectl(lab, "get", "--raw", "/readyz").strip() == "ok"


def test_kubeadm_put_the_api_and_dns_services_on_the_smallest_range(lab: LabFacts) -> None:
    services = json.loads(_host_kubectl(lab, "get", "services", "--all-namespaces", "-o", "json"))["items"]
    cluster_ips = {svc["metadata"]["name"]: svc["spec"]["clusterIP"] for svc in services}
    first = ipaddress.IPv4Network(SCENARIO_LAB["service_cidr"]).network_address
    assert (cluster_ips["kubernetes"], cluster_ips["kube-dns"]) == (str(first + 1), str(first + 10)), cluster_ips


@pytest.mark.groups("masters")
def test_root_on_the_master_has_kubectl(host: Any) -> None:
    assert host.file("/root/.kube/config").mode == 0o600
    assert host.check_output("kubectl get --raw /readyz") == "ok"


@pytest.mark.groups("masters")
def test_containers_run_from_the_folders_etcd_and_pause_images(host: Any, lab: LabFacts) -> None:
    images = {e["name"].split("/")[-1].split(":")[0]: e["name"] for e in lab.artifacts if e["kind"] == "image"}
    running = host.check_output("crictl ps -o json")
    containers = {c["metadata"]["name"]: c["image"]["image"] for c in json.loads(running)["containers"]}
    assert "etcd" in containers and "kube-apiserver" in containers, sorted(containers)
    pods = json.loads(host.check_output("crictl pods -o json"))["items"]
    assert pods and all(
        pod["state"] == "SANDBOX_READY" for pod in pods if pod["metadata"]["namespace"] == "kube-system"
    )
    listed = set(host.check_output("ctr -n k8s.io images list --quiet").split())
    assert images["etcd"] in listed and images["pause"] in listed
