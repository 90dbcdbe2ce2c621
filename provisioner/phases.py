"""The ordered phases of `kubelab up`, each a step that runs itself on a lab, and which of them a run executes
(resume, --from, --until).

A phase is one of three kinds: the machines (the provider brings the nodes up), a playbook, or verify. The
runner in lifecycle only shows progress and records the result; it does not know which kind it runs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, TextIO

from provisioner.errors import KubelabError
from provisioner.lab import REPO_ROOT

if TYPE_CHECKING:
    from provisioner.lab import LabDir
    from provisioner.plan import Plan
    from provisioner.progress import PhaseProgress
    from provisioner.providers.base import Provider

PLAYBOOKS_DIR = REPO_ROOT / "playbooks"


@dataclass(frozen=True)
class LabContext:
    """What a phase works on: the lab folder and plan, the provider's machines, and where to report."""

    lab: LabDir
    plan: Plan
    provider: Provider
    out: TextIO
    progress: PhaseProgress
    hosts: list[str] | None = None  # run only on these nodes (`kubelab node add`); None: on every node


@dataclass(frozen=True)
class Outcome:
    summary: str = ""
    failure: str = ""  # what went wrong, for the user; empty when the phase succeeded


@dataclass(frozen=True)
class Phase(ABC):
    name: str
    title: str
    prints_report: ClassVar[bool] = False  # the phase prints a report of its own below the progress line

    @abstractmethod
    def run(self, ctx: LabContext) -> Outcome:
        """Do the phase's work on the lab; raise ProviderError when the machines cannot."""

    def applies(self, plan: Plan) -> bool:
        """Whether the phase has work on this lab: one that has none counts as done whether it ran or not."""
        return True


@dataclass(frozen=True)
class MachinesPhase(Phase):
    """The provider creates or starts every node (baking their node image first when it is not cached); their
    connections go into the inventory."""

    def run(self, ctx: LabContext) -> Outcome:
        from provisioner.inventory import write_provider_inventory

        image = ctx.provider.node_image()
        if image is not None and not image.built:
            from provisioner import image_build

            lines = image_build.ProgressLines(lambda line: ctx.progress.note(f"node image: {line}"))
            image_build.build(image, ctx.plan.spec, ctx.plan.arch, lines)
        ctx.provider.up(lambda node, message: ctx.progress.update(f"{node}: {message}"))
        return Outcome(f"{len(write_provider_inventory(ctx.lab, ctx.plan, ctx.provider))} node(s)")


@dataclass(frozen=True)
class PlaybookPhase(Phase):
    """One playbook of playbooks/ on the lab's inventory."""

    playbook: str = ""

    def run(self, ctx: LabContext) -> Outcome:
        from provisioner.ansible import run_playbook

        path = PLAYBOOKS_DIR / self.playbook
        if not path.is_file():
            return Outcome(failure=f"  playbook {path} is missing: this kubelab checkout is incomplete")
        limit = ["--limit", ",".join(ctx.hosts)] if ctx.hosts is not None else None
        result = run_playbook(ctx.lab, self.name, path, ctx.progress, limit)
        return Outcome(result.summary(), "" if result.ok else result.failure_report())


@dataclass(frozen=True)
class AddonsPhase(PlaybookPhase):
    """The add-ons playbook, only when the lab has add-ons."""

    def applies(self, plan: Plan) -> bool:
        return bool(plan.spec.addons)

    def run(self, ctx: LabContext) -> Outcome:
        if not self.applies(ctx.plan):
            return Outcome("none chosen")
        return super().run(ctx)


@dataclass(frozen=True)
class VerifyPhase(Phase):
    """The shipped checks (`kubelab verify`); their table is the report."""

    prints_report: ClassVar[bool] = True

    def run(self, ctx: LabContext) -> Outcome:
        from provisioner.verify import VerifyError, run_verify

        try:
            code = run_verify(ctx.lab, out=ctx.out)
        except VerifyError as exc:
            return Outcome(failure=f"  {exc}")
        if code == 0:
            return Outcome()
        again = f"kubelab verify --name {ctx.lab.root.name}"
        return Outcome(failure=f"  verification failed: see the table above and `{again}`")


PHASES: tuple[Phase, ...] = (
    MachinesPhase("nodes", "machines up"),
    PlaybookPhase("prepare", "node prerequisites", "prepare.yml"),
    PlaybookPhase("runtime", "container runtime", "runtime.yml"),
    PlaybookPhase("packages", "kubeadm, kubelet, kubectl", "packages.yml"),
    PlaybookPhase("loadbalancer", "API load balancer", "loadbalancer.yml"),
    PlaybookPhase("control-plane", "control plane", "control-plane.yml"),
    PlaybookPhase("workers", "workers join", "workers.yml"),
    PlaybookPhase("cni", "pod network", "cni.yml"),
    AddonsPhase("addons", "add-ons", "addons.yml"),
    VerifyPhase("verify", "verification"),
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
    Without `start`, every phase after the first unfinished one runs too: none after a redone phase is skipped."""
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
