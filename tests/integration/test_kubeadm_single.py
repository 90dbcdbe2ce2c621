"""A real single-master cluster from a built artifacts folder: 1 master + 1 worker, no load balancer, Flannel.

One lab serves the module, in order: `kubelab up` (its nodes boot from the baked node image, built then or found
cached), every node Ready on its private IP; then a second lab of the same settings made with `--no-image`
reaches the same verified state (same verify results, package versions, binaries, images and files under /etc,
/opt and /usr on each node) and is destroyed; then the add-ons: metrics-server answers `kubectl top` for every
node from kubelets serving certificates of the cluster CA, MetalLB gives a LoadBalancer Service an address of the
pool that answers from the host, Traefik (itself behind such an address) routes an Ingress's host and path from the
host, and verify's add-on checks fail while their add-on is scaled to zero; then the
day-2 commands:
`node add` of a worker, `node remove` of the first one (held up by a PodDisruptionBudget first; the new one
keeps its name and address), and `reset` followed by `up`, which builds a new cluster on the same machines.
The lab sits at edges the plan-time limits accept (the smallest service range, the API port just below the
NodePort range). The lab is destroyed at the end, also when a test fails, and must leave nothing. The roles'
own tests (`kubeadm init` and its services at those edges, the folder's images in containerd, the joins, the
pod network) are their molecule scenarios (playbooks/roles/*/molecule, run by test_molecule.py).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from builtartifacts import CNI, built_folder, kubernetes_version
from clusterlab import ClusterLab, destroyed_after
from hosttools import require_tools

from provisioner.providers.local import TOOLS as LOCAL_TOOLS
from provisioner.providers.local_image import image_path as base_image_path
from provisioner.providers.local_network import netns_name

pytestmark = pytest.mark.integration

NAME = "it-k8s1"
SUBNET = "10.77.160.0/24"
PLAIN_NAME, PLAIN_SUBNET = "it-k8s1-plain", "10.77.163.0/24"
MASTER, WORKER, WORKER_2 = "10.77.160.21", "10.77.160.31", "10.77.160.32"
# Edges the plan-time limits accept, built for real: the smallest service range (the API service on its 1st
# address, cluster DNS on its 10th) and, with no load balancer, the API on the last port below the NodePort
# range.
SERVICE_CIDR, API_PORT = "10.96.0.0/28", "29999"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterLab]:
    require_tools(*LOCAL_TOOLS)
    folder = built_folder()
    home = tmp_path_factory.mktemp("kubelab-home")
    with destroyed_after(home, NAME, SUBNET):
        yield ClusterLab(NAME, home, folder, kubernetes_version(folder))


def up_flags(lab: ClusterLab, name: str = NAME, subnet: str = SUBNET) -> list[str]:
    return [
        *("--provider", "local", "--name", name, "--node-subnet", subnet),
        *("--masters", "1", "--workers", "1", "--lb", "none", "--cni", CNI),
        *("--addons", "metrics-server,lb-services,ingress"),
        *("--service-cidr", SERVICE_CIDR, "--api-port", API_PORT),
        *("--artifacts", str(lab.folder), "--k8s-version", lab.version),
    ]


def test_up_makes_the_lab_and_every_node_is_ready_on_its_private_ip(lab: ClusterLab) -> None:
    done = lab.cli("up", *up_flags(lab))
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
    assert lab.server() == f"https://{MASTER}:{API_PORT}"


def test_the_kubernetes_nodes_boot_from_the_baked_image_and_share_its_containerd_data(lab: ClusterLab) -> None:
    state = json.loads((lab.root / "local" / "state.json").read_text())
    image = Path(state["nodes"]["master-1"]["lowers"][0]).parent
    assert (image / "image.json").is_file(), f"{image} is not a built node image"
    for node in ("master-1", "worker-1"):
        assert state["nodes"][node]["lowers"] == [str(image / "layer"), str(base_image_path("bookworm"))]
        blobs = image / "containerd" / "io.containerd.content.v1.content" / "blobs" / "sha256"
        blob = next(blobs.iterdir())
        copy = lab.root / "local" / "nodes" / node / "var-lib" / "containerd" / blob.relative_to(image / "containerd")
        assert copy.stat().st_ino == blob.stat().st_ino, f"{node}: {copy} is not a link to the image's {blob}"
    listed = lab.cli("image", "list")
    row = next(line.split() for line in listed.stdout.splitlines() if line.startswith(image.name))
    assert row[-1] == "1", listed.stdout  # this lab uses it


# What a node holds after the phases, cluster-independent: package versions, the binaries, containerd's images,
# the enabled units, and every file under /etc, /opt and /usr with its mode and size (the lab's own /etc/hosts
# entries and /etc/kubernetes, which holds the cluster's certificates, differ between any two labs).
NODE_STATE = r"""
dpkg-query -W -f '${Package} ${Version}\n'
ctr -n k8s.io images ls -q | sort
sha256sum $(command -v kubeadm kubelet kubectl containerd runc crictl) /etc/containerd/config.toml /etc/crictl.yaml
systemctl is-enabled containerd kubelet
find /etc /opt /usr -xdev \( -path /etc/kubernetes -o -path /etc/hosts -o -name __pycache__ \) -prune \
  -o \( -type f -o -type l \) -printf '%p %m %s\n' | sort
