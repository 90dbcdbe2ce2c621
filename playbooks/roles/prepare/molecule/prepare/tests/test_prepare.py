"""The prepare role on fresh nodes: kubelab's shipped prepare checks, and what the role writes and undoes."""

from __future__ import annotations

import re
from typing import Any

import pytest

from provisioner.checks.labfacts import LabFacts
from provisioner.checks.test_nodes import (  # noqa: F401 (collected here)
    test_kernel_module,
    test_swap_not_in_fstab,
    test_swap_off,
    test_sysctl,
    test_time_synchronised,
)

SYSCTLS = ("net.ipv4.ip_forward", "net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables")
SWAP_LINE = "/swapfile none swap sw 0 0"


def test_hosts_file_lists_every_node(host: Any, lab: LabFacts) -> None:
    name = lab.root.name
    found = re.search(
        f"# BEGIN kubelab {name} nodes\n(.*?)# END kubelab {name} nodes", host.file("/etc/hosts").content_string, re.S
    )
    assert found, host.file("/etc/hosts").content_string
    assert sorted(found.group(1).splitlines()) == sorted(f"{ip} {node}" for node, ip in lab.nodes.items())


def test_kernel_modules_and_parameters_persist(host: Any) -> None:
    assert host.file("/etc/modules-load.d/kubelab.conf").content_string.split("\n")[1:3] == ["overlay", "br_netfilter"]
    persisted = host.file("/etc/sysctl.d/90-kubelab.conf").content_string
    for key in SYSCTLS:
        assert f"{key} = 1" in persisted
        assert host.run(f"sysctl -n {key}").stdout.strip() == "1", key


@pytest.mark.groups("masters")
def test_swap_entry_commented_out(host: Any) -> None:
    # prepare.yml added the entry; `swapoff -a` itself is skipped on local nodes: their swap is the host's.
    assert f"# {SWAP_LINE}  # disabled by kubelab" in host.file("/etc/fstab").content_string
