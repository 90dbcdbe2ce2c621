"""A lab's life: `up` (render, provider, phases with resume), status, ssh, halt, resume, destroy."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from provisioner import phases as phases_mod
from provisioner import spec as spec_mod
from provisioner.errors import LabError
from provisioner.lab import LabDir
from provisioner.plan import Plan, make_plan
from provisioner.progress import PhaseProgress, format_seconds
from provisioner.providers.base import Connection, Provider, ProviderError
from provisioner.remote import run_on
from provisioner.state import LabLock, LabState, kubeconfig_file, load_state, save_state

SETTLE_TIMEOUT = 180  # seconds `resume` waits for nodes to be Ready and system pods to run again
UNIT_TIMEOUT = 90  # seconds `resume` gives a starting unit (kubelet, haproxy) to become active
LB_UNITS = ("haproxy", "keepalived")  # what the loadbalancer phase runs on the LB nodes
# Spec keys about one run of `up`, not the lab: changing them never counts as changing the lab.
RUN_OPTIONS = frozenset({"skip_network_check"})


# ---------------------------------------------------------------------------------------------
# Finding and loading a lab
# ---------------------------------------------------------------------------------------------


def find_lab(name: str = "kubelab", folder: Path | None = None) -> LabDir:
    return LabDir(folder) if folder else LabDir.for_name(name)


def stored_spec(lab: LabDir) -> dict[str, Any] | None:
    if not lab.exists():
        return None
    return dict(json.loads(lab.spec_file.read_text())["spec"])


def load_lab(lab: LabDir) -> Plan:
    """The plan of an existing lab, from its lab.json."""
    if not lab.exists():
        raise LabError(f"there is no lab at {lab.root}: create it with `kubelab up --name {lab.root.name}`")
    data = json.loads(lab.spec_file.read_text())
    return make_plan(spec_mod.LabSpec(**data["spec"]), arch=data.get("arch", "amd64"))


def provider_for(plan: Plan, lab: LabDir) -> Provider:
    from provisioner.providers import get_provider

    return get_provider(plan, lab)


# ---------------------------------------------------------------------------------------------
# up: spec for the run, then phases
# ---------------------------------------------------------------------------------------------


def spec_for_up(file_values: dict[str, Any], flag_values: dict[str, Any]) -> tuple[LabDir, spec_mod.LabSpec, list[str]]:
    """The lab folder and validated spec an `up` works on; refuses to change a lab that has run phases.

    An existing lab's own spec is the base, so a bare `kubelab up --name X` resumes lab X as it was created.
    """
    name = flag_values.get("name") or file_values.get("name") or spec_mod.LabSpec.name
    lab = LabDir.for_name(name)
    stored = stored_spec(lab) or {}
    base = {key: value for key, value in stored.items() if value not in (None, {}) and key not in RUN_OPTIONS}
    file_layer = {**base, **file_values}
    for layer in (file_layer, flag_values):
        for key in ("inventory", "artifacts"):  # stored absolute: a resumed `up` may run from another folder
            if layer.get(key):
                layer[key] = str(Path(layer[key]).expanduser().resolve())
    provider = flag_values.get("provider") or file_layer.get("provider")
    if provider == "hosts":
        _counts_from_inventory(file_layer, flag_values)
    spec = spec_mod.build_spec(file_layer, flag_values)
    host = spec_mod.HostInfo.detect()
    warnings = spec_mod.validate(spec, host)  # the user's own mistakes first, before looking at the host's tools
    if stored and load_state(lab).phases:
        changed = spec_differences(stored, spec.to_dict())
        if changed:
            raise LabError(
                f"lab '{name}' already exists with a different spec ({'; '.join(changed)}) and nothing was changed. "
                f"Run `kubelab up --name {name}` without those settings to resume it, `kubelab destroy --name "
                f"{name}` first to rebuild it, or pick another --name"
            )
    if spec.provider == "auto":
        from provisioner.providers.detect import detect_provider

        spec = spec_mod.resolve(spec.replace(provider=detect_provider()))
        warnings = spec_mod.validate(spec, host)
    check_vm_memory(spec, host)
    return lab, spec, warnings


def check_vm_memory(spec: spec_mod.LabSpec, host: spec_mod.HostInfo) -> None:
    """VMs get their RAM for real: a Vagrant lab larger than the host's memory is refused (a warning elsewhere)."""
    from provisioner.boxes import VAGRANT_PROVIDERS
    from provisioner.plan import total_memory

    if spec.provider not in VAGRANT_PROVIDERS or host.memory_mb is None:
        return
    needed = total_memory(spec)
    if needed > host.memory_mb:
        raise LabError(
            f"this lab's VMs need {needed} MB of RAM but the host has {host.memory_mb} MB; nothing was created: "
            "use fewer nodes or less --master-memory/--worker-memory/--lb-memory"
        )