"""


def verify_results(lab: ClusterLab, name: str) -> list[tuple[str, str, str, str]]:
    rows = json.loads((lab.home / "labs" / name / "verify" / "summary.json").read_text())["results"]
    return sorted((r["group"], r["node"], r["check"], r["outcome"]) for r in rows)


def test_a_lab_made_without_the_image_reaches_the_same_verified_state(lab: ClusterLab) -> None:
    plain = ClusterLab(PLAIN_NAME, lab.home, lab.folder, lab.version)
    with destroyed_after(lab.home, PLAIN_NAME, PLAIN_SUBNET):
        done = plain.cli("up", *up_flags(lab, PLAIN_NAME, PLAIN_SUBNET), "--no-image")
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert "node image" not in done.stdout
        # Both summaries come from the verify phase of `up`, the baked lab's from the test above.
        baked_results, plain_results = verify_results(lab, NAME), verify_results(lab, PLAIN_NAME)
        assert baked_results == plain_results
        assert sum(r[3] == "passed" for r in plain_results) > 20
        for node in ("master-1", "worker-1"):
            baked, fresh = lab.ssh(node, NODE_STATE), plain.ssh(node, NODE_STATE)
            assert baked.returncode == fresh.returncode == 0, baked.stderr + fresh.stderr
            assert len(fresh.stdout.splitlines()) > 1000
            differ = sorted(set(baked.stdout.splitlines()) ^ set(fresh.stdout.splitlines()))
            assert not differ, f"{node}: baked and plain nodes differ in {differ[:20]}"


def test_metrics_server_answers_kubectl_top_from_kubelets_with_certificates_of_the_cluster_ca(
    lab: ClusterLab,
) -> None:
    addons = [row for row in verify_results(lab, NAME) if row[0] == "addons"]
    # 2 kubelets, 2 metrics, 2 LoadBalancer and 2 Ingress checks
    assert len(addons) == 8 and all(row[3] == "passed" for row in addons), addons
    top = lab.kubectl("top", "nodes", "--no-headers")
    assert top.returncode == 0, top.stderr
    assert sorted(line.split()[0] for line in top.stdout.splitlines()) == ["master-1", "worker-1"]
    # No --kubelet-insecure-tls: metrics-server verifies every kubelet against the cluster CA.
    deployment = json.loads(lab.kubectl("-n", "kube-system", "get", "deployment/metrics-server", "-o", "json").stdout)
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert not [arg for arg in args if "insecure" in arg], args
    csrs = json.loads(lab.kubectl("get", "csr", "-o", "json").stdout)["items"]
    serving = {c["spec"]["username"] for c in csrs if c["spec"]["signerName"] == "kubernetes.io/kubelet-serving"}
    assert serving == {"system:node:master-1", "system:node:worker-1"}


# The add-ons' Deployments: scaled to zero, their checks must fail.
ADDON_DEPLOYMENTS = {
    "kube-system": ("metrics-server", "k8s-app=metrics-server"),
    "metallb-system": ("controller", "app=metallb,component=controller"),
    "traefik": ("traefik", "app.kubernetes.io/name=traefik"),
}


def test_verifys_addon_checks_fail_while_their_addons_are_scaled_to_zero(lab: ClusterLab) -> None:
    def scale(replicas: int) -> None:
        for namespace, (deployment, _) in ADDON_DEPLOYMENTS.items():
            done = lab.kubectl("-n", namespace, "scale", f"deployment/{deployment}", f"--replicas={replicas}")
            assert done.returncode == 0, done.stderr

    scale(0)
    try:
        for namespace, (_, selector) in ADDON_DEPLOYMENTS.items():
            gone = lab.kubectl("-n", namespace, "wait", "--for=delete", "pod", "-l", selector, "--timeout=120s")
            assert gone.returncode == 0, gone.stderr
        failed = lab.cli("verify", "--name", NAME, "--only", "addons")
        assert failed.returncode == 1, failed.stdout[-2000:] + failed.stderr[-2000:]
        rows = verify_results(lab, NAME)
        lab_wide = {row[2] for row in rows if row[1] == "lab"}
        assert len(lab_wide) == 6 and all(row[3] == "failed" for row in rows if row[1] == "lab"), rows
        assert {(row[1], row[3]) for row in rows if row[1] != "lab"} == {("master-1", "passed"), ("worker-1", "passed")}
    finally:
        scale(1)
    again = lab.cli("verify", "--name", NAME, "--only", "addons")
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]


def ready_nodes(lab: ClusterLab) -> dict[str, str]:
    """Node name -> InternalIP of every Ready node."""
    nodes = json.loads(lab.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    return {
        n["metadata"]["name"]: next(a["address"] for a in n["status"]["addresses"] if a["type"] == "InternalIP")
        for n in nodes
        if next(c for c in n["status"]["conditions"] if c["type"] == "Ready")["status"] == "True"
    }


def test_node_add_joins_a_worker_on_the_next_address(lab: ClusterLab) -> None:
    done = lab.cli("node", "add", "--name", NAME, "--workers", "1")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "✓ verify" in done.stdout
    assert ready_nodes(lab) == {"master-1": MASTER, "worker-1": WORKER, "worker-2": WORKER_2}
    assert json.loads((lab.root / "lab.json").read_text())["spec"]["workers"] == 2


GUARDED = """
apiVersion: apps/v1
kind: Deployment
metadata: {{name: guarded, namespace: default}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: guarded}}}}
  template:
    metadata: {{labels: {{app: guarded}}}}
    spec:
      nodeSelector: {{kubernetes.io/hostname: worker-1}}
      containers: [{{name: pause, image: "{image}"}}]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {{name: guarded, namespace: default}}
