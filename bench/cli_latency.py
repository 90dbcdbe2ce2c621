#!/usr/bin/env python3
"""CLI latency: wall time of `kubelab --help` and `kubelab plan` against a bare `python -c pass`.

Usage: .venv/bin/python bench/cli_latency.py [--runs N]
Prints the median of N runs per command and its ratio to the bare interpreter start.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

COMMANDS: dict[str, list[str]] = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "kubelab --help": [sys.executable, "-m", "provisioner.cli", "--help"],
    "kubelab plan": [sys.executable, "-m", "provisioner.cli", "plan"],
    "kubelab plan (7 masters + 10 workers)": [
        sys.executable,
        "-m",
        "provisioner.cli",
        "plan",
        "--masters",
        "7",
        "--workers",
        "10",
        "--master-memory",
        "1700",
        "--worker-memory",
        "1024",
    ],
}


def median_seconds(argv: list[str], runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    results = {name: median_seconds(argv, args.runs) for name, argv in COMMANDS.items()}
    base = results["python -c pass"]
    print(f"{'command':<40}{'median ms':>10}{'ratio':>8}   ({args.runs} runs each)")
    for name, seconds in results.items():
        print(f"{name:<40}{seconds * 1000:>10.1f}{seconds / base:>8.2f}")


if __name__ == "__main__":
    main()
