"""verify runs the agnhost image of the lab's own artifacts folder, read from the spec in its lab.json: a lab
of another Kubernetes version than the checks' default holds another agnhost tag, and nothing else is there
to pull."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from provisioner import artifacts, verify
from provisioner.checks.manifests import AGNHOST_ENV, AGNHOST_IMAGE
from provisioner.lab import LabDir
from provisioner.plan import make_plan
from provisioner.render import write_lab
from provisioner.spec import build_spec


def test_the_checks_run_the_agnhost_image_of_the_labs_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "artifacts-1.35"
    folder.mkdir()
    image = "registry.k8s.io/e2e-test-images/agnhost:2.59"
    manifest = {"format": artifacts.MANIFEST_FORMAT, "artifacts": [{"kind": "image", "name": image}]}
    (folder / "artifacts.json").write_text(json.dumps(manifest))
    monkeypatch.setenv("KUBELAB_HOME", str(tmp_path / "home"))
    spec = build_spec({}, {"name": "old", "masters": 1, "skip_network_check": True})
    lab = LabDir.for_name("old")
    write_lab(make_plan(spec.replace(artifacts=str(folder))), lab)

    assert verify.lab_artifacts_dir(lab) == str(folder)
    assert verify.checks_environment(verify.lab_artifacts_dir(lab))[AGNHOST_ENV] == image != AGNHOST_IMAGE


def test_a_lab_without_a_folder_runs_the_published_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBELAB_HOME", str(tmp_path / "home"))
    monkeypatch.delenv(AGNHOST_ENV, raising=False)
    lab = LabDir.for_name("online")
    write_lab(make_plan(build_spec({}, {"name": "online", "masters": 1, "skip_network_check": True})), lab)
    assert verify.lab_artifacts_dir(lab) is None
    assert AGNHOST_ENV not in verify.checks_environment(None)
