"""`kubelab node add` / `kubelab node remove`: grow or shrink a finished lab.

Nodes are numbered per role and the plan's address table stays the source of truth: new nodes take the next
numbers and addresses, and a removed node's number is recorded in the spec and never used again, so every
other node keeps its name and address. The lab's spec records the new counts.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable
from contextlib import suppress
from typing import TextIO

from provisioner import phases as phases_mod
from provisioner import spec as spec_mod
from provisioner.errors import LabError
from provisioner.inventory import write_provider_inventory
from provisioner.lab import LabDir
from provisioner.lifecycle import load_lab, provider_for, refuse_during_upgrade, run_phase
from provisioner.plan import Node, Plan, make_plan
from provisioner.progress import PhaseProgress
from provisioner.providers.base import Connection, Provider
from provisioner.remote import run_on
from provisioner.state import LabLock, load_state, save_state

DRAIN_TIMEOUT = 180  # default seconds a drain may wait for evictions (PodDisruptionBudgets) before it gives up
SETTLE_SECONDS = 180  # how long the system pods may take to run again after nodes left
ETCD_SETTLE_SECONDS = 60  # how long master-1's etcd may take to answer again after a member left
EVICTION_ERROR = re.compile(r'pods/"([^"]+)" -n "([^"]+)"')


def finished_lab(lab: LabDir, action: str, upgrade: bool = False) -> Plan:
    """The lab's plan, when every phase of `up` has run and no upgrade is under way (unless this is one)."""
    plan = load_lab(lab)
    state = load_state(lab)
    missing = [
        p.name for p in phases_mod.PHASES if p.name != "verify" and p.applies(plan) and not state.is_done(p.name)
    ]
    if missing:
        raise LabError(
            f"lab '{plan.spec.name}' is not finished ({missing[0]} has not run): `kubelab up --name "
            f"{plan.spec.name}` first, then {action}"
        )
    if not upgrade:
        refuse_during_upgrade(plan, state)
    return plan


def _own_machines(plan: Plan) -> None:
    if plan.spec.provider == "hosts":
        raise LabError(
            "kubelab does not add or remove the machines of a hosts lab: change your inventory, then "
            f"`kubelab destroy --reset --name {plan.spec.name}` and `kubelab up` with it"
        )


def _resized(plan: Plan, what: str, **changes: object) -> Plan:
    """The plan with the new counts, validated as `up` would; existing nodes keep their names and addresses."""
    spec = plan.spec.replace(**changes)
    try:
        spec_mod.validate(spec, spec_mod.HostInfo.detect())
    except spec_mod.SpecError as exc:
        raise LabError(f"cannot {what}: {exc}") from exc
    resized = make_plan(spec, arch=plan.arch)
    after = {node.name: node.ip for node in resized.nodes}
    moved = [n.name for n in plan.nodes if n.name in after and after[n.name] != n.ip]
    if moved:  # the address plan is by role and number, so this means a bug, not a user mistake
        raise LabError(f"cannot {what}: the address plan would move {', '.join(moved)}")
    return resized


# ---------------------------------------------------------------------------------------------
# add
# ---------------------------------------------------------------------------------------------


def add(lab: LabDir, masters: int = 0, workers: int = 0, out: TextIO | None = None) -> bool:
    """Create `masters` + `workers` new nodes and run the phases for them; False when a phase failed (then
    `kubelab up` finishes the job on every node)."""
    from provisioner.render import write_lab
    from provisioner.spec_layers import check_vm_memory

    out = out or sys.stdout
    if masters < 0 or workers < 0 or masters + workers == 0:
        raise LabError("say how many nodes to add: --workers N and/or --masters N (N > 0)")
    plan = finished_lab(lab, "add nodes")
    _own_machines(plan)
    if masters % 2:
        raise LabError(
            f"--masters {masters} would leave an even number of masters ({len(plan.masters) + masters}): etcd "
            "needs a majority, so masters are added in pairs (--masters 2)"
        )
    what = f"add {_count(masters, 'master')}{' and ' if masters and workers else ''}{_count(workers, 'worker')}"
    grown = _resized(plan, what, masters=len(plan.masters) + masters, workers=len(plan.workers) + workers)
    check_vm_memory(grown.spec, spec_mod.HostInfo.detect())
    _check_sources(grown)
    new = [node.name for node in grown.nodes if node.name not in {n.name for n in plan.nodes}]
    hosts = _hosts_per_phase(grown, new, masters_added=bool(masters))
    with LabLock(lab, "node add"):
        provider = provider_for(grown, lab)
        provider.check()
        write_provider_inventory(lab, plan, provider_for(plan, lab))  # every existing node must run
        state = load_state(lab)
        # Recorded first: if this is cut short, `kubelab up` runs the rest on every node (each phase idempotent).
        write_lab(grown, lab)
        state.forget(list(phases_mod.PHASE_NAMES))
        save_state(lab, state)
        print(f"lab '{plan.spec.name}': adding {', '.join(new)}", file=out)
        for phase in phases_mod.PHASES:
            if not run_phase(lab, grown, provider, phase, state, out, hosts.get(phase.name)):
                return False
    sizes = [_count(len(grown.masters), "master"), _count(len(grown.workers), "worker")]
    print(f"lab '{plan.spec.name}' now has {' and '.join(size for size in sizes if size)}", file=out)
    return True


