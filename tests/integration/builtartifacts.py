"""The artifacts folders the cluster tests run on: `kubelab artifacts build` with Flannel, of Kubernetes 1.36
(every cluster) and of 1.35 (the HA lab starts there and is upgraded to 1.36), each made once per machine.
The folders live under ~/.cache/kubelab (kept between runs like the base image); the build's own caches make
a repeat build a matter of seconds, so each test session builds them again and so also proves the build
still works."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CACHE = Path.home() / ".cache" / "kubelab"
FOLDER = Path(os.environ.get("KUBELAB_TEST_ARTIFACTS", CACHE / "test-artifacts"))
KUBERNETES_MINOR = "1.36"
UPGRADE_FROM_MINOR = "1.35"  # one minor below: what `kubelab upgrade` starts from
FOLDERS = {KUBERNETES_MINOR: FOLDER, UPGRADE_FROM_MINOR: CACHE / f"test-artifacts-{UPGRADE_FROM_MINOR}"}
CNI = "flannel"
_built: dict[str, subprocess.CompletedProcess[str]] = {}


def build(out: Path = FOLDER, minor: str = KUBERNETES_MINOR, timeout: float = 3600) -> subprocess.CompletedProcess[str]:
    """`kubelab artifacts build --k8s-version MINOR --cni flannel --out OUT`, output captured (and echoed)."""
    argv = [sys.executable, "-m", "provisioner.cli", "artifacts", "build", "--k8s-version", minor]
    argv += ["--cni", CNI, "--out", str(out)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    print(done.stdout[-4000:], done.stderr[-4000:], flush=True)
    return done


def built_folder(minor: str = KUBERNETES_MINOR) -> Path:
    """The folder of `minor`, built (or re-built from the caches) once per test session; fails the test if the
    build does."""
    if minor not in _built:
        _built[minor] = build(FOLDERS[minor], minor)
    done = _built[minor]
    if done.returncode != 0:
        pytest.fail(f"kubelab artifacts build {minor} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return FOLDERS[minor]


def kubernetes_version(folder: Path) -> str:
    """The exact version the folder holds (1.36.3)."""
    return str(json.loads((folder / "artifacts.json").read_text())["kubernetes_version"])
