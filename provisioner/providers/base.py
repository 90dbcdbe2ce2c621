"""What a provider does: make the plan's machines exist, say how to reach them, take them away."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from provisioner.errors import KubelabError
from provisioner.lab import LabDir
from provisioner.plan import Plan

if TYPE_CHECKING:
    from provisioner.node_image import NodeImage


class ProviderError(KubelabError):
    """A provider cannot do what was asked; the message says what to install or change."""


@dataclass(frozen=True)
class NodeStatus:
    name: str
    state: str  # e.g. running, stopped, not created
    address: str | None


@dataclass(frozen=True)
class Connection:
    """How Ansible and `kubelab ssh` reach one node."""

    host: str
    port: int
    user: str
    key_file: str
    extra_ssh_args: tuple[str, ...] = ()

    def ansible_vars(self) -> dict[str, object]:
        data: dict[str, object] = {
            "ansible_host": self.host,
            "ansible_port": self.port,
            "ansible_user": self.user,
            "ansible_ssh_private_key_file": self.key_file,
        }
        if self.user != "root":
            data["ansible_become"] = True
        if self.extra_ssh_args:
            data["ansible_ssh_common_args"] = " ".join(self.extra_ssh_args)
        return data

    def ssh_argv(self, command: list[str] | None = None) -> list[str]:
        argv = ["ssh", "-i", self.key_file, "-p", str(self.port), *self.extra_ssh_args, f"{self.user}@{self.host}"]
        return argv + (command or [])


# progress(node_name, message) reports per-node progress while machines come up.
Progress = Callable[[str, str], None]


class Provider(ABC):
    """One backend for the lab's machines. Every method is safe to call again (idempotent)."""

    name: str

    def __init__(self, plan: Plan, lab: LabDir) -> None:
        self.plan = plan
        self.lab = lab

    @abstractmethod
    def check(self) -> None:
        """Raise ProviderError naming what to install when this provider cannot run here."""

    @abstractmethod
    def up(self, progress: Progress) -> None:
        """Create or start every node and return once each one answers SSH."""

    @abstractmethod
    def status(self) -> list[NodeStatus]:
        """State of every planned node."""

    @abstractmethod
    def connections(self) -> dict[str, Connection]:
        """Node name -> how to reach it; only valid for running nodes."""

    @abstractmethod
    def halt(self) -> None:
        """Stop every node, keeping its disk."""

    @abstractmethod
    def destroy(self) -> bool:
        """Remove every node and everything it left on the host. Returns False if nothing was there."""

    def api_host(self) -> str:
        """Where clients reach the API: the plan's VIP or single master, unless the machines say otherwise."""
        return self.plan.api_host

    def ansible_vars(self) -> dict[str, Any]:
        """Lab-wide Ansible variables the playbooks need on this provider's machines (none by default)."""
        return {}

    def node_vars(self) -> dict[str, dict[str, Any]]:
        """Per-node Ansible variables that outrank the lab's IP plan (none by default)."""
        return {}

    def node_image(self) -> NodeImage | None:
        """The baked image new Kubernetes nodes boot from (built before `up` when missing); None: no image."""
        return None

    def resume(self, progress: Progress) -> None:
        """Start stopped nodes again; by default the same as `up`."""
        self.up(progress)

    def remove(self, names: list[str]) -> None:
        """Remove these nodes' machines for good (`kubelab node remove`); nodes already gone are skipped."""
        raise ProviderError(f"the {self.name} provider cannot remove single machines")