def spec_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """'key: old -> new' for every key whose value differs ('auto' on either side matches anything)."""
    return [
        f"{key}: {old.get(key)!r} -> {new.get(key)!r}"
        for key in sorted(set(old) | set(new))
        if old.get(key) != new.get(key) and "auto" not in (old.get(key), new.get(key)) and key not in RUN_OPTIONS
    ]


def _counts_from_inventory(file_layer: dict[str, Any], flag_values: dict[str, Any]) -> None:
    """For --provider hosts the inventory decides the node counts; flags that disagree are an error."""
    from provisioner.providers.hosts import inventory_counts

    inventory = flag_values.get("inventory") or file_layer.get("inventory")
    if not inventory:
        return  # validate() reports the missing inventory
    for key, count in inventory_counts(Path(inventory)).items():
        given = flag_values.get(key)
        if given is not None and given != count:
            raise LabError(f"--{key.replace('_', '-')} {given} disagrees with {inventory}, which has {count}")
        file_layer[key] = count


def up(
    lab: LabDir,
    spec: spec_mod.LabSpec,
    start: str | None = None,
    until: str | None = None,
    out: TextIO | None = None,
    provider: Provider | None = None,
) -> int:
    """Render the lab folder, check the provider, run the selected phases. 0 when all of them finished."""
    from provisioner.render import write_lab

    out = out or sys.stdout
    plan = make_plan(spec, arch=spec_mod.HostInfo.detect().arch)
    if spec.artifacts:  # offline lab: every file present and intact before anything is created
        from provisioner.artifacts import check_artifacts

        check_artifacts(spec.artifacts, spec, arch=plan.arch)
    provider = provider or provider_for(plan, lab)
    provider.check()  # missing tools or unreachable hosts: said before the lab folder or any machine exists
    if not spec.skip_network_check:
        _check_downloads(lab, plan, start, until)
    with LabLock(lab, "up"):
        write_lab(plan, lab)
        from provisioner.cache import write_lab_vars

        write_lab_vars(lab, spec.provider, spec.node_subnet)
        return run_phases(lab, plan, provider, start=start, until=until, out=out)


def _check_downloads(lab: LabDir, plan: Plan, start: str | None, until: str | None) -> None:
    """Refuse, before anything is created, when a phase that will run downloads from a host this one cannot reach."""
    from provisioner import reachability

    selected = phases_mod.select(set(load_state(lab).phases), start, until)
    problem = reachability.check(plan, [phase.name for phase in selected])
    if problem:
        raise LabError(problem)


def refuse_during_upgrade(plan: Plan, state: LabState) -> None:
    """A lab half-way through `kubelab upgrade` is finished by it: the phases would install the new version's
    packages on nodes that kubeadm has not upgraded yet."""
    if state.upgrading:
        raise LabError(
            f"lab '{plan.spec.name}' is being upgraded to v{state.upgrading}: finish that first with "
            f"`kubelab upgrade --to {state.upgrading} --name {plan.spec.name}`"
        )


