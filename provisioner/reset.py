"""`kubelab reset`: undo kubeadm and the CNI on every Kubernetes node, keeping the machines for a new `up`."""

from __future__ import annotations

import sys
from typing import TextIO

from provisioner import phases as phases_mod
from provisioner.errors import LabError
from provisioner.lab import LabDir
from provisioner.plan import Plan
from provisioner.progress import PhaseProgress
from provisioner.providers.base import Provider
from provisioner.state import LabLock, load_state, save_state

# What a reset undoes: `up` runs these phases again (the machines, runtime, packages and load balancer stay).
FIRST_UNDONE = "control-plane"


def reset(lab: LabDir, out: TextIO | None = None) -> bool:
    """Run playbooks/reset.yml on the masters and workers and forget the phases it undid. False (with the
    failure shown) when the playbook failed; the phases stay recorded then, and a re-run finishes the job."""
    from provisioner.inventory import write_provider_inventory
    from provisioner.lifecycle import load_lab, provider_for

    out = out or sys.stdout
    plan = load_lab(lab)
    state = load_state(lab)
    if not state.is_done("nodes"):
        raise LabError(f"lab '{plan.spec.name}' has no machines yet: nothing to reset")
    with LabLock(lab, "reset"):
        provider = provider_for(plan, lab)
        provider.check()
        write_provider_inventory(lab, plan, provider)
        if not run_reset_playbook(lab, plan, provider, out, again=f"kubelab reset --name {plan.spec.name}"):
            return False
        state.forget(phases_mod.later_phases(FIRST_UNDONE))
        save_state(lab, state)
    nodes = len(plan.masters) + len(plan.workers)
    print(
        f"lab '{plan.spec.name}' reset: kubeadm, CNI and kube-proxy state removed from {nodes} node(s), which keep "
        f"running with their runtime and packages; `kubelab up --name {plan.spec.name}` builds the cluster again "
        f"from the {FIRST_UNDONE} phase",
        file=out,
    )
    return True


def run_reset_playbook(lab: LabDir, plan: Plan, provider: Provider, out: TextIO, again: str) -> bool:
    """playbooks/reset.yml with progress; on failure the report and `again`, the command that retries."""
    from provisioner.ansible import run_playbook

    title = "kubeadm reset on your machines" if plan.spec.provider == "hosts" else "kubeadm reset on the nodes"
    with PhaseProgress("reset", title, stream=out) as bar:
        result = run_playbook(lab, "reset", phases_mod.PLAYBOOKS_DIR / "reset.yml", bar)
        bar.finish(result.ok, result.summary())
    if not result.ok:
        print(result.failure_report(), file=out)
        print(f"fix the cause and run `{again}` again", file=out)
    return result.ok
