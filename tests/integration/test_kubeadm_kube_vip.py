"""A real HA cluster whose VIP is held by kube-vip pods: 3 masters, no worker, Flannel, from the built folder.

`kubelab up` (kube-vip starts on master-1 with super-admin.conf for the init, then on every master), verify
with every group (the VIP on exactly one master, kube-vip running on each), then `kubelab test failover`
stops the master holding the VIP and the API keeps answering through it. The VIP and the API port sit at
edges the plan-time limits accept. Destroyed at the end.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from builtartifacts import CNI, built_folder, kubernetes_version
from clusterlab import ClusterLab, destroyed_after
from hosttools import require_tools

from provisioner.providers.local import TOOLS as LOCAL_TOOLS

pytestmark = pytest.mark.integration

NAME = "it-k8svip"
SUBNET = "10.77.162.0/24"
# Edges the plan-time limits accept, built for real: the VIP on the first address that is not the host's,
# and the API on the first port above the NodePort range.
VIP = "10.77.162.2"
API_PORT = "32768"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterLab]:
    require_tools(*LOCAL_TOOLS)
    folder = built_folder()
    home = tmp_path_factory.mktemp("kubelab-home")
    with destroyed_after(home, NAME, SUBNET):
        yield ClusterLab(NAME, home, folder, kubernetes_version(folder))


def test_up_with_kube_vip_holds_the_vip_on_one_master_and_verifies(lab: ClusterLab) -> None:
    flags = ["--provider", "local", "--name", NAME, "--node-subnet", SUBNET, "--masters", "3", "--workers", "0"]
    flags += ["--lb", "kube-vip", "--vip", VIP, "--api-port", API_PORT, "--cni", CNI]
    flags += ["--artifacts", str(lab.folder), "--k8s-version", lab.version]
    done = lab.cli("up", *flags)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert lab.server() == f"https://{VIP}:{API_PORT}"
    pods = json.loads(lab.kubectl("-n", "kube-system", "get", "pods", "-o", "json").stdout)["items"]
    vip_pods = {p["spec"]["nodeName"] for p in pods if p["metadata"]["name"].startswith("kube-vip-")}
    assert vip_pods == {"master-1", "master-2", "master-3"}
    summary = json.loads((lab.root / "verify" / "summary.json").read_text())
    rows = {row["check"]: row["outcome"] for row in summary["results"] if row["node"] == "lab"}
    assert rows["vip_on_exactly_one_node"] == "passed" and rows["kube_vip_runs_on_every_master"] == "passed"


def test_failover_of_the_kube_vip_holder_keeps_the_api_up(lab: ClusterLab) -> None:
    done = lab.cli("test", "failover", "--name", NAME, timeout=1200)
    assert done.returncode == 0, done.stdout[-5000:]
    assert "PASS  VIP moved" in done.stdout and "PASS  API answers through the VIP" in done.stdout
