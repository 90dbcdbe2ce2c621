"""`kubelab upgrade` without machines: which target a --to and an artifacts folder resolve to, and which
upgrades kubeadm's skew policy or kubelab refuse before anything changes. The real upgrade of a 3-master lab
is in tests/integration/test_kubeadm_ha.py."""

from __future__ import annotations

import io
import json
import re
import subprocess
from pathlib import Path

import pytest

from provisioner import lifecycle, node_ops, versions
from provisioner import phases as phases_mod
from provisioner.errors import LabError
from provisioner.lab import LabDir
from provisioner.plan import make_plan
from provisioner.render import write_lab
from provisioner.spec import build_spec
from provisioner.state import load_state, save_state
from provisioner.upgrade import ClusterVersions, _Steps, resolve_target, upgrade_problem


def lab_on(control_plane: str, **kubelets: str) -> ClusterVersions:
    nodes = {"master-1": control_plane, "worker-1": control_plane} | {
        k.replace("_", "-"): v for k, v in kubelets.items()
    }
    return ClusterVersions(control_plane, nodes)


@pytest.mark.parametrize(
    ("to", "folder", "target"),
    [
        ("1.36", "1.36.3", "1.36.3"),  # a minor takes the folder's patch
        ("1.36.3", "v1.36.3", "1.36.3"),
        ("v1.36.4", None, "1.36.4"),  # pkgs.k8s.io: a patch is pinned as given
        ("1.36", None, versions.LATEST_PATCH["1.36"]),  # and a minor is its newest known patch
    ],
)
def test_the_target_is_one_exact_version(to: str, folder: str | None, target: str) -> None:
    assert resolve_target(to, folder) == target


@pytest.mark.parametrize(
    ("to", "folder", "problem"),
    [
        ("1.36", "1.35.4", "the artifacts folder holds Kubernetes 1.35.4, not 1.36"),
        ("1.36.5", "1.36.3", "holds Kubernetes 1.36.3, not 1.36.5"),
        ("1.99", None, "kubelab knows no patch of 1.99; give one"),
        ("latest", None, "is not a Kubernetes version"),
    ],
)
def test_a_target_that_cannot_be_resolved_is_refused_with_what_to_do(to: str, folder: str | None, problem: str) -> None:
    with pytest.raises(LabError, match=problem):
        resolve_target(to, folder)


@pytest.mark.parametrize(
    ("current", "target", "problem"),
    [
        (lab_on("v1.35.4"), "1.36.3", None),  # the next minor
        (lab_on("v1.36.1"), "1.36.3", None),  # a newer patch
        (lab_on("v1.36.3", worker_1="v1.35.4"), "1.36.3", None),  # an upgrade cut short goes on
        (lab_on("v1.35.4"), "1.37.1", r"skips a minor.*`kubelab upgrade --to 1\.36` first"),
        (lab_on("v1.36.3"), "1.35.4", r"downgrade \(the lab runs v1\.36\.3\)"),
        (lab_on("v1.36.3"), "1.36.1", "downgrade"),
        (lab_on("v1.35.4", worker_2="v1.36.3"), "1.35.9", "newer kubelets on worker-2"),
        (lab_on("v1.37.1"), "1.38.0", "1.38 is not one kubelab supports.*--allow-unsupported-version"),
    ],
)
def test_kubeadm_skew_policy_and_kubelab_support(current: ClusterVersions, target: str, problem: str | None) -> None:
    found = upgrade_problem(current, target)
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert re.search(problem, found), found


def test_an_unsupported_minor_goes_ahead_when_the_user_says_so() -> None:
    assert upgrade_problem(lab_on("v1.37.1"), "1.38.0", allow_unsupported=True) is None


def test_a_node_is_at_the_target_when_its_kubelet_reports_it() -> None:
    current = lab_on("v1.36.3", worker_1="v1.35.4")
    assert current.at("1.36.3", "master-1") and not current.at("1.36.3", "worker-1")


def test_a_lab_half_way_through_an_upgrade_is_finished_by_the_upgrade_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBELAB_HOME", str(tmp_path))
    plan = make_plan(build_spec({}, {"name": "mid", "masters": 1, "workers": 1, "skip_network_check": True}))
    lab = LabDir.for_name("mid")
    write_lab(plan, lab)
    state = load_state(lab)
    for phase in phases_mod.PHASE_NAMES:
        state.mark_done(phase, 1.0)
    state.upgrading = "1.36.3"
    save_state(lab, state)

    assert load_state(lab).upgrading == "1.36.3"
    for refused in (
        lambda: lifecycle.run_phases(lab, plan, None, "packages", None, io.StringIO()),  # type: ignore[arg-type]
        lambda: node_ops.add(lab, workers=1, out=io.StringIO()),
    ):
        with pytest.raises(
            LabError, match=r"being upgraded to v1\.36\.3: finish that first with `kubelab upgrade --to 1\.36\.3"
        ):
            refused()
    assert node_ops.finished_lab(lab, "upgrade it", upgrade=True).spec.name == "mid"


@pytest.mark.parametrize("folder", [None, Path("/srv/kubelab-artifacts-1.37")])
def test_the_steps_run_offline_exactly_when_an_artifacts_folder_is_given(tmp_path: Path, folder: Path | None) -> None:
    """The stage step runs before the lab's group_vars name the target's folder: the extra vars say it."""

    variables = json.loads(_Steps(LabDir(tmp_path), "1.37.1", folder, io.StringIO()).variables)
    assert variables == {
        "kubelab_kubernetes_version": "1.37.1",
        "kubelab_artifacts_dir": str(folder or ""),
        "kubelab_offline": folder is not None,
    }


def test_uncordon_is_tried_again_while_the_api_servers_restart(monkeypatch: pytest.MonkeyPatch) -> None:
    from provisioner import upgrade

    forbidden = 'Error from server (Forbidden): nodes "master-1" is forbidden: User "kubernetes-admin" cannot get'
    answers = iter([(1, forbidden), (1, "connection refused"), (0, "")])
    calls: list[str] = []

    def run_on(_connection: object, command: str, timeout: int) -> subprocess.CompletedProcess[str]:
        calls.append(command)
        code, stderr = next(answers)
        return subprocess.CompletedProcess(command, code, "", stderr)

    monkeypatch.setattr(upgrade, "run_on", run_on)
    monkeypatch.setattr(upgrade.time, "sleep", lambda _seconds: None)
    upgrade._uncordon(object(), "kubectl", "master-1")  # type: ignore[arg-type]
    assert calls == ["kubectl uncordon master-1"] * 3

    answers = iter([(1, forbidden)] * 2)
    monkeypatch.setattr(upgrade, "UNCORDON_TIMEOUT", -1)
    with pytest.raises(LabError, match=r"^`kubectl uncordon master-1` failed for -1 s: Error from server"):
        upgrade._uncordon(object(), "kubectl", "master-1")  # type: ignore[arg-type]
