"""A lab's run state: finished phases with their durations (state.json, timings.json) and the lab lock.

Both files are written to a temporary file and renamed, so a killed `kubelab up` leaves either the old
or the new content, never a torn file. The lock is an flock: the kernel drops it when its holder dies.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provisioner.errors import KubelabError
from provisioner.lab import LabDir

STATE_VERSION = 1


class LabLockedError(KubelabError):
    """Another kubelab command is working on the same lab."""


def state_file(lab: LabDir) -> Path:
    return lab.root / "state.json"


def timings_file(lab: LabDir) -> Path:
    return lab.root / "timings.json"


def lock_file(lab: LabDir) -> Path:
    return lab.root / ".lock"


def logs_dir(lab: LabDir) -> Path:
    return lab.root / "logs"


def kubeconfig_file(lab: LabDir) -> Path:
    """The lab's admin kubeconfig, fetched from the first master by the control-plane phase."""
    return lab.root / "kubeconfig"


@dataclass
class LabState:
    """Finished phases (name -> seconds it took, finish time), in the order they finished; the version a
    `kubelab upgrade` is under way to, until it has finished."""

    provider: str | None = None
    phases: dict[str, dict[str, Any]] = field(default_factory=dict)
    upgrading: str | None = None

    def is_done(self, phase: str) -> bool:
        return phase in self.phases

    def mark_done(self, phase: str, seconds: float) -> None:
        self.phases.pop(phase, None)
        self.phases[phase] = {
            "seconds": round(seconds, 1),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }

    def forget(self, phases: list[str]) -> None:
        """Mark phases as not done (they run again)."""
        for phase in phases:
            self.phases.pop(phase, None)

    def durations(self) -> dict[str, float]:
        return {name: entry["seconds"] for name, entry in self.phases.items()}

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"version": STATE_VERSION, "provider": self.provider, "phases": self.phases}
        return data | ({"upgrading": self.upgrading} if self.upgrading else {})


def load_state(lab: LabDir) -> LabState:
    """The lab's state; an empty state when there is none yet."""
    try:
        data = json.loads(state_file(lab).read_text())
    except FileNotFoundError:
        return LabState()
    except (OSError, ValueError) as exc:
        raise ValueError(f"{state_file(lab)} is unreadable ({exc}): remove it to start the phases over") from None
    return LabState(
        provider=data.get("provider"), phases=dict(data.get("phases") or {}), upgrading=data.get("upgrading")
    )


def save_state(lab: LabDir, state: LabState) -> None:
    """Write state.json and timings.json atomically."""
    durations = state.durations()
    timings = {"phases": durations, "total_seconds": round(sum(durations.values()), 1)}
    _atomic_write(state_file(lab), json.dumps(state.to_dict(), indent=2) + "\n")
    _atomic_write(timings_file(lab), json.dumps(timings, indent=2) + "\n")


def _atomic_write(path: Path, content: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)


class LabLock:
    """Exclusive lock on a lab folder for the length of a `with` block; refuses instead of waiting."""

    def __init__(self, lab: LabDir, command: str) -> None:
        self.lab = lab
        self.command = command
        self._fd: int | None = None

    def __enter__(self) -> LabLock:
        path = lock_file(self.lab)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another kubelab command"
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise LabLockedError(
                    f"lab '{self.lab.root.name}' is busy: {holder} is working on it; "
                    "wait for it to finish (or stop it) and try again"
                ) from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"`kubelab {self.command}` (pid {os.getpid()})".encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
