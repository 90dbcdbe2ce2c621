"""Parsers for what the cluster checks read from `kubectl ... -o json` and `etcdctl ... -w json`.

Pure functions: each returns the problems it finds as sentences (empty list = healthy), so a failing check
shows the observed value. Unit-tested on real output shapes in tests/unit/samples/.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable
from typing import Any

# Namespaces whose pods the CNI runs in (besides kube-system), and the label of its per-node agent pod.
CNI_NAMESPACES: dict[str, tuple[str, ...]] = {
    "calico": ("tigera-operator", "calico-system", "calico-apiserver"),
    "flannel": ("kube-flannel",),
    "cilium": (),
    "weave": (),
    "none": (),
}
CNI_NODE_AGENT: dict[str, tuple[str, str]] = {
    "calico": ("k8s-app", "calico-node"),
    "flannel": ("app", "flannel"),
    "cilium": ("k8s-app", "cilium"),
    "weave": ("name", "weave-net"),  # the weave-net DaemonSet in kube-system
}

# CNIs that enforce NetworkPolicy; for the others, why `verify --workloads` does not check it.
NETWORK_POLICY_CNIS: tuple[str, ...] = ("calico", "cilium", "weave")
NETWORK_POLICY_NOT_ENFORCED: dict[str, str] = {
    "flannel": "not enforced by flannel: Flannel connects pods but does not implement NetworkPolicy "
    "(calico, cilium and weave do)",
    "none": "not enforced: the lab has no CNI (--cni none)",
}


def network_policy_not_enforced(cni: str) -> str | None:
    """Why NetworkPolicy cannot be checked on a lab with this CNI; None when the CNI enforces it."""
    if cni in NETWORK_POLICY_CNIS:
        return None
    return NETWORK_POLICY_NOT_ENFORCED.get(cni, f"not enforced: kubelab does not know whether {cni} enforces it")


def _items(document: str | dict[str, Any]) -> list[dict[str, Any]]:
    data = json.loads(document) if isinstance(document, str) else document
    return list(data.get("items", []))


def kubeconfig_server(config_view: str) -> str:
    """The API server URL of the current context, from `kubectl config view --minify -o json`."""
    clusters = json.loads(config_view).get("clusters") or []
    if not clusters:
        raise ValueError("the kubeconfig has no cluster for its current context")
    return str(clusters[0]["cluster"]["server"])


def readyz_failures(output: str) -> list[str]:
    """Failed checks of `kubectl get --raw='/readyz?verbose'`: its stdout, or on HTTP 500 kubectl's error message,
    which carries the same lines with escaped newlines ("[-]etcd failed: reason withheld")."""
    text = output.replace("\\n", "\n")
    failed = [match.strip() for match in re.findall(r"\[-\]([^\n\"]+)", text)]
    if not failed and "check passed" not in text:
        failed.append(f"unexpected /readyz answer: {output.strip()[:200]!r}")
    return failed


def node_summary(nodes: str | dict[str, Any]) -> dict[str, dict[str, str]]:
    """`kubectl get nodes -o json` -> name -> {ready, reason, internal_ip, kubelet}."""
    summary = {}
    for node in _items(nodes):
        status = node.get("status", {})
        ready = next((c for c in status.get("conditions", []) if c.get("type") == "Ready"), {})
        addresses = {a.get("type"): a.get("address") for a in status.get("addresses", [])}
        summary[node["metadata"]["name"]] = {
            "ready": str(ready.get("status", "Unknown")),
            "reason": str(ready.get("reason") or ready.get("message") or ""),
            "internal_ip": str(addresses.get("InternalIP") or ""),
            "kubelet": str(status.get("nodeInfo", {}).get("kubeletVersion", "")),
        }
    return summary


def node_problems(nodes: str | dict[str, Any], expected: dict[str, str]) -> list[str]:
    """Every expected node registered, Ready, with INTERNAL-IP = its private IP; no unexpected nodes."""
    seen = node_summary(nodes)
    problems = [f"{name}: not registered in the cluster" for name in sorted(set(expected) - set(seen))]
    problems += [f"{name}: unexpected node (not in the lab inventory)" for name in sorted(set(seen) - set(expected))]
    for name in sorted(set(seen) & set(expected)):
        node = seen[name]
        if node["ready"] != "True":
            problems.append(f"{name}: Ready={node['ready']} ({node['reason'] or 'no reason given'})")
        if node["internal_ip"] != expected[name]:
            problems.append(f"{name}: INTERNAL-IP {node['internal_ip'] or 'missing'}, expected {expected[name]}")
    return problems


def pod_range_problems(nodes: str | dict[str, Any], pod_cidr: str) -> list[str]:
    """Every node holds its own pod range (spec.podCIDR) inside the lab's pod CIDR. kube-controller-manager
    gives none when the pod CIDR has no range left (event CIDRNotAvailable), and the CNI cannot start there."""
    pod_net = ipaddress.IPv4Network(pod_cidr)
    problems, holders = [], {}
    for node in _items(nodes):
        name, cidr = node["metadata"]["name"], node.get("spec", {}).get("podCIDR")
        if not cidr:
            problems.append(f"{name}: no pod range (podCIDR); is {pod_net} used up? see its CIDRNotAvailable events")
            continue
        node_net = ipaddress.ip_network(cidr)
        if not (isinstance(node_net, ipaddress.IPv4Network) and node_net.subnet_of(pod_net)):
            problems.append(f"{name}: pod range {cidr} is outside the lab's pod CIDR {pod_net}")
        if node_net in holders:
            problems.append(f"{name}: pod range {cidr} is also {holders[node_net]}'s")
        holders.setdefault(node_net, name)
    return problems


def _container_problem(status: dict[str, Any]) -> str | None:
    if status.get("ready"):
        return None
    state = status.get("state", {})
    for kind in ("waiting", "terminated"):
        if kind in state:
            detail = state[kind].get("reason") or kind
            break
    else:
        detail = "running, not ready" if "running" in state else "no state"
    restarts = status.get("restartCount", 0)
    return f"container {status.get('name')} {detail}" + (f" (restarts {restarts})" if restarts else "")


def pod_problems(pods: str | dict[str, Any], namespaces: tuple[str, ...]) -> list[str]:
    """Pods in the namespaces that are not Running with every container ready (completed pods are fine)."""
    problems = []
    for pod in _items(pods):
        meta, status = pod["metadata"], pod.get("status", {})
        if meta.get("namespace") not in namespaces:
            continue
        phase = status.get("phase", "Unknown")
        if phase == "Succeeded":
            continue
        where = f"{meta['namespace']}/{meta['name']}" + (
            f" on {pod['spec']['nodeName']}" if pod.get("spec", {}).get("nodeName") else ""
        )
        details = [d for d in map(_container_problem, status.get("containerStatuses", [])) if d]
        if phase != "Running" or details:
            reason = status.get("reason") or ""
            problems.append(f"{where}: {phase}" + (f" {reason}" if reason else "") + "".join(f"; {d}" for d in details))
    return problems


def stale_pods(pods: str | dict[str, Any], node: str, since: str, namespaces: tuple[str, ...]) -> list[str]:
    """Pods on ``node`` in the namespaces with a container not started since ``since`` (RFC 3339, UTC): right
    after a kubelet comes back, the API still shows the statuses it had before it went down."""
    stale = []
    for pod in _items(pods):
        if pod.get("spec", {}).get("nodeName") != node or pod["metadata"].get("namespace") not in namespaces:
            continue
        for status in pod.get("status", {}).get("containerStatuses", []):
            started = status.get("state", {}).get("running", {}).get("startedAt", "")
            if not started or started < since:
                stale.append(f"{pod['metadata']['namespace']}/{pod['metadata']['name']}")
                break
    return stale


def pods_with_label(pods: str | dict[str, Any], key: str, value: str) -> list[dict[str, Any]]:
    return [p for p in _items(pods) if (p["metadata"].get("labels") or {}).get(key) == value]


def agent_problems(pods: str | dict[str, Any], cni: str, nodes: list[str]) -> list[str]:
    """The CNI's per-node agent pod exists on every node."""
    if cni not in CNI_NODE_AGENT:
        return []
    key, value = CNI_NODE_AGENT[cni]
    placed = {p.get("spec", {}).get("nodeName") for p in pods_with_label(pods, key, value)}
    return [f"{node}: no {cni} agent pod ({key}={value})" for node in nodes if node not in placed]


