"""Ansible filter shared by every role: the network interface that holds an address, from a host's facts.

Ansible loads this folder for the playbooks beside it, and ansible.cfg names it for any other playbook.
"""

from __future__ import annotations

from typing import Any


def interface_of(facts: dict[str, Any], address: str) -> str:
    """Name of the interface with `address` (primary or secondary IPv4); '' when no interface has it.

    Interfaces are found by address because boxes and providers name the private NIC eth1, enp0s8 or ens6.
    """
    for name in facts.get("interfaces", []):
        # Facts key each interface by its name; some Ansible versions write '-' as '_'.
        iface = facts.get(name) or facts.get(name.replace("-", "_")) or {}
        ipv4 = [iface.get("ipv4", {}).get("address")]
        ipv4 += [entry.get("address") for entry in iface.get("ipv4_secondaries", [])]
        if address in ipv4:
            return name
    return ""


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"interface_of": interface_of}
