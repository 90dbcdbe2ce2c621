"""The provider's part of a lab's Ansible inventory, written in one place."""

from __future__ import annotations

from provisioner import render
from provisioner.lab import LabDir
from provisioner.plan import Plan
from provisioner.providers.base import Connection, Provider, ProviderError


def write_provider_inventory(lab: LabDir, plan: Plan, provider: Provider) -> dict[str, Connection]:
    """The one writer of the provider's part of the inventory: connections (they can change while a lab is
    stopped), provider and per-node variables. Raises ProviderError naming the nodes that cannot be reached."""
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
