"""Debian packages and their dependency closure, unpacked into an image's staging directory from the host's apt.

Depends and Pre-Depends are resolved recursively with ``apt-cache`` (no Recommends or Suggests), each .deb is
fetched with ``apt-get download`` and extracted with ``dpkg-deb -x``. Maintainer scripts never run: `alternatives`
makes their update-alternatives links. Essential packages (dash, coreutils; not libc6) are never named as
dependencies, so they are there only when asked for.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import deque
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from provisioner.errors import KubelabError

CACHE = Path.home() / ".cache" / "kubelab" / "debs"
APT_LISTS = Path("/var/lib/apt/lists")
PRUNED = (  # glob patterns in dest
    *(f"usr/share/{name}" for name in ("doc", "man", "info", "locale", "lintian")),
    "usr/lib/*/gconv",  # libc6's iconv modules (8 MB); UTF-8/16/32, ASCII and Latin-1 are built into libc
)

# Treated as present: a dependency naming one of them (as any alternative) is dropped. Each serves only
# maintainer scripts or the package manager, which an image never runs, and most drag in more.
DEFAULT_EXCLUDE = frozenset(
    {
        "debconf",  # configuration questions asked by maintainer scripts (iproute2 depends on it)
        "debconf-2.0",  # the virtual package debconf and cdebconf provide
        "cdebconf",  # the other debconf-2.0: newt, slang, readline
        "dpkg",  # the package database and its tools: tar, bzip2, xz, zstd libraries
        "install-info",  # updates the info directory (readline-common depends on dpkg | install-info)
        "init-system-helpers",  # invoke-rc.d and deb-systemd-helper for services' maintainer scripts
        "perl-base",  # needed by debconf and maintainer scripts only; about 7 MB
        "usrmerge",  # converts a system to merged /usr (pulls perl)
        "usr-is-merged",  # an empty marker that the system has merged /usr
        "lsb-base",  # helpers for System V init scripts
        "sysvinit-utils",  # System V init tools for init scripts
        "adduser",  # creates system users in maintainer scripts
        "ucf",  # merges configuration files in maintainer scripts
    }
)


class DebError(KubelabError):
    """apt cannot provide the packages; the message names the package and what apt said."""


@dataclass(frozen=True)
class Alternative:
    """One name in a dependency: a package, or a virtual package with the packages that provide it."""

    name: str
    providers: tuple[str, ...] = ()


Dependencies = dict[str, list[tuple[Alternative, ...]]]  # package -> its groups; one alternative satisfies a group


def _run(args: Sequence[str], cwd: Path | None = None) -> str:
    result = subprocess.run(
        args, cwd=cwd, capture_output=True, text=True, env={**os.environ, "LC_ALL": "C"}, check=False
    )
    if result.returncode != 0:
        raise DebError(f"`{' '.join(args[:3])} ...` failed: {(result.stderr or result.stdout).strip()[-2000:]}")
    return result.stdout


def parse_depends(text: str) -> Dependencies:
    """The Depends and Pre-Depends of each package in ``apt-cache depends --recurse`` output."""
    found: dict[str, list[list[tuple[str, list[str]]]]] = {}
    groups: list[list[tuple[str, list[str]]]] = []
    providers: list[str] | None = None  # of the last dependency line's package, listed below it
    open_group = False  # the last dependency line began with "|": the next one is an alternative of it
    for line in text.splitlines():
        if line and not line.startswith(" "):
            groups, providers, open_group = found.setdefault(line.strip("<>"), []), None, False
        elif match := re.fullmatch(r" ([ |])(\w+): <?([^<>\s]+)>?", line):
            providers = None
            if match[2] in ("Depends", "PreDepends"):
                if not open_group:
                    groups.append([])
                providers = []
                groups[-1].append((match[3], providers))
                open_group = match[1] == "|"
        elif providers is not None and line.startswith("    "):
            providers.append(line.strip())
    return {
        name: [tuple(Alternative(n, tuple(p)) for n, p in group) for group in groups] for name, groups in found.items()
    }


def parse_policy(text: str) -> dict[str, str | None]:
    """Package -> candidate version (None for "(none)") from ``apt-cache policy NAME...`` output."""
    candidates: dict[str, str | None] = {}
    name = None
    for line in text.splitlines():
        if line and not line.startswith(" ") and line.endswith(":"):
            name = line[:-1]
        elif name and (match := re.fullmatch(r"\s+Candidate: (\S+)", line)):
            candidates[name] = None if match[1] == "(none)" else match[1]
    return candidates


def resolve(
    packages: Sequence[str],
    depends: Dependencies,
    candidates: Mapping[str, str | None],
    exclude: Collection[str] = DEFAULT_EXCLUDE,
) -> list[tuple[str, str]]:
    """(name, candidate version) of the packages and everything they depend on, sorted by name. A dependency
    group is met by an excluded or chosen package, else by its first alternative (or provider) with a candidate."""
    wanted, queue = set(packages), deque(packages)
    chosen: dict[str, str] = {}
    while queue:
        name = queue.popleft()
        version = candidates.get(name)
        if version is None:
            raise DebError(f"apt has no installable version of {name} (is it in the host's apt sources?)")
        chosen[name] = version
        # Version constraints are not checked: the candidates of one consistent archive satisfy each other.
        for group in depends.get(name, []):
            names = [n for alternative in group for n in (alternative.name, *alternative.providers)]
            if any(n in exclude or n in wanted for n in names):
                continue
            pick = next((n for n in names if candidates.get(n) is not None), None)
            if pick is None:
                raise DebError(f"{name} depends on {' | '.join(a.name for a in group)}: apt can install none")
            wanted.add(pick)
            queue.append(pick)
    return sorted(chosen.items())


def _ensure_lists() -> None:
    if any(APT_LISTS.glob("*_Packages*")):
        return
    if os.geteuid() != 0:
        raise DebError(f"{APT_LISTS} has no package lists: run `sudo apt-get update` once")
    print("kubelab: the host's apt has no package lists yet: running apt-get update once", file=sys.stderr, flush=True)
    _run(["apt-get", "update", "-qq"])


def closure(packages: Sequence[str], exclude: Collection[str] = DEFAULT_EXCLUDE) -> list[tuple[str, str]]:
    """(name, version) of the packages and their recursive Depends/Pre-Depends, from the host's apt."""
    _ensure_lists()
    flags = ("--no-recommends", "--no-suggests", "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances")
    depends = parse_depends(_run(["apt-cache", "depends", "--recurse", *flags, *packages]))
    names = {*packages, *depends} | {n for groups in depends.values() for g in groups for a in g for n in a.providers}
    names |= {a.name for groups in depends.values() for g in groups for a in g}
    candidates = parse_policy(_run(["apt-cache", "policy", *sorted(names)]))
    return resolve(packages, depends, candidates, exclude)


