"""A host-side apt cache shared by every lab: Debian's apt-cacher-ng, started and stopped by kubelab.

It lives in ``$KUBELAB_HOME/cache/apt`` and listens on every host address, so nodes reach it at .1 of their node
subnet; they use it through the ``apt_proxy`` role (``kubelab_apt_proxy``) and download directly while it is down.
Offline mode serves only what earlier labs cached, so labs need no internet after the first.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from provisioner.errors import KubelabError
from provisioner.lab import LabDir, kubelab_home

DEFAULT_PORT = 3142
MAX_PORT = 32767  # apt-cacher-ng 3.7 cannot bind higher ports ("Error resolving address for binding")
PROGRAM = "apt-cacher-ng"
SUPPORT_DIR = Path("/usr/lib/apt-cacher-ng")


class CacheError(KubelabError):
    """The cache cannot start or stop; the message says what to install or change."""


@dataclass(frozen=True)
class CacheDir:
    """Paths of the shared cache under $KUBELAB_HOME/cache/apt."""

    root: Path

    @classmethod
    def default(cls) -> CacheDir:
        return cls(kubelab_home() / "cache" / "apt")

    @property
    def conf(self) -> Path:
        return self.root / "conf"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def logs(self) -> Path:
        return self.root / "log"

    @property
    def pid_file(self) -> Path:
        return self.root / "apt-cacher-ng.pid"

    @property
    def port_file(self) -> Path:
        return self.root / "port"

    @property
    def config_file(self) -> Path:
        return self.conf / "acng.conf"

    @property
    def transfer_log(self) -> Path:
        return self.logs / "apt-cacher.log"


@dataclass(frozen=True)
class Transfers:
    """Bytes apt-cacher-ng fetched from the mirrors (``I`` log lines) and served to nodes (``O`` lines)."""

    fetched: int = 0
    served: int = 0
    requests: int = 0


@dataclass(frozen=True)
class CacheStatus:
    running: bool
    pid: int | None
    port: int | None
    size_bytes: int
    transfers: Transfers
    offline: bool = False


def _config(cache: CacheDir, port: int, offline: bool) -> str:
    """acng.conf: no remapping, so every mirror URL is cached under its own host name."""
    return "\n".join(
        [
            "# Written by kubelab (`kubelab cache start`); changes are overwritten.",
            f"CacheDir: {cache.data}",
            f"LogDir: {cache.logs}",
            f"SupportDir: {SUPPORT_DIR}",
            f"PidFile: {cache.pid_file}",
            f"SocketPath: {cache.root / 'socket'}",
            f"Port: {port}",
            "BindAddress: 0.0.0.0",
            "ExThreshold: 4",
            f"Offlinemode: {int(offline)}",
            "",
        ]
    )


def _pid_alive(cache: CacheDir) -> int | None:
    """The pid in the pid file if that process is our apt-cacher-ng (not a reused pid)."""
    try:
        pid = int(cache.pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    args = [arg.decode(errors="replace") for arg in cmdline]
    return pid if args and Path(args[0]).name == PROGRAM and str(cache.conf) in args else None


def is_offline(cache: CacheDir) -> bool:
    """Whether the cache's current config serves from the cache only."""
    try:
        return "Offlinemode: 1" in cache.config_file.read_text().splitlines()
    except OSError:
        return False


def serves_offline(cache: CacheDir | None = None) -> bool:
    """Whether the cache runs in offline mode: a lab's apt downloads then never leave the host."""
    cache = cache or CacheDir.default()
    return _pid_alive(cache) is not None and is_offline(cache)


