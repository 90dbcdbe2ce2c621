"""Phase order and which phases a run executes: resume, --until, --from."""

from __future__ import annotations

import pytest

from provisioner.phases import PHASE_NAMES, PHASES, PhaseSelectionError, PlaybookPhase, later_phases, select


def names(phases) -> list[str]:
    return [phase.name for phase in phases]


def test_phases_are_in_the_documented_order() -> None:
    assert PHASE_NAMES == (
        "nodes",
        "prepare",
        "runtime",
        "packages",
        "loadbalancer",
        "control-plane",
        "workers",
        "cni",
        "addons",
        "verify",
    )


def test_every_ansible_phase_names_its_own_playbook() -> None:
    playbooks = {phase.name: phase.playbook for phase in PHASES if isinstance(phase, PlaybookPhase)}
    assert set(playbooks) == set(PHASE_NAMES) - {"nodes", "verify"}
    assert all(playbook == f"{name}.yml" for name, playbook in playbooks.items())


def test_a_new_lab_runs_every_phase() -> None:
    assert names(select(set())) == list(PHASE_NAMES)


def test_resume_starts_at_the_first_unfinished_phase() -> None:
    assert names(select({"nodes", "prepare"})) == list(PHASE_NAMES[2:])


def test_resume_reruns_finished_phases_after_a_gap() -> None:
    # runtime is recorded but prepare is not: prepare runs, and everything after it, runtime included.
    assert names(select({"nodes", "runtime"})) == list(PHASE_NAMES[1:])


def test_a_complete_lab_runs_nothing() -> None:
    assert select(set(PHASE_NAMES)) == []


def test_until_stops_after_the_phase() -> None:
    assert names(select(set(), until="runtime")) == ["nodes", "prepare", "runtime"]
    assert names(select({"nodes"}, until="runtime")) == ["prepare", "runtime"]


def test_until_before_the_resume_point_runs_nothing() -> None:
    assert select({"nodes", "prepare", "runtime"}, until="prepare") == []


def test_from_reruns_finished_phases() -> None:
    assert names(select(set(PHASE_NAMES), start="cni")) == ["cni", "addons", "verify"]
    assert names(select(set(PHASE_NAMES), start="prepare", until="runtime")) == ["prepare", "runtime"]


def test_from_after_until_is_an_error() -> None:
    with pytest.raises(PhaseSelectionError, match="--from cni comes after --until prepare"):
        select(set(), start="cni", until="prepare")


def test_unknown_phase_names_the_known_ones() -> None:
    with pytest.raises(PhaseSelectionError, match="unknown phase; phases are nodes, prepare"):
        select(set(), until="network")


def test_later_phases_are_made_stale_by_a_rerun() -> None:
    assert later_phases("cni") == ["cni", "addons", "verify"]