def _check_sources(plan: Plan) -> None:
    """As `up` does: the artifacts folder intact, or the download sources reachable, before anything changes."""
    if plan.spec.artifacts:
        from provisioner.artifacts import check_artifacts

        check_artifacts(plan.spec.artifacts, plan.spec, arch=plan.arch)
    elif not plan.spec.skip_network_check:
        from provisioner import reachability

        problem = reachability.check(plan, list(phases_mod.PHASE_NAMES))
        if problem:
            raise LabError(problem)


def _hosts_per_phase(plan: Plan, new: list[str], masters_added: bool) -> dict[str, list[str]]:
    """Where each playbook must run for the new nodes; phases not listed run on every node."""
    lbs = [node.name for node in plan.lbs] if masters_added else []  # haproxy's backend list grows
    return {
        # prepare runs everywhere: every node's /etc/hosts learns the new names
        "runtime": new,
        "packages": new,
        "loadbalancer": new + lbs,
        "control-plane": new,
        "workers": new,
        "cni": [plan.init_master.name, *new],  # the manifest is applied, and Ready awaited, from the first master
    }


def _count(number: int, noun: str) -> str:
    return "" if number == 0 else f"{number} {noun}{'s' if number != 1 else ''}"


# ---------------------------------------------------------------------------------------------
# remove
# ---------------------------------------------------------------------------------------------


def removal_problem(plan: Plan, names: list[str]) -> str | None:
    """Why removing `names` is refused, or None: unknown names, load balancers, the first master, or a control
    plane left with an even number of members."""
    known = {node.name: node for node in plan.nodes}
    unknown = [name for name in names if name not in known]
    if unknown:
        return f"lab '{plan.spec.name}' has no node {', '.join(unknown)}; its nodes: {', '.join(known)}"
    if any(known[name].role == "lb" for name in names):
        return "load-balancer nodes are part of the lab's design: recreate the lab to change them"
    if plan.init_master.name in names:
        return f"{plan.init_master.name} holds the lab's cluster configuration and cannot be removed"
    left = len(plan.masters) - sum(known[name].role == "master" for name in names)
    if left % 2 == 0:
        return (
            f"this would leave {left} masters, an even number: etcd would need {left // 2 + 1} of them to agree and "
            f"keeps no more fault tolerance than {left - 1}; remove masters in pairs"
        )
    return None


def remove(lab: LabDir, names: list[str], drain_timeout: int = DRAIN_TIMEOUT, out: TextIO | None = None) -> bool:
    """Drain, reset and delete each node (newest first), remove its machine, then shrink the spec and the load
    balancer's backends. Safe to run again after an interruption: finished steps are skipped."""
    from provisioner.render import write_lab

    out = out or sys.stdout
    plan = finished_lab(lab, "remove nodes")
    _own_machines(plan)
    problem = removal_problem(plan, names)
    if problem:
        raise LabError(f"nothing was removed: {problem}")
    gone = [node for node in reversed(plan.nodes) if node.name in names]
    masters_gone = sum(node.role == "master" for node in gone)
    workers_gone = len(gone) - masters_gone
    shrunk = _resized(
        plan,
        f"remove {', '.join(names)}",
        masters=len(plan.masters) - masters_gone,
        workers=len(plan.workers) - workers_gone,
        removed_nodes=sorted({*plan.spec.removed_nodes, *names}),
    )
    with LabLock(lab, "node remove"):
        provider = provider_for(plan, lab)
        provider.check()
        running = {node.name for node in provider.status() if node.state == "running"}
        connections = {name: conn for name, conn in provider.connections().items() if name in running}
        first = connections.get(plan.init_master.name)
        if first is None:
            raise LabError(f"{plan.init_master.name} is not running: `kubelab resume --name {plan.spec.name}` first")
        if masters_gone:
            _check_quorum(plan, first, [node.name for node in gone])
        for node in gone:
            with PhaseProgress("remove", node.name, stream=out) as bar:
                _remove_one(plan, provider, node, first, connections.get(node.name), drain_timeout, bar.update)
                bar.finish(True, "drained, deleted, machine removed")
        _forget_pods(plan, first, [node.name for node in gone])
        # Evicted system pods start elsewhere, and a removed master may have held the scheduler's lease.
        wait_system_pods(plan, first, None, SETTLE_SECONDS)
        write_lab(shrunk, lab)
        shrunk_provider = provider_for(shrunk, lab)
        write_provider_inventory(lab, shrunk, shrunk_provider)
        print(f"lab '{plan.spec.name}': {', '.join(node.name for node in gone)} removed", file=out)
        state = load_state(lab)
        lb_phase = phases_mod.BY_NAME["loadbalancer"]
        # haproxy's backend list shrinks (a reload, no restart)
        if masters_gone and shrunk.lbs and not run_phase(lab, shrunk, shrunk_provider, lb_phase, state, out):
            return False
        ok = run_phase(lab, shrunk, shrunk_provider, phases_mod.BY_NAME["verify"], state, out)
    return ok


