"""Host objects of a local lab found by its name alone (not through a lab folder's state file).

A lab killed abruptly (host session ended, SIGKILL, lab folder deleted) leaves network namespaces, links,
iptables rules and cgroup directories behind while its processes are gone. `find` collects them, `alive`
tells such dead remnants from a lab of the same name that still runs (e.g. from another KUBELAB_HOME), and
`remove` takes dead remnants away."""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from provisioner.providers import local_host, local_network
from provisioner.providers.local_host import run

NODE_NAME = r"(?:lb|master|worker)-[0-9]+"


def node_object_pattern(lab: str) -> re.Pattern[str]:
    """Names of the lab's per-node netns and cgroup leaves (`kubelab-LAB-NODE`), and of nothing else."""
    return re.compile(rf"kubelab-{re.escape(lab)}-{NODE_NAME}")


@dataclass
class Remnants:
    """What exists on the host under a lab's names."""

    lab: str
    netns: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    rules: list[list[str]] = field(default_factory=list)
    cgroups: list[Path] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.netns or self.links or self.rules or self.cgroups)

    def describe(self) -> str:
        parts = [
            f"{len(self.netns)} network namespace(s)" if self.netns else "",
            f"link(s) {', '.join(self.links)}" if self.links else "",
            f"{len(self.rules)} iptables rule(s)" if self.rules else "",
            f"{len(self.cgroups)} cgroup director(ies)" if self.cgroups else "",
        ]
        return ", ".join(p for p in parts if p) or "nothing"

    def alive(self) -> list[int]:
        """Host PIDs of processes in any of the lab's cgroups or network namespaces."""
        pids = {p for c in self.cgroups for p in local_host.cgroup_pids(c)}
        pids |= netns_pids(self.netns)
        pids.discard(os.getpid())
        return sorted(pids)


def find(lab: str) -> Remnants:
    pattern = node_object_pattern(lab)
    found = Remnants(lab)
    if local_network.NETNS_DIR.is_dir():
        found.netns = sorted(n for n in os.listdir(local_network.NETNS_DIR) if pattern.fullmatch(n))
    bridge = local_network.bridge_name(lab)
    if local_network.link_exists(bridge):
        found.links = [*bridge_ports(bridge), bridge]
    found.rules = tagged_rules(lab)
    found.cgroups = local_host.find_cgroup_dirs(pattern)
    return found


def remove(found: Remnants) -> None:
    """Remove dead remnants (call only when `alive()` is empty): deepest cgroups first, then network."""
    for directory in found.cgroups:
        local_host.remove_cgroup(directory)
    for rule in found.rules:
        local_network.delete_rule(rule)
    for link in found.links:
        local_network.delete_link(link)
    for name in found.netns:
        local_network.delete_netns(name)


def bridge_ports(bridge: str) -> list[str]:
    """Host-side veth ends attached to a bridge."""
    lower = Path("/sys/class/net", bridge)
    try:
        return sorted(entry.name[len("lower_") :] for entry in os.scandir(lower) if entry.name.startswith("lower_"))
    except OSError:
        return []


def tagged_rules(lab: str) -> list[list[str]]:
    """[table, chain, match...] of every iptables rule carrying the lab's comment `kubelab:LAB`."""
    tag = f"kubelab:{lab}"
    rules = []
    for table in ("nat", "filter"):
        listing = run(["iptables", "-w", "-t", table, "-S"], check=False).stdout
        for line in listing.splitlines():
            words = shlex.split(line)
            if len(words) > 2 and words[0] == "-A" and tag in words:
                rules.append([table, words[1], *words[2:]])
    return rules


def netns_pids(names: list[str]) -> set[int]:
    """PIDs of processes whose network namespace is one of the named ones (like `ip netns pids`)."""
    wanted = set()
    for name in names:
        try:
            info = os.stat(local_network.NETNS_DIR / name)
        except OSError:
            continue
        wanted.add((info.st_dev, info.st_ino))
    pids: set[int] = set()
    if not wanted:
        return pids
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            info = os.stat(f"/proc/{entry}/ns/net")
        except OSError:
            continue
        if (info.st_dev, info.st_ino) in wanted:
            pids.add(int(entry))
    return pids
