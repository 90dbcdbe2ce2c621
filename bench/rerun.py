#!/usr/bin/env python3
"""Idempotent re-run: time and changed count of a second `kubelab up` on a finished lab, against the first run.

Usage (root): .venv/bin/python bench/rerun.py [--size 3] [--home DIR] [--name it-bench]

One `local` lab (sizes as in bench/provision_scale.py; default 3 = one master + 2 haproxy/keepalived nodes) in
--home (default a fresh temporary KUBELAB_HOME, so the first run starts cold; pass the provision_scale home to use
its warm apt cache, started here with `kubelab cache start`). Both runs are the phases this machine can run:
`kubelab up --until runtime` then `kubelab up --from loadbalancer --until loadbalancer`; the second run forces
them again with `--from prepare`. Also timed: a bare `kubelab up --until runtime` on the finished lab, which
runs nothing. Changed counts are summed over hosts from each phase log's PLAY RECAP. The lab is destroyed at the end.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from provision_scale import BIN, PHASES, SHAPES, cache, changed, kubelab, phase_seconds

SUBNET = "10.77.156.0/24"


def one_run(env: dict[str, str], name: str, lab: Path, first: bool) -> dict[str, tuple[float, int]]:
    """(seconds, changed) per phase for one pass over the phases."""
    kubelab(env, "up", "--name", name, "--until", "runtime", *([] if first else ["--from", "prepare"]))
    kubelab(env, "up", "--name", name, "--from", "loadbalancer", "--until", "loadbalancer")
    seconds = phase_seconds(lab)
    return {phase: (seconds[phase], changed(lab, phase)[1]) for phase in PHASES}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=3, choices=sorted(SHAPES))
    parser.add_argument("--home", type=Path, help="KUBELAB_HOME (default: a new temporary folder)")
    parser.add_argument("--name", default="it-bench", help="lab name (default: it-bench)")
    parser.add_argument("--no-cache", action="store_true", help="do not start the apt cache")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("the local provider needs root")
    home = (args.home or Path(tempfile.mkdtemp(prefix="kubelab-rerun-"))).resolve()
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "KUBELAB_HOME": str(home)}
    lab = home / "labs" / args.name
    flags = [
        *("--name", args.name, "--provider", "local", "--node-subnet", SUBNET, "--containerd-source", "distro"),
        "--no-image",
    ]
    if not args.no_cache:
        kubelab(env, "cache", "start", "--port", str(cache.free_port(31720)))
    try:
        kubelab(env, "up", *flags, *SHAPES[args.size], "--until", "nodes")
        first = one_run(env, args.name, lab, first=True)
        noop = kubelab(env, "up", "--name", args.name, "--until", "runtime")
        second = one_run(env, args.name, lab, first=False)
    finally:
        subprocess.run([str(BIN / "kubelab"), "destroy", "--name", args.name, "--yes"], env=env, capture_output=True)
        if not args.no_cache:
            subprocess.run([str(BIN / "kubelab"), "cache", "stop"], env=env, capture_output=True)
    print(f"lab of {args.size} node(s), {home}")
    print(f"{'phase':<14}{'1st s':>8}{'changed':>9}{'2nd s':>8}{'changed':>9}{'2nd/1st':>9}")
    for phase in PHASES:
        (s1, c1), (s2, c2) = first[phase], second[phase]
        print(f"{phase:<14}{s1:>8.1f}{c1:>9}{s2:>8.1f}{c2:>9}{s2 / s1:>9.2f}")
    t1, t2 = (sum(run[p][0] for p in PHASES) for run in (first, second))
    c1, c2 = (sum(run[p][1] for p in PHASES) for run in (first, second))
    print(f"{'total':<14}{t1:>8.1f}{c1:>9}{t2:>8.1f}{c2:>9}{t2 / t1:>9.2f}")
    print(f"bare `kubelab up --until runtime` on the finished lab: {noop:.2f} s (nothing to run)")


if __name__ == "__main__":
    main()
