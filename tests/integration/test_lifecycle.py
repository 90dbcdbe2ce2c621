"""A lab's whole life through the `kubelab` CLI on real `local` nodes: up (phases, --until, resume, --from),
status, ssh, kubeconfig, halt, resume, destroy; everything the lab made is gone afterwards.

The same running nodes then serve as "machines the user already has" for a `--provider hosts` lab in another
KUBELAB_HOME (one set of nodes for both saves a second round of package installs).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from locallab import fail_if_left, leftovers
from locallab import kubelab_cli as kubelab

pytestmark = pytest.mark.integration
NAME, SUBNET = "it-life", "10.77.122.0/24"
HOSTS_LAB = "it-life-h"
UNUSED_IP = "10.77.122.99"  # on the lab's bridge, but nobody has it
# The phases this machine can run without Kubernetes binaries: the ones before `packages`.
UNTIL = "runtime"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """KUBELAB_HOME of the lab; at the end `kubelab destroy` (and a sweep if it left anything)."""
    if os.geteuid() != 0:
        pytest.skip("local namespace nodes need root")
    path = tmp_path_factory.mktemp("kubelab-life")
    try:
        yield path
    finally:
        kubelab(path, "destroy", "--name", NAME, "--yes")
        fail_if_left(NAME, SUBNET)


def test_up_until_status_resume_from_halt_destroy(home: Path) -> None:
    flags = [
        *("--name", NAME, "--provider", "local", "--node-subnet", SUBNET, "--masters", "1", "--workers", "1"),
        "--no-image",
    ]
    flags += ["--lb", "none", "--containerd-source", "distro"]  # no GitHub downloads here
    first = kubelab(home, "up", *flags, "--until", "nodes")
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"lab '{NAME}' (local): nodes\n" in first.stdout
    assert "nodes" in first.stdout and "2 node(s)" in first.stdout

    # Without flags `up` resumes the lab as created, at the first unfinished phase.
    up = kubelab(home, "up", "--name", NAME, "--until", UNTIL)
    assert up.returncode == 0, up.stdout + up.stderr
    assert f"lab '{NAME}' (local): prepare, {UNTIL}\n" in up.stdout
    lines = up.stdout.splitlines()
    for phase in ("prepare", UNTIL):  # one result line per phase: mark, name, elapsed time, ok, Ansible's recap
        line = next(line for line in lines if line.startswith("✓ ") and f" {phase} " in line)
        assert " ok " in line, line
    lab = home / "labs" / NAME
    for phase in ("prepare", UNTIL):
        assert "PLAY RECAP" in (lab / "logs" / f"{phase}.log").read_text()
    assert list(json.loads((lab / "timings.json").read_text())["phases"]) == ["nodes", "prepare", UNTIL]

    status = kubelab(home, "status", "--name", NAME, "--json")
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    assert data["phases"]["done"] == ["nodes", "prepare", UNTIL]
    assert data["phases"]["next"] == "packages"
    assert data["kubeconfig"] is None
    assert [(n["name"], n["ip"], n["state"]) for n in data["nodes"]] == [
        ("master-1", "10.77.122.21", "running"),
        ("worker-1", "10.77.122.31", "running"),
    ]
    text = kubelab(home, "status", "--name", NAME).stdout
    assert "next phase   packages" in text and "master-1    master   10.77.122.21" in text

    kubeconfig = kubelab(home, "kubeconfig", "--name", NAME)
    assert kubeconfig.returncode == 1
    assert f"lab '{NAME}' has no kubeconfig yet" in kubeconfig.stderr and "control-plane phase" in kubeconfig.stderr

    ssh = kubelab(home, "ssh", "--name", NAME, "worker-1", "--", "systemctl", "is-active", "containerd")
    assert (ssh.returncode, ssh.stdout.strip()) == (0, "active"), ssh.stderr
    unknown = kubelab(home, "ssh", "--name", NAME, "worker-9")
    assert unknown.returncode == 1 and "has no node 'worker-9'; its nodes: master-1, worker-1" in unknown.stderr

    # Re-running is safe: finished phases are skipped; --from re-runs one, and Ansible changes nothing.
    again = kubelab(home, "up", "--name", NAME, "--until", UNTIL)
    assert again.returncode == 0 and f"every phase through {UNTIL} is done" in again.stdout, again.stdout
    rerun = kubelab(home, "up", "--name", NAME, "--from", UNTIL, "--until", UNTIL)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"(local): {UNTIL}\n" in rerun.stdout
    assert "changed=0" in (lab / "logs" / f"{UNTIL}.log").read_text().split("PLAY RECAP")[-1]

    # A changed spec is refused instead of silently rebuilding a lab that has run phases.
    changed = kubelab(home, "up", "--name", NAME, "--workers", "2")
    assert changed.returncode == 1 and "already exists with a different spec (workers: 1 -> 2" in changed.stderr

    run_hosts_lab(home.parent / f"{home.name}-hosts", lab)
    # The user's machines still run, with their data.
    ssh = kubelab(home, "ssh", "--name", NAME, "worker-1", "--", "cat /root/user-data; systemctl is-system-running")
    assert ssh.stdout.split() == ["mine", "running"], ssh.stderr

    # A net.* kernel parameter persisted in /etc/sysctl.d (as the haproxy role does with ip_nonlocal_bind,
    # default 0) survives the restart of the node's network namespace.
    persist = (
        "echo 'net.ipv4.ip_nonlocal_bind = 1' > /etc/sysctl.d/95-user.conf && sysctl -qw net.ipv4.ip_nonlocal_bind=1"
    )
    assert kubelab(home, "ssh", "--name", NAME, "worker-1", "--", persist).returncode == 0
    halt = kubelab(home, "halt", "--name", NAME)
    assert halt.returncode == 0, halt.stderr
    halted = json.loads(kubelab(home, "status", "--name", NAME, "--json").stdout)
    assert {n["state"] for n in halted["nodes"]} == {"stopped"}
    resume = kubelab(home, "resume", "--name", NAME)
    assert resume.returncode == 0, resume.stdout + resume.stderr
    assert "is running: swap off" in resume.stdout
    ssh = kubelab(home, "ssh", "--name", NAME, "master-1", "--", "systemctl", "is-active", "containerd")
    assert ssh.stdout.strip() == "active", ssh.stderr
    ssh = kubelab(home, "ssh", "--name", NAME, "worker-1", "--", "sysctl -n net.ipv4.ip_nonlocal_bind")
    assert ssh.stdout.strip() == "1", ssh.stdout + ssh.stderr

    not_hosts = kubelab(home, "destroy", "--name", NAME, "--yes", "--reset")
    assert not_hosts.returncode == 1 and "--reset is for --provider hosts labs" in not_hosts.stderr
    destroy = kubelab(home, "destroy", "--name", NAME, "--yes")
    assert destroy.returncode == 0, destroy.stderr
    assert f"lab '{NAME}' destroyed: machines removed" in destroy.stdout
    assert not lab.exists()
    assert leftovers(NAME, SUBNET) == []
    assert "nothing to destroy" in kubelab(home, "destroy", "--name", NAME, "--yes").stdout


def hosts_inventory(path: Path, nodes_lab: Path, unreachable: str | None = None) -> Path:
    """An inventory in the user's own names (cp1, w1) for the nodes of `nodes_lab`, optionally with a host w2
    at an address nobody answers on."""
    import yaml

    connections = yaml.safe_load((nodes_lab / "inventory" / "connection.yml").read_text())["all"]["hosts"]

    def entry(node: str) -> dict[str, object]:
        connection = connections[node]
        return {
            "ansible_host": connection["ansible_host"],
            "kubelab_ip": connection["ansible_host"],
            "ansible_ssh_common_args": connection["ansible_ssh_common_args"],
        }

    workers = {"w1": entry("worker-1")}
    if unreachable:
        workers["w2"] = {**entry("worker-1"), "ansible_host": unreachable, "kubelab_ip": unreachable}
    defaults = {key: connections["master-1"][key] for key in ("ansible_user", "ansible_ssh_private_key_file")}
    data = {
        "all": {
            "vars": defaults,
            "children": {"masters": {"hosts": {"cp1": entry("master-1")}}, "workers": {"hosts": workers}},
        }
    }
    path.write_text(json.dumps(data, indent=2))  # JSON is YAML
    return path


def run_hosts_lab(home: Path, nodes_lab: Path) -> None:
    """`--provider hosts` on the running nodes of `nodes_lab`: phases run there, destroy leaves them alone."""
    home.mkdir()
    flags = ["--provider", "hosts", "--node-subnet", SUBNET, "--lb", "none", "--containerd-source", "distro"]
    kubelab(nodes_lab.parent.parent, "ssh", "--name", NAME, "worker-1", "--", "echo mine > /root/user-data")

    # One unreachable machine: refused before anything runs or is written, naming only that host.
    broken_inventory = hosts_inventory(home / "broken.yml", nodes_lab, unreachable=UNUSED_IP)
    broken = kubelab(home, "up", "--name", "it-life-hx", "-i", str(broken_inventory), *flags)
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert "unreachable host(s) in the inventory" in broken.stderr
    assert f"w2 (root@{UNUSED_IP}:22)" in broken.stderr
    assert "cp1 (" not in broken.stderr and "w1 (" not in broken.stderr
    assert not (home / "labs" / "it-life-hx").exists()

    inventory = hosts_inventory(home / "hosts.yml", nodes_lab)
    up = kubelab(home, "up", "--name", HOSTS_LAB, "-i", str(inventory), *flags, "--until", UNTIL)
    assert up.returncode == 0, up.stdout + up.stderr
    assert f"lab '{HOSTS_LAB}' (hosts): nodes, prepare, {UNTIL}\n" in up.stdout
    lab = home / "labs" / HOSTS_LAB
    assert list(json.loads((lab / "state.json").read_text())["phases"]) == ["nodes", "prepare", UNTIL]
    # The machines map onto lab nodes in inventory order and keep their own addresses.
    for node, ip in (("master-1", "10.77.122.21"), ("worker-1", "10.77.122.31")):
        assert json.loads((lab / "inventory" / "host_vars" / f"{node}.yml").read_text()) == {"kubelab_ip": ip}
        assert f"ok: [{node}]" in (lab / "logs" / f"{UNTIL}.log").read_text()

    status = json.loads(kubelab(home, "status", "--name", HOSTS_LAB, "--json").stdout)
    assert [(n["name"], n["state"]) for n in status["nodes"]] == [("master-1", "reachable"), ("worker-1", "reachable")]
    ssh = kubelab(home, "ssh", "--name", HOSTS_LAB, "worker-1", "--", "cat /root/user-data")
    assert (ssh.returncode, ssh.stdout.strip()) == (0, "mine"), ssh.stderr

    halt = kubelab(home, "halt", "--name", HOSTS_LAB)
    assert halt.returncode == 1 and "does not power off machines it did not create" in halt.stderr

    # --reset undoes Kubernetes state on the machines (here: a CNI config) and keeps everything else.
    cni_file = "/etc/cni/net.d/10-kubelab-test.conflist"
    kubelab(home, "ssh", "--name", HOSTS_LAB, "worker-1", "--", f"mkdir -p /etc/cni/net.d && echo {{}} > {cni_file}")
    destroy = kubelab(home, "destroy", "--name", HOSTS_LAB, "--yes", "--reset")
    assert destroy.returncode == 0, destroy.stdout + destroy.stderr
    assert any(line.startswith("✓ reset ") for line in destroy.stdout.splitlines()), destroy.stdout
    assert "your machines were left running (Kubernetes reset on them, kubelab did not create them)" in destroy.stdout
    assert not lab.exists()
    gone = kubelab(nodes_lab.parent.parent, "ssh", "--name", NAME, "worker-1", "--", f"test -e {cni_file}")
    assert gone.returncode == 1, gone.stderr
