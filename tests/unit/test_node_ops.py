"""`kubelab node add` / `node remove` without machines: what is refused before anything changes, where each
phase runs for new nodes, what is recorded so an interrupted add is finished by `kubelab up`, and how a
blocked drain is reported. The real runs are in tests/integration/test_kubeadm_single.py."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from provisioner import node_ops
from provisioner import phases as phases_mod
from provisioner.errors import LabError
from provisioner.lab import LabDir
from provisioner.plan import make_plan
from provisioner.providers.base import Connection, NodeStatus, Provider
from provisioner.render import write_lab
from provisioner.spec import HostInfo, SpecError, build_spec, validate
from provisioner.state import load_state, save_state


class RunningNodes(Provider):
    """Every planned node runs."""

    name = "stand-in"

    def check(self) -> None:
        pass

    def up(self, progress) -> None:
        pass

    def status(self) -> list[NodeStatus]:
        return [NodeStatus(node.name, "running", node.ip) for node in self.plan.nodes]

    def connections(self) -> dict[str, Connection]:
        return {node.name: Connection(node.ip, 22, "root", "/dev/null") for node in self.plan.nodes}

    def halt(self) -> None:
        pass

    def destroy(self) -> bool:
        return True


def finished_lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **flags) -> LabDir:
    monkeypatch.setenv("KUBELAB_HOME", str(tmp_path / "home"))
    base = {"name": "grow", "provider": "libvirt", "masters": 1, "workers": 1, "skip_network_check": True}
    plan = make_plan(build_spec({}, {**base, **flags}))
    lab = LabDir.for_name("grow")
    write_lab(plan, lab)
    state = load_state(lab)
    for phase in phases_mod.PHASE_NAMES:
        state.mark_done(phase, 1.0)
    save_state(lab, state)
    monkeypatch.setattr(node_ops, "provider_for", lambda plan, lab: RunningNodes(plan, lab))
    return lab


def counts(lab: LabDir) -> tuple[int, int]:
    spec = json.loads(lab.spec_file.read_text())["spec"]
    return spec["masters"], spec["workers"]


@pytest.fixture
def phases_run(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, list[str] | None]]:
    """Stand-in for run_phase: records (phase, hosts) and marks the phase done, as the real one does."""
    calls: list[tuple[str, list[str] | None]] = []

    def run_phase(lab, plan, provider, phase, state, out, hosts=None) -> bool:
        calls.append((phase.name, hosts))
        state.mark_done(phase.name, 1.0)
        save_state(lab, state)
        return phase.name != "fail-here"

    monkeypatch.setattr(node_ops, "run_phase", run_phase)
    return calls


def test_adding_workers_runs_the_node_phases_only_on_them_and_records_the_new_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, phases_run
) -> None:
    lab = finished_lab(tmp_path, monkeypatch)
    assert node_ops.add(lab, workers=2, out=io.StringIO())
    assert counts(lab) == (1, 3)
    hosts = dict(phases_run)
    assert [name for name, _ in phases_run] == list(phases_mod.PHASE_NAMES)
    assert hosts["prepare"] is None and hosts["verify"] is None  # every node: /etc/hosts, the whole lab checked
    assert hosts["runtime"] == hosts["packages"] == hosts["workers"] == ["worker-2", "worker-3"]
    assert hosts["loadbalancer"] == ["worker-2", "worker-3"]  # no master added: haproxy stays as it is
    assert hosts["cni"] == ["master-1", "worker-2", "worker-3"]
    assert set(load_state(lab).phases) == set(phases_mod.PHASE_NAMES)


def test_adding_masters_reloads_the_load_balancers_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, phases_run
) -> None:
    lab = finished_lab(tmp_path, monkeypatch, masters=3, workers=0, lb="haproxy")
    assert node_ops.add(lab, masters=2, out=io.StringIO())
    assert counts(lab) == (5, 0)
    hosts = dict(phases_run)
    assert hosts["control-plane"] == ["master-4", "master-5"]
    assert hosts["loadbalancer"] == ["master-4", "master-5", "lb-1", "lb-2"]


def test_an_add_cut_short_leaves_the_rest_to_kubelab_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, phases_run
) -> None:
    lab = finished_lab(tmp_path, monkeypatch)

    def fails_in_packages(lab, plan, provider, phase, state, out, hosts=None) -> bool:
        if phase.name == "packages":
            return False
        state.mark_done(phase.name, 1.0)
        save_state(lab, state)
        return True

    monkeypatch.setattr(node_ops, "run_phase", fails_in_packages)
    assert not node_ops.add(lab, workers=1, out=io.StringIO())
    assert counts(lab) == (1, 2)
    assert list(load_state(lab).phases) == ["nodes", "prepare", "runtime"]
    assert phases_mod.select(set(load_state(lab).phases))[0].name == "packages"


@pytest.mark.parametrize(
    ("flags", "masters", "workers", "message"),
    [
        ({"masters": 3, "lb": "haproxy"}, 1, 0, "masters are added in pairs (--masters 2)"),
        ({}, 2, 0, "cannot add 2 masters: 3 masters need a load balancer"),
        ({}, 0, 0, "say how many nodes to add"),
        ({}, 0, 300, "cannot add 300 workers:"),
    ],
)
def test_an_add_that_up_would_refuse_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, phases_run, flags, masters, workers, message
) -> None:
    lab = finished_lab(tmp_path, monkeypatch, **flags)
    before = lab.spec_file.read_text()
    with pytest.raises(LabError, match=message.replace("(", r"\(").replace(")", r"\)")):
        node_ops.add(lab, masters=masters, workers=workers, out=io.StringIO())
    assert lab.spec_file.read_text() == before and phases_run == []
    assert set(load_state(lab).phases) == set(phases_mod.PHASE_NAMES)


def test_an_unfinished_lab_is_finished_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, phases_run) -> None:
    lab = finished_lab(tmp_path, monkeypatch)
    state = load_state(lab)
    state.forget(["cni", "verify"])
    save_state(lab, state)
    with pytest.raises(LabError, match=r"not finished \(cni has not run\): `kubelab up --name grow` first"):
        node_ops.add(lab, workers=1, out=io.StringIO())


def test_the_addons_phase_is_needed_only_by_a_lab_with_addons(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # `up --from packages --until cni` leaves addons (and verify) not done: a lab without add-ons is finished.
    lab = finished_lab(tmp_path, monkeypatch)
    state = load_state(lab)
    state.forget(["addons", "verify"])
    save_state(lab, state)
    assert node_ops.finished_lab(lab, "add nodes").spec.name == "grow"
    with_addons = finished_lab(tmp_path, monkeypatch, addons=["metrics-server"])
    state = load_state(with_addons)
    state.forget(["addons", "verify"])
    save_state(with_addons, state)
    with pytest.raises(LabError, match=r"not finished \(addons has not run\)"):
        node_ops.finished_lab(with_addons, "add nodes")


@pytest.mark.parametrize(
    ("names", "problem"),
    [
        (["worker-9"], "has no node worker-9; its nodes: lb-1, lb-2, master-1"),
        (["lb-2"], "load-balancer nodes are part of the lab's design"),
        (["master-1"], "master-1 holds the lab's cluster configuration"),
        (["master-5"], "leave 4 masters, an even number: etcd would need 3 of them"),
        (["master-3", "worker-1"], "leave 4 masters"),
    ],
)
def test_removals_that_are_refused_say_why(names: list[str], problem: str) -> None:
    plan = make_plan(build_spec({}, {"name": "shrink", "masters": 5, "workers": 3, "lb": "haproxy"}))
    found = node_ops.removal_problem(plan, names)
    assert found is not None and problem in found


@pytest.mark.parametrize("names", [["worker-1"], ["worker-1", "worker-3"], ["master-2", "master-4", "worker-2"]])
def test_any_master_but_the_first_and_any_worker_can_go(names: list[str]) -> None:
    plan = make_plan(build_spec({}, {"name": "shrink", "masters": 5, "workers": 3, "lb": "haproxy"}))
    assert node_ops.removal_problem(plan, names) is None


def test_removed_numbers_are_skipped_for_good_and_every_other_node_keeps_its_address() -> None:
    spec = build_spec({}, {"name": "holes", "masters": 3, "workers": 2, "node_subnet": "10.0.0.0/24"})
    before = {node.name: node.ip for node in make_plan(spec).nodes}
    shrunk = make_plan(spec.replace(masters=1, workers=1, removed_nodes=["master-2", "master-3", "worker-1"]))
    assert {node.name: node.ip for node in shrunk.nodes} == {
        name: before[name] for name in ("lb-1", "lb-2", "master-1", "worker-2")
    }
    grown = make_plan(shrunk.spec.replace(masters=3, workers=2))
    names = [node.name for node in grown.nodes if node.role != "lb"]
    assert names == ["master-1", "master-4", "master-5", "worker-2", "worker-3"]
    assert {node.name: node.ip for node in grown.nodes}["worker-3"] == "10.0.0.33"


def test_masters_that_would_run_into_the_workers_addresses_are_refused() -> None:
    removed = [f"master-{number}" for number in range(2, 10)]  # four remove-and-add rounds of two masters
    spec = build_spec({}, {"name": "holes", "masters": 3, "removed_nodes": removed, "node_subnet": "10.0.0.0/24"})
    with pytest.raises(SpecError, match="master-11 would take an address of the workers' range"):
        validate(spec, HostInfo(memory_mb=262144, arch="amd64"))


def test_a_drain_blocked_by_a_disruption_budget_names_the_pods() -> None:
    output = (
        'evicting pod default/web-7c9f-abcde\nerror when evicting pods/"web-7c9f-abcde" -n "default" (will retry '
        "after 5s): Cannot evict pod as it would violate the pod's disruption budget.\n"
        'There are pending pods in node "worker-2" when an error occurred: [error when evicting pods/"web-7c9f-abcde"'
        ' -n "default": global timeout reached: 3m0s]\nerror: unable to drain node "worker-2" due to error: ...'
    )
    message = node_ops.drain_error("worker-2", output, 180)
    assert "draining worker-2 did not finish within 180 s: pod(s) default/web-7c9f-abcde could not be" in message
    assert "`kubectl uncordon worker-2`" in message


def test_removing_from_a_hosts_lab_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lab = finished_lab(tmp_path, monkeypatch)
    data = json.loads(lab.spec_file.read_text())
    data["spec"]["provider"] = "hosts"
    lab.spec_file.write_text(json.dumps(data))
    with pytest.raises(LabError, match="change your inventory"):
        node_ops.remove(lab, ["worker-1"], out=io.StringIO())


@pytest.mark.parametrize(
    ("healthy", "refused"),
    [
        ({"10.0.0.21", "10.0.0.22", "10.0.0.23", "10.0.0.24", "10.0.0.25"}, None),
        ({"10.0.0.21", "10.0.0.22", "10.0.0.24", "10.0.0.25"}, "etcd is not healthy on master-3"),  # one that stays
        ({"10.0.0.21", "10.0.0.22", "10.0.0.23"}, None),  # the two that leave may be down already
    ],
)
def test_masters_are_removed_only_while_every_member_that_stays_is_healthy(
    monkeypatch: pytest.MonkeyPatch, healthy: set[str], refused: str | None
) -> None:
    plan = make_plan(build_spec({}, {"name": "shrink", "masters": 5, "lb": "haproxy", "node_subnet": "10.0.0.0/24"}))
    report = [{"endpoint": f"https://10.0.0.{21 + i}:2379", "health": f"10.0.0.{21 + i}" in healthy} for i in range(5)]
    answer = type("Done", (), {"returncode": 0, "stdout": json.dumps(report), "stderr": ""})
    monkeypatch.setattr(node_ops, "run_on", lambda connection, command, timeout=None: answer)
    first = Connection("10.0.0.21", 22, "root", "/dev/null")
    if refused is None:
        node_ops._check_quorum(plan, first, ["master-4", "master-5"])
    else:
        with pytest.raises(LabError, match=refused):
            node_ops._check_quorum(plan, first, ["master-4", "master-5"])


class EtcdStandIn:
    """Answers run_on like master-1 would: `member list` and `endpoint status` show the members that are left,
    `move-leader` and `member remove` change them; every command is recorded in order."""

    def __init__(self, members: dict[str, str], leader: str) -> None:
        self.members = dict(members)
        self.leader = leader
        self.commands: list[str] = []

    def __call__(self, connection: Connection, command: str, timeout: float = 120):
        self.commands.append(command)
        stdout = ""
        if command.endswith("member list"):
            stdout = "".join(
                f"{ident}, started, {name}, https://x:2380, https://x:2379, false\n"
                for ident, name in self.members.items()
            )
        elif "endpoint status" in command:
            stdout = json.dumps(
                [
                    {
                        "Endpoint": f"https://10.0.0.2{name[-1]}:2379",
                        "Status": {"header": {"member_id": int(ident, 16)}, "leader": int(self.leader, 16)},
                    }
                    for ident, name in self.members.items()
                ]
            )
        elif " move-leader " in command:
            self.leader = command.rsplit(" ", 1)[1]
        elif " member remove " in command:
            self.members.pop(command.rsplit(" ", 1)[1])
        return type("Done", (), {"returncode": 0, "stdout": stdout, "stderr": ""})


MEMBERS = {"8e9e05c52164694d": "master-1", "91bc3c398fb3c146": "master-2", "fd422379fda50e48": "master-3"}


def remove_master_2(monkeypatch: pytest.MonkeyPatch, etcd: EtcdStandIn) -> list[list[str]]:
    plan = make_plan(build_spec({}, {"name": "shrink", "masters": 3, "lb": "haproxy", "node_subnet": "10.0.0.0/24"}))
    monkeypatch.setattr(node_ops, "run_on", etcd)
    removed: list[list[str]] = []
    provider = type("Machines", (), {"remove": lambda self, names: removed.append(names)})()
    first, own = (Connection(f"10.0.0.{n}", 22, "root", "/dev/null") for n in (21, 22))
    master_2 = next(node for node in plan.masters if node.name == "master-2")
    node_ops._remove_one(plan, provider, master_2, first, own, 60, lambda step: None)
    return removed


def steps(commands: list[str]) -> list[str]:
    words = ("drain", "move-leader", "member remove", "kubeadm reset", "delete node")
    return [next(word for word in words if word in c) for c in commands if any(word in c for word in words)]


def test_a_leaving_leader_hands_etcd_to_master_1_before_it_leaves_and_before_its_kubeadm_reset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    etcd = EtcdStandIn(MEMBERS, leader="91bc3c398fb3c146")
    removed = remove_master_2(monkeypatch, etcd)

    assert etcd.leader == "8e9e05c52164694d" and "master-2" not in etcd.members.values()
    assert steps(etcd.commands) == ["drain", "move-leader", "member remove", "kubeadm reset", "delete node"]
    move = next(c for c in etcd.commands if "move-leader" in c)
    assert "--endpoints=https://10.0.0.21:2379,https://10.0.0.22:2379,https://10.0.0.23:2379 " in move
    assert "--skip-phases remove-etcd-member" in next(c for c in etcd.commands if "kubeadm reset" in c)
    assert removed == [["master-2"]]


def test_leadership_stays_where_it_is_when_master_1_leads_already(monkeypatch: pytest.MonkeyPatch) -> None:
    etcd = EtcdStandIn(MEMBERS, leader="8e9e05c52164694d")
    remove_master_2(monkeypatch, etcd)
    assert steps(etcd.commands) == ["drain", "member remove", "kubeadm reset", "delete node"]
