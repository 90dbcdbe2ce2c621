"""Kubernetes objects the cluster and workload checks create, as plain dicts (applied with `kubectl apply -f -`).

All of them run agnhost, the Kubernetes e2e test image: `netexec` serves HTTP (/hostname answers the pod
name), and the image has nslookup and curl. It comes from registry.k8s.io like the control-plane images, or from
the lab's artifacts folder (`kubelab artifacts build` builds it from the kubernetes module).
"""

from __future__ import annotations

import os
from typing import Any

# The agnhost tag the e2e suite of Kubernetes 1.36 pulls (test/utils/image/manifest.go); a lab built from an
# artifacts folder runs the agnhost image of its folder instead (verify passes it in AGNHOST_ENV).
AGNHOST_IMAGE = "registry.k8s.io/e2e-test-images/agnhost:2.63.0"
AGNHOST_ENV = "KUBELAB_AGNHOST_IMAGE"
PROBE_NAMESPACE = "kubelab-verify"
PROBE_NAME = "kubelab-probe"
PROBE_PORT = 8080
SERVICE_PORT = 80
# The label the API server puts on every namespace, holding its name (Kubernetes 1.22+).
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


def agnhost_image() -> str:
    """The agnhost image the checks run: the lab's own (from its artifacts folder), else the published one."""
    return os.environ.get(AGNHOST_ENV) or AGNHOST_IMAGE


def namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": {"kubelab/verify": "true"}}}


def netexec_container(name: str = "netexec", env: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": name,
        "image": agnhost_image(),
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


def deployment(name: str, ns: str, replicas: int) -> dict[str, Any]:
    """netexec pods labelled app=NAME."""
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"terminationGracePeriodSeconds": 1, "containers": [netexec_container()]},
            },
        },
    }


def headless_service(name: str, ns: str) -> dict[str, Any]:
    """The governing Service a StatefulSet's pods get their stable DNS names from."""
    svc = service(name, ns, {"app": name})
    svc["spec"]["clusterIP"] = "None"
    return svc


def statefulset(name: str, ns: str, replicas: int) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {
            "serviceName": name,
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"terminationGracePeriodSeconds": 1, "containers": [netexec_container()]},
            },
        },
    }


def shell_container(script: str, name: str = "main") -> dict[str, Any]:
    """A container of the agnhost image running a shell script (its base image has sh)."""
    return {"name": name, "image": agnhost_image(), "command": ["sh", "-c", script]}


def job_spec(script: str) -> dict[str, Any]:
    return {
        "backoffLimit": 2,
        "template": {"spec": {"restartPolicy": "Never", "containers": [shell_container(script)]}},
    }


def job(name: str, ns: str, script: str) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": ns},
        "spec": job_spec(script),
    }


def cronjob(name: str, ns: str, script: str, schedule: str = "* * * * *") -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "schedule": schedule,
            "concurrencyPolicy": "Forbid",
            "successfulJobsHistoryLimit": 1,
            "failedJobsHistoryLimit": 1,
            "jobTemplate": {"spec": job_spec(script)},
        },
    }


def configmap(name: str, ns: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}, "data": data}


def secret(name: str, ns: str, data: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": ns},
        "type": "Opaque",
        "stringData": data,
    }


def config_reader_pod(
    name: str, ns: str, configmap_name: str, key: str, secret_name: str, secret_key: str
) -> dict[str, Any]:
    """A pod that prints a ConfigMap value (as an env var) and a Secret value (from a mounted file), then exits."""
    container = shell_container(f'echo "$KUBELAB_SETTING $(cat /etc/kubelab-secret/{secret_key})"')
    container["env"] = [
        {"name": "KUBELAB_SETTING", "valueFrom": {"configMapKeyRef": {"name": configmap_name, "key": key}}}
    ]
    container["volumeMounts"] = [{"name": "secret", "mountPath": "/etc/kubelab-secret", "readOnly": True}]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "restartPolicy": "Never",
            "containers": [container],
            "volumes": [{"name": "secret", "secret": {"secretName": secret_name}}],
        },
    }


def netexec_pod(name: str, ns: str) -> dict[str, Any]:
    """One netexec pod labelled app=NAME (a NetworkPolicy check's server, or its client: it has curl)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [netexec_container()]},
    }


def deny_all_ingress(name: str, ns: str) -> dict[str, Any]:
    """A NetworkPolicy that selects every pod of the namespace for ingress and allows nothing in."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
    }


def allow_ingress_from_namespace(name: str, ns: str, app: str, from_ns: str) -> dict[str, Any]:
    """A NetworkPolicy that lets pods of namespace `from_ns` (by the name label every namespace carries) reach the
    netexec port of the pods labelled app=APP; added to a deny-all policy, it opens only that way in."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "podSelector": {"matchLabels": {"app": app}},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [{"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: from_ns}}}],
                    "ports": [{"protocol": "TCP", "port": PROBE_PORT}],
                }
            ],
        },
    }


def ingress(name: str, ns: str, host: str, path: str) -> dict[str, Any]:
    """An Ingress of the cluster's default class (no ingressClassName): requests for `host` whose path starts with
    `path` go to port 80 of the Service NAME."""
    backend = {"service": {"name": name, "port": {"number": SERVICE_PORT}}}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "rules": [{"host": host, "http": {"paths": [{"path": path, "pathType": "Prefix", "backend": backend}]}}]
        },
    }
