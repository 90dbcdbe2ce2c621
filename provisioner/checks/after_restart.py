"""What a restart breaks, checked by `kubelab resume` on the nodes the finished phases set up: swap, the load
balancer's and the kubelet's units, nodes Ready and system pods started again."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from provisioner.plan import Plan
from provisioner.remote import run_on
from provisioner.state import LabState

if TYPE_CHECKING:
    from provisioner.providers.base import Connection

SETTLE_TIMEOUT = 180  # seconds `resume` waits for nodes to be Ready and system pods to run again
UNIT_TIMEOUT = 90  # seconds `resume` gives a starting unit (kubelet, haproxy) to become active
LB_UNITS = ("haproxy", "keepalived")  # what the loadbalancer phase runs on the LB nodes


def after_restart_problems(
    plan: Plan, state: LabState, connections: dict, since: str, report: Callable[[str], None] = lambda _what: None
) -> list[str]:
    """What is wrong after a restart that began at `since` (UTC, RFC 3339); checks only what the finished
    phases set up."""
    problems = []
    joined = {n.name for n in plan.masters} if state.is_done("control-plane") else set()
    if state.is_done("workers"):
        joined |= {n.name for n in plan.workers}
    for node in plan.nodes:
        connection = connections.get(node.name)
        if connection is None:
            problems.append(f"{node.name}: not running")
            continue
        report(f"{node.name}: services")
        if node.role == "lb":
            units = LB_UNITS if state.is_done("loadbalancer") else ()
        else:
            units = ("kubelet",) if node.name in joined else ()
            if state.is_done("prepare"):
                swap = run_on(connection, "swapon --noheadings --show").stdout.strip()
                if swap:
                    problems.append(f"{node.name}: swap is on again ({swap.splitlines()[0]}); kubelet will not start")
        for unit in units:
            active = _unit_state(connection, unit)
            if active != "active":
                problems.append(f"{node.name}: {unit} is {active or 'not running'} (`journalctl -u {unit}`)")
    if joined and not problems and state.is_done("cni"):  # without the pod network no node is Ready
        problems += _not_settled(plan, connections, joined, since, report)
    return problems


def _unit_state(connection: Connection, unit: str) -> str:
    """A systemd unit's state once it settles: right after boot it may be `activating` (starting, or waiting
    to restart, e.g. a kubelet started before containerd was up) for up to UNIT_TIMEOUT seconds."""
    deadline = time.monotonic() + UNIT_TIMEOUT
    while True:
        state = run_on(connection, f"systemctl is-active {unit}").stdout.strip()
        if state == "active" or state not in ("activating", "reloading") or time.monotonic() > deadline:
            return state
        time.sleep(2)


def _not_settled(
    plan: Plan, connections: dict, expected: set[str], since: str, report: Callable[[str], None]
) -> list[str]:
    """Wait up to SETTLE_TIMEOUT for every expected node to be Ready and every kube-system and CNI pod to run
    again; what is still wrong then."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while True:
        problems = _cluster_problems(plan, connections[plan.init_master.name], expected, since)
        if not problems:
            return []
        report(f"waiting: {problems[0]}")
        if time.monotonic() >= deadline:
            return [f"after {SETTLE_TIMEOUT} s: {problem}" for problem in problems]
        time.sleep(5)


def _cluster_problems(plan: Plan, connection: Connection, expected: set[str], since: str) -> list[str]:
    """Nodes that are not Ready; else pods of kube-system and the CNI that do not run, or that still show the
    status they had before the restart (a container not started since `since`)."""
    from provisioner.checks import kubectl_json

    kubectl = "kubectl --kubeconfig /etc/kubernetes/admin.conf"
    nodes = run_on(connection, f"{kubectl} get nodes --no-headers")
    if nodes.returncode != 0:
        error = (nodes.stderr.strip().splitlines() or [f"exit code {nodes.returncode}"])[-1]
        return [f"the API server does not answer: `kubectl get nodes` on {plan.init_master.name}: {error}"]
    status = {line.split()[0]: line.split()[1] for line in nodes.stdout.splitlines() if len(line.split()) > 1}
    not_ready = sorted(name for name in expected if status.get(name) != "Ready")
    if not_ready:
        return [f"{name}: {status.get(name, 'not registered')} (`kubectl describe node {name}`)" for name in not_ready]
    pods = run_on(connection, f"{kubectl} get pods --all-namespaces -o json")
    if pods.returncode != 0:
        return [f"`kubectl get pods` on {plan.init_master.name} failed: {pods.stderr.strip()[-300:]}"]
    namespaces = ("kube-system", *kubectl_json.CNI_NAMESPACES.get(plan.spec.cni, ()))
    problems = kubectl_json.pod_problems(pods.stdout, namespaces)
    stale = [pod for node in sorted(expected) for pod in kubectl_json.stale_pods(pods.stdout, node, since, namespaces)]
    return problems + [f"{pod}: not started again since the restart" for pod in stale]
