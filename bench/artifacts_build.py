#!/usr/bin/env python3
"""`kubelab artifacts build` cold and warm: wall time, peak memory of one build process, per-component times.

Usage: .venv/bin/python bench/artifacts_build.py [--k8s-version 1.36] [--cni flannel] [--jobs N] [--warm-only]

Cold: a fresh cache folder (HOME points at a temporary folder, so Go's module and build caches and kubelab's
result cache start empty; only the host's apt lists are shared). Warm: the same build again on those caches.
`--warm-only` skips the cold build and times a build on the user's own caches. The folders are removed at the end.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def build(home: Path, out: Path, args: argparse.Namespace) -> tuple[float, str]:
    argv = [str(BIN / "kubelab"), "artifacts", "build", "--k8s-version", args.k8s_version, "--cni", args.cni]
    argv += ["--out", str(out), "--jobs", str(args.jobs)]
    env = {**os.environ, "HOME": str(home)}
    started = time.monotonic()
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"build failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return seconds, done.stdout


def report(label: str, seconds: float, output: str) -> None:
    peak = re.search(r"peak memory of one build process (\d+) MiB", output)
    print(f"{label}: {seconds / 60:.1f} min wall, peak RSS of one build process {peak.group(1) if peak else '?'} MiB")
    for line in output.splitlines():
        if re.search(r": built in \d+ s|: cached$", line):
            print("   ", line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k8s-version", default="1.36")
    parser.add_argument("--cni", default="flannel")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--warm-only", action="store_true", help="time one build on the user's own caches")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kubelab-bench-build-"))
    try:
        if args.warm_only:
            seconds, output = build(Path.home(), work / "out", args)
            report("warm (your caches)", seconds, output)
            return
        home = work / "home"
        home.mkdir()
        cold = build(home, work / "out", args)
        report("cold (empty caches)", *cold)
        warm = build(home, work / "out", args)
        report("warm (same caches)", *warm)
        sizes = {
            p.name: sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) for p in (home / ".cache").iterdir()
        }
        print("caches:", ", ".join(f"{name} {size / 2**30:.1f} GiB" for name, size in sorted(sizes.items())))
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(work)], check=False)  # Go's module cache is read-only
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
