"""The `local` provider on real namespace nodes: boot, reach, install, clean up (also after a killed `up`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from locallab import LocalLab, leftovers

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def test_three_nodes_boot_reach_each_other_install_packages_and_leave_nothing(local_lab) -> None:
    name, subnet = "it-local-three", "10.77.101.0/24"
    lab: LocalLab = local_lab(name=name, node_subnet=subnet, masters=1, workers=2)
    print(f"time to all-ready for 3 nodes: {lab.provider.last_ready_seconds:.1f} s")
    nodes = lab.plan.nodes
    assert [n.name for n in nodes] == ["master-1", "worker-1", "worker-2"]
    for node in nodes:
        facts = lab.ssh(node.name, "systemctl is-system-running; hostname; ip -4 -o addr show dev eth0", check=True)
        state, hostname, addr = facts.stdout.splitlines()
        assert state == "running"
        assert hostname == node.name
        assert f" {node.ip}/24 " in addr
        others = [n.ip for n in nodes if n is not node]
        reach = lab.ssh(node.name, " && ".join(f"timeout 5 bash -c '</dev/tcp/{ip}/22'" for ip in others))
        assert reach.returncode == 0, reach.stdout + reach.stderr
    # Each node has its own identity.
    ids = {lab.ssh(n.name, "cat /etc/machine-id", check=True).stdout for n in nodes}
    assert len(ids) == 3
    install = lab.ssh("worker-2", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq jq")
    assert install.returncode == 0, install.stderr
    assert lab.ssh("worker-2", "echo '{\"a\": 7}' | jq .a", check=True).stdout.strip() == "7"
    # The connection inventory Ansible uses is written and strict.
    assert "StrictHostKeyChecking=yes" in lab.lab.connection_inventory.read_text()
    assert oct(Path(lab.provider.key_file).stat().st_mode & 0o777) == "0o600"
    assert lab.provider.status()[0].state == "running"

    assert lab.provider.destroy() is True
    assert leftovers(name, subnet) == []
    assert lab.provider.destroy() is False  # nothing left: a second destroy is a no-op
