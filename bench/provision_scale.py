#!/usr/bin/env python3
"""Provisioning scale on the `local` provider: prepare + runtime + loadbalancer phases for 1, 3 and 6 nodes.

Usage (root): .venv/bin/python bench/provision_scale.py [--sizes 1,3,6] [--variants untuned,shipped,tuned]
                                                         [--home DIR] [--no-warmup]

Labs (name it-bench, subnet 10.77.155.0/24, one at a time) are made with `kubelab up --until nodes`, then the
phases are timed as a user runs them: `kubelab up --until runtime` and `kubelab up --from loadbalancer --until
loadbalancer` (the packages phase in between needs pkgs.k8s.io, which this machine cannot reach). T(n) is the sum
of the three phases' durations kubelab records in state.json. Sizes: 1 = one master (no load balancer), 3 = one
master + 2 haproxy/keepalived nodes, 6 = 3 masters + 1 worker + 2 LB nodes. containerd is Debian's package, or
with --artifacts DIR the folder's upstream containerd (and its Kubernetes version).

Packages come through `kubelab cache start` (apt-cacher-ng) in the bench's KUBELAB_HOME; unless --no-warmup, a
6-node run first fills the cache (reported as "cold"). Each variant sets Ansible environment variables over
playbooks/ansible.cfg:
- untuned: Ansible's defaults for the knobs below (forks 5, no pipelining, no SSH connection reuse);
- shipped: playbooks/ansible.cfg as committed (forks 20, pipelining, ControlPersist 120s);
- tuned:   shipped + facts gathered once per node and cached between phases (gathering smart, jsonfile cache in
           the lab folder);
- baked:   shipped, with the Kubernetes nodes booted from the baked node image (needs --artifacts: the image holds
           the packages phase, which installs from the folder); every other variant runs with --no-image. The
           image is built (or found cached) by the lab's `up --until nodes`, outside the timed phases.
Everything the bench creates is destroyed at the end; the cache folder stays in --home for the next run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from provisioner import cache

BIN = Path(sys.executable).parent
NAME = "it-bench"
SUBNET = "10.77.155.0/24"
PHASES = ("prepare", "runtime", "loadbalancer")
SHAPES: dict[int, list[str]] = {
    1: ["--masters", "1", "--workers", "0", "--lb", "none"],
    3: ["--masters", "1", "--workers", "0", "--lb", "haproxy", "--lb-nodes", "2"],
    6: ["--masters", "3", "--workers", "1", "--lb", "haproxy", "--lb-nodes", "2"],
}
VARIANTS: dict[str, dict[str, str]] = {
    "untuned": {
        "ANSIBLE_FORKS": "5",
        "ANSIBLE_PIPELINING": "False",
        "ANSIBLE_SSH_ARGS": "-o ControlMaster=no -o ServerAliveInterval=15 -o LogLevel=ERROR",
    },
    "shipped": {},
    "tuned": {
        "ANSIBLE_GATHERING": "smart",
        "ANSIBLE_CACHE_PLUGIN": "jsonfile",
        "ANSIBLE_CACHE_PLUGIN_CONNECTION": "{lab}/.facts",
        "ANSIBLE_CACHE_PLUGIN_TIMEOUT": "7200",
    },
    "baked": {},
}
RECAP = re.compile(r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def kubelab(env: dict[str, str], *args: str, timeout: float = 3600) -> float:
    """Run `kubelab ARGS`; its wall time in seconds. Exits with its output when it fails."""
    started = time.monotonic()
    result = subprocess.run(
        [str(BIN / "kubelab"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    if result.returncode != 0:
        raise SystemExit(f"`kubelab {' '.join(args)}` failed (exit {result.returncode}):\n{result.stdout[-3000:]}")
    return time.monotonic() - started


def phase_seconds(lab: Path) -> dict[str, float]:
    """Seconds per finished phase, as kubelab recorded them."""
    phases = json.loads((lab / "state.json").read_text())["phases"]
    return {name: float(entry["seconds"]) for name, entry in phases.items()}


def changed(lab: Path, phase: str) -> tuple[int, int]:
    """(hosts, changed tasks summed over hosts) from the PLAY RECAP of the phase's last log."""
    hosts = RECAP.findall((lab / "logs" / f"{phase}.log").read_text())
    return len(hosts), sum(int(h[2]) for h in hosts)


