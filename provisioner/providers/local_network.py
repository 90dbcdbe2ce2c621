"""A local lab's network on the host: one bridge, a netns + veth per node, NAT for the lab subnet only."""

from __future__ import annotations

import hashlib
import ipaddress
import json
from pathlib import Path

from provisioner.providers.base import ProviderError
from provisioner.providers.local_host import run

NETNS_DIR = Path("/run/netns")
OWNER_PREFIX = "kubelab:"


def _short(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def bridge_name(lab: str) -> str:
    """Linux interface names have at most 15 characters: 'klb' + a hash of the lab name."""
    return "klb" + _short(lab)


def veth_name(lab: str, node: str) -> str:
    return "klv" + _short(f"{lab}/{node}")


def netns_name(lab: str, node: str) -> str:
    return f"kubelab-{lab}-{node}"


def gateway(subnet: str) -> ipaddress.IPv4Interface:
    """The host's address on the lab bridge: the subnet's .1."""
    network = ipaddress.IPv4Network(subnet)
    return ipaddress.IPv4Interface(f"{network.network_address + 1}/{network.prefixlen}")


def link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def netns_exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def routed_networks(except_dev: str | None = None) -> list[tuple[ipaddress.IPv4Network, str, str]]:
    """(network, route destination, device) of every non-default IPv4 route of the host, except through `except_dev`."""
    routes = json.loads(run(["ip", "-j", "-4", "route", "show", "table", "all"]).stdout or "[]")
    found = []
    for route in routes:
        dst = route.get("dst", "")
        if dst in ("default", "") or route.get("dev") == except_dev:
            continue
        try:
            network = ipaddress.IPv4Network(dst, strict=False)
        except ValueError:
            continue
        if network.prefixlen:
            found.append((network, dst, route.get("dev", "?")))
    return found


def check_subnet_free(subnet: str, bridge: str) -> None:
    """Refuse a subnet that the host already routes through something other than this lab's bridge."""
    network = ipaddress.IPv4Network(subnet)
    for routed, dst, dev in routed_networks(except_dev=bridge):
        if routed.overlaps(network):
            raise ProviderError(
                f"node subnet {subnet} is already in use on this host ({dst} via {dev}): "
                "pick a free one with --node-subnet, or destroy the lab that uses it"
            )


def bridge_owner(bridge: str) -> str | None:
    """The lab folder that created the bridge (kept in the link's alias), None if unknown or no bridge."""
    try:
        alias = Path("/sys/class/net", bridge, "ifalias").read_text().strip()
    except OSError:
        return None
    return alias.removeprefix(OWNER_PREFIX) if alias.startswith(OWNER_PREFIX) else None


def ensure_bridge(bridge: str, subnet: str, mtu: int | None, owner: str) -> None:
    """Create the lab bridge with the .1 address (idempotent), its alias naming the owning lab folder.
    Multicast snooping is off so VRRP floods."""
    if not link_exists(bridge):
        run(["ip", "link", "add", bridge, "type", "bridge", "mcast_snooping", "0"])
    if bridge_owner(bridge) != owner:
        run(["ip", "link", "set", "dev", bridge, "alias", OWNER_PREFIX + owner])
    if mtu:
        run(["ip", "link", "set", bridge, "mtu", str(mtu)])
    address = str(gateway(subnet))
    current = run(["ip", "-4", "-o", "addr", "show", "dev", bridge]).stdout
    if f" {address} " not in current:
        run(["ip", "addr", "add", address, "dev", bridge])
    run(["ip", "link", "set", bridge, "up"])


def delete_link(name: str) -> bool:
    if not link_exists(name):
        return False
    run(["ip", "link", "del", name], check=False)
    return True


def add_netns(name: str) -> None:
    if not netns_exists(name):
        run(["ip", "netns", "add", name])


def delete_netns(name: str) -> bool:
    if not netns_exists(name):
        return False
    run(["ip", "netns", "del", name], check=False)
    return True


def plug_node(netns: str, veth: str, bridge: str, address: str, subnet: str, mtu: int | None) -> None:
    """veth pair: host end on the bridge, `eth0` in the node's netns with its address and default route."""
    network = ipaddress.IPv4Network(subnet)
    if not link_exists(veth):
        run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns])
    mtu_args = ["mtu", str(mtu)] if mtu else []
    run(["ip", "link", "set", veth, "master", bridge, *mtu_args, "up"])
    inside = ["ip", "-n", netns]
    run([*inside, "link", "set", "lo", "up"])
    run([*inside, "link", "set", "eth0", *mtu_args, "up"])
    if f" {address}/" not in run([*inside, "-4", "-o", "addr", "show", "dev", "eth0"]).stdout:
        run([*inside, "addr", "add", f"{address}/{network.prefixlen}", "dev", "eth0"])
    run([*inside, "route", "replace", "default", "via", str(gateway(subnet).ip)])


# --- iptables rules, each tagged with a comment naming the lab ------------------------------------------


def nat_rules(lab: str, bridge: str, subnet: str) -> list[list[str]]:
    """[table, chain, match...] of every rule the lab needs: NAT out of the subnet, forwarding to/from it."""
    tag = ["-m", "comment", "--comment", f"kubelab:{lab}"]
    return [
        ["nat", "POSTROUTING", "-s", subnet, "!", "-o", bridge, *tag, "-j", "MASQUERADE"],
        ["filter", "FORWARD", "-i", bridge, *tag, "-j", "ACCEPT"],
        ["filter", "FORWARD", "-o", bridge, *tag, "-j", "ACCEPT"],
    ]


def rule_exists(rule: list[str]) -> bool:
    table, chain, *spec = rule
    return run(["iptables", "-w", "-t", table, "-C", chain, *spec], check=False).returncode == 0


def ensure_rule(rule: list[str]) -> None:
    if not rule_exists(rule):
        table, chain, *spec = rule
        action = "-A" if table == "nat" else "-I"  # forwarding rules go first, before any host DROP rule
        run(["iptables", "-w", "-t", table, action, chain, *spec])


def delete_rule(rule: list[str]) -> bool:
    found = False
    while rule_exists(rule):
        table, chain, *spec = rule
        run(["iptables", "-w", "-t", table, "-D", chain, *spec])
        found = True
    return found