def start(port: int = DEFAULT_PORT, cache: CacheDir | None = None, offline: bool = False) -> CacheStatus:
    """Start the cache and wait until it accepts requests. A cache running with the same port and mode is left
    alone, one running otherwise is restarted."""
    cache = cache or CacheDir.default()
    if _pid_alive(cache):
        if configured_port(cache) == port and is_offline(cache) == offline:
            return status(cache)
        stop(cache)
    if not 1 <= port <= MAX_PORT:
        raise CacheError(f"port {port} does not work with {PROGRAM}, which takes ports 1-{MAX_PORT}: use e.g. 3142")
    if _answers(port):
        raise CacheError(f"port {port} is taken by another program: use `kubelab cache start --port {port + 1}`")
    program = shutil.which(PROGRAM)
    if program is None:
        raise CacheError(
            f"{PROGRAM} is not installed: run `apt-get install {PROGRAM}` (or scripts/install-host-deps.sh)"
        )
    for path in (cache.conf, cache.data, cache.logs):
        path.mkdir(parents=True, exist_ok=True)
    cache.config_file.write_text(_config(cache, port, offline))
    cache.port_file.write_text(f"{port}\n")
    result = subprocess.run([program, "-c", str(cache.conf), "ForeGround=0"], capture_output=True, text=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if _pid_alive(cache) and _answers(port):
            return status(cache)
        time.sleep(0.1)
    errors = (cache.logs / "apt-cacher.err").read_text()[-500:] if (cache.logs / "apt-cacher.err").exists() else ""
    raise CacheError(
        f"{PROGRAM} did not start on port {port}: {(result.stderr or errors).strip() or 'no message'} "
        f"(its logs: {cache.logs})"
    )


def free_port(first: int, count: int = 100) -> int:
    """The first port in first..first+count-1 that nothing listens on and apt-cacher-ng can bind."""
    import socket

    for port in range(first, min(first + count, MAX_PORT + 1)):
        with socket.socket() as probe:
            try:
                probe.bind(("0.0.0.0", port))
            except OSError:
                continue
            return port
    raise CacheError(f"no free port in {first}-{first + count - 1}: stop what listens there or pick another range")


def _answers(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def stop(cache: CacheDir | None = None, timeout: float = 10) -> bool:
    """Stop the cache; False if it was not running. The cached packages stay for the next start."""
    cache = cache or CacheDir.default()
    pid = _pid_alive(cache)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        time.sleep(0.1)
    if Path(f"/proc/{pid}").exists():
        os.kill(pid, signal.SIGKILL)
    cache.pid_file.unlink(missing_ok=True)
    return True


def configured_port(cache: CacheDir) -> int | None:
    try:
        return int(cache.port_file.read_text().strip())
    except (OSError, ValueError):
        return None


def transfers(cache: CacheDir, client: str | None = None, since: float = 0) -> Transfers:
    """Totals from apt-cacher.log (``time|I/O|bytes|client|path``), optionally for one client and period."""
    fetched = served = requests = 0
    try:
        lines = cache.transfer_log.read_text(errors="replace").splitlines()
    except OSError:
        return Transfers()
    for line in lines:
        parts = line.split("|")
        if len(parts) < 5 or not parts[0].isdigit() or not parts[2].isdigit():
            continue
        if int(parts[0]) < since or (client and parts[3] != client):
            continue
        if parts[1] == "I":
            fetched += int(parts[2])
        elif parts[1] == "O":
            served += int(parts[2])
            requests += 1
    return Transfers(fetched=fetched, served=served, requests=requests)


def status(cache: CacheDir | None = None) -> CacheStatus:
    cache = cache or CacheDir.default()
    size = sum(f.stat().st_size for f in cache.data.rglob("*") if f.is_file()) if cache.data.is_dir() else 0
    pid = _pid_alive(cache)
    return CacheStatus(pid is not None, pid, configured_port(cache), size, transfers(cache), is_offline(cache))


def describe(state: CacheStatus, cache: CacheDir | None = None) -> str:
    cache = cache or CacheDir.default()
    mode = ", offline: serves only what it has cached" if state.offline else ""
    head = f"apt cache: running (pid {state.pid}, port {state.port}{mode})" if state.running else "apt cache: stopped"
    t = state.transfers
    return "\n".join(
        [
            head,
            f"  folder   {cache.root}",
            f"  cached   {state.size_bytes / 1e6:.1f} MB",
            f"  served   {t.served / 1e6:.1f} MB in {t.requests} requests",
            f"  fetched  {t.fetched / 1e6:.1f} MB from the mirrors",
        ]
    )


def proxy_url(provider: str, node_subnet: str, port: int) -> str | None:
    """Where a lab's nodes reach the cache: the host's address (.1) on the node subnet; None for own hosts."""
    if provider == "hosts":
        return None
    host = ipaddress.IPv4Network(node_subnet).network_address + 1
    return f"http://{host}:{port}"


def write_lab_vars(lab: LabDir, provider: str, node_subnet: str, cache: CacheDir | None = None) -> str | None:
    """inventory/group_vars/all/cache.yml: ``kubelab_apt_proxy`` when the cache runs, else null; returns the
    proxy URL written. Call it before the first phase of `kubelab up`."""
    cache = cache or CacheDir.default()
    port = configured_port(cache)
    url = proxy_url(provider, node_subnet, port) if _pid_alive(cache) and port else None
    path = lab.inventory_dir / "group_vars" / "all" / "cache.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    header = "# The host's apt cache (`kubelab cache start`); written at `kubelab up`, do not edit.\n"
    path.write_text(header + f"kubelab_apt_proxy: {json.dumps(url)}\n")
    return url
