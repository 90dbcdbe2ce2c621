#!/usr/bin/env python3
"""Package cache: bytes the nodes of a second local lab download from outside, relative to the first lab.

Usage (root; `local` provider, apt-cacher-ng installed):
    .venv/bin/python bench/cache_bytes.py [--nodes 2] [--packages "curl containerd haproxy keepalived"]
    .venv/bin/python bench/cache_bytes.py [--nodes 2] --until runtime

In a temporary KUBELAB_HOME (so the cache starts cold and a user's ~/.kubelab is not touched) it starts
`kubelab cache start` on a free port, then for two labs in turn either `kubelab up --until nodes`, the
apt_proxy role and `apt-get update && apt-get install PACKAGES` on every node at once (the Debian packages
the prepare/runtime/loadbalancer phases install), or with --until PHASE the real phases
(`kubelab up --until PHASE --containerd-source distro`: no GitHub downloads here). Figures are measured:
- delivered: bytes the host sent the lab's nodes from the cache port (kernel counter of an iptables rule
  on OUTPUT, IP headers included);
- direct: bytes forwarded from outside into the lab's bridge (the counter of the local provider's
  FORWARD rule; DNS answers and anything that bypassed the cache);
- via cache: bytes apt-cacher-ng fetched from the mirrors for the lab's nodes (its transfer log);
- from outside = direct + via cache.
Everything it creates (labs, counting rules, the cache process and folder) is removed at the end.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from provisioner import cache  # noqa: E402
from provisioner.providers import local_network  # noqa: E402

BIN = Path(sys.executable).parent
LABS = (("it-cache-b1", "10.77.144.0/24"), ("it-cache-b2", "10.77.145.0/24"))
PACKAGES = "curl containerd haproxy keepalived"


def run(argv: list[str], env: dict[str, str], timeout: float = 600) -> str:
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise SystemExit(f"`{' '.join(argv)}` failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return result.stdout


def counter(chain: str, comment: str, out_interface: str) -> int:
    """Bytes counted by the filter-table rule in CHAIN tagged COMMENT that matches packets out of OUT_INTERFACE."""
    listing = subprocess.run(["iptables", "-w", "-L", chain, "-v", "-x", "-n"], capture_output=True, text=True).stdout
    for line in listing.splitlines():
        fields = line.split()  # pkts bytes [target] prot opt in out source destination /* comment */
        if f"/* {comment} */" in line and out_interface in fields[4:8]:
            return int(fields[1])
    raise SystemExit(f"no rule '{comment}' out of {out_interface} in {chain}")


def node_ips(lab_dir: Path) -> dict[str, str]:
    import yaml

    hosts = yaml.safe_load((lab_dir / "inventory" / "hosts.yml").read_text())
    found: dict[str, str] = {}

    def walk(group: dict) -> None:
        for name, values in (group.get("hosts") or {}).items():
            found[name] = values["kubelab_ip"]
        for child in (group.get("children") or {}).values():
            walk(child or {})

    walk(hosts["all"])
    return found


def apply_apt_proxy(lab_dir: Path, work: Path, env: dict[str, str]) -> None:
    playbook = work / "apt-proxy.yml"
    playbook.write_text("- hosts: k8s_cluster\n  become: true\n  roles:\n    - role: apt_proxy\n")
    ansible_env = {
        **env,
        "ANSIBLE_CONFIG": str(REPO / "playbooks" / "ansible.cfg"),
        "ANSIBLE_ROLES_PATH": str(REPO / "playbooks" / "roles"),
    }
    run([str(BIN / "ansible-playbook"), "-i", str(lab_dir / "inventory"), str(playbook)], ansible_env)


def install_everywhere(name: str, nodes: list[str], packages: str, env: dict[str, str]) -> None:
    """apt-get update + install on all nodes at once, as a phase would."""
    command = f"apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq {packages}"
    procs = [
        subprocess.Popen(
            [str(BIN / "kubelab"), "ssh", "--name", name, node, "--", "sh", "-c", command],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for node in nodes
    ]
    for node, proc in zip(nodes, procs, strict=True):
        output, _ = proc.communicate(timeout=900)
        if proc.returncode != 0:
            raise SystemExit(f"installing on {name}/{node} failed:\n{output[-2000:]}")


def measure_lab(name: str, subnet: str, args: argparse.Namespace, home: Path, env: dict[str, str]) -> dict[str, int]:
    bridge = local_network.bridge_name(name)
    tag = f"kubelab-bench:{name}"
    count_rule = ["OUTPUT", "-o", bridge, "-p", "tcp", "--sport", str(args.port), "-m", "comment", "--comment", tag]
    workers = str(args.nodes - 1)
    up = [str(BIN / "kubelab"), "up", "--name", name, "--provider", "local", "--masters", "1", "--workers", workers]
    # Debian's containerd: no GitHub downloads here; nodes from the Debian base: the bench counts their apt bytes.
    up += ["--lb", "none", "--node-subnet", subnet, "--containerd-source", "distro", "--no-image"]
    try:
        run([*up, "--until", "nodes"], env)
        subprocess.run(["iptables", "-w", "-I", *count_rule], check=True)
        lab_dir = home / "labs" / name
        ips = node_ips(lab_dir)
        direct_before = counter("FORWARD", f"kubelab:{name}", bridge)
        if args.until:
            run([*up, "--until", args.until], env, timeout=3600)
        else:
            apply_apt_proxy(lab_dir, home, env)
            install_everywhere(name, sorted(ips), args.packages, env)
        via_cache = sum(
            cache.transfers(cache.CacheDir(home / "cache" / "apt"), client=ip).fetched for ip in ips.values()
        )
        return {
            "nodes": len(ips),
            "delivered": counter("OUTPUT", tag, bridge),
            "direct": counter("FORWARD", f"kubelab:{name}", bridge) - direct_before,
            "via_cache": via_cache,
        }
    finally:
        subprocess.run(["iptables", "-w", "-D", *count_rule], capture_output=True)
        subprocess.run([str(BIN / "kubelab"), "destroy", "--name", name, "-y"], env=env, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=2, help="nodes per lab (default: 2)")
    parser.add_argument("--packages", default=PACKAGES, help=f"Debian packages to install (default: {PACKAGES})")
    parser.add_argument("--port", type=int, default=None, help="cache port (default: a free one from 31520)")
    parser.add_argument("--until", metavar="PHASE", help="run the lab phases up to PHASE instead of apt-get install")
    args = parser.parse_args()
    args.port = args.port or cache.free_port(31520)
    with tempfile.TemporaryDirectory(prefix="kubelab-bench-cache-") as tmp:
        home = Path(tmp)
        env = {**os.environ, "KUBELAB_HOME": str(home)}
        run([str(BIN / "kubelab"), "cache", "start", "--port", str(args.port)], env)
        try:
            results = {name: measure_lab(name, subnet, args, home, env) for name, subnet in LABS}
        finally:
            run([str(BIN / "kubelab"), "cache", "stop"], env)
    work = f"kubelab up --until {args.until} (distro containerd)" if args.until else f"apt-get install {args.packages}"
    print(f"Package cache: 2 local labs of {args.nodes} node(s), {work} (cold cache)")
    print(f"{'lab':<13} {'delivered to nodes':>19} {'from outside':>13} {'(via cache':>11} {'+ direct)':>10}")
    outside = {}
    for name, r in results.items():
        outside[name] = r["via_cache"] + r["direct"]
        print(
            f"{name:<13} {r['delivered'] / 1e6:>16.2f} MB {outside[name] / 1e6:>10.2f} MB "
            f"{r['via_cache'] / 1e6:>8.2f} MB {r['direct'] / 1e6:>7.3f} MB"
        )
    first, second = (outside[name] for name, _ in LABS)
    print(
        f"second lab / first lab, bytes from outside: {second / first:.4f} "
        f"({second / 1e3:.0f} kB vs {first / 1e6:.1f} MB)"
    )
    until = f" --until {args.until}" if args.until else ""
    print(f"reproduce: sudo .venv/bin/python bench/cache_bytes.py --nodes {args.nodes}{until}")


if __name__ == "__main__":
    main()