def run_phases(lab: LabDir, plan: Plan, provider: Provider, start: str | None, until: str | None, out: TextIO) -> int:
    state = load_state(lab)
    refuse_during_upgrade(plan, state)
    state.provider = provider.name
    selected = phases_mod.select(set(state.phases), start, until)
    if start:
        state.forget(phases_mod.later_phases(start))
        save_state(lab, state)
    if not selected:
        through = f" through {until}" if until else ""
        print(f"lab '{plan.spec.name}': every phase{through} is done (re-run one with --from PHASE)", file=out)
        return 0
    if selected[0].name != "nodes" and state.is_done("nodes"):
        write_provider_inventory(lab, plan, provider)
    print(f"lab '{plan.spec.name}' ({provider.name}): {', '.join(p.name for p in selected)}", file=out)
    started = time.monotonic()
    for phase in selected:
        if not run_phase(lab, plan, provider, phase, state, out):
            return 1
    print(f"done in {format_seconds(time.monotonic() - started)}; {lab.root}", file=out)
    if state.is_done("control-plane"):
        print(f"API https://{api_endpoint(plan, provider)}  kubeconfig {kubeconfig_file(lab)}", file=out)
    return 0


def run_phase(
    lab: LabDir,
    plan: Plan,
    provider: Provider,
    phase: phases_mod.Phase,
    state: LabState,
    out: TextIO,
    hosts: list[str] | None = None,
) -> bool:
    """Run one phase (its playbook only on `hosts` if given) and record it; on failure print what failed and
    return False."""
    from provisioner.ansible import run_playbook

    tty = None if phase.name != "verify" else False  # verify prints its own table
    with PhaseProgress(phase.name, phase.title, stream=out, tty=tty) as bar:
        summary, report = "", ""
        try:
            if phase.name == "nodes":
                summary = _nodes_phase(lab, plan, provider, bar)
            elif phase.name == "verify":
                report = _verify_phase(lab, out)
            else:
                playbook = phases_mod.PLAYBOOKS_DIR / str(phase.playbook)
                if not playbook.is_file():
                    report = f"  playbook {playbook} is missing: this kubelab checkout is incomplete"
                else:
                    limit = ["--limit", ",".join(hosts)] if hosts is not None else None
                    result = run_playbook(lab, phase.name, playbook, bar, limit)
                    summary = result.summary()
                    report = "" if result.ok else result.failure_report()
        except ProviderError as exc:
            report = f"  {exc}"
        except KeyboardInterrupt:
            bar.finish(False, "interrupted")
            raise
        bar.finish(not report, summary)
    if report:
        print(report, file=out)
        print(f"fix the cause, then `kubelab up --name {plan.spec.name}` resumes at {phase.name}", file=out)
        return False
    state.mark_done(phase.name, bar.elapsed)
    save_state(lab, state)
    return True


def _nodes_phase(lab: LabDir, plan: Plan, provider: Provider, bar: PhaseProgress) -> str:
    provider.up(lambda node, message: bar.update(f"{node}: {message}"))
    return f"{len(write_provider_inventory(lab, plan, provider))} node(s)"


def write_provider_inventory(lab: LabDir, plan: Plan, provider: Provider) -> dict[str, Connection]:
    """The one writer of the provider's part of the inventory: how Ansible reaches each node (addresses can
    change while a lab is stopped, e.g. DHCP on libvirt), the provider's variables and per-node variables.
    Raises ProviderError naming the nodes that cannot be reached."""
    from provisioner import render

    connections = provider.connections()
    missing = [node.name for node in plan.nodes if node.name not in connections]
    if missing:
        raise ProviderError(
            f"no SSH connection to {', '.join(missing)}: see `kubelab status --name {plan.spec.name}`; "
            f"`kubelab resume --name {plan.spec.name}` starts a halted lab"
        )
    render.write_connections(lab, connections)
    render.write_provider_vars(lab, provider.ansible_vars())
    render.write_node_vars(lab, provider.node_vars())
    return connections


