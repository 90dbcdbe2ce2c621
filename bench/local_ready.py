#!/usr/bin/env python3
"""Local provider: time from `up` (base image cached) until every node's systemd is `running` and SSH answers,
for labs of growing size; nodes boot concurrently. The lab is destroyed after each size.

Usage (root): .venv/bin/python bench/local_ready.py [--sizes 1,3,5] [--name NAME] [--node-subnet CIDR]
Prints, per size, the time to all-ready and the time `destroy` took.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from provisioner import plan, render, spec
from provisioner.lab import LabDir
from provisioner.providers.local import LocalProvider


def measure(home: Path, name: str, subnet: str, nodes: int) -> tuple[float, float]:
    flags = dict(
        name=name, provider="local", node_subnet=subnet, masters=1, workers=nodes - 1, lb="none", no_image=True
    )
    lab_plan = plan.make_plan(spec.build_spec(flag_values=flags))
    lab = LabDir(home / "labs" / name)
    render.write_lab(lab_plan, lab)
    provider = LocalProvider(lab_plan, lab)
    try:
        provider.up(lambda _node, _message: None)
        ready = provider.last_ready_seconds or 0.0
    finally:
        start = time.monotonic()
        provider.destroy()
    return ready, time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,3,5", help="comma-separated node counts")
    parser.add_argument("--name", default="bench-local")
    parser.add_argument("--node-subnet", default="10.77.109.0/24")
    args = parser.parse_args()
    print("Local provider: nodes booting concurrently until systemd 'running' + SSH (base image cached)")
    print(f"{'nodes':>5}  {'all ready':>10}  {'destroy':>8}")
    with tempfile.TemporaryDirectory(prefix="kubelab-bench-") as home:
        for size in (int(s) for s in args.sizes.split(",")):
            ready, destroyed = measure(Path(home), args.name, args.node_subnet, size)
            print(f"{size:>5}  {ready:>9.1f}s  {destroyed:>7.1f}s", flush=True)


if __name__ == "__main__":
    main()
