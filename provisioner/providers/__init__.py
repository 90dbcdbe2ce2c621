"""Providers: where a lab's machines come from. Imported lazily, one module per backend."""

from __future__ import annotations

from typing import TYPE_CHECKING

from provisioner import boxes

if TYPE_CHECKING:
    from provisioner.lab import LabDir
    from provisioner.plan import Plan
    from provisioner.providers.base import Provider


def get_provider(plan: Plan, lab: LabDir) -> Provider:
    """The provider object for a plan whose provider is resolved (not 'auto')."""
    name = plan.spec.provider
    if name in boxes.VAGRANT_PROVIDERS:
        from provisioner.providers.vagrant import VagrantProvider

        return VagrantProvider(plan, lab)
    if name == "local":
        from provisioner.providers.local import LocalProvider

        return LocalProvider(plan, lab)
    if name == "hosts":
        from provisioner.providers.hosts import HostsProvider

        return HostsProvider(plan, lab)
    raise ValueError(f"provider '{name}' must be resolved before use")
