"""`kubelab reset` bookkeeping without machines: after the reset playbook the phases it undid run again at
the next `up` (from control-plane, the machines and packages kept); a failed playbook forgets nothing."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from test_node_ops import RunningNodes, finished_lab

from provisioner import lifecycle, reset
from provisioner import phases as phases_mod
from provisioner.errors import LabError
from provisioner.state import load_state


@pytest.mark.parametrize("playbook_ok", [True, False])
def test_reset_forgets_the_phases_it_undid_only_when_it_worked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, playbook_ok: bool
) -> None:
    lab = finished_lab(tmp_path, monkeypatch)
    monkeypatch.setattr(lifecycle, "provider_for", lambda plan, lab: RunningNodes(plan, lab))
    ran: list[str] = []

    def playbook(lab, plan, provider, out, again) -> bool:
        ran.append(again)
        return playbook_ok

    monkeypatch.setattr(reset, "run_reset_playbook", playbook)
    out = io.StringIO()
    assert reset.reset(lab, out=out) is playbook_ok
    assert ran == ["kubelab reset --name grow"]
    done = set(load_state(lab).phases)
    if playbook_ok:
        assert done == {"nodes", "prepare", "runtime", "packages", "loadbalancer"}
        assert phases_mod.select(done)[0].name == "control-plane"
        assert "removed from 2 node(s)" in out.getvalue()
    else:
        assert done == set(phases_mod.PHASE_NAMES)


def test_a_lab_without_machines_has_nothing_to_reset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lab = finished_lab(tmp_path, monkeypatch)
    (lab.root / "state.json").unlink()
    with pytest.raises(LabError, match="has no machines yet: nothing to reset"):
        reset.reset(lab, out=io.StringIO())
