"""The one writer of the provider's part of the inventory: connections, provider variables, per-node variables."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from provisioner.inventory import write_provider_inventory
from provisioner.lab import LabDir
from provisioner.lifecycle import api_endpoint
from provisioner.plan import Plan, make_plan
from provisioner.providers.base import Connection, NodeStatus, Provider, ProviderError
from provisioner.spec import build_spec


class Machines(Provider):
    """Running machines with the variables a test gives them."""

    name = "machines"
    running: set[str]
    variables: dict[str, object]
    per_node: dict[str, dict[str, object]]

    def check(self) -> None: ...

    def up(self, progress) -> None: ...

    def status(self) -> list[NodeStatus]:
        return [NodeStatus(n.name, "running" if n.name in self.running else "stopped", n.ip) for n in self.plan.nodes]

    def connections(self) -> dict[str, Connection]:
        return {n.name: Connection(n.ip, 22, "root", "/k") for n in self.plan.nodes if n.name in self.running}

    def halt(self) -> None: ...

    def destroy(self) -> bool:
        return True

    def ansible_vars(self) -> dict[str, object]:
        return self.variables

    def node_vars(self) -> dict[str, dict[str, object]]:
        return self.per_node


def machines(plan: Plan, lab: LabDir, running: set[str] | None = None, **variables: object) -> Machines:
    provider = Machines(plan, lab)
    provider.running = {n.name for n in plan.nodes} if running is None else running
    provider.variables = dict(variables)
    provider.per_node = {}
    return provider


@pytest.fixture
def plan() -> Plan:
    return make_plan(build_spec({}, {"name": "inv", "provider": "libvirt", "masters": 1, "workers": 1}))


def body(path: Path) -> object:
    return json.loads(path.read_text().split("\n", 1)[1])


def test_connections_and_provider_variables_are_written_once_for_ansible(plan: Plan, tmp_path: Path) -> None:
    lab = LabDir(tmp_path / "inv")
    provider = machines(plan, lab, containerd_restrict_oom_score_adj=True)
    provider.per_node = {"worker-1": {"kubelab_ip": "10.0.0.9"}}
    connections = write_provider_inventory(lab, plan, provider)
    assert sorted(connections) == ["master-1", "worker-1"]
    assert body(lab.connection_inventory)["all"]["hosts"]["worker-1"]["ansible_host"] == plan.workers[0].ip
    assert body(lab.provider_vars) == {"containerd_restrict_oom_score_adj": True}
    assert json.loads((lab.inventory_dir / "host_vars" / "worker-1.yml").read_text()) == {"kubelab_ip": "10.0.0.9"}

    provider.variables = {}  # a provider with nothing to say leaves no stale file behind
    write_provider_inventory(lab, plan, provider)
    assert not lab.provider_vars.exists()


def test_a_node_without_a_connection_is_named_and_nothing_is_written(plan: Plan, tmp_path: Path) -> None:
    lab = LabDir(tmp_path / "inv")
    provider = machines(plan, lab, running={"master-1"})
    with pytest.raises(ProviderError, match=r"^no SSH connection to worker-1: see `kubelab status --name inv`"):
        write_provider_inventory(lab, plan, provider)
    assert not lab.connection_inventory.exists()


def test_the_api_endpoint_is_the_providers_api_host(plan: Plan, tmp_path: Path) -> None:
    provider = machines(plan, LabDir(tmp_path / "inv"))
    assert api_endpoint(plan, provider) == f"{plan.api_host}:6443"
    provider.api_host = lambda: "203.0.113.7"  # type: ignore[method-assign]
    assert api_endpoint(plan, provider) == "203.0.113.7:6443"
