"""A lab's life: `up` (render, provider, phases with resume), ssh, halt, resume, destroy."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import TextIO

from provisioner import phases as phases_mod
from provisioner import spec as spec_mod
from provisioner.checks.after_restart import after_restart_problems
from provisioner.errors import LabError
from provisioner.inventory import write_provider_inventory
from provisioner.lab import LabDir
from provisioner.plan import Plan, make_plan
from provisioner.progress import PhaseProgress, format_seconds
from provisioner.providers.base import Provider, ProviderError
from provisioner.state import LabLock, LabState, kubeconfig_file, load_state, save_state

# ---------------------------------------------------------------------------------------------
# Finding and loading a lab
# ---------------------------------------------------------------------------------------------


def find_lab(name: str = "kubelab", folder: Path | None = None) -> LabDir:
    return LabDir(folder) if folder else LabDir.for_name(name)


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
# up: render, then the phases
# ---------------------------------------------------------------------------------------------


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
    """Run one phase (only on `hosts` if given) and record it; on failure print what failed and return False."""
    tty = False if phase.prints_report else None
    with PhaseProgress(phase.name, phase.title, stream=out, tty=tty) as bar:
        try:
            outcome = phase.run(phases_mod.LabContext(lab, plan, provider, out, bar, hosts))
        except ProviderError as exc:
            outcome = phases_mod.Outcome(failure=f"  {exc}")
        except KeyboardInterrupt:
            bar.finish(False, "interrupted")
            raise
        bar.finish(not outcome.failure, outcome.summary)
    if outcome.failure:
        print(outcome.failure, file=out)
        print(f"fix the cause, then `kubelab up --name {plan.spec.name}` resumes at {phase.name}", file=out)
        return False
    state.mark_done(phase.name, bar.elapsed)
    save_state(lab, state)
    return True


def api_endpoint(plan: Plan, provider: Provider) -> str:
    return f"{provider.api_host()}:{plan.spec.api_port}"


# ---------------------------------------------------------------------------------------------
# status, ssh, halt, resume, destroy
# ---------------------------------------------------------------------------------------------


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


def destroy(lab: LabDir, out: TextIO | None = None, reset: bool = False) -> bool:
    """Remove the lab's machines and its folder; False when there was nothing to destroy. `reset` (hosts labs):
    first undo the Kubernetes phases (playbooks/reset.yml); when that fails the folder is kept for another try."""
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
