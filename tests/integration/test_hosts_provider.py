"""`--provider hosts`: the phases on machines the user already has, given as an SSH inventory.

The "existing machines" are `local` provider nodes of another KUBELAB_HOME; the hosts lab only gets an
inventory file naming their addresses, user, key and ssh options, like a user's own servers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from locallab import LocalLab

pytestmark = pytest.mark.integration
NODES_LAB, SUBNET = "it-life-n", "10.77.121.0/24"
UNUSED_IP = "10.77.121.99"  # on the nodes' bridge, but nobody has it
# The last phase this test runs on the user's machines (`prepare` is the first playbook).
UNTIL = "prepare"


def _kubelab(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "provisioner.cli", *args],
        env={**os.environ, "KUBELAB_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=600,
    )


def _inventory(path: Path, nodes: LocalLab, extra_worker_ip: str | None = None) -> Path:
    """An inventory in the user's own names (cp1, w1, ...) for the running local nodes."""

    def entry(node: str) -> dict[str, object]:
        connection = nodes.connection(node)
        return {
            "ansible_host": connection.host,
            "kubelab_ip": connection.host,
            "ansible_ssh_common_args": " ".join(connection.extra_ssh_args),
        }

    workers: dict[str, object] = {"w1": entry("worker-1")}
    if extra_worker_ip:
        workers["w2"] = {**entry("worker-1"), "ansible_host": extra_worker_ip, "kubelab_ip": extra_worker_ip}
    connection = nodes.connection("master-1")
    data = {
        "all": {
            "vars": {"ansible_user": connection.user, "ansible_ssh_private_key_file": connection.key_file},
            "children": {"masters": {"hosts": {"cp1": entry("master-1")}}, "workers": {"hosts": workers}},
        }
    }
    path.write_text(json.dumps(data, indent=2))  # JSON is YAML
    return path


def _up(home: Path, name: str, inventory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    flags = ["--provider", "hosts", "-i", str(inventory), "--node-subnet", SUBNET, "--lb", "none"]
    return _kubelab(home, "up", "--name", name, *flags, *args)


def test_hosts_lab_runs_phases_on_existing_machines_and_leaves_them(local_lab, tmp_path: Path) -> None:
    nodes: LocalLab = local_lab(name=NODES_LAB, node_subnet=SUBNET, masters=1, workers=1)
    home = tmp_path / "hosts-home"
    nodes.ssh("worker-1", "echo mine > /root/user-data", check=True)

    # One unreachable machine: refused before anything runs or is written, naming the host.
    broken = _up(home, "it-life-hx", _inventory(tmp_path / "broken.yml", nodes, extra_worker_ip=UNUSED_IP))
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert "unreachable host(s) in the inventory" in broken.stderr
    assert f"w2 (root@{UNUSED_IP}:22)" in broken.stderr
    assert "cp1" not in broken.stderr and "w1 " not in broken.stderr
    assert not (home / "labs" / "it-life-hx").exists()

    inventory = _inventory(tmp_path / "hosts.yml", nodes)
    up = _up(home, "it-life-h", inventory, "--until", UNTIL)
    assert up.returncode == 0, up.stdout + up.stderr
    assert f"lab 'it-life-h' (hosts): nodes, {UNTIL}" in up.stdout
    lab_dir = home / "labs" / "it-life-h"
    state = json.loads((lab_dir / "state.json").read_text())
    assert list(state["phases"]) == ["nodes", UNTIL]
    # The machines map onto lab nodes in inventory order and keep their own addresses.
    connections = (lab_dir / "inventory" / "connection.yml").read_text()
    for node in ("master-1", "worker-1"):
        assert json.dumps(nodes.connection(node).host) in connections
    for node, ip in (("master-1", nodes.connection("master-1").host), ("worker-1", nodes.connection("worker-1").host)):
        assert json.loads((lab_dir / "inventory" / "host_vars" / f"{node}.yml").read_text()) == {"kubelab_ip": ip}
    log = (lab_dir / "logs" / f"{UNTIL}.log").read_text()
    assert "master-1" in log and "worker-1" in log

    status = _kubelab(home, "status", "--name", "it-life-h", "--json")
    assert status.returncode == 0, status.stderr
    assert {(n["name"], n["state"]) for n in json.loads(status.stdout)["nodes"]} == {
        ("master-1", "reachable"),
        ("worker-1", "reachable"),
    }
    ssh = _kubelab(home, "ssh", "--name", "it-life-h", "worker-1", "--", "cat", "/root/user-data")
    assert (ssh.returncode, ssh.stdout.strip()) == (0, "mine"), ssh.stderr

    # Resuming does not redo finished phases.
    again = _up(home, "it-life-h", inventory, "--until", UNTIL)
    assert again.returncode == 0, again.stderr
    assert f"lab 'it-life-h': every phase through {UNTIL} is done" in again.stdout

    halt = _kubelab(home, "halt", "--name", "it-life-h")
    assert halt.returncode == 1
    assert "does not power off machines it did not create" in halt.stderr

    destroy = _kubelab(home, "destroy", "--name", "it-life-h", "--yes")
    assert destroy.returncode == 0, destroy.stderr
    assert "your machines were left as they are" in destroy.stdout
    assert not lab_dir.exists()
    # The user's machines still run, with their data.
    assert {s.state for s in nodes.provider.status()} == {"running"}
    after = nodes.ssh("worker-1", "cat /root/user-data; systemctl is-system-running", check=True)
    assert after.stdout.split() == ["mine", "running"]