def _cached(cache: Path, name: str, version: str) -> Path | None:
    pattern = glob.escape(f"{name}_{version.replace(':', '%3a')}_") + "*.deb"  # apt-get download's file name
    return next(iter(sorted(cache.glob(pattern))), None)


def download(packages: Sequence[tuple[str, str]], cache: Path | None = None) -> list[Path]:
    """The .deb of each (name, version), downloaded with ``apt-get download`` into ``cache`` unless there."""
    cache = cache or CACHE
    cache.mkdir(parents=True, exist_ok=True)
    missing = [f"{name}={version}" for name, version in packages if _cached(cache, name, version) is None]
    if missing:
        with tempfile.TemporaryDirectory(dir=cache, prefix=".download-") as tmp:
            _run(["apt-get", "download", *missing], cwd=Path(tmp))
            for deb in Path(tmp).glob("*.deb"):
                deb.replace(cache / deb.name)  # whole files only: a crash leaves nothing half-written
    debs = [_cached(cache, name, version) for name, version in packages]
    absent = [f"{n}={v}" for (n, v), deb in zip(packages, debs, strict=True) if deb is None]
    if absent:
        raise DebError(f"apt-get download gave no .deb for {', '.join(absent)}")
    return [deb for deb in debs if deb is not None]


def unpack(
    packages: Sequence[str], dest: Path, cache: Path | None = None, exclude: Collection[str] = DEFAULT_EXCLUDE
) -> list[str]:
    """Extract the packages and their closure into ``dest``, without docs, manual pages, translations or libc's
    extra character sets (PRUNED); returns ["name=version", ...] of what was extracted."""
    resolved = closure(packages, exclude)
    dest.mkdir(parents=True, exist_ok=True)
    for deb in download(resolved, cache):
        _run(["dpkg-deb", "-x", str(deb), str(dest)])
    for pattern in PRUNED:
        for pruned in dest.glob(pattern):
            shutil.rmtree(pruned)
    return [f"{name}={version}" for name, version in resolved]


def alternatives(dest: Path, links: Mapping[str, str]) -> None:
    """Make the symlinks update-alternatives would, directly: ``links`` maps a path in ``dest`` to its
    target, absolute in the image or relative to the link's directory (see `iptables_links`)."""
    for name, target in links.items():
        link = dest / name.lstrip("/")
        pointed = dest / target.lstrip("/") if target.startswith("/") else link.parent / target
        if not os.path.lexists(pointed):
            raise FileNotFoundError(f"{name} -> {target}: {pointed} does not exist")
        link.parent.mkdir(parents=True, exist_ok=True)
        if os.path.lexists(link):
            link.unlink()
        link.symlink_to(target)


def iptables_links(backend: str = "nft") -> dict[str, str]:
    """The links Debian's iptables postinst makes for a backend: nft (its default) or legacy."""
    if backend not in ("nft", "legacy"):
        raise ValueError(f"iptables backend {backend!r} is neither nft nor legacy")
    commands = (f"{family}{suffix}" for family in ("iptables", "ip6tables") for suffix in ("", "-save", "-restore"))
    return {f"usr/sbin/{command}": command.replace("tables", f"tables-{backend}", 1) for command in commands}
