"""The add-ons of `kubelab up --addons`. A check of an add-on the lab does not have is skipped, with the reason."""

from __future__ import annotations

import ipaddress
import shlex
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import pytest

from provisioner.checks import kubectl_json, manifests

# How long the metrics checks wait for metrics-server: one rescheduled (its node drained) needs its readiness probe
# and two scrapes of every kubelet before the API answers for every node.
METRICS_WAIT = 90
# How long a new LoadBalancer Service may take to get its address, and then to answer from the host (MetalLB's
# speaker announces it by ARP a moment after the controller assigned it).
LB_ADDRESS_WAIT, LB_ANSWER_WAIT = 60, 60
LB_NAMESPACE, LB_NAME = "kubelab-verify-lb", "kubelab-lb"
# The Ingress check's route: a host and a path prefix, and the Ingress controller's Service (addons role).
INGRESS_NAMESPACE, INGRESS_NAME = "kubelab-verify-ingress", "kubelab-ingress"
INGRESS_HOST, OTHER_HOST, INGRESS_PATH = "verify.kubelab.test", "other.kubelab.test", "/hostname"
TRAEFIK_NAMESPACE, TRAEFIK_NAME = "traefik", "traefik"
# How long a new Ingress may take to be routed (Traefik watches Ingresses; its pod may also be rescheduled).
INGRESS_WAIT = 90
KUBELET_PORT = 10250
CLUSTER_CA = "/etc/kubernetes/pki/ca.crt"
T = TypeVar("T")
# A TLS client as metrics-server is one: it trusts only the cluster CA and checks the certificate for the node's IP.
TLS_PROBE = """
import socket, ssl, sys
ip, port, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3]
context = ssl.create_default_context(cafile=ca)
with socket.create_connection((ip, port), 5) as sock, context.wrap_socket(sock, server_hostname=ip) as tls:
    print(dict(part[0] for part in tls.getpeercert()["issuer"]).get("commonName", ""))
"""


def needs_addon(lab, name: str) -> None:
    if name not in lab.addons:
        pytest.skip(f"the lab has no {name} add-on")


@pytest.mark.phase("addons")
@pytest.mark.groups("k8s_cluster")
def test_kubelet_serves_a_certificate_of_the_cluster_ca(host, lab, node):
    if not lab.kubelet_serving_certificates:
        pytest.skip("the kubelets sign their own serving certificates (no add-on needs the cluster CA's)")
    ip = lab.k8s_nodes[node]
    result = host.run(f"python3 -c {shlex.quote(TLS_PROBE)} {ip} {KUBELET_PORT} {CLUSTER_CA}")
    reason = (result.stderr.strip().splitlines() or ["no output"])[-1]
    assert result.rc == 0, f"the kubelet at {ip}:{KUBELET_PORT} serves no certificate of the cluster CA: {reason}"


def scaled_to_zero(kubectl, namespace: str, deployment: str) -> bool:
    """Whether an add-on's Deployment asks for no pods: then nothing is worth waiting for."""
    replicas = "jsonpath={.spec.replicas}"
    result = kubectl.run("-n", namespace, "get", "deployment", deployment, "-o", replicas, check=False)
    return result.rc == 0 and result.stdout.strip() == "0"


def poll(attempt: Callable[[], T], done: Callable[[T], bool], wait: float, interval: float) -> T:
    """Call `attempt` every `interval` s until `done` holds for its result or `wait` s are over; the last result."""
    deadline = time.monotonic() + wait
    while True:
        result = attempt()
        if done(result) or time.monotonic() > deadline:
            return result
        time.sleep(interval)


def http_get(url: str, host: str | None = None) -> tuple[int, str]:
    """(status, body) of a GET, with another Host header when given; (0, the error) when nothing answers."""
    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(request, timeout=3) as response:
            return response.status, response.read().decode().strip()
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except (OSError, urllib.error.URLError) as exc:
        return 0, f"no answer ({exc})"


def metrics_answer(kubectl, lab, *args: str) -> tuple[str, list[str]]:
    """Run kubectl with `args` until it answers with no problem or METRICS_WAIT is over (at once when
    metrics-server is scaled to zero): (output, problems)."""

    def attempt() -> tuple[str, list[str]]:
        result = kubectl.run(*args, check=False)
        if result.rc != 0:
            return result.stdout, [
                f"`kubectl {' '.join(args)}` fails: {(result.stderr or result.stdout).strip()[:300]}"
            ]
        if args[0] == "get":
            return result.stdout, kubectl_json.node_metrics_problems(result.stdout, lab.k8s_nodes)
        pods = [line.split()[0] for line in result.stdout.splitlines() if line.strip()]
        return result.stdout, [] if any(p.startswith("kube-apiserver-") for p in pods) else [f"no API server in {pods}"]

    wait = 0 if scaled_to_zero(kubectl, "kube-system", "metrics-server") else METRICS_WAIT
    return poll(attempt, lambda answer: not answer[1], wait, 5)


@pytest.mark.phase("addons")
def test_metrics_api_has_every_node(kubectl, lab):
    needs_addon(lab, "metrics-server")
    _, problems = metrics_answer(kubectl, lab, "get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes")
    assert not problems, "; ".join(problems)


@pytest.mark.phase("addons")
def test_top_pods_answers_for_the_system_pods(kubectl, lab):
    needs_addon(lab, "metrics-server")
    _, problems = metrics_answer(kubectl, lab, "top", "pods", "--namespace", "kube-system", "--no-headers")
    assert not problems, "; ".join(problems)


