"""A real single-master cluster from a built artifacts folder: 1 master + 1 worker, no load balancer, Flannel.

One lab serves the module, in order: `kubelab up ... --until control-plane` (the API answers /readyz through
the lab kubeconfig; containerd holds every image of the folder under its exact reference; containers run from
the pause and etcd images), then `kubelab up` again finishes the lab (workers, cni, verify), then
`kubelab verify --workloads`. The lab is destroyed at the end, also when a test fails, and must leave nothing.
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

NAME = "it-k8s1"
SUBNET = "10.77.160.0/24"
MASTER, WORKER = "10.77.160.21", "10.77.160.31"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterLab]:
    require_tools(*LOCAL_TOOLS)
    folder = built_folder()
    home = tmp_path_factory.mktemp("kubelab-home")
    with destroyed_after(home, NAME, SUBNET):
        yield ClusterLab(NAME, home, folder, kubernetes_version(folder))


def up_flags(lab: ClusterLab) -> list[str]:
    return [
        *("--provider", "local", "--name", NAME, "--node-subnet", SUBNET),
        *("--masters", "1", "--workers", "1", "--lb", "none", "--cni", CNI),
        *("--artifacts", str(lab.folder), "--k8s-version", lab.version),
    ]


def test_up_until_control_plane_serves_the_api_through_the_lab_kubeconfig(lab: ClusterLab) -> None:
    done = lab.cli("up", *up_flags(lab), "--until", "control-plane")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    readyz = lab.kubectl("get", "--raw", "/readyz")
    assert (readyz.returncode, readyz.stdout.strip()) == (0, "ok"), readyz.stderr
    assert lab.server() == f"https://{MASTER}:6443"


def test_containerd_holds_every_image_of_the_folder_by_its_exact_reference(lab: ClusterLab) -> None:
    manifest = json.loads((lab.folder / "artifacts.json").read_text())
    wanted = {e["name"] for e in manifest["artifacts"] if e["kind"] == "image"}
    for node in ("master-1", "worker-1"):
        listed = lab.ssh(node, "ctr --namespace k8s.io images list --quiet")
        assert listed.returncode == 0, listed.stderr
        missing = wanted - set(listed.stdout.split())
        assert not missing, f"{node}'s containerd lacks {sorted(missing)}"


def test_containers_run_from_the_built_etcd_and_pause_images(lab: ClusterLab) -> None:
    manifest = json.loads((lab.folder / "artifacts.json").read_text())
    images = {e["name"].split("/")[-1].split(":")[0]: e["name"] for e in manifest["artifacts"] if e["kind"] == "image"}
    etcd = lab.ssh("worker-1", f"ctr -n k8s.io run --rm {images['etcd']} kubelab-test-etcd etcd --version")
    assert etcd.returncode == 0 and "etcd Version: 3." in etcd.stdout, etcd.stdout + etcd.stderr
    pause = lab.ssh(
        "worker-1",
        f"ctr -n k8s.io run -d {images['pause']} kubelab-test-pause && sleep 1 && "
        "ctr -n k8s.io task list | grep kubelab-test-pause; "
        "ctr -n k8s.io task kill -s KILL kubelab-test-pause; sleep 1; ctr -n k8s.io container rm kubelab-test-pause",
    )
    assert "RUNNING" in pause.stdout, pause.stdout + pause.stderr


def test_up_again_finishes_the_lab_and_every_node_is_ready_on_its_private_ip(lab: ClusterLab) -> None:
    done = lab.cli("up", "--name", NAME)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "✓ verify" in done.stdout
    nodes = json.loads(lab.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    addresses = {
        n["metadata"]["name"]: next(a["address"] for a in n["status"]["addresses"] if a["type"] == "InternalIP")
        for n in nodes
    }
    assert addresses == {"master-1": MASTER, "worker-1": WORKER}
    for node in nodes:
        ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "True", f"{node['metadata']['name']}: {ready.get('message')}"


def test_verify_with_workloads_passes(lab: ClusterLab) -> None:
    done = lab.cli("verify", "--name", NAME, "--workloads")
    assert done.returncode == 0, done.stdout[-4000:]
    assert " 0 failed" in done.stdout