def _verify_phase(lab: LabDir, out: TextIO) -> str:
    from provisioner.verify import VerifyError, run_verify

    try:
        code = run_verify(lab, out=out)
    except VerifyError as exc:
        return f"  {exc}"
    return (
        "" if code == 0 else f"  verification failed: see the table above and `kubelab verify --name {lab.root.name}`"
    )


def api_endpoint(plan: Plan, provider: Provider) -> str:
    return f"{provider.api_host()}:{plan.spec.api_port}"


# ---------------------------------------------------------------------------------------------
# status, ssh, halt, resume, destroy
# ---------------------------------------------------------------------------------------------


def status(lab: LabDir) -> dict[str, Any]:
    """Nodes, provider state, addresses, phases done and the API endpoint, as plain data."""
    plan = load_lab(lab)
    state = load_state(lab)
    provider = provider_for(plan, lab)
    roles = {node.name: node.role for node in plan.nodes}
    try:
        nodes = [
            {"name": n.name, "role": roles.get(n.name), "ip": n.address, "state": n.state} for n in provider.status()
        ]
        provider_error = None
    except (ProviderError, OSError, subprocess.CalledProcessError) as exc:
        nodes = [{"name": n.name, "role": n.role, "ip": n.ip, "state": "unknown"} for n in plan.nodes]
        provider_error = str(exc)
    done = [name for name in phases_mod.PHASE_NAMES if state.is_done(name)]
    pending = [name for name in phases_mod.PHASE_NAMES if name not in done]
    kubeconfig = kubeconfig_file(lab)
    try:
        endpoint = api_endpoint(plan, provider)
    except ProviderError:
        endpoint = f"{plan.api_host}:{plan.spec.api_port}"
    return {
        "name": plan.spec.name,
        "lab_dir": str(lab.root),
        "provider": plan.spec.provider,
        "provider_error": provider_error,
        "api_endpoint": f"https://{endpoint}",
        "kubeconfig": str(kubeconfig) if kubeconfig.is_file() else None,
        "nodes": nodes,
        "phases": {
            "done": done,
            "next": pending[0] if pending else None,
            "seconds": state.durations(),
        },
    }


def format_status(data: dict[str, Any]) -> str:
    phases = data["phases"]
    lines = [
        f"Lab '{data['name']}' ({data['provider']})  {data['lab_dir']}",
        f"  API          {data['api_endpoint']}",
        f"  kubeconfig   {data['kubeconfig'] or 'not yet (after the control-plane phase)'}",
        f"  phases done  {', '.join(phases['done']) or 'none'}",
        f"  next phase   {phases['next'] or 'none: the lab is complete'}",
    ]
    if data["provider_error"]:
        lines.append(f"  provider     {data['provider_error']}")
    lines += ["", f"  {'NODE':<12}{'ROLE':<9}{'IP':<17}STATE"]
    lines += [f"  {n['name']:<12}{n['role'] or '':<9}{n['ip'] or '':<17}{n['state']}" for n in data["nodes"]]
    return "\n".join(lines)


def ssh(lab: LabDir, node: str, command: list[str]) -> int:
    """Open a shell on `node`, or run `command` there; returns ssh's exit code."""
    plan = load_lab(lab)
    names = [n.name for n in plan.nodes]
    if node not in names:
        raise LabError(f"lab '{plan.spec.name}' has no node '{node}'; its nodes: {', '.join(names)}")
    connections = provider_for(plan, lab).connections()
    if node not in connections:
        raise LabError(f"{node} is not running: start the lab with `kubelab resume --name {plan.spec.name}`")
    # One argument is a shell command line (`-- 'a | b'`); several are quoted one by one (`-- ls 'my dir'`).
    remote = command[0] if len(command) == 1 else shlex.join(command)
    argv = connections[node].ssh_argv([remote] if command else None)
    if not command and sys.stdin.isatty():
        argv.insert(1, "-t")
    return subprocess.call(argv)


