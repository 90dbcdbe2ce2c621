"""Kubernetes objects the cluster and workload checks create, as plain dicts (applied with `kubectl apply -f -`).

All of them run agnhost, the Kubernetes e2e test image: `netexec` serves HTTP (/hostname answers the pod
name), and the image has nslookup and curl. It comes from registry.k8s.io like the control-plane images.
"""

from __future__ import annotations

from typing import Any

AGNHOST_IMAGE = "registry.k8s.io/e2e-test-images/agnhost:2.53"
PROBE_NAMESPACE = "kubelab-verify"
PROBE_NAME = "kubelab-probe"
PROBE_PORT = 8080
SERVICE_PORT = 80


def namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": {"kubelab/verify": "true"}}}


def netexec_container(name: str = "netexec", env: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": name,
        "image": AGNHOST_IMAGE,
        "args": ["netexec", f"--http-port={PROBE_PORT}"],
        "ports": [{"containerPort": PROBE_PORT, "name": "http"}],
        "readinessProbe": {"httpGet": {"path": "/hostname", "port": PROBE_PORT}, "periodSeconds": 2},
    }
    if env:
        container["env"] = env
    return container


def probe_daemonset(ns: str = PROBE_NAMESPACE, name: str = PROBE_NAME) -> dict[str, Any]:
    """One netexec pod on every node, control-plane nodes included (tolerates every taint)."""
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "tolerations": [{"operator": "Exists"}],
                    "terminationGracePeriodSeconds": 1,
                    "containers": [netexec_container()],
                },
            },
        },
    }


def service(name: str, ns: str, selector: dict[str, str], kind: str = "ClusterIP") -> dict[str, Any]:
    """A Service on port 80 -> the pods' netexec port; kind NodePort also gets a ClusterIP."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "type": kind,
            "selector": selector,
            "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": PROBE_PORT, "protocol": "TCP"}],
        },
    }