def running_pods_by_node(pods: str | dict[str, Any], key: str, value: str) -> dict[str, tuple[str, str]]:
    """node -> (pod name, pod IP) of Running, ready pods with the label."""
    result = {}
    for pod in pods_with_label(pods, key, value):
        status = pod.get("status", {})
        ready = all(c.get("ready") for c in status.get("containerStatuses", [])) and status.get("containerStatuses")
        if status.get("phase") == "Running" and ready and status.get("podIP"):
            result[pod["spec"]["nodeName"]] = (pod["metadata"]["name"], status["podIP"])
    return result


def ready_endpoint_addresses(slices: str | dict[str, Any]) -> set[str]:
    """Addresses of the ready endpoints in an EndpointSlice list (`kubectl get endpointslices -o json`)."""
    data = json.loads(slices) if isinstance(slices, str) else slices
    return {
        address
        for item in data.get("items", [])
        for endpoint in item.get("endpoints") or []
        if (endpoint.get("conditions") or {}).get("ready", True)
        for address in endpoint.get("addresses", [])
    }


def node_metrics_problems(metrics: str | dict[str, Any], nodes: Iterable[str]) -> list[str]:
    """What the metrics API's NodeMetricsList lacks: a node without metrics, or with no CPU or memory usage."""
    usage = {item["metadata"]["name"]: item.get("usage") or {} for item in _items(metrics)}
    problems = []
    for node in sorted(nodes):
        if node not in usage:
            problems.append(f"no metrics of {node}")
            continue
        missing = [kind for kind in ("cpu", "memory") if not usage[node].get(kind)]
        if missing:
            problems.append(f"{node} has no {' or '.join(missing)} usage")
    return problems


