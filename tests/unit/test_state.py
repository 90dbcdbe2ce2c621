"""The state file (atomic, durations, timings.json) and the lab lock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from provisioner.lab import LabDir
from provisioner.state import (
    LabLock,
    LabLockedError,
    LabState,
    load_state,
    save_state,
    state_file,
    timings_file,
)


def test_missing_state_is_empty(tmp_path: Path) -> None:
    state = load_state(LabDir(tmp_path))
    assert state.phases == {} and state.provider is None


def test_finished_phases_and_durations_round_trip(tmp_path: Path) -> None:
    lab = LabDir(tmp_path)
    state = LabState(provider="libvirt")
    state.mark_done("nodes", 12.34)
    state.mark_done("prepare", 3.0)
    save_state(lab, state)
    loaded = load_state(lab)
    assert loaded.provider == "libvirt"
    assert list(loaded.phases) == ["nodes", "prepare"]
    assert loaded.durations() == {"nodes": 12.3, "prepare": 3.0}
    timings = json.loads(timings_file(lab).read_text())
    assert timings == {"phases": {"nodes": 12.3, "prepare": 3.0}, "total_seconds": 15.3}


def test_forget_makes_phases_run_again(tmp_path: Path) -> None:
    state = LabState()
    for phase in ("nodes", "prepare", "runtime"):
        state.mark_done(phase, 1)
    state.forget(["prepare", "runtime", "packages"])
    assert list(state.phases) == ["nodes"]


def test_corrupt_state_says_how_to_recover(tmp_path: Path) -> None:
    lab = LabDir(tmp_path)
    state_file(lab).write_text("{not json")
    with pytest.raises(ValueError, match="remove it to start the phases over"):
        load_state(lab)


WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from provisioner.lab import LabDir
    from provisioner.state import LabState, save_state
    lab = LabDir(Path(sys.argv[1]))
    state = LabState(provider="local")
    i = 0
    print("ready", flush=True)
    while True:
        i += 1
        state.phases = {f"phase{n}": {"seconds": float(n), "finished": "x" * 500} for n in range(i % 40)}
        save_state(lab, state)
    """
)


def test_state_survives_sigkill_during_writes(tmp_path: Path) -> None:
    """A writer killed at a random moment leaves a readable state file, never a torn one."""
    lab = LabDir(tmp_path)
    for delay in (0.05, 0.13, 0.27):
        process = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        time.sleep(delay)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        state = load_state(lab)  # raises if the file is torn
        assert state.provider == "local"
        assert all(entry["seconds"] == float(name.removeprefix("phase")) for name, entry in state.phases.items())
        json.loads(timings_file(lab).read_text())


def test_a_second_holder_is_refused_and_told_who_holds_it(tmp_path: Path) -> None:
    lab = LabDir(tmp_path / "lab")
    busy = r"lab 'lab' is busy: `kubelab up` \(pid \d+\)"
    with LabLock(lab, "up"), pytest.raises(LabLockedError, match=busy), LabLock(lab, "up"):
        pass
    with LabLock(lab, "destroy"):  # released after the block
        pass


HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from provisioner.lab import LabDir
    from provisioner.state import LabLock
    with LabLock(LabDir(Path(sys.argv[1])), "up"):
        print("locked", flush=True)
        time.sleep(60)
    """
)


def test_lock_of_a_killed_process_is_released(tmp_path: Path) -> None:
    lab = LabDir(tmp_path)
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "locked"
        with pytest.raises(LabLockedError), LabLock(lab, "up"):
            pass
    finally:
        process.kill()
        process.wait()
    with LabLock(lab, "up"):
        pass
