"""The artifacts folders the cluster tests run on: `kubelab artifacts build` with Flannel, of Kubernetes 1.36
(every cluster) and of 1.35 (the HA lab starts there and is upgraded to 1.36), each made once per machine.
The folders live under ~/.cache/kubelab (kept between runs like the base image); the build's own caches make
a repeat build a matter of seconds, so each test run builds them again and so also proves the build
still works. The test command runs two pytest-xdist workers: the first worker to need a folder builds it
under a lock, the other takes that build's result, so no folder is replaced under a lab that uses it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from provisioner.providers.local_state import file_lock

CACHE = Path.home() / ".cache" / "kubelab"
FOLDER = Path(os.environ.get("KUBELAB_TEST_ARTIFACTS", CACHE / "test-artifacts"))
KUBERNETES_MINOR = "1.36"
UPGRADE_FROM_MINOR = "1.35"  # one minor below: what `kubelab upgrade` starts from
FOLDERS = {KUBERNETES_MINOR: FOLDER, UPGRADE_FROM_MINOR: CACHE / f"test-artifacts-{UPGRADE_FROM_MINOR}"}
CNI = "flannel"
BUILD_LOCK = CACHE / "test-artifacts.lock"  # held by whichever test process builds a folder
BUILDS = CACHE / "test-artifacts-builds.json"  # each minor's last build in a test run: run id and outcome
# One id for every worker of an xdist run (pytest-xdist sets it), else one for this pytest process.
RUN_ID = os.environ.get("PYTEST_XDIST_TESTRUNUID") or f"pid-{os.getpid()}-{uuid.uuid4().hex[:8]}"
_built: dict[str, subprocess.CompletedProcess[str]] = {}


def build(out: Path = FOLDER, minor: str = KUBERNETES_MINOR, timeout: float = 3600) -> subprocess.CompletedProcess[str]:
    """`kubelab artifacts build --k8s-version MINOR --cni flannel --out OUT`, output captured (and echoed)."""
    argv = [sys.executable, "-m", "provisioner.cli", "artifacts", "build", "--k8s-version", minor]
    argv += ["--cni", CNI, "--out", str(out)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    print(done.stdout[-4000:], done.stderr[-4000:], flush=True)
    return done


def build_lock() -> AbstractContextManager[None]:
    """Only one artifacts build at a time among the test processes (they share the folders and the caches)."""
    return file_lock(BUILD_LOCK)


def _built_in_this_run(minor: str) -> subprocess.CompletedProcess[str]:
    """The build of `minor` this test run made (by any of its workers), or a build made now and recorded."""
    with build_lock():
        try:
            builds = json.loads(BUILDS.read_text())
        except (OSError, ValueError):
            builds = {}
        seen = builds.get(minor, {})
        if seen.get("run") == RUN_ID:
            return subprocess.CompletedProcess(seen["args"], seen["returncode"], seen["stdout"], seen["stderr"])
        done = build(FOLDERS[minor], minor)
        builds[minor] = {"run": RUN_ID, "args": done.args, "returncode": done.returncode}
        builds[minor] |= {"stdout": done.stdout[-8000:], "stderr": done.stderr[-8000:]}
        BUILDS.write_text(json.dumps(builds))
        return done


def built_folder(minor: str = KUBERNETES_MINOR) -> Path:
    """The folder of `minor`, built (or re-built from the caches) once per test run; fails the test if the
    build does."""
    if minor not in _built:
        _built[minor] = _built_in_this_run(minor)
    done = _built[minor]
    if done.returncode != 0:
        pytest.fail(f"kubelab artifacts build {minor} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return FOLDERS[minor]


def kubernetes_version(folder: Path) -> str:
    """The exact version the folder holds (1.36.3)."""
    return str(json.loads((folder / "artifacts.json").read_text())["kubernetes_version"])
