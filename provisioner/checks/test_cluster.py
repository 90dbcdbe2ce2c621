"""The cluster, through the lab's control-plane endpoint (the VIP): API, nodes, system pods, etcd, DNS, traffic.

Every check runs the same kubectl/etcdctl commands a person would; the parsing lives in kubectl_json.py.
"""

from __future__ import annotations

import functools
import itertools
import time

import pytest

from provisioner.checks import kube, kubectl_json, manifests

# How long the probe pods may take to run on every Ready node. A node that is not Ready is not waited for:
# its missing pod is reported at once, with the node's condition.
PROBE_TIMEOUT = 180
# kube-proxy programs a Service's rules a moment after its EndpointSlice lists the pods; on a one-node
# cluster the Service checks run right after the rollout, so they wait this long for the path to open.
SERVICE_SETTLE_SECONDS = 20


@pytest.mark.phase("control-plane")
def test_kubeconfig_server_is_the_endpoint(kubectl, lab):
    server = kubectl_json.kubeconfig_server(kubectl.run("config", "view", "--minify", "-o", "json").stdout)
    expected = f"https://{lab.api_host}:{lab.api_port}"
    assert server == expected, f"{kubectl.where} talks to {server}, not the lab's endpoint {expected}"


@pytest.mark.phase("control-plane")
def test_readyz_through_the_endpoint(kubectl):
    result = kubectl.run("get", "--raw=/readyz?verbose", check=False)
    failures = kubectl_json.readyz_failures(result.stdout or result.stderr)
    assert result.rc == 0 and not failures, f"/readyz: {'; '.join(failures)}"


@pytest.mark.phase("cni")
def test_nodes_ready_with_private_ips(kubectl, lab):
    problems = kubectl_json.node_problems(kubectl.json("get", "nodes"), lab.k8s_nodes)
    assert not problems, "; ".join(problems)


@pytest.mark.phase("cni")
def test_every_node_has_its_own_pod_range(kubectl, lab):
    problems = kubectl_json.pod_range_problems(kubectl.json("get", "nodes"), lab.pod_cidr)
    assert not problems, "; ".join(problems)


@pytest.mark.phase("cni")
def test_system_and_cni_pods_running(kubectl, lab):
    pods = kubectl.json("get", "pods", "--all-namespaces")
    namespaces = ("kube-system", *kubectl_json.CNI_NAMESPACES.get(lab.cni, ()))
    problems = kubectl_json.pod_problems(pods, namespaces)
    problems += kubectl_json.agent_problems(pods, lab.cni, sorted(lab.k8s_nodes))
    assert not problems, "; ".join(problems)


@pytest.mark.phase("control-plane")
def test_kube_vip_runs_on_every_master(kubectl, lab):
    if lab.lb_kind != "kube-vip":
        pytest.skip(f"the VIP is not kube-vip's (lb: {lab.lb_kind})")
    pods = kubectl.json("-n", "kube-system", "get", "pods")
    names = {p["metadata"]["name"] for p in pods["items"]}
    missing = [m for m in lab.masters if f"kube-vip-{m}" not in names]
    problems = kubectl_json.pod_problems(
        {"items": [p for p in pods["items"] if p["metadata"]["name"].startswith("kube-vip-")]}, ("kube-system",)
    )
    assert not missing and not problems, "; ".join([f"no kube-vip pod on {m}" for m in missing] + problems)


@pytest.mark.phase("control-plane")
def test_etcd_members_are_the_masters(kubectl, lab):
    result = kube.etcdctl(kubectl, lab.init_master, "member", "list", "-w", "json")
    assert result.rc == 0, f"etcdctl member list failed: {result.stderr.strip()[:300]}"
    problems = kubectl_json.etcd_member_problems(result.stdout, lab.masters)
    assert not problems, "; ".join(problems)


@pytest.mark.phase("control-plane")
def test_etcd_members_healthy(kubectl, lab):
    result = kube.etcdctl(kubectl, lab.init_master, "endpoint", "health", "--cluster", "-w", "json")
    assert result.stdout.strip(), f"etcdctl endpoint health printed nothing: {result.stderr.strip()[:300]}"
    problems = kubectl_json.etcd_health_problems(result.stdout, len(lab.masters))
    assert not problems, "; ".join(problems)


@pytest.fixture(scope="module")
def probe(kubectl, lab):
    """A netexec pod on every node behind a NodePort Service; removed again afterwards."""
    ns, name = manifests.PROBE_NAMESPACE, manifests.PROBE_NAME
    kubectl.run("delete", "namespace", ns, "--ignore-not-found", "--timeout=120s")
    try:
        kubectl.apply(manifests.namespace(ns))
        kubectl.apply(manifests.probe_daemonset(ns, name))
        kubectl.apply(manifests.service(name, ns, {"app": name}, kind="NodePort"))
        pods, nodes = _wait_for_probe_pods(kubectl, ns, name, set(lab.k8s_nodes))
        cluster_ip, node_port = kubectl_json.service_ports(kubectl.json("-n", ns, "get", "service", name))
        missing = sorted(set(lab.k8s_nodes) - set(pods))
        if missing:
            why = {
                node: f"node Ready={nodes[node]['ready']} ({nodes[node]['reason'] or 'no reason given'})"
                if node in nodes and nodes[node]["ready"] != "True"
                else f"not running after {PROBE_TIMEOUT} s"
                for node in missing
            }
            pytest.fail("no running probe pod on " + ", ".join(f"{node}: {why[node]}" for node in missing))
        _wait_for_endpoints(kubectl, ns, name, {ip for _, ip in pods.values()})
        yield {"pods": pods, "cluster_ip": cluster_ip, "node_port": node_port, "ns": ns}
    finally:
        kubectl.run("delete", "namespace", ns, "--ignore-not-found", "--wait=false", check=False)