def load_balancer_address(service: str | dict[str, Any]) -> str | None:
    """The first address in a LoadBalancer Service's status, or None while it has none."""
    document = json.loads(service) if isinstance(service, str) else service
    ingress = ((document.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    return next((str(entry["ip"]) for entry in ingress if entry.get("ip")), None)


def etcd_member_problems(member_list: str, masters: dict[str, str]) -> list[str]:
    """`etcdctl member list -w json`: exactly one started member per master, peer URL on its private IP."""
    members = json.loads(member_list).get("members") or []
    problems = []
    names = []
    for member in members:
        name = member.get("name") or ""
        if not name:
            problems.append(f"member {member.get('ID')} is not started (peer {member.get('peerURLs')})")
            continue
        names.append(name)
        if member.get("isLearner"):
            problems.append(f"{name}: still a learner")
        ip = masters.get(name)
        if ip and not any(f"//{ip}:" in url for url in member.get("peerURLs", [])):
            problems.append(f"{name}: peer URLs {member.get('peerURLs')} are not on {ip}")
    problems += [f"{name}: not an etcd member" for name in sorted(set(masters) - set(names))]
    problems += [f"{name}: etcd member but not a master of the lab" for name in sorted(set(names) - set(masters))]
    return problems


def etcd_health_problems(endpoint_health: str, expected_endpoints: int) -> list[str]:
    """`etcdctl endpoint health --cluster -w json`: every endpoint healthy, as many as there are masters."""
    entries = json.loads(endpoint_health)
    problems = [
        f"{e.get('endpoint')}: unhealthy ({e.get('error') or 'no error given'})" for e in entries if not e.get("health")
    ]
    if len(entries) != expected_endpoints:
        problems.append(f"{len(entries)} endpoints answered, expected {expected_endpoints}")
    return problems


def nslookup_answers(output: str) -> list[str]:
    """Addresses in the answer section of `nslookup NAME` (bind-tools), i.e. after the first `Name:` line."""
    answers, in_answer = [], False
    for line in output.splitlines():
        line = line.strip()
        if line.startswith("Name:"):
            in_answer = True
        elif in_answer and line.startswith("Address:"):
            answers.append(line.split(":", 1)[1].strip().split("#")[0])
    return answers


def service_ports(service: str | dict[str, Any]) -> tuple[str, int | None]:
    """`kubectl get service NAME -o json` -> (ClusterIP, first NodePort or None)."""
    data = json.loads(service) if isinstance(service, str) else service
    spec = data.get("spec", {})
    ports = spec.get("ports") or [{}]
    return str(spec.get("clusterIP", "")), ports[0].get("nodePort")


REVISION_ANNOTATION = "deployment.kubernetes.io/revision"


def replicasets_of(replicasets: str | dict[str, Any], deployment: str) -> list[dict[str, Any]]:
    """`kubectl get replicasets -o json` -> the Deployment's ReplicaSets as {name, revision, replicas, ready},
    oldest revision first (owner reference kind Deployment, revision from deployment.kubernetes.io/revision)."""
    owned = []
    for rs in _items(replicasets):
        meta = rs["metadata"]
        owners = meta.get("ownerReferences") or []
        if not any(o.get("kind") == "Deployment" and o.get("name") == deployment for o in owners):
            continue
        status = rs.get("status", {})
        owned.append(
            {
                "name": meta["name"],
                "revision": int((meta.get("annotations") or {}).get(REVISION_ANNOTATION, 0)),
                "replicas": int(rs.get("spec", {}).get("replicas", 0)),
                "ready": int(status.get("readyReplicas", 0)),
            }
        )
    return sorted(owned, key=lambda r: r["revision"])


def active_replicaset(replicasets: str | dict[str, Any], deployment: str) -> dict[str, Any]:
    """The ReplicaSet of the Deployment's current revision; ValueError when it has none."""
    owned = replicasets_of(replicasets, deployment)
    if not owned:
        raise ValueError(f"deployment {deployment} owns no ReplicaSet")
    return owned[-1]


def pods_by_name(pods: str | dict[str, Any]) -> dict[str, dict[str, str]]:
    """name -> {phase, uid, node} for every pod in the list."""
    return {
        p["metadata"]["name"]: {
            "phase": str(p.get("status", {}).get("phase", "Unknown")),
            "uid": str(p["metadata"].get("uid", "")),
            "node": str(p.get("spec", {}).get("nodeName", "")),
        }
        for p in _items(pods)
    }


def cronjob_last_success(cronjob: str | dict[str, Any]) -> str | None:
    """`kubectl get cronjob NAME -o json` -> status.lastSuccessfulTime (None until a Job it made succeeded)."""
    data = json.loads(cronjob) if isinstance(cronjob, str) else cronjob
    return (data.get("status") or {}).get("lastSuccessfulTime")
