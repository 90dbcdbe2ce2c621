"""`--workloads`: the Kubernetes objects a lab user learns first actually work, in a namespace removed afterwards.

The checks build on each other in file order (the Deployment is scaled, updated, then rolled back), as a person
working through them would. Everything lives in the `kubelab-workloads` namespace, deleted at the end; the
NetworkPolicy checks use two namespaces of their own (a server and a client one), deleted after them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pytest

from provisioner.checks import kubectl_json, manifests

NS = "kubelab-workloads"
TIMEOUT = "180s"
CRONJOB_WAIT = 150  # seconds: a `* * * * *` CronJob fires within a minute, its pod then has to start and finish
REPLACE_WAIT = 120  # seconds for a deleted StatefulSet pod to come back Running
SETTING, TOKEN = "hello-from-a-configmap", "s3cret-from-a-secret"
NETPOL_SERVER_NS, NETPOL_CLIENT_NS = "kubelab-netpol-server", "kubelab-netpol-client"
POLICY_WAIT = 60  # seconds for the CNI to enforce a new NetworkPolicy (or lift it)
BLOCKED_IN_A_ROW = 2  # failed connections in a row that count as blocked (one could be a passing hiccup)

pytestmark = pytest.mark.phase("cni")


@pytest.fixture(scope="module")
def ns(kubectl):
    kubectl.run("delete", "namespace", NS, "--ignore-not-found", "--timeout=120s")
    kubectl.apply(manifests.namespace(NS))
    try:
        yield NS
    finally:
        kubectl.run("delete", "namespace", NS, "--ignore-not-found", "--wait=false", check=False)


def rollout(kubectl, ns: str, what: str) -> None:
    done = kubectl.run("-n", ns, "rollout", "status", what, f"--timeout={TIMEOUT}", check=False)
    assert done.rc == 0, f"{what} did not roll out within {TIMEOUT}: {(done.stderr or done.stdout).strip()[-300:]}"


def active_rs(kubectl, ns: str) -> dict:
    return kubectl_json.active_replicaset(kubectl.json("-n", ns, "get", "replicasets"), "web")


def test_namespace_is_active(kubectl, ns):
    phase = kubectl.json("get", "namespace", ns).get("status", {}).get("phase")
    assert phase == "Active", f"namespace {ns} is {phase}"


def test_deployment_scales(kubectl, ns):
    kubectl.apply(manifests.deployment("web", ns, replicas=2))
    rollout(kubectl, ns, "deployment/web")
    kubectl.run("-n", ns, "scale", "deployment/web", "--replicas=3")
    rollout(kubectl, ns, "deployment/web")
    ready = kubectl.json("-n", ns, "get", "deployment", "web").get("status", {}).get("readyReplicas", 0)
    assert ready == 3, f"deployment/web has {ready} ready replicas after scaling to 3"


def test_deployment_update_replaces_the_replicaset(kubectl, ns):
    before = active_rs(kubectl, ns)
    kubectl.run("-n", ns, "set", "env", "deployment/web", "KUBELAB_REVISION=2")
    rollout(kubectl, ns, "deployment/web")
    owned = kubectl_json.replicasets_of(kubectl.json("-n", ns, "get", "replicasets"), "web")
    after = owned[-1]
    assert after["name"] != before["name"], f"the update kept ReplicaSet {before['name']}"
    old = next((rs for rs in owned if rs["name"] == before["name"]), None)
    assert old is not None and old["replicas"] == 0, f"the old ReplicaSet was not scaled down: {owned}"
    assert after["ready"] == 3, f"new ReplicaSet {after['name']} has {after['ready']} of 3 ready"


def test_deployment_rollback(kubectl, ns):
    first = kubectl_json.replicasets_of(kubectl.json("-n", ns, "get", "replicasets"), "web")[0]
    kubectl.run("-n", ns, "rollout", "undo", "deployment/web")
    rollout(kubectl, ns, "deployment/web")
    now = active_rs(kubectl, ns)
    assert now["name"] == first["name"], f"after `rollout undo` ReplicaSet {now['name']} is active, not {first['name']}"
    assert now["ready"] == 3, f"ReplicaSet {now['name']} has {now['ready']} of 3 ready after the rollback"


def test_service_reaches_the_deployment(kubectl, ns):
    kubectl.apply(manifests.service("web", ns, {"app": "web"}))
    pods = kubectl_json.pods_with_label(kubectl.json("-n", ns, "get", "pods"), "app", "web")
    running = sorted(p["metadata"]["name"] for p in pods if p.get("status", {}).get("phase") == "Running")
    assert running, "no running web pod"
    url = f"http://web.{ns}.svc:{manifests.SERVICE_PORT}/hostname"
    answer = ""
    for _ in range(15):  # the Service's endpoints take a moment to reach every node
        answer = kubectl.run("-n", ns, "exec", running[0], "--", "curl", "-s", "--max-time", "3", url, check=False)
        answer = answer.stdout.strip()
        if answer in running:
            break
        time.sleep(2)
    assert answer in running, f"{url} from {running[0]}: {answer or 'no answer'}, expected one of {running}"


def test_daemonset_runs_on_every_node(kubectl, ns, lab):
    kubectl.apply(manifests.probe_daemonset(ns, "everywhere"))
    rollout(kubectl, ns, "daemonset/everywhere")
    placed = kubectl_json.running_pods_by_node(kubectl.json("-n", ns, "get", "pods"), "app", "everywhere")
    missing = sorted(set(lab.k8s_nodes) - set(placed))
    assert not missing, f"daemonset/everywhere has no running pod on {', '.join(missing)}"


def test_statefulset_keeps_stable_names(kubectl, ns):
    kubectl.apply(manifests.headless_service("db", ns))
    kubectl.apply(manifests.statefulset("db", ns, replicas=2))
    rollout(kubectl, ns, "statefulset/db")
    pods = kubectl_json.pods_by_name(kubectl.json("-n", ns, "get", "pods", "-l", "app=db"))
    assert sorted(pods) == ["db-0", "db-1"], f"statefulset/db pods: {sorted(pods)}"
    kubectl.run("-n", ns, "delete", "pod", "db-0", "--wait=true", "--timeout=120s")
    deadline = time.monotonic() + REPLACE_WAIT
    while True:  # the StatefulSet controller recreates db-0 under the same name
        again = kubectl_json.pods_by_name(kubectl.json("-n", ns, "get", "pods", "-l", "app=db"))
        new = again.get("db-0", {})
        if (new.get("uid") not in (None, pods["db-0"]["uid"]) and new.get("phase") == "Running") or (
            time.monotonic() > deadline
        ):
            break
        time.sleep(2)
    assert sorted(again) == ["db-0", "db-1"], f"after deleting db-0 the pods are {sorted(again)}"
    assert again["db-0"]["uid"] != pods["db-0"]["uid"], f"db-0 was not replaced within {REPLACE_WAIT} s"
    assert again["db-0"]["phase"] == "Running", f"the new db-0 is {again['db-0']['phase']} after {REPLACE_WAIT} s"


def test_job_completes(kubectl, ns):
    kubectl.apply(manifests.job("once", ns, "echo kubelab-job-done"))
    done = kubectl.run("-n", ns, "wait", "--for=condition=complete", "job/once", f"--timeout={TIMEOUT}", check=False)
    assert done.rc == 0, f"job/once did not complete: {(done.stderr or done.stdout).strip()[-300:]}"
    logs = kubectl.run("-n", ns, "logs", "job/once").stdout.strip()
    assert logs == "kubelab-job-done", f"job/once printed {logs!r}"


def test_cronjob_fires(kubectl, ns):
    kubectl.apply(manifests.cronjob("tick", ns, "echo kubelab-cron"))
    deadline = time.monotonic() + CRONJOB_WAIT
    last = None
    while last is None and time.monotonic() < deadline:
        time.sleep(5)
        last = kubectl_json.cronjob_last_success(kubectl.json("-n", ns, "get", "cronjob", "tick"))
    assert last, f"cronjob/tick (every minute) had no successful run within {CRONJOB_WAIT} s"


def test_configmap_and_secret_consumed_by_a_pod(kubectl, ns):
    kubectl.apply(manifests.configmap("settings", ns, {"greeting": SETTING}))
    kubectl.apply(manifests.secret("credentials", ns, {"token": TOKEN}))
    kubectl.apply(manifests.config_reader_pod("reader", ns, "settings", "greeting", "credentials", "token"))
    done = kubectl.run(
        "-n", ns, "wait", "--for=jsonpath={.status.phase}=Succeeded", "pod/reader", f"--timeout={TIMEOUT}", check=False
    )
    assert done.rc == 0, f"pod/reader did not finish: {(done.stderr or done.stdout).strip()[-300:]}"
    logs = kubectl.run("-n", ns, "logs", "reader").stdout.strip()
    assert logs == f"{SETTING} {TOKEN}", f"pod/reader printed {logs!r}, expected the ConfigMap and Secret values"


# --- NetworkPolicy: a server namespace denies ingress, then lets one client namespace in -------------------


@dataclass(frozen=True)
class Netpol:
    kubectl: Any
    url: str  # the server pod's netexec /hostname, by pod IP


@pytest.fixture(scope="module")
def netpol(lab, request):
    """A netexec server and a client pod in two namespaces of their own, removed afterwards. Skipped, with the
    reason, when the lab's CNI does not enforce NetworkPolicy (Flannel): decided before kubectl is needed."""
    reason = kubectl_json.network_policy_not_enforced(lab.cni)
    if reason:
        pytest.skip(reason)
    kubectl = request.getfixturevalue("kubectl")
    namespaces = (NETPOL_SERVER_NS, NETPOL_CLIENT_NS)
    for name in namespaces:
        kubectl.run("delete", "namespace", name, "--ignore-not-found", "--timeout=120s")
    try:
        for name, pod in zip(namespaces, ("server", "client"), strict=True):
            kubectl.apply(manifests.namespace(name))
            kubectl.apply(manifests.netexec_pod(pod, name))
        for name, pod in zip(namespaces, ("server", "client"), strict=True):
            ready = kubectl.run(
                "-n", name, "wait", "--for=condition=Ready", f"pod/{pod}", f"--timeout={TIMEOUT}", check=False
            )
            if ready.rc != 0:
                pytest.fail(f"pod {name}/{pod} is not Ready: {(ready.stderr or ready.stdout).strip()[-300:]}")
        ip = kubectl.json("-n", NETPOL_SERVER_NS, "get", "pod", "server").get("status", {}).get("podIP")
        assert ip, f"pod {NETPOL_SERVER_NS}/server has no IP"
        yield Netpol(kubectl, f"http://{ip}:{manifests.PROBE_PORT}/hostname")
    finally:
        for name in namespaces:
            kubectl.run("delete", "namespace", name, "--ignore-not-found", "--wait=false", check=False)