def first_master_kubectl(plan: Plan) -> str:
    """kubectl on the first master talking to its own API server, not through the load balancer, which may
    still send requests to a master that is being removed."""
    server = f"https://{plan.init_master.ip}:{plan.apiserver_port}"
    return f"kubectl --kubeconfig /etc/kubernetes/admin.conf --server {server}"


def _check_quorum(plan: Plan, first: Connection, leaving: list[str]) -> None:
    """Refuse when the members that stay are not all healthy: removing members then risks etcd's quorum."""
    from provisioner.etcd_backup import etcdctl

    etcd = etcdctl(plan.init_master.name, first_master_kubectl(plan))
    health = run_on(first, f"{etcd} endpoint health --cluster -w json", timeout=60)
    try:
        healthy = {entry["endpoint"] for entry in json.loads(health.stdout) if entry.get("health")}
    except (ValueError, TypeError, KeyError):
        healthy = set()
    staying = [node for node in plan.masters if node.name not in leaving]
    unhealthy = [node.name for node in staying if f"https://{node.ip}:2379" not in healthy]
    if unhealthy:
        raise LabError(
            f"nothing was removed: etcd is not healthy on {', '.join(unhealthy) or 'the masters'} "
            f"(`kubelab verify --name {plan.spec.name}` says more); removing members now could cost the quorum"
        )


def _remove_one(
    plan: Plan,
    provider: Provider,
    node: Node,
    first: Connection,
    own: Connection | None,
    drain_timeout: int,
    report: Callable[[str], None],
) -> None:
    report("draining")
    drain(first, first_master_kubectl(plan), node.name, drain_timeout)
    if node.role == "master":
        report("leaving etcd")
        _remove_etcd_member(plan, first, node)
        if own is not None:
            report("kubeadm reset")
            reset = run_on(own, "kubeadm reset --force --skip-phases remove-etcd-member", timeout=300)
            if reset.returncode != 0:
                raise LabError(f"`kubeadm reset` on {node.name} failed: {reset.stderr.strip()[-300:]}")
    report("deleting the Node")
    deleted = run_on(first, f"{first_master_kubectl(plan)} delete node {node.name} --ignore-not-found", timeout=120)
    if deleted.returncode != 0:
        raise LabError(f"`kubectl delete node {node.name}` failed: {deleted.stderr.strip()[-300:]}")
    report("removing the machine")
    provider.remove([node.name])


def wait_system_pods(plan: Plan, first: Connection, node: str | None, timeout: float) -> None:
    """Until the kube-system and CNI pods (of `node`, or everywhere) run with every container ready."""
    from provisioner.checks.kubectl_json import CNI_NAMESPACES, pod_problems

    namespaces = ("kube-system", *CNI_NAMESPACES.get(plan.spec.cni, ()))
    selector = f" --field-selector spec.nodeName={node}" if node else ""
    command = f"{first_master_kubectl(plan)} get pods -A{selector} -o json"
    deadline = time.monotonic() + timeout
    problems = ["no answer"]
    while time.monotonic() < deadline:
        done = run_on(first, command, timeout=30)
        if done.returncode == 0:
            problems = pod_problems(done.stdout, namespaces)
            if not problems:
                return
        time.sleep(3)
    where = f"on {node}" if node else "of the cluster"
    raise LabError(f"the system pods {where} do not all run after {timeout:.0f} s: {'; '.join(problems)}")


