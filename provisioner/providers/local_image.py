"""Base root file systems for `local` nodes: built once per Debian suite with debootstrap, cached, shared."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from provisioner.lab import cache_home
from provisioner.providers.base import ProviderError
from provisioner.providers.local_state import file_lock

MIRROR = "http://deb.debian.org/debian"
PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "python3",
    "iproute2",
    "ca-certificates",
    "sudo",
    "procps",
)
# Units that cannot work (or must not run) inside a namespace node: kernel tunables and modules belong to
# the host, there is no udev in a container, the host keeps the clock, and consoles and ttys are the host's.
MASKED_UNITS = (
    "systemd-sysctl.service",
    "systemd-modules-load.service",
    "systemd-udevd.service",
    "systemd-udevd-control.socket",
    "systemd-udevd-kernel.socket",
    "systemd-udev-trigger.service",
    "systemd-timesyncd.service",
    "console-getty.service",
    "getty@.service",
    "serial-getty@.service",
)
SSHD_CONFIG = """\
# kubelab local node: key-only root login with the host key kubelab generated for this node.
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
"""
# Run inside the fresh root (chroot) once debootstrap is done. Part of the recipe hash.
CUSTOMIZE = f"""\
set -eu
for unit in {" ".join(MASKED_UNITS)}; do ln -sf /dev/null "/etc/systemd/system/$unit"; done
rm -f /etc/ssh/ssh_host_*
: > /etc/machine-id
rm -f /var/lib/dbus/machine-id
mkdir -p /root/.ssh && chmod 700 /root/.ssh
apt-get clean
rm -rf /var/lib/apt/lists/*
"""
RECIPE_VERSION = 1
BUILD_TIMEOUT = 1800


def cache_root() -> Path:
    """$XDG_CACHE_HOME/kubelab/rootfs (default ~/.cache/kubelab/rootfs)."""
    return cache_home() / "rootfs"


def recipe(suite: str) -> dict[str, object]:
    """Everything that decides a base root fs's content; its hash names the cache entry."""
    return {
        "version": RECIPE_VERSION,
        "suite": suite,
        "mirror": MIRROR,
        "variant": "minbase",
        "packages": PACKAGES,
        "sshd_config": SSHD_CONFIG,
        "customize": CUSTOMIZE,
    }


def recipe_hash(suite: str) -> str:
    return hashlib.sha256(json.dumps(recipe(suite), sort_keys=True).encode()).hexdigest()[:12]


def image_path(suite: str) -> Path:
    return cache_root() / f"{suite}-{recipe_hash(suite)}"


def ensure_image(suite: str, log: Callable[[str], None] = lambda _msg: None) -> Path:
    """The cached root fs for `suite`, built first if missing (one builder at a time, others wait)."""
    target = image_path(suite)
    if target.is_dir():
        return target
    with file_lock(target.with_name(target.name + ".lock")):
        if target.is_dir():  # another process built it while we waited
            return target
        for stale in target.parent.glob(f".tmp-{target.name}-*"):
            remove_tree(stale)
        tmp = target.with_name(f".tmp-{target.name}-{os.getpid()}")
        log(f"building the {suite} root fs with debootstrap (once, cached in {target.parent})")
        try:
            _build(suite, tmp)
            tmp.rename(target)
        finally:
            if tmp.exists():
                remove_tree(tmp)
    return target


def _build(suite: str, root: Path) -> None:
    root.mkdir(parents=True)
    argv = [
        "debootstrap",
        "--variant=minbase",
        "--include=" + ",".join(PACKAGES),
        suite,
        str(root),
        MIRROR,
    ]
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise ProviderError(f"debootstrap {suite} did not finish in {BUILD_TIMEOUT} s: is {MIRROR} slow?") from None
    if result.returncode != 0:
        log_file = root / "debootstrap" / "debootstrap.log"
        detail = log_file.read_text()[-2000:] if log_file.is_file() else (result.stderr or result.stdout)[-2000:]
        raise ProviderError(
            f"debootstrap {suite} from {MIRROR} failed (exit {result.returncode}); check the network "
            f"and that the mirror is reachable:\n{detail.strip()}"
        )
    config = root / "etc" / "ssh" / "sshd_config.d" / "kubelab.conf"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(SSHD_CONFIG)
    result = subprocess.run(
        ["chroot", str(root), "/bin/sh", "-c", CUSTOMIZE], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise ProviderError(f"customizing the {suite} root fs failed: {result.stderr.strip()}")


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve())
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == prefix or point.startswith(prefix + "/"):
            mounts.append(point)
    return mounts


def remove_tree(path: Path) -> None:
    """Remove a directory, first lazily unmounting anything still mounted below it (e.g. a killed debootstrap)."""
    for point in sorted(_mounts_under(path), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)
    shutil.rmtree(path, ignore_errors=True)