def run_phases(env: dict[str, str], lab: Path) -> dict[str, float]:
    """The three phases as a user runs them here; seconds per phase."""
    kubelab(env, "up", "--name", NAME, "--until", "runtime")
    kubelab(env, "up", "--name", NAME, "--from", "loadbalancer", "--until", "loadbalancer")
    seconds = phase_seconds(lab)
    return {phase: seconds[phase] for phase in PHASES}


def source_flags(artifacts: Path | None) -> list[str]:
    """containerd (and Kubernetes) from the artifacts folder, else Debian's containerd."""
    if artifacts is None:
        return ["--containerd-source", "distro"]
    version = json.loads((artifacts / "artifacts.json").read_text())["kubernetes_version"]
    return ["--artifacts", str(artifacts), "--k8s-version", version, "--cni", "flannel"]


def measure(size: int, variant: str, home: Path, base_env: dict[str, str], artifacts: Path | None) -> dict[str, float]:
    lab = home / "labs" / NAME
    extra = {key: value.format(lab=lab) for key, value in VARIANTS[variant].items()}
    env = {**base_env, **extra}
    flags = ["--name", NAME, "--provider", "local", "--node-subnet", SUBNET, *source_flags(artifacts)]
    flags += [] if variant == "baked" else ["--no-image"]
    try:
        kubelab(base_env, "up", *flags, *SHAPES[size], "--until", "nodes")
        result = run_phases(env, lab)
    finally:
        subprocess.run([str(BIN / "kubelab"), "destroy", "--name", NAME, "--yes"], env=base_env, capture_output=True)
    result["total"] = sum(result[p] for p in PHASES)
    print(
        f"  {variant:<8} n={size}: "
        + "  ".join(f"{p} {result[p]:6.1f}s" for p in PHASES)
        + f"  T={result['total']:6.1f}s  (load {os.getloadavg()[0]:.1f})",
        flush=True,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,3,6", help="node counts, from 1, 3, 6 (default: all)")
    parser.add_argument("--variants", default="untuned,shipped,tuned", help=f"from {', '.join(VARIANTS)}")
    parser.add_argument("--home", type=Path, default=Path("/var/tmp/kubelab-bench"), help="bench KUBELAB_HOME")
    parser.add_argument("--no-warmup", action="store_true", help="skip the cache-filling 6-node run")
    parser.add_argument("--artifacts", type=Path, help="artifacts folder (needed by the baked variant)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    variants = args.variants.split(",")
    if os.geteuid() != 0:
        raise SystemExit("the local provider needs root")
    if unknown := [s for s in sizes if s not in SHAPES] + [v for v in variants if v not in VARIANTS]:
        raise SystemExit(f"unknown sizes/variants: {unknown}")
    if "baked" in variants and args.artifacts is None:
        raise SystemExit("the baked variant needs --artifacts DIR: its image installs Kubernetes from the folder")
    args.home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "KUBELAB_HOME": str(args.home.resolve())}
    kubelab(env, "cache", "start", "--port", str(cache.free_port(31620)))
    results: dict[str, dict[int, dict[str, float]]] = {}
    try:
        if not args.no_warmup:
            print("warm-up (fills the apt cache):", flush=True)
            measure(6, "shipped", args.home, env, args.artifacts)
        print("measured:", flush=True)
        for variant in variants:
            results[variant] = {size: measure(size, variant, args.home, env, args.artifacts) for size in sizes}
    finally:
        subprocess.run([str(BIN / "kubelab"), "cache", "stop"], env=env, capture_output=True)
    print(
        f"\n{'variant':<9}"
        + "".join(f"{'T(' + str(s) + ') s':>10}" for s in sizes)
        + "".join(f"{'T(' + str(s) + ')/T(1)':>12}" for s in sizes if s != 1 and 1 in sizes)
    )
    for variant, by_size in results.items():
        line = f"{variant:<9}" + "".join(f"{by_size[s]['total']:>10.1f}" for s in sizes)
        if 1 in by_size:
            line += "".join(f"{by_size[s]['total'] / by_size[1]['total']:>12.2f}" for s in sizes if s != 1)
        print(line)


if __name__ == "__main__":
    main()