@contextmanager
def netexec_app(
    kubectl, ns: str, name: str, check: str, *extra: dict[str, Any], kind: str = "ClusterIP"
) -> Iterator[set[str]]:
    """A netexec Deployment behind a Service of `kind` (and the `extra` objects) in a new namespace; yields the
    names of the pods that may answer once it rolled out, and removes the namespace afterwards."""
    kubectl.run("delete", "namespace", ns, "--ignore-not-found", "--timeout=120s")
    try:
        kubectl.apply(manifests.namespace(ns))
        kubectl.apply(manifests.deployment(name, ns, 1))
        kubectl.apply(manifests.service(name, ns, {"app": name}, kind=kind))
        for document in extra:
            kubectl.apply(document)
        rolled = kubectl.run("-n", ns, "rollout", "status", f"deployment/{name}", "--timeout=180s")
        assert rolled.rc == 0, f"the {check} check's pod did not start: {rolled.stderr.strip()[:300]}"
        yield {pod["metadata"]["name"] for pod in kubectl.json("-n", ns, "get", "pods", "-l", f"app={name}")["items"]}
    finally:
        kubectl.run("delete", "namespace", ns, "--ignore-not-found", "--wait=false", check=False)


@pytest.fixture(scope="module")
def lb_service(kubectl, lab):
    """A netexec Deployment behind a new Service of type LoadBalancer; yields the address it got (None when it got
    none within LB_ADDRESS_WAIT, or at once with MetalLB's controller scaled to zero) and the pod names that may
    answer. Removed again afterwards."""
    needs_addon(lab, "lb-services")
    with netexec_app(kubectl, LB_NAMESPACE, LB_NAME, "LoadBalancer", kind="LoadBalancer") as pods:
        wait = 0 if scaled_to_zero(kubectl, "metallb-system", "controller") else LB_ADDRESS_WAIT
        address = poll(
            lambda: kubectl_json.load_balancer_address(kubectl.json("-n", LB_NAMESPACE, "get", "service", LB_NAME)),
            lambda found: found is not None,
            wait,
            2,
        )
        yield {"address": address, "pods": pods}


@pytest.mark.phase("addons")
def test_load_balancer_service_gets_an_address_of_the_pool(lb_service, lab):
    address = lb_service["address"]
    assert address, f"a new LoadBalancer Service got no address within {LB_ADDRESS_WAIT} s (MetalLB's controller)"
    first, last = (ipaddress.IPv4Address(end) for end in lab.lb_services_range.split("-"))
    assert first <= ipaddress.IPv4Address(address) <= last, f"{address} is outside {lab.lb_services_range}"


@pytest.mark.phase("addons")
def test_load_balancer_service_answers_from_the_host(lb_service):
    address = lb_service["address"]
    assert address, "the LoadBalancer Service has no address to call"
    url = f"http://{address}:{manifests.SERVICE_PORT}/hostname"
    status, answer = poll(lambda: http_get(url), lambda got: got[1] in lb_service["pods"], LB_ANSWER_WAIT, 2)
    expected = sorted(lb_service["pods"])
    assert answer in lb_service["pods"], f"{url} from this host: {status} {answer or 'nothing'}; expected {expected}"


def ingress_controller_url(kubectl, lab) -> str:
    """Where the host reaches the Ingress controller: its LoadBalancer address (lab with lb-services), else the
    node port of its web port on a node."""
    service = kubectl.json("-n", TRAEFIK_NAMESPACE, "get", "service", TRAEFIK_NAME)
    address = kubectl_json.load_balancer_address(service)
    if address:
        return f"http://{address}"
    node_port = next(p["nodePort"] for p in service["spec"]["ports"] if p["name"] == "web")
    return f"http://{next(iter(lab.k8s_nodes.values()))}:{node_port}"


@pytest.fixture(scope="module")
def ingress_route(kubectl, lab):
    """A netexec Deployment behind a Service and an Ingress for INGRESS_HOST and INGRESS_PATH; yields the
    controller's URL, the pod names that may answer and how long to wait for the route (nothing when Traefik is
    scaled to zero). Removed again afterwards."""
    needs_addon(lab, "ingress")
    route = manifests.ingress(INGRESS_NAME, INGRESS_NAMESPACE, INGRESS_HOST, INGRESS_PATH)
    with netexec_app(kubectl, INGRESS_NAMESPACE, INGRESS_NAME, "Ingress", route) as pods:
        wait = 0 if scaled_to_zero(kubectl, TRAEFIK_NAMESPACE, TRAEFIK_NAME) else INGRESS_WAIT
        yield {"url": ingress_controller_url(kubectl, lab), "pods": pods, "wait": wait}


@pytest.mark.phase("addons")
def test_ingress_routes_its_host_and_path_to_the_service(ingress_route):
    url = ingress_route["url"] + INGRESS_PATH
    status, answer = poll(
        lambda: http_get(url, INGRESS_HOST), lambda got: got[1] in ingress_route["pods"], ingress_route["wait"], 2
    )
    expected = sorted(ingress_route["pods"])
    assert answer in ingress_route["pods"], (
        f"{url} for host {INGRESS_HOST} from this host: {status} {answer or 'nothing'}; expected one of {expected}"
    )


@pytest.mark.phase("addons")
def test_ingress_route_answers_only_for_its_host(ingress_route):
    url = ingress_route["url"] + INGRESS_PATH
    status, answer = poll(lambda: http_get(url, OTHER_HOST), lambda got: got[0] != 0, ingress_route["wait"], 2)
    assert status == 404, f"{url} for host {OTHER_HOST}: {status} {answer[:200]}; expected 404 from the controller"
