"""Host-side plumbing for `local` nodes: commands, host sysctls (saved and restored), cgroups, processes."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from provisioner.providers.base import ProviderError

# Host-wide settings the lab changes: IP forwarding for the NAT, and what kubelet (real root in a node) sets.
# Host-wide minimums while a lab lives: forwarding for the NAT, and inotify instances/watches, which are counted
# per host user (every node's systemd, containerd and kubelet are root): the usual 128 instances run out at about
# 15 nodes, and then systemd's .path units fail and nodes boot 'degraded'.
HOST_MINIMUMS = {
    "net.ipv4.ip_forward": 1,
    "fs.inotify.max_user_instances": 8192,
    "fs.inotify.max_user_watches": 524288,
}
HOST_SYSCTLS = (*HOST_MINIMUMS, "kernel.panic", "kernel.panic_on_oops", "vm.overcommit_memory")
# Never lowered again: a NAT started on the host while a lab lived (a libvirt network, kubelab's own Vagrant labs,
# Docker) needs forwarding too and cannot be told apart from the lab's; turning it off cut such a VM's DNS.
KEPT_RAISED = frozenset({"net.ipv4.ip_forward"})
SYSCTL_REGISTRY = Path("/run/kubelab/host-sysctls.json")
CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_SEARCH_DEPTH = 4  # e.g. memory/process_api/<session>/kubelab-LAB-NODE


def run(argv: list[str], what: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a host command; on failure raise ProviderError with its stderr."""
    try:
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise ProviderError(f"{argv[0]} is not installed (see `kubelab up --provider local` requirements)") from None
    if check and result.returncode != 0:
        raise ProviderError(f"{what or ' '.join(argv)} failed: {(result.stderr or result.stdout).strip()}")
    return result


# --- host sysctls: saved by the first live lab, restored when the last one is destroyed -----------------


def _sysctl_file(key: str) -> Path:
    return Path("/proc/sys") / key.replace(".", "/")


