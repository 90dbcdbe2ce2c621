"""The Go toolchain as `kubelab artifacts build` uses it: found and checked, run with kubelab's caches, and the
module proxy asked what it serves, each failure turned into a message that says what to do.

Module downloads and compiled packages go to ``~/.cache/kubelab/go`` (GOMODCACHE, GOCACHE), so a second build
of the same versions reuses them; GOWORK is off and GOFLAGS is kubelab's own, as in Kubernetes' release build.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from provisioner.spec import SpecError

CACHE = Path.home() / ".cache" / "kubelab" / "go"
MINIMUM_GO = "go1.26"  # Kubernetes 1.36 and 1.37 ask for go 1.26.0 in their go.mod


class BuildError(SpecError):
    """A build that cannot start or did not finish; the message names the cause and the fix."""


@dataclass(frozen=True)
class Go:
    """A checked ``go`` binary and the environment kubelab runs it with."""

    binary: str
    version: str  # go1.26.8
    env: Mapping[str, str]

    def run(self, args: Sequence[str], cwd: Path | None = None, log: Path | None = None) -> str:
        """Run ``go ARGS``; stdout as text. Output also goes to ``log``; failures raise BuildError with the
        end of stderr."""
        result = subprocess.run(
            [self.binary, *args], cwd=cwd, env=dict(self.env), capture_output=True, text=True, check=False
        )
        if log is not None:
            with log.open("a") as handle:
                handle.write(f"$ go {' '.join(args)}  (in {cwd or os.getcwd()})\n{result.stdout}{result.stderr}\n")
        if result.returncode != 0:
            raise BuildError(explain_failure(args, result.stderr))
        return result.stdout


def parse_version(text: str) -> str:
    """``go1.26.8`` from the output of ``go version``."""
    match = re.search(r"\bgo(\d+\.\d+(?:\.\d+)?)\b", text)
    if not match:
        raise BuildError(f"cannot read Go's version from {text.strip()!r}")
    return "go" + match.group(1)


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.removeprefix("go").split(".") if part.isdigit())


def find_go(cache: Path = CACHE, minimum: str = MINIMUM_GO, jobs: int | None = None) -> Go:
    """The ``go`` on PATH (or /usr/local/go/bin), checked to be at least ``minimum``."""
    binary = shutil.which("go") or shutil.which("go", path="/usr/local/go/bin")
    if binary is None:
        raise BuildError(
            f"`kubelab artifacts build` needs Go {minimum.removeprefix('go')} or newer and found no `go` on PATH: "
            "install it from https://go.dev/dl/ (Debian's golang package is too old)"
        )
    env = {
        **os.environ,
        "GOMODCACHE": str(cache / "mod"),
        "GOCACHE": str(cache / "build"),
        "GOWORK": "off",
        "GOFLAGS": "-mod=mod",
        "GOTOOLCHAIN": os.environ.get("GOTOOLCHAIN", "local"),
    }
    if jobs:
        env["GOMAXPROCS"] = str(jobs)
    out = subprocess.run([binary, "version"], capture_output=True, text=True, env=env, check=False).stdout
    version = parse_version(out)
    if version_tuple(version) < version_tuple(minimum):
        raise BuildError(
            f"{binary} is {version}; building Kubernetes needs {minimum} or newer: install a newer Go from "
            "https://go.dev/dl/ or set GOTOOLCHAIN to a newer toolchain the module proxy serves"
        )
    return Go(binary, version, env)


_REFUSED = re.compile(r"(\S+@\S+): (?:reading|verifying) .*?(\d{3} [A-Za-z ]+|not found|unknown revision.*)", re.M)


def explain_failure(args: Sequence[str], stderr: str) -> str:
    """One message for a failed go command: a module the proxy refuses is named with its version."""
    refused = _REFUSED.search(stderr)
    if refused:
        module = refused.group(1).rstrip(":")
        return (
            f"the Go module proxy ({os.environ.get('GOPROXY') or 'proxy.golang.org'}) does not serve {module} "
            f"({refused.group(2).strip()}): pick a version it serves (`go list -m -versions "
            f"{module.split('@')[0]}`) or point GOPROXY at a mirror that has it"
        )
    tail = "\n".join(stderr.strip().splitlines()[-15:])
    return f"`go {' '.join(args)}` failed:\n{tail}"


def served_versions(go: Go, module: str, cwd: Path) -> list[str]:
    """Versions of ``module`` the proxy lists, oldest first (``go list -m -versions``)."""
    out = go.run(["list", "-m", "-versions", "-json", module], cwd=cwd)
    return list(json.loads(out).get("Versions") or [])


def newest_patch(versions: Sequence[str], minor: str) -> str | None:
    """The newest release ``vX.Y.Z`` of ``minor`` (``1.36``) among ``versions``; pre-releases are skipped."""
    pattern = re.compile(rf"^v{re.escape(minor)}\.(\d+)$")
    patches = [(int(m.group(1)), v) for v in versions if (m := pattern.match(v))]
    return max(patches)[1] if patches else None


@dataclass(frozen=True)
class ModuleInfo:
    path: str
    version: str
    dir: Path  # the unpacked module in GOMODCACHE
    gomod: Path  # its go.mod file
    time: str  # the version's commit time (RFC 3339), as the proxy reports it


def download(go: Go, module: str, version: str, cwd: Path) -> ModuleInfo:
    """Download ``module@version`` into the module cache (a cache hit costs nothing)."""
    result = subprocess.run(
        [go.binary, "mod", "download", "-json", f"{module}@{version}"],
        cwd=cwd,
        env=dict(go.env),
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        info = json.loads(result.stdout or "{}")
    except json.JSONDecodeError:
        info = {}
    if result.returncode != 0 or info.get("Error") or not info.get("Dir"):
        detail = str(info.get("Error") or result.stderr)
        raise BuildError(explain_failure(["mod", "download", f"{module}@{version}"], detail))
    stamp = json.loads(Path(info["Info"]).read_text()).get("Time", "") if info.get("Info") else ""
    return ModuleInfo(module, str(info["Version"]), Path(info["Dir"]), Path(info["GoMod"]), stamp)
