"""The add-ons of `kubelab up --addons`. A check of an add-on the lab does not have is skipped, with the reason."""

from __future__ import annotations

import shlex
import time

import pytest

from provisioner.checks import kubectl_json

# How long the metrics checks wait for metrics-server: one rescheduled (its node drained) needs its readiness probe
# and two scrapes of every kubelet before the API answers for every node.
METRICS_WAIT = 90
KUBELET_PORT = 10250
CLUSTER_CA = "/etc/kubernetes/pki/ca.crt"
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


def metrics_answer(kubectl, lab, *args: str) -> tuple[str, list[str]]:
    """Run kubectl with `args` until it answers with no problem or METRICS_WAIT is over: (output, problems)."""
    deadline = time.monotonic() + METRICS_WAIT
    while True:
        result = kubectl.run(*args, check=False)
        if result.rc != 0:
            problems = [f"`kubectl {' '.join(args)}` fails: {(result.stderr or result.stdout).strip()[:300]}"]
        elif args[0] == "get":
            problems = kubectl_json.node_metrics_problems(result.stdout, lab.k8s_nodes)
        else:
            pods = [line.split()[0] for line in result.stdout.splitlines() if line.strip()]
            problems = [] if any(p.startswith("kube-apiserver-") for p in pods) else [f"no API server in {pods}"]
        if not problems or time.monotonic() > deadline:
            return result.stdout, problems
        time.sleep(5)


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