def _wait_for_probe_pods(kubectl, ns: str, name: str, expected: set[str]):
    """Until a probe pod runs on every expected node that is Ready (or PROBE_TIMEOUT passes): the running pods
    by node, and the nodes' summary last seen."""
    deadline = time.monotonic() + PROBE_TIMEOUT
    while True:
        pods = kubectl_json.running_pods_by_node(kubectl.json("-n", ns, "get", "pods"), "app", name)
        nodes = kubectl_json.node_summary(kubectl.json("get", "nodes"))
        waiting = {node for node in expected - set(pods) if nodes.get(node, {}).get("ready") == "True"}
        if not waiting or time.monotonic() >= deadline:
            return pods, nodes
        time.sleep(2)


def _wait_for_endpoints(kubectl, ns: str, service: str, addresses: set[str]) -> None:
    """Until the Service's EndpointSlices list every probe pod as ready (the checks then report what is left)."""
    deadline = time.monotonic() + SERVICE_SETTLE_SECONDS
    selector = f"kubernetes.io/service-name={service}"
    while time.monotonic() < deadline:
        slices = kubectl.json("-n", ns, "get", "endpointslices", "-l", selector)
        if addresses <= kubectl_json.ready_endpoint_addresses(slices):
            return
        time.sleep(1)


def _answered(names: set[str], ask) -> str:
    """`ask()` (a curl of a Service) until it answers one of the probe pods' names or SERVICE_SETTLE_SECONDS
    pass; the last answer."""
    deadline = time.monotonic() + SERVICE_SETTLE_SECONDS
    while True:
        answer = ask()
        if answer in names or time.monotonic() >= deadline:
            return answer
        time.sleep(1)


def _curl_in_pod(kubectl, probe, node: str, url: str) -> str:
    return _exec(kubectl, probe, node, "curl", "-s", "--max-time", "5", url).stdout.strip()


def _curl_on_host(host, url: str) -> str:
    return host.run(f"curl -s --max-time 5 {url}").stdout.strip()


def _exec(kubectl, probe, node: str, *command: str):
    pod = probe["pods"][node][0]
    return kubectl.run("-n", probe["ns"], "exec", pod, "--", *command, check=False)


@pytest.mark.phase("cni")
def test_dns_answers_kubernetes_default(kubectl, lab, probe):
    cluster_ip, _ = kubectl_json.service_ports(kubectl.json("-n", "default", "get", "service", "kubernetes"))
    problems = []
    for node in sorted(probe["pods"]):
        result = _exec(kubectl, probe, node, "nslookup", "kubernetes.default")
        answers = kubectl_json.nslookup_answers(result.stdout)
        if cluster_ip not in answers:
            problems.append(f"from {node}: {answers or (result.stdout + result.stderr).strip()[-160:]}")
    assert not problems, f"kubernetes.default should resolve to {cluster_ip}; " + "; ".join(problems)


@pytest.mark.phase("cni")
def test_pod_to_pod_across_every_pair_of_nodes(kubectl, probe):
    problems = []
    for source, target in itertools.permutations(sorted(probe["pods"]), 2):
        pod, ip = probe["pods"][target]
        result = _exec(
            kubectl, probe, source, "curl", "-s", "--max-time", "5", f"http://{ip}:{manifests.PROBE_PORT}/hostname"
        )
        if result.stdout.strip() != pod:
            problems.append(f"{source} -> {target} ({ip}): {result.stdout.strip() or f'no answer (exit {result.rc})'}")
    assert not problems, "; ".join(problems)


@pytest.mark.phase("cni")
def test_cluster_ip_service_from_every_node(kubectl, probe):
    names = {pod for pod, _ in probe["pods"].values()}
    url = f"http://{probe['cluster_ip']}:{manifests.SERVICE_PORT}/hostname"
    problems = []
    for node in sorted(probe["pods"]):
        answer = _answered(names, functools.partial(_curl_in_pod, kubectl, probe, node, url))
        if answer not in names:
            problems.append(f"from {node}: {answer or 'no answer'}")
    assert not problems, f"{url}: " + "; ".join(problems)


@pytest.mark.phase("cni")
def test_node_port_on_every_node(lab, probe, node_hosts):
    names = {pod for pod, _ in probe["pods"].values()}
    client = node_hosts[lab.init_master]
    problems = []
    for node, ip in sorted(lab.k8s_nodes.items()):
        url = f"http://{ip}:{probe['node_port']}/hostname"
        answer = _answered(names, functools.partial(_curl_on_host, client, url))
        if answer not in names:
            problems.append(f"{node} {url}: {answer or 'no answer'}")
    assert not problems, f"NodePort {probe['node_port']} from {lab.init_master}: " + "; ".join(problems)
