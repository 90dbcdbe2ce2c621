#!/usr/bin/env python3
"""Wall time from `kubelab up` to a verified cluster, per phase: 1 master, and 3 masters + 2 LBs + 1 worker.

Usage (root): .venv/bin/python bench/cluster_ready.py [--artifacts DIR] [--shapes single,ha] [--images baked,none]
                                                      [--rerun] [--runs 1]

Both labs use the `local` provider, Flannel and an artifacts folder (default: the tests' folder,
~/.cache/kubelab/test-artifacts, built with `kubelab artifacts build --k8s-version 1.36 --cni flannel`); the base
image is cached, the nodes download their Debian packages from the mirror. Printed per lab: the seconds of every
phase as kubelab recorded them (verify included), the total, and the host's load. Labs are destroyed at the end.

--images: `baked` boots the Kubernetes nodes from the baked node image, which `kubelab image build` makes (or finds
cached) before the clock starts, its own time printed; `none` runs with --no-image. --rerun also times a second
`kubelab up --from prepare --until cni` on the finished lab, against the first run's same phases.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from provision_scale import BIN, kubelab, phase_seconds

NAME = "it-bench-k8s"
SUBNET = "10.77.157.0/24"
SHAPES = {
    "single": ["--masters", "1", "--workers", "1", "--lb", "none"],
    "ha": ["--masters", "3", "--workers", "1", "--lb", "haproxy", "--lb-nodes", "2"],
}
DEFAULT_ARTIFACTS = Path.home() / ".cache" / "kubelab" / "test-artifacts"


RERUN = ("prepare", "runtime", "packages", "loadbalancer", "control-plane", "workers", "cni")


def one(shape: str, image: str, folder: Path, home: Path, rerun: bool) -> None:
    env = {**os.environ, "KUBELAB_HOME": str(home)}
    version = json.loads((folder / "artifacts.json").read_text())["kubernetes_version"]
    flags = ["--name", NAME, "--provider", "local", "--node-subnet", SUBNET, "--cni", "flannel"]
    flags += ["--artifacts", str(folder), "--k8s-version", version, *SHAPES[shape]]
    if image == "baked":
        argv = [str(BIN / "kubelab"), "image", "build", *flags]
        built = subprocess.run(argv, env=env, capture_output=True, text=True)
        print(f"  image: {(built.stdout.strip().splitlines() or [built.stderr.strip()])[-1]}", flush=True)
    else:
        flags.append("--no-image")
    started = time.monotonic()
    again = None
    try:
        kubelab(env, "up", *flags)
        wall = time.monotonic() - started
        seconds = phase_seconds(home / "labs" / NAME)
        if rerun:
            kubelab(env, "up", "--name", NAME, "--from", RERUN[0], "--until", RERUN[-1])
            again = sum(phase_seconds(home / "labs" / NAME)[p] for p in RERUN)
    finally:
        subprocess.run([str(BIN / "kubelab"), "destroy", "--name", NAME, "--yes"], env=env, capture_output=True)
    phases = "  ".join(f"{name} {value:5.1f}s" for name, value in seconds.items())
    print(f"{shape:<6} {image:<5} up to verified: {wall:6.1f} s  ({phases})  load {os.getloadavg()[0]:.1f}", flush=True)
    if again is not None:
        first = sum(seconds[p] for p in RERUN)
        ratio = f"{again / first:.2f} of the first {first:.1f} s"
        print(f"{shape:<6} {image:<5} second up --from prepare: {again:.1f} s, {ratio}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", type=Path, default=DEFAULT_ARTIFACTS)
    parser.add_argument("--shapes", default="single,ha")
    parser.add_argument("--images", default="baked,none", help="baked, none (--no-image) or both")
    parser.add_argument("--rerun", action="store_true", help="also time a second up --from prepare")
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("the local provider needs root")
    if not (args.artifacts / "artifacts.json").is_file():
        raise SystemExit(f"{args.artifacts} is no artifacts folder: `kubelab artifacts build --out {args.artifacts}`")
    home = Path(tempfile.mkdtemp(prefix="kubelab-bench-k8s-"))
    for _ in range(args.runs):
        for shape in args.shapes.split(","):
            for image in args.images.split(","):
                one(shape, image, args.artifacts, home, args.rerun)


if __name__ == "__main__":
    main()
