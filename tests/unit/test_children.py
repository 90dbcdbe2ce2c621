"""A child started with die_with_parent ends when its parent is SIGKILLed (as `kubelab up` can be)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

PARENT = """
import subprocess, sys, time
from provisioner.children import die_with_parent
kwargs = {"preexec_fn": die_with_parent} if sys.argv[1] == "guarded" else {}
child = subprocess.Popen(["sleep", "120"], **kwargs)
print(child.pid, flush=True)
time.sleep(120)
"""


def alive(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    try:
        state = next(line for line in status.read_text().splitlines() if line.startswith("State:"))
    except (FileNotFoundError, ProcessLookupError):
        return False
    return "zombie" not in state


def child_after_parent_killed(mode: str, wait: float) -> tuple[int, bool]:
    parent = subprocess.Popen([sys.executable, "-c", PARENT, mode], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    pid = int(parent.stdout.readline())
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + wait
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return pid, alive(pid)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux's")
def test_guarded_child_ends_with_its_killed_parent_and_an_unguarded_one_does_not() -> None:
    _, survived = child_after_parent_killed("guarded", wait=10)
    assert not survived
    pid, survived = child_after_parent_killed("plain", wait=1)
    try:
        assert survived  # the contrast: without the guard, the child keeps running
    finally:
        os.kill(pid, signal.SIGKILL)