def halt(lab: LabDir, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    plan = load_lab(lab)
    with LabLock(lab, "halt"):
        provider_for(plan, lab).halt()
    print(f"lab '{plan.spec.name}' halted; `kubelab resume --name {plan.spec.name}` starts it again", file=out)


def resume(lab: LabDir, out: TextIO | None = None) -> int:
    """Start a halted lab, then check what a restart breaks: swap, the load balancer, kubelets, nodes and
    system pods."""
    out = out or sys.stdout
    plan = load_lab(lab)
    state = load_state(lab)
    with LabLock(lab, "resume"):
        provider = provider_for(plan, lab)
        provider.check()
        # Containers that ran before the halt started before this (margin for a VM clock a little behind).
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 5))
        with PhaseProgress("resume", "machines up", stream=out) as bar:
            provider.resume(lambda node, message: bar.update(f"{node}: {message}"))
            connections = write_provider_inventory(lab, plan, provider)
            bar.finish(True, f"{len(connections)} node(s) running")
        with PhaseProgress("health", "checks after the restart", stream=out) as bar:
            problems = after_restart_problems(plan, state, connections, since, bar.update)
            bar.finish(not problems, f"{len(problems)} problem(s)" if problems else "")
    if problems:
        print("the lab is running but not healthy:", file=out)
        print("\n".join(f"  {problem}" for problem in problems), file=out)
        return 1
    checked = [
        text
        for phase, text in (
            ("prepare", "swap off"),
            ("loadbalancer", "load balancer active"),
            ("control-plane", "kubelet active"),
            ("cni", "nodes Ready, system pods running"),
        )
        if state.is_done(phase) and (phase != "loadbalancer" or any(n.role == "lb" for n in plan.nodes))
    ]
    print(f"lab '{plan.spec.name}' is running" + (f": {', '.join(checked)}" if checked else ""), file=out)
    return 0


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


def _unit_state(connection, unit: str) -> str:
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


def _cluster_problems(plan: Plan, connection, expected: set[str], since: str) -> list[str]:
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


def destroy(lab: LabDir, out: TextIO | None = None, reset: bool = False) -> bool:
    """Remove the lab's machines and its folder. False when there was nothing to destroy.

    `reset` (hosts labs only): undo the Kubernetes phases on the user's machines first (playbooks/reset.yml);
    when that fails the lab folder is kept so the command can be run again.
    """
    out = out or sys.stdout
    if not lab.root.exists():
        print(f"nothing to destroy: there is no lab at {lab.root}", file=out)
        return False
    with LabLock(lab, "destroy"):
        if lab.exists():
            plan = load_lab(lab)
            if reset and plan.spec.provider != "hosts":
                raise LabError(
                    f"--reset is for --provider hosts labs; a {plan.spec.provider} lab's machines are removed"
                )
            provider = provider_for(plan, lab)
            if reset and not _reset_hosts(lab, plan, provider, out):
                print("nothing was removed", file=out)
                return False
            removed = provider.destroy()
            what = "machines removed" if removed else "no machines were running"
            if plan.spec.provider == "hosts":
                done = "Kubernetes reset on them, " if reset else ""
                what = f"your machines were left running ({done}kubelab did not create them)"
        else:
            what = "only an unfinished lab folder was there"
        shutil.rmtree(lab.root)
    print(f"lab '{lab.root.name}' destroyed: {what}; {lab.root} removed", file=out)
    return True


def _reset_hosts(lab: LabDir, plan: Plan, provider: Provider, out: TextIO) -> bool:
    """Run the reset playbook on a hosts lab's machines; False (with the failure shown) when it failed."""
    from provisioner.reset import run_reset_playbook

    provider.check()
    write_provider_inventory(lab, plan, provider)
    return run_reset_playbook(lab, plan, provider, out, again=f"kubelab destroy --reset --name {plan.spec.name}")
