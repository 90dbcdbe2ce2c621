"""Small probes shared by the checks and `kubelab test failover`, run on nodes through testinfra hosts."""

from __future__ import annotations

from typing import Any

from provisioner.checks import nodeparse


def vip_holders(vip: str, hosts: dict[str, Any]) -> list[tuple[str, str]]:
    """(node, interface) for every node among `hosts` that has the VIP on an interface right now."""
    holders = []
    for name, host in hosts.items():
        addresses = nodeparse.ipv4_addresses(host.run("ip -j -4 addr show").stdout)
        holders += [(name, ifname) for ifname, ips in sorted(addresses.items()) if vip in ips]
    return holders
