"""The cluster and node checks' parsers on real output shapes (tests/unit/samples/README.md says where each is from)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from provisioner.checks import kube, kubectl_json, nodeparse

SAMPLES = Path(__file__).parent / "samples"


def sample(name: str) -> str:
    return (SAMPLES / name).read_text()


# --- kubeconfig and /readyz -----------------------------------------------------------------------


def test_kubeconfig_server_of_the_current_context():
    assert kubectl_json.kubeconfig_server(sample("kubectl-config-view-minify.json")) == "https://10.77.131.10:6443"


def test_kubeconfig_without_cluster_is_an_error():
    with pytest.raises(ValueError, match="no cluster"):
        kubectl_json.kubeconfig_server('{"clusters": null}')


def test_readyz_all_checks_passed():
    assert kubectl_json.readyz_failures(sample("readyz-verbose.txt")) == []


def test_readyz_failed_check_is_read_from_kubectls_error_message():
    assert kubectl_json.readyz_failures(sample("readyz-verbose-etcd-down.stderr.txt")) == [
        "etcd failed: reason withheld"
    ]


def test_readyz_unexpected_answer_is_a_failure():
    (failure,) = kubectl_json.readyz_failures(
        "Unable to connect to the server: dial tcp 10.77.131.10:6443: i/o timeout"
    )
    assert "unexpected /readyz answer" in failure and "i/o timeout" in failure


# --- nodes ----------------------------------------------------------------------------------------


def test_node_summary_reads_ready_and_internal_ip():
    summary = kubectl_json.node_summary(sample("kubectl-get-nodes.json"))
    assert summary["master-1"] == {
        "ready": "True",
        "reason": "KubeletReady",
        "internal_ip": "192.168.56.21",
        "kubelet": "v1.36.4",
    }
    assert summary["worker-1"]["ready"] == "False"


def test_node_problems_name_not_ready_nat_address_and_missing_node():
    expected = {"master-1": "192.168.56.21", "worker-1": "192.168.56.31", "worker-2": "192.168.56.32"}
    problems = kubectl_json.node_problems(sample("kubectl-get-nodes.json"), expected)
    assert problems == [
        "worker-2: not registered in the cluster",
        "worker-1: Ready=False (KubeletNotReady)",
        "worker-1: INTERNAL-IP 10.0.2.15, expected 192.168.56.31",
    ]


def test_node_problems_none_when_all_ready_on_private_ips():
    nodes = json.loads(sample("kubectl-get-nodes.json"))
    nodes["items"] = nodes["items"][:1]
    assert kubectl_json.node_problems(nodes, {"master-1": "192.168.56.21"}) == []


def test_unexpected_node_is_reported():
    problems = kubectl_json.node_problems(sample("kubectl-get-nodes.json"), {"master-1": "192.168.56.21"})
    assert "worker-1: unexpected node (not in the lab inventory)" in problems


def test_every_node_holds_its_own_pod_range_inside_the_pod_cidr():
    assert kubectl_json.pod_range_problems(sample("kubectl-get-nodes.json"), "10.244.0.0/16") == []
    assert kubectl_json.pod_range_problems(sample("kubectl-get-nodes.json"), "10.244.1.0/24") == [
        "master-1: pod range 10.244.0.0/24 is outside the lab's pod CIDR 10.244.1.0/24"
    ]


def test_a_node_without_a_pod_range_or_with_another_nodes_is_reported():
    nodes = json.loads(sample("kubectl-get-nodes.json"))
    nodes["items"][1]["spec"]["podCIDR"] = "10.244.0.0/24"
    assert kubectl_json.pod_range_problems(nodes, "10.244.0.0/22") == [
        "worker-1: pod range 10.244.0.0/24 is also master-1's"
    ]
    del nodes["items"][1]["spec"]["podCIDR"]
    assert kubectl_json.pod_range_problems(nodes, "10.244.0.0/22") == [
        "worker-1: no pod range (podCIDR); is 10.244.0.0/22 used up? see its CIDRNotAvailable events"
    ]


# --- pods -----------------------------------------------------------------------------------------


def test_pod_problems_in_system_and_cni_namespaces():
    problems = kubectl_json.pod_problems(
        sample("kubectl-get-pods-all-namespaces.json"), ("kube-system", "calico-system", "tigera-operator")
    )
    assert problems == [
        "kube-system/coredns-66bc5c9577-x7k2p on worker-1: Pending; container coredns ContainerCreating",
        "calico-system/calico-node-w8r4d on worker-1: Running; container calico-node CrashLoopBackOff (restarts 7)",
    ]


def test_pods_outside_the_namespaces_and_completed_pods_are_ignored():
    problems = kubectl_json.pod_problems(sample("kubectl-get-pods-all-namespaces.json"), ("kube-system",))
    assert all("broken" not in p and "kubelab-smoke" not in p for p in problems)
    assert len(problems) == 1


def test_cni_agent_missing_on_a_node():
    pods = sample("kubectl-get-pods-all-namespaces.json")
    assert kubectl_json.agent_problems(pods, "calico", ["master-1", "worker-1", "worker-2"]) == [
        "worker-2: no calico agent pod (k8s-app=calico-node)"
    ]
    assert kubectl_json.agent_problems(pods, "none", ["worker-2"]) == []


def test_running_pods_by_node_skips_pods_that_are_not_ready():
    pods = sample("kubectl-get-pods-all-namespaces.json")
    assert kubectl_json.running_pods_by_node(pods, "k8s-app", "calico-node") == {
        "master-1": ("calico-node-5mhxt", "192.168.56.21")
    }


# --- etcd -----------------------------------------------------------------------------------------

MASTERS = {"master-1": "192.168.56.21", "master-2": "192.168.56.22", "master-3": "192.168.56.23"}


def test_etcd_members_equal_the_masters():
    assert kubectl_json.etcd_member_problems(sample("etcdctl-member-list.json"), MASTERS) == []


def test_etcd_member_on_wrong_address_unstarted_learner_and_missing_master():
    problems = kubectl_json.etcd_member_problems(sample("etcdctl-member-list-joining.json"), MASTERS)
    assert problems == [
        "master-2: peer URLs ['https://10.0.2.15:2380'] are not on 192.168.56.22",
        "member 4711829386640512870 is not started (peer ['https://192.168.56.23:2380'])",
        "master-3: not an etcd member",
    ]


def test_etcd_member_that_is_not_a_master():
    problems = kubectl_json.etcd_member_problems(sample("etcdctl-member-list.json"), dict(list(MASTERS.items())[:2]))
    assert problems == ["master-3: etcd member but not a master of the lab"]


def test_etcd_all_endpoints_healthy():
    assert kubectl_json.etcd_health_problems(sample("etcdctl-endpoint-health.json"), 3) == []


def test_etcd_unhealthy_endpoint_and_count():
    health = sample("etcdctl-endpoint-health-one-down.json")
    assert kubectl_json.etcd_health_problems(health, 3) == [
        "https://192.168.56.23:2379: unhealthy (failed to commit proposal: context deadline exceeded)"
    ]
    assert "3 endpoints answered, expected 5" in kubectl_json.etcd_health_problems(health, 5)


# --- DNS and services -----------------------------------------------------------------------------


def test_nslookup_answer_is_the_kubernetes_service():
    assert kubectl_json.nslookup_answers(sample("nslookup-kubernetes-default.txt")) == ["10.96.0.1"]
    assert kubectl_json.nslookup_answers(sample("nslookup-timeout.txt")) == []


def test_service_cluster_ip_and_node_port():
    assert kubectl_json.service_ports(sample("kubectl-get-service-kubernetes.json")) == ("10.96.0.1", None)
    assert kubectl_json.service_ports(sample("kubectl-get-service-nodeport.json")) == ("10.103.47.212", 31287)


# --- containerd's effective config ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "table"),
    [
        ("containerd-1.6.20-config-dump.toml", True, 'plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc'),
        ("containerd-2.1.9-config-dump.toml", True, 'plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc'),
        ("containerd-2.1.9-config-dump-default.toml", False, 'plugins."io.containerd.cri.v1.runtime"'),
    ],
)
def test_systemd_cgroup_from_config_dump(name, value, table):
    setting = nodeparse.containerd_systemd_cgroup(sample(name))
    assert setting.value is value
    assert setting.runtime == "runc"
    assert setting.table.startswith(table)


def test_cri_plugin_disabled_is_reported():
    with pytest.raises(ValueError, match="CRI plugin is disabled"):
        nodeparse.containerd_systemd_cgroup(sample("containerd-1.6.20-config-dump-cri-disabled.toml"))


def test_systemd_cgroup_key_absent_means_unset():
    dump = '[plugins."io.containerd.grpc.v1.cri".containerd]\ndefault_runtime_name = "runc"\n'
    assert nodeparse.containerd_systemd_cgroup(dump).value is None


# --- workloads (--workloads) ----------------------------------------------------------------------


def test_replicasets_of_a_deployment_oldest_revision_first():
    owned = kubectl_json.replicasets_of(sample("kubectl-get-replicasets.json"), "web")
    assert owned == [
        {"name": "web-6d4cf56db6", "revision": 1, "replicas": 0, "ready": 0},
        {"name": "web-7f9b8c5d4", "revision": 2, "replicas": 3, "ready": 3},
    ]
    assert kubectl_json.active_replicaset(sample("kubectl-get-replicasets.json"), "web")["name"] == "web-7f9b8c5d4"


def test_active_replicaset_of_a_deployment_without_any():
    with pytest.raises(ValueError, match="deployment db owns no ReplicaSet"):
        kubectl_json.active_replicaset(sample("kubectl-get-replicasets.json"), "db")


def test_pods_by_name_keep_phase_uid_and_node():
    pods = kubectl_json.pods_by_name(sample("kubectl-get-pods-statefulset.json"))
    assert sorted(pods) == ["db-0", "db-1"]
    assert pods["db-0"] == {"phase": "Running", "uid": "6a7b8c9d-0e1f-4a2b-8c3d-4e5f6a7b8c01", "node": "worker-1"}
    assert pods["db-1"]["phase"] == "Pending"


def test_cronjob_last_success():
    assert kubectl_json.cronjob_last_success(sample("kubectl-get-cronjob.json")) == "2026-11-20T10:41:04Z"
    fresh = json.loads(sample("kubectl-get-cronjob.json"))
    del fresh["status"]
    assert kubectl_json.cronjob_last_success(fresh) is None


# --- which kubectl --------------------------------------------------------------------------------


def test_client_minor_from_kubectl_version():
    # Real output of this machine's kubectl (v1.32.4, minor "32+").
    assert kube.client_minor(sample("kubectl-version-client.json")) == 32
    assert kube.client_minor('{"clientVersion": {"major": "1", "minor": "20"}}') == 20
    assert kube.client_minor("error: unknown flag: --client") is None


def fake_kubectl(tmp_path: Path, minor: str) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "kubectl"
    script.write_text(f'#!/bin/sh\necho \'{{"clientVersion": {{"major": "1", "minor": "{minor}"}}}}\'\n')
    script.chmod(0o755)
    return bin_dir


@pytest.mark.parametrize(("host_minor", "cluster_minor", "where"), [("35", 36, "host"), ("20", 36, "master")])
def test_auto_uses_host_kubectl_within_one_minor(tmp_path, monkeypatch, host_minor, cluster_minor, where):
    monkeypatch.setenv("PATH", str(fake_kubectl(tmp_path, host_minor)))
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\n")
    chosen = kube.choose("auto", kubeconfig, master=object(), master_name="master-1", cluster_minor=cluster_minor)
    assert ("host" if chosen.master is None else "master") == where
    forced = kube.choose("host", kubeconfig, master=object(), master_name="master-1", cluster_minor=cluster_minor)
    assert forced.master is None


def test_auto_without_a_lab_kubeconfig_uses_the_master(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(fake_kubectl(tmp_path, "36")))
    chosen = kube.choose("auto", tmp_path / "kubeconfig", master=object(), master_name="master-1", cluster_minor=36)
    assert chosen.where == "kubectl on master-1"
    with pytest.raises(kube.KubectlError, match="--kubectl host needs kubectl on PATH"):
        kube.choose("host", tmp_path / "kubeconfig", master=object(), master_name="master-1")


def test_pods_whose_containers_started_before_the_kubelet_came_back_are_stale() -> None:
    def pod(name: str, node: str, started: str) -> dict:
        status = {"containerStatuses": [{"name": "c", "ready": True, "state": {"running": {"startedAt": started}}}]}
        return {"metadata": {"name": name, "namespace": "kube-system"}, "spec": {"nodeName": node}, "status": status}

    pods = {
        "items": [
            pod("old", "master-3", "2026-12-04T16:00:00Z"),
            pod("new", "master-3", "2026-12-04T16:05:09Z"),
            pod("elsewhere", "master-1", "2026-12-04T15:00:00Z"),
        ]
    }
    since = "2026-12-04T16:05:00Z"
    assert kubectl_json.stale_pods(pods, "master-3", since, ("kube-system",)) == ["kube-system/old"]
    assert kubectl_json.stale_pods(pods, "master-3", since, ("kube-flannel",)) == []


def test_ready_endpoint_addresses_skip_endpoints_that_are_not_ready():
    slices = {
        "items": [
            {"endpoints": [{"addresses": ["10.244.0.5"], "conditions": {"ready": True}}]},
            {"endpoints": [{"addresses": ["10.244.1.7"], "conditions": {"ready": False, "terminating": True}}]},
            {"endpoints": [{"addresses": ["10.244.2.9"]}]},  # no conditions: ready (the API's default)
            {"endpoints": None},  # a Service whose pods are all gone
        ]
    }
    assert kubectl_json.ready_endpoint_addresses(json.dumps(slices)) == {"10.244.0.5", "10.244.2.9"}


def test_etcdctl_is_asked_again_when_the_api_gave_no_answer_from_it(monkeypatch):
    timeout = kube.Result(1, "", "Error from server (Timeout): the server was unable to return a response in time")
    health = kube.Result(1, '[{"endpoint":"https://10.0.0.23:2379","health":false}]', "unhealthy cluster")
    answers, calls = iter([timeout, health]), []

    class Fake:
        def run(self, *args, check=True):
            calls.append(args)
            return next(answers)

    monkeypatch.setattr(kube.time, "sleep", lambda _seconds: None)
    result = kube.etcdctl(Fake(), "master-1", "endpoint", "health", "--cluster", "-w", "json")  # type: ignore[arg-type]
    assert result == health and len(calls) == 2
    assert calls[0][:5] == ("-n", "kube-system", "exec", "etcd-master-1", "--")

    answers, calls = iter([timeout] * kube.ETCDCTL_ATTEMPTS), []
    assert kube.etcdctl(Fake(), "master-1", "member", "list") == timeout  # type: ignore[arg-type]
    assert len(calls) == kube.ETCDCTL_ATTEMPTS