spec:
  minAvailable: 1
  selector: {{matchLabels: {{app: guarded}}}}
"""


def test_node_remove_waits_for_a_disruption_budget_then_removes_the_first_worker(
    lab: ClusterLab, tmp_path: Path
) -> None:
    manifest = json.loads((lab.folder / "artifacts.json").read_text())
    pause = next(e["name"] for e in manifest["artifacts"] if e["kind"] == "image" and "/pause:" in e["name"])
    (tmp_path / "guarded.yaml").write_text(GUARDED.format(image=pause))
    applied = lab.kubectl("apply", "-f", str(tmp_path / "guarded.yaml"))
    assert applied.returncode == 0, applied.stderr
    rolled = lab.kubectl("rollout", "status", "deployment/guarded", "--timeout=120s")
    assert rolled.returncode == 0, rolled.stderr

    blocked = lab.cli("node", "remove", "worker-1", "--name", NAME, "--drain-timeout", "15", "--yes")
    assert blocked.returncode == 1, blocked.stdout[-2000:]
    assert "could not be evicted" in blocked.stderr and "default/guarded-" in blocked.stderr, blocked.stderr
    assert "worker-1" in ready_nodes(lab)  # still there, cordoned
    assert json.loads((lab.root / "lab.json").read_text())["spec"]["workers"] == 2

    assert lab.kubectl("delete", "poddisruptionbudget", "guarded").returncode == 0
    done = lab.cli("node", "remove", "worker-1", "--name", NAME, "--yes")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "✓ verify" in done.stdout
    assert ready_nodes(lab) == {"master-1": MASTER, "worker-2": WORKER_2}  # worker-2 keeps its name and address
    spec = json.loads((lab.root / "lab.json").read_text())["spec"]
    assert (spec["workers"], spec["removed_nodes"]) == (1, ["worker-1"])
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert netns_name(NAME, "worker-1") not in netns and netns_name(NAME, "worker-2") in netns
    assert lab.kubectl("delete", "deployment", "guarded").returncode == 0


def test_reset_then_up_builds_a_new_cluster_on_the_same_machines(lab: ClusterLab) -> None:
    assert lab.kubectl("create", "configmap", "made-before-the-reset").returncode == 0
    done = lab.cli("reset", "--name", NAME, "--yes")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert not (lab.root / "kubeconfig").exists()
    gone = lab.ssh("master-1", "ls /etc/kubernetes/admin.conf /var/lib/etcd/member /etc/cni/net.d/* 2>&1; true")
    assert gone.stdout.count("No such file or directory") == 3, gone.stdout
    kept = lab.ssh("worker-2", "systemctl is-active containerd && ctr -n k8s.io images list -q | grep -c /pause:")
    assert kept.returncode == 0, kept.stdout + kept.stderr

    again = lab.cli("up", "--name", NAME)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "control-plane, workers, cni, addons, verify" in again.stdout and "✓ verify" in again.stdout
    assert ready_nodes(lab) == {"master-1": MASTER, "worker-2": WORKER_2}
    assert "NotFound" in lab.kubectl("get", "configmap", "made-before-the-reset").stderr