@contextmanager
def _registry() -> Iterator[dict[str, object]]:
    SYSCTL_REGISTRY.parent.mkdir(parents=True, exist_ok=True)
    with open(SYSCTL_REGISTRY.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data: dict[str, object] = {"saved": {}, "holders": []}
        if SYSCTL_REGISTRY.is_file():
            data = json.loads(SYSCTL_REGISTRY.read_text() or "{}") or data
        yield data
        if data["holders"]:
            SYSCTL_REGISTRY.write_text(json.dumps(data, indent=2) + "\n")
        else:
            SYSCTL_REGISTRY.unlink(missing_ok=True)


def hold_host_sysctls(holder: str) -> None:
    """Register a lab as using the host; the first holder saves the current values. Raises the settings below
    their HOST_MINIMUMS (forwarding on, inotify limits)."""
    with _registry() as data:
        holders = [h for h in data["holders"] if Path(h).exists()]  # type: ignore[union-attr]
        if not holders and not data["holders"]:
            data["saved"] = {}
        saved = data["saved"]
        for key in HOST_SYSCTLS:  # also keys added since the first holder saved
            saved.setdefault(key, _sysctl_file(key).read_text().strip())  # type: ignore[union-attr]
        if holder not in holders:
            holders.append(holder)
        data["holders"] = holders
        for key, minimum in HOST_MINIMUMS.items():
            if int(_sysctl_file(key).read_text().split()[0]) < minimum:
                _sysctl_file(key).write_text(f"{minimum}\n")


def release_host_sysctls(holder: str) -> bool:
    """Unregister a lab; when no live lab is left, restore the saved values (forwarding stays on: KEPT_RAISED).
    True if they were restored."""
    with _registry() as data:
        holders = [h for h in data["holders"] if h != holder and Path(h).exists()]  # type: ignore[union-attr]
        data["holders"] = holders
        if holders or not data["saved"]:
            return False
        for key, value in data["saved"].items():  # type: ignore[union-attr]
            if key not in KEPT_RAISED:
                _sysctl_file(key).write_text(f"{value}\n")
        return True


# --- cgroups ---------------------------------------------------------------------------------------------


def cgroup_mounts() -> list[tuple[Path, str, str]]:
    """(host mount point, fs type, super options) of every cgroup hierarchy mounted under /sys/fs/cgroup."""
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, right = line.split(" - ", 1)
        point = Path(left.split()[4])
        fstype, _source, options = right.split()[:3]
        if fstype in ("cgroup", "cgroup2") and point.parent == CGROUP_ROOT:
            mounts.append((point, fstype, options))
    return mounts


def _own_cgroups() -> dict[str, str]:
    """Hierarchy key (controllers or name=...; '' for cgroup2) -> this process's cgroup path."""
    own = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _id, controllers, path = line.split(":", 2)
        own[controllers] = path
    return own


def node_cgroup_dirs(leaf: str) -> list[Path]:
    """For every mounted hierarchy, the directory of a child cgroup `leaf` below this process's cgroup."""
    own = _own_cgroups()
    dirs = []
    for point, fstype, options in cgroup_mounts():
        opts = options.split(",")
        if fstype == "cgroup2":
            key = ""
        else:
            key = next((k for k in own if k and all(part in opts for part in k.split(","))), None)
        path = own.get(key) if key is not None else None
        if path is None:  # e.g. a hierarchy this process is not attached to
            continue
        dirs.append(point / path.lstrip("/") / leaf)
    return dirs


def cgroup_pids(directory: Path) -> list[int]:
    """Every process in a cgroup and its descendants."""
    pids: list[int] = []
    if not directory.is_dir():
        return pids
    for current, _dirs, files in os.walk(directory):
        if "cgroup.procs" in files:
            try:
                text = (Path(current) / "cgroup.procs").read_text()
            except OSError:
                continue
            pids.extend(int(p) for p in text.split())
    return pids


def find_cgroup_dirs(pattern: re.Pattern[str], depth: int = CGROUP_SEARCH_DEPTH) -> list[Path]:
    """Cgroup directories named like `pattern`, `depth` levels down every hierarchy (a node started by another
    process is below its cgroup); it descends into no match or other node cgroup and skips ones that vanish."""
    found: list[Path] = []
    level = [point for point, _fstype, _options in cgroup_mounts()]
    for _depth in range(depth):
        below: list[Path] = []
        for directory in level:
            for entry in _subdirs(directory):
                if pattern.fullmatch(entry.name):
                    found.append(entry)
                elif not entry.name.startswith("kubelab-"):
                    below.append(entry)
        level = below
    return found


def _subdirs(directory: Path) -> list[Path]:
    """Subdirectories of a cgroup directory; empty if it is gone (cgroups come and go at any time)."""
    result = []
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        result.append(Path(entry.path))
                except OSError:
                    continue
    except OSError:
        pass
    return result


def remove_cgroup(directory: Path, timeout: float = 5.0) -> bool:
    """Remove a cgroup tree whose processes are gone, deepest first, retrying a busy directory until `timeout`
    (one that vanished is fine). True when the tree is gone."""
    for child in _subdirs(directory):
        remove_cgroup(child, timeout)
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.rmdir(directory)
            return True
        except FileNotFoundError:
            return True
        except OSError as error:
            if error.errno != errno.EBUSY or time.monotonic() > deadline:
                return False
            for child in _subdirs(directory):  # a child created meanwhile
                remove_cgroup(child, 0.0)
            time.sleep(0.05)


# --- processes -------------------------------------------------------------------------------------------


def pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def kill_pids(pids: list[int], sig: int = signal.SIGKILL) -> None:
    for pid in pids:
        with suppress(ProcessLookupError):
            os.kill(pid, sig)


def process_name(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None


def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    """Poll `condition` until it holds (True) or `timeout` seconds passed (False)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def wait_gone(pids: list[int], timeout: float, reaped: bool = False) -> bool:
    """Wait until the processes died (`reaped`: until their zombies are gone too)."""
    return wait_until(lambda: not any(Path(f"/proc/{p}").exists() if reaped else pid_alive(p) for p in pids), timeout)
