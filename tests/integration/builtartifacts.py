"""The artifacts folder the cluster tests run on: `kubelab artifacts build` of Kubernetes 1.36 with Flannel,
made once per machine. The folder lives under ~/.cache/kubelab (kept between runs like the base image); the
build's own caches make a repeat build a matter of seconds, so each test session builds it again and so also
proves the build still works."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

FOLDER = Path(os.environ.get("KUBELAB_TEST_ARTIFACTS", Path.home() / ".cache" / "kubelab" / "test-artifacts"))
KUBERNETES_MINOR = "1.36"
CNI = "flannel"
_built: dict[str, object] = {}


def build(out: Path = FOLDER, timeout: float = 3600) -> subprocess.CompletedProcess[str]:
    """`kubelab artifacts build --k8s-version 1.36 --cni flannel --out OUT`, output captured (and echoed)."""
    argv = [sys.executable, "-m", "provisioner.cli", "artifacts", "build", "--k8s-version", KUBERNETES_MINOR]
    argv += ["--cni", CNI, "--out", str(out)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    print(done.stdout[-4000:], done.stderr[-4000:], flush=True)
    return done


def built_folder() -> Path:
    """The folder, built (or re-built from the caches) once per test session; fails the test if the build does."""
    if "done" not in _built:
        _built["done"] = build()
    done = _built["done"]
    assert isinstance(done, subprocess.CompletedProcess)
    if done.returncode != 0:
        pytest.fail(f"kubelab artifacts build failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return FOLDER


def kubernetes_version(folder: Path) -> str:
    """The exact version the folder holds (1.36.3)."""
    import json

    return str(json.loads((folder / "artifacts.json").read_text())["kubernetes_version"])