def _forget_pods(plan: Plan, first: Connection, names: list[str]) -> None:
    """Delete the pod objects still bound to removed nodes (static and DaemonSet pods, which a drain leaves):
    their machines are gone, so nothing can run them any more."""
    for name in names:
        selector = f"--field-selector spec.nodeName={name}"
        run_on(first, f"{first_master_kubectl(plan)} delete pods -A {selector} --force --grace-period=0", timeout=120)


def drain(first: Connection, kubectl: str, name: str, timeout: int) -> None:
    """`kubectl drain` (evictions respect PodDisruptionBudgets); a node that is gone already counts as drained."""
    command = f"{kubectl} drain {name} --ignore-daemonsets --delete-emptydir-data --timeout={timeout}s"
    done = run_on(first, command, timeout=timeout + 60)
    if done.returncode == 0 or "not found" in done.stderr:
        return
    raise LabError(drain_error(name, done.stdout + done.stderr, timeout))


def drain_error(name: str, output: str, timeout: int) -> str:
    """What blocked a drain, named by its pods, and how to go on."""
    blocking = sorted({f"{namespace}/{pod}" for pod, namespace in EVICTION_ERROR.findall(output)})
    reason = (
        f"pod(s) {', '.join(blocking)} could not be evicted (a PodDisruptionBudget allows no disruption now?)"
        if blocking
        else (output.strip().splitlines() or ["no output"])[-1]
    )
    return (
        f"draining {name} did not finish within {timeout} s: {reason}. {name} stays cordoned and in the lab: "
        f"fix that and run the same command again, or `kubectl uncordon {name}` to keep it"
    )


def _remove_etcd_member(plan: Plan, first: Connection, node: Node) -> None:
    """Remove the node's etcd member through master-1 while the node runs, before `kubeadm reset` (whose own
    removal failing would leave a stopped member behind); returns once master-1's etcd answers without it."""
    from provisioner.etcd_backup import etcdctl

    etcd = etcdctl(plan.init_master.name, first_master_kubectl(plan))
    member = _etcd_member_id(first, etcd, node.name)
    if member is None:
        return
    # With the staying member as leader, it commits and applies the removal itself. Removing one of two members
    # is unsafe otherwise: a leaving leader can stop before the other learns of the commit, and quorum is lost.
    _lead_from(plan.init_master, first, etcd)
    removed = run_on(first, f"{etcd} member remove {member}", timeout=60)
    if removed.returncode != 0:
        raise LabError(f"removing {node.name}'s etcd member failed: {removed.stderr.strip()[-300:]}")
    deadline = time.monotonic() + ETCD_SETTLE_SECONDS
    while time.monotonic() < deadline:
        with suppress(LabError):
            if _etcd_member_id(first, etcd, node.name) is None:
                return
        time.sleep(2)
    raise LabError(
        f"etcd on {plan.init_master.name} does not answer {ETCD_SETTLE_SECONDS} s after {node.name} left it: "
        f"`kubelab verify --name {plan.spec.name}` says more"
    )


def _lead_from(master: Node, connection: Connection, etcd: str) -> None:
    """Make `master`'s etcd member the leader (`etcdctl move-leader`, sent to the current leader)."""
    status = run_on(connection, f"{etcd} endpoint status --cluster -w json", timeout=60)
    try:
        entries = {entry["Endpoint"]: entry["Status"] for entry in json.loads(status.stdout)}
        own = entries[f"https://{master.ip}:2379"]["header"]["member_id"]
        leader = next(iter(entries.values()))["leader"]
    except (ValueError, TypeError, KeyError, StopIteration):
        raise LabError(f"etcd's endpoint status has no leader: {status.stderr.strip()[-300:]}") from None
    if leader == own:
        return
    moved = run_on(connection, f"{etcd} --endpoints={','.join(entries)} move-leader {own:x}", timeout=60)
    if moved.returncode != 0:
        raise LabError(f"moving etcd's leader to {master.name} failed: {moved.stderr.strip()[-300:]}")


def _etcd_member_id(first: Connection, etcd: str, name: str) -> str | None:
    """The hexadecimal ID of the etcd member called `name`, None when there is none."""
    members = run_on(first, f"{etcd} member list", timeout=60)
    if members.returncode != 0:
        raise LabError(f"etcdctl member list failed: {members.stderr.strip()[-300:]}")
    for line in members.stdout.splitlines():
        fields = [field.strip() for field in line.split(",")]
        if len(fields) > 2 and fields[2] == name:
            return fields[0]
    return None
