#!/usr/bin/python
"""Approve the lab's kubelet serving certificate requests; wait until every kubelet serves a verified certificate."""

from __future__ import annotations

import json
import socket
import ssl
import time
from collections.abc import Iterable
from typing import Any

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: kubelet_serving_certificates
short_description: Approve the lab's kubelet serving CSRs and wait until every kubelet serves a CA-signed certificate
description:
  - Lists the CertificateSigningRequests, approves the pending ones of signer kubernetes.io/kubelet-serving whose
    requester is one of the given nodes (system:node:NAME), and repeats until a TLS client that trusts only the
    cluster CA accepts each node's kubelet for the node's IP.
  - Requests of other requesters or signers are never touched.
options:
  kubeconfig: {description: An admin kubeconfig on the node., type: path, required: true}
  ca_file: {description: The cluster CA certificate., type: path, required: true}
  nodes: {description: Node name to the IP its kubelet serves on., type: dict, required: true}
  port: {description: The kubelet's port., type: int, default: 10250}
  timeout: {description: Seconds to wait for every kubelet., type: int, default: 300}
"""

RETURN = r"""
approved: {description: The requests this run approved., type: list, elements: str, returned: always}
"""

SIGNER = "kubernetes.io/kubelet-serving"


def pending_requests(csrs: dict[str, Any], nodes: Iterable[str]) -> list[str]:
    """Names of the kubelet serving requests of `nodes` that are neither approved nor denied."""
    identities = {f"system:node:{node}" for node in nodes}
    names = []
    for item in csrs.get("items", []):
        spec, status = item.get("spec", {}), item.get("status") or {}
        if spec.get("signerName") == SIGNER and spec.get("username") in identities and not status.get("conditions"):
            names.append(item["metadata"]["name"])
    return names


def serving_problem(ip: str, port: int, ca_file: str, timeout: float = 5) -> str | None:
    """Why a client trusting only the cluster CA refuses the kubelet at ip:port for name `ip`; None if it accepts."""
    context = ssl.create_default_context(cafile=ca_file)
    try:
        with socket.create_connection((ip, port), timeout) as sock, context.wrap_socket(sock, server_hostname=ip):
            return None
    except ssl.SSLCertVerificationError as exc:
        return f"its certificate is not one of the cluster CA for {ip}: {exc.verify_message}"
    except (OSError, ssl.SSLError) as exc:
        return f"no TLS connection to {ip}:{port}: {exc}"


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "kubeconfig": {"type": "path", "required": True},
            "ca_file": {"type": "path", "required": True},
            "nodes": {"type": "dict", "required": True},
            "port": {"type": "int", "default": 10250},
            "timeout": {"type": "int", "default": 300},
        },
        supports_check_mode=True,
    )
    params = module.params
    kubectl = ["kubectl", "--kubeconfig", params["kubeconfig"]]
    nodes: dict[str, str] = {str(name): str(ip) for name, ip in params["nodes"].items()}
    deadline = time.monotonic() + params["timeout"]
    approved: list[str] = []
    while True:
        rc, out, err = module.run_command([*kubectl, "get", "certificatesigningrequests", "-o", "json"])
        if rc != 0:
            module.fail_json(msg=f"kubectl get certificatesigningrequests failed: {err.strip()}", approved=approved)
        for name in pending_requests(json.loads(out), nodes):
            if not module.check_mode:
                rc, _, err = module.run_command([*kubectl, "certificate", "approve", name])
                if rc != 0:
                    module.fail_json(msg=f"approving {name} failed: {err.strip()}", approved=approved)
            approved.append(name)
        problems = {node: serving_problem(ip, params["port"], params["ca_file"]) for node, ip in nodes.items()}
        problems = {node: problem for node, problem in problems.items() if problem}
        if not problems or module.check_mode:
            module.exit_json(changed=bool(approved), approved=approved)
        if time.monotonic() > deadline:
            text = "; ".join(f"{node}: {problem}" for node, problem in sorted(problems.items()))
            module.fail_json(
                msg=f"after {params['timeout']} s some kubelets serve no certificate of the cluster CA ({text}); "
                "see `kubectl get csr` and the node's `journalctl -u kubelet`",
                approved=approved,
            )
        time.sleep(2)


if __name__ == "__main__":
    main()
