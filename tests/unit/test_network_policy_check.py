"""`verify --workloads`' NetworkPolicy check without a cluster: its objects, and which CNIs it applies to."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from provisioner import verify, versions
from provisioner.checks import kubectl_json, manifests
from provisioner.lab import LabDir


def test_calico_cilium_and_weave_enforce_network_policy_flannel_does_not() -> None:
    assert [cni for cni in versions.CNIS if kubectl_json.network_policy_not_enforced(cni) is None] == [
        "calico",
        "cilium",
        "weave",
    ]
    reason = kubectl_json.network_policy_not_enforced("flannel")
    assert reason is not None and reason.startswith("not enforced by flannel")
    assert "(--cni none)" in str(kubectl_json.network_policy_not_enforced("none"))


def test_every_cni_the_lab_offers_has_a_known_answer() -> None:
    known = set(kubectl_json.NETWORK_POLICY_CNIS) | set(kubectl_json.NETWORK_POLICY_NOT_ENFORCED)
    assert set(versions.CNIS) == known
    assert "does not know" in str(kubectl_json.network_policy_not_enforced("canal"))


def test_deny_all_ingress_selects_every_pod_and_lets_nothing_in() -> None:
    policy = manifests.deny_all_ingress("deny-ingress", "kubelab-netpol-server")
    assert policy["apiVersion"] == "networking.k8s.io/v1" and policy["kind"] == "NetworkPolicy"
    assert policy["metadata"] == {"name": "deny-ingress", "namespace": "kubelab-netpol-server"}
    assert policy["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"]}


def test_allow_rule_opens_the_netexec_port_to_one_namespace_by_its_name_label() -> None:
    policy = manifests.allow_ingress_from_namespace("allow-client", "srv", "server", "cli")
    spec = policy["spec"]
    assert spec["podSelector"] == {"matchLabels": {"app": "server"}}
    assert spec["policyTypes"] == ["Ingress"]
    (rule,) = spec["ingress"]
    assert rule["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "cli"}}}]
    assert rule["ports"] == [{"protocol": "TCP", "port": manifests.PROBE_PORT}]


def test_server_and_client_pods_use_the_image_the_other_checks_use() -> None:
    pod = manifests.netexec_pod("server", "kubelab-netpol-server")
    assert pod["metadata"]["labels"] == {"app": "server"}
    (container,) = pod["spec"]["containers"]
    assert (
        container["image"]
        == manifests.AGNHOST_IMAGE
        == manifests.deployment("web", "x", 1)["spec"]["template"]["spec"]["containers"][0]["image"]
    )
    assert container["args"] == ["netexec", f"--http-port={manifests.PROBE_PORT}"]


def lab_with_cni(root: Path, cni: str) -> LabDir:
    """A lab folder whose phases are all done (no state file) with this CNI, and nodes nobody can reach."""
    lab = LabDir(root)
    lab.group_vars.parent.mkdir(parents=True)
    masters = {"master-1": {"kubelab_ip": "10.77.131.21"}}
    children = {"lb": {"hosts": {}}, "masters": {"hosts": masters}, "workers": {"hosts": {}}}
    lab.hosts_inventory.write_text(json.dumps({"all": {"children": children}}))
    variables = {"kubelab_cni": cni, "kubelab_kubernetes_version": "1.36", "kubelab_init_master": "master-1"}
    lab.group_vars.write_text(json.dumps(variables))
    return lab


@pytest.mark.parametrize("cni", ["flannel", "none"])
def test_on_a_cni_without_network_policy_the_checks_say_why_and_touch_nothing(tmp_path: Path, cni: str) -> None:
    """Run by pytest as `verify --workloads` runs them: skipped with the reason, before kubectl is looked for
    (the lab's node is unreachable and it has no kubeconfig, so any use of the cluster would be an error)."""
    lab = lab_with_cni(tmp_path / "lab", cni)
    out = verify.results_dir(lab)
    out.mkdir(parents=True)
    argv = [*verify.pytest_argv(lab, {"workloads"}), "-k", "network_policy"]
    done = subprocess.run(argv, capture_output=True, text=True, env=verify.checks_environment(), timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    rows = json.loads((out / "results.json").read_text())["results"]
    assert [row["check"] for row in rows] == [
        "network_policy_client_reaches_server_without_policy",
        "network_policy_denies_ingress_from_another_namespace",
        "network_policy_allow_rule_lets_the_client_namespace_in",
        "network_policy_namespaces_are_removed",
    ]
    reason = kubectl_json.network_policy_not_enforced(cni)
    assert {(row["group"], row["outcome"], row["message"]) for row in rows} == {("workloads", "skipped", reason)}
