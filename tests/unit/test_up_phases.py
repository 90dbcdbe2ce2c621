"""`kubelab up`'s phase engine with real ansible-playbook runs: resume, --until, --from, failure report, lock.

The machines are a stand-in provider (no VMs here); the playbooks are tiny real playbooks on localhost
that append their phase name to a file in the lab folder, so the test sees which phases really ran.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from provisioner import lifecycle
from provisioner import phases as phases_mod
from provisioner.lab import LabDir
from provisioner.providers.base import Connection, NodeStatus, Provider
from provisioner.spec import build_spec
from provisioner.state import LabLock, LabLockedError, LabState, load_state, save_state, timings_file

PLAYBOOK = """- name: Phase {phase}
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Record that {phase} ran
      ansible.builtin.shell: echo {phase} >> {{{{ kubelab_lab_dir }}}}/ran.txt
      changed_when: true
{extra}
"""
FAILING_TASK = """    - name: Break on purpose
      ansible.builtin.fail:
        msg: the {phase} phase is broken
"""


class StandInProvider(Provider):
    """Machines that are already there: records calls, reports one SSH connection per node."""

    name = "stand-in"
    calls: list[str]

    def check(self) -> None:
        self.calls.append("check")

    def up(self, progress) -> None:
        self.calls.append("up")
        for node in self.plan.nodes:
            progress(node.name, "running")

    def status(self) -> list[NodeStatus]:
        return [NodeStatus(node.name, "running", node.ip) for node in self.plan.nodes]

    def connections(self) -> dict[str, Connection]:
        return {node.name: Connection("127.0.0.1", 22, "root", "/dev/null") for node in self.plan.nodes}

    def halt(self) -> None:
        self.calls.append("halt")

    def destroy(self) -> bool:
        return True


@pytest.fixture
def playbooks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "playbooks"
    folder.mkdir()
    for phase in phases_mod.PHASES:
        if isinstance(phase, phases_mod.PlaybookPhase):
            (folder / phase.playbook).write_text(PLAYBOOK.format(phase=phase.name, extra=""))
    monkeypatch.setattr(phases_mod, "PLAYBOOKS_DIR", folder)
    return folder


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[LabDir, object]:
    monkeypatch.setenv("KUBELAB_HOME", str(tmp_path / "home"))
    flags = {"name": "phasetest", "provider": "libvirt", "masters": 1, "workers": 0}
    spec = build_spec({}, {**flags, "skip_network_check": True})  # the check has tests of its own (test_reachability)
    return LabDir.for_name("phasetest"), spec


def run_up(lab: LabDir, spec, **kwargs) -> tuple[int, str, StandInProvider]:
    from provisioner.plan import make_plan

    provider = StandInProvider(make_plan(spec), lab)
    provider.calls = []
    out = io.StringIO()
    code = lifecycle.up(lab, spec, out=out, provider=provider, **kwargs)
    return code, out.getvalue(), provider


def ran(lab: LabDir) -> list[str]:
    path = lab.root / "ran.txt"
    return path.read_text().split() if path.exists() else []


def test_until_then_resume_then_from(lab, playbooks: Path) -> None:
    labdir, spec = lab
    code, out, provider = run_up(labdir, spec, until="runtime")
    assert code == 0, out
    assert provider.calls == ["check", "up"]
    assert ran(labdir) == ["prepare", "runtime"]
    assert list(load_state(labdir).phases) == ["nodes", "prepare", "runtime"]
    assert "✓ runtime" in out and "1 host(s), 1 changed" in out
    assert (labdir.root / "logs" / "prepare.log").read_text().count("Record that prepare ran") == 1
    assert json.loads(labdir.connection_inventory.read_text().split("\n", 1)[1])["all"]["hosts"]["master-1"]

    (labdir.root / "ran.txt").unlink()
    code, out, provider = run_up(labdir, spec, until="loadbalancer")
    assert code == 0, out
    assert provider.calls == ["check"]  # nodes were done: not brought up again
    assert ran(labdir) == ["packages", "loadbalancer"]

    (labdir.root / "ran.txt").unlink()
    code, out, _ = run_up(labdir, spec, start="prepare", until="runtime")
    assert code == 0, out
    assert ran(labdir) == ["prepare", "runtime"]
    # Phases after a re-run are stale: the next plain `up` continues after runtime.
    assert list(load_state(labdir).phases) == ["nodes", "prepare", "runtime"]
    timings = json.loads(timings_file(labdir).read_text())
    assert set(timings["phases"]) == {"nodes", "prepare", "runtime"}


def test_failure_names_host_task_message_and_log_then_resume(lab, playbooks: Path) -> None:
    labdir, spec = lab
    (playbooks / "packages.yml").write_text(
        PLAYBOOK.format(phase="packages", extra=FAILING_TASK.format(phase="packages"))
    )
    code, out, _ = run_up(labdir, spec, until="control-plane")
    assert code == 1
    assert "✗ packages" in out and "FAILED" in out
    assert "localhost failed in task 'Break on purpose'" in out
    assert "the packages phase is broken" in out
    assert f"full log: {labdir.root / 'logs' / 'packages.log'}" in out
    assert list(load_state(labdir).phases) == ["nodes", "prepare", "runtime"]
    assert "Break on purpose" in (labdir.root / "logs" / "packages.log").read_text()

    (playbooks / "packages.yml").write_text(PLAYBOOK.format(phase="packages", extra=""))
    (labdir.root / "ran.txt").unlink()
    code, out, _ = run_up(labdir, spec, until="control-plane")
    assert code == 0, out
    assert ran(labdir) == ["packages", "loadbalancer", "control-plane"]


def test_playbook_that_cannot_start_shows_the_end_of_its_output(lab, playbooks: Path) -> None:
    labdir, spec = lab
    (playbooks / "prepare.yml").write_text("- hosts: localhost\n  tasks: [not a task\n")
    code, out, _ = run_up(labdir, spec, until="prepare")
    assert code == 1
    assert "ansible-playbook exited with" in out and "end of its output" in out
    assert "Syntax Error" in out or "ERROR!" in out or "[ERROR]" in out


def test_a_second_up_on_the_same_lab_is_refused(lab, playbooks: Path) -> None:
    labdir, spec = lab
    with LabLock(labdir, "up"), pytest.raises(LabLockedError, match="is busy"):
        run_up(labdir, spec, until="nodes")
    assert ran(labdir) == []


def test_complete_lab_says_nothing_to_do(lab, playbooks: Path) -> None:
    labdir, spec = lab
    state = LabState(provider="stand-in")
    for name in phases_mod.PHASE_NAMES:
        state.mark_done(name, 1.0)
    save_state(labdir, state)
    code, out, provider = run_up(labdir, spec)
    assert code == 0
    assert "every phase is done" in out
    assert provider.calls == ["check"]
    assert ran(labdir) == []