def client_reaches_server(netpol: Netpol) -> tuple[bool, str]:
    """Whether the client pod gets the server's answer (its pod name), and what it got."""
    done = netpol.kubectl.run(
        "-n", NETPOL_CLIENT_NS, "exec", "client", "--", "curl", "-s", "--max-time", "3", netpol.url, check=False
    )
    answer = done.stdout.strip()
    return answer == "server", answer or f"no answer (curl exit {done.rc})"


def wait_until_reachable(netpol: Netpol, reachable: bool) -> str:
    """Poll until the client reaches the server (for reachable=False: fails BLOCKED_IN_A_ROW times in a row);
    '' when that happened within POLICY_WAIT, else what the last attempt got."""
    deadline = time.monotonic() + POLICY_WAIT
    blocked = 0
    while True:
        ok, said = client_reaches_server(netpol)
        blocked = 0 if ok else blocked + 1
        if (ok and reachable) or (not reachable and blocked >= BLOCKED_IN_A_ROW):
            return ""
        if time.monotonic() > deadline:
            return said
        time.sleep(2)


def test_network_policy_client_reaches_server_without_policy(netpol):
    said = wait_until_reachable(netpol, reachable=True)
    assert not said, f"{NETPOL_CLIENT_NS}/client cannot reach {netpol.url} even before any NetworkPolicy: {said}"


