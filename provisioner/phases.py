"""The ordered phases of `kubelab up`, and which of them a run executes (resume, --from, --until)."""

from __future__ import annotations

from dataclasses import dataclass

from provisioner.errors import KubelabError
from provisioner.lab import REPO_ROOT

PLAYBOOKS_DIR = REPO_ROOT / "playbooks"


@dataclass(frozen=True)
class Phase:
    name: str
    title: str
    playbook: str | None = None  # file in playbooks/; None for phases Python runs itself


PHASES: tuple[Phase, ...] = (
    Phase("nodes", "machines up"),
    Phase("prepare", "node prerequisites", "prepare.yml"),
    Phase("runtime", "container runtime", "runtime.yml"),
    Phase("packages", "kubeadm, kubelet, kubectl", "packages.yml"),
    Phase("loadbalancer", "API load balancer", "loadbalancer.yml"),
    Phase("control-plane", "control plane", "control-plane.yml"),
    Phase("workers", "workers join", "workers.yml"),
    Phase("cni", "pod network", "cni.yml"),
    Phase("verify", "verification"),
)
PHASE_NAMES: tuple[str, ...] = tuple(phase.name for phase in PHASES)
BY_NAME: dict[str, Phase] = {phase.name: phase for phase in PHASES}


class PhaseSelectionError(KubelabError):
    """--from/--until that cannot be satisfied."""


def _index(name: str, flag: str) -> int:
    if name not in BY_NAME:
        raise PhaseSelectionError(f"{flag} {name}: unknown phase; phases are {', '.join(PHASE_NAMES)}")
    return PHASE_NAMES.index(name)


def select(done: set[str] | frozenset[str], start: str | None = None, until: str | None = None) -> list[Phase]:
    """Phases to run: from `start` (re-run) or else the first unfinished phase, through `until` (or the last).

    Without `start`, every phase after the first unfinished one runs too, finished or not: a resumed run
    never skips a phase that comes after one it had to redo.
    """
    last = _index(until, "--until") if until else len(PHASES) - 1
    if start is not None:
        first = _index(start, "--from")
        if first > last:
            raise PhaseSelectionError(f"--from {start} comes after --until {until}: nothing would run")
    else:
        first = next((i for i, phase in enumerate(PHASES) if phase.name not in done), len(PHASES))
    return list(PHASES[first : last + 1])


def later_phases(name: str) -> list[str]:
    """`name` and every phase after it: the ones a re-run of `name` makes stale."""
    return list(PHASE_NAMES[PHASE_NAMES.index(name) :])