def test_network_policy_denies_ingress_from_another_namespace(netpol):
    netpol.kubectl.apply(manifests.deny_all_ingress("deny-ingress", NETPOL_SERVER_NS))
    said = wait_until_reachable(netpol, reachable=False)
    assert not said, (
        f"{NETPOL_CLIENT_NS}/client still reaches {netpol.url} {POLICY_WAIT} s after a deny-all-ingress"
        f" NetworkPolicy in {NETPOL_SERVER_NS} (answer: {said})"
    )


def test_network_policy_allow_rule_lets_the_client_namespace_in(netpol):
    rule = manifests.allow_ingress_from_namespace("allow-client", NETPOL_SERVER_NS, "server", NETPOL_CLIENT_NS)
    netpol.kubectl.apply(rule)
    said = wait_until_reachable(netpol, reachable=True)
    assert not said, (
        f"{NETPOL_CLIENT_NS}/client cannot reach {netpol.url} {POLICY_WAIT} s after a NetworkPolicy allowed its"
        f" namespace in: {said}"
    )


def test_network_policy_namespaces_are_removed(netpol):
    for name in (NETPOL_SERVER_NS, NETPOL_CLIENT_NS):
        deleted = netpol.kubectl.run("delete", "namespace", name, f"--timeout={TIMEOUT}", check=False)
        assert deleted.rc == 0, f"deleting namespace {name}: {deleted.stderr.strip()[-300:]}"
        left = netpol.kubectl.run("get", "namespace", name, check=False)
        assert left.rc != 0 and "NotFound" in left.stderr, f"namespace {name} is still there: {left.stdout.strip()}"


def test_cleanup_removes_the_namespace(kubectl, ns):
    deleted = kubectl.run("delete", "namespace", ns, f"--timeout={TIMEOUT}", check=False)
    assert deleted.rc == 0, f"deleting namespace {ns}: {deleted.stderr.strip()[-300:]}"
    left = kubectl.run("get", "namespace", ns, check=False)
    assert left.rc != 0 and "NotFound" in left.stderr, f"namespace {ns} is still there: {left.stdout.strip()}"
