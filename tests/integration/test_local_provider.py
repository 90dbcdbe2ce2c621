"""The `local` provider on real namespace nodes: boot, reach, install, clean up (also after a killed `up`)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from locallab import LocalLab, crash, leftovers, sweep
from oci_image import build_image

from provisioner import plan, render, spec
from provisioner.lab import LabDir
from provisioner.providers import local_host
from provisioner.providers.base import ProviderError
from provisioner.providers.local import LocalProvider

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
APT_INSTALL = "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends"


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
    install = lab.ssh("worker-2", f"apt-get update -qq && {APT_INSTALL} jq")
    assert install.returncode == 0, install.stderr
    assert lab.ssh("worker-2", "echo '{\"a\": 7}' | jq .a", check=True).stdout.strip() == "7"
    # The connection inventory Ansible uses is written and strict.
    assert "StrictHostKeyChecking=yes" in lab.lab.connection_inventory.read_text()
    assert oct(Path(lab.provider.key_file).stat().st_mode & 0o777) == "0o600"
    assert lab.provider.status()[0].state == "running"
    # `up` again leaves running nodes alone (same PID 1 on the host).
    pids = {n: lab.provider._state().node(n)["pid"] for n in ("master-1", "worker-1", "worker-2")}
    lab.provider.up(lambda _node, _msg: None)
    assert {n: lab.provider._state().node(n)["pid"] for n in pids} == pids

    # A second lab lives beside it; one that wants the same subnet is refused and touches nothing.
    side: LocalLab = local_lab(name="it-local-side", node_subnet="10.77.104.0/24")
    assert side.ssh("master-1", "hostname", check=True).stdout.strip() == "master-1"
    clash_flags = dict(name="it-local-clash", provider="local", node_subnet=subnet, masters=1, workers=0, lb="none")
    clash_lab = LabDir(side.home / "labs" / "it-local-clash")
    clash = LocalProvider(plan.make_plan(spec.build_spec(flag_values=clash_flags)), clash_lab)
    with pytest.raises(ProviderError, match="already in use"):
        clash.up(lambda _node, _msg: None)
    assert clash.destroy() is False
    assert side.provider.destroy() is True
    assert leftovers("it-local-side", "10.77.104.0/24") == []

    # halt keeps the nodes' disks, resume boots them again.
    lab.ssh("worker-1", "echo kept > /root/marker", check=True)
    lab.provider.halt()
    assert {s.state for s in lab.provider.status()} == {"stopped"}
    lab.provider.resume(lambda _node, _msg: None)
    assert lab.ssh("worker-1", "cat /root/marker; systemctl is-system-running", check=True).stdout.split() == [
        "kept",
        "running",
    ]

    assert lab.provider.destroy() is True
    assert leftovers(name, subnet) == []
    assert lab.provider.destroy() is False  # nothing left: a second destroy is a no-op


def test_containerd_in_nodes_runs_a_locally_built_image_and_containers_reach_each_other(local_lab, tmp_path) -> None:
    lab: LocalLab = local_lab(name="it-local-ctr", node_subnet="10.77.102.0/24", masters=1, workers=1)
    image = "example.org/kubelab/busybox:it"
    archive = build_image(tmp_path / "busybox.tar", image, files={"www/index.html": b"hello from master-1\n"})
    for node in ("master-1", "worker-1"):
        install = lab.ssh(
            node, "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq containerd"
        )
        assert install.returncode == 0, install.stderr
        lab.put(node, archive, "/tmp/busybox.tar")
        imported = lab.ssh(node, "ctr -n k8s.io images import /tmp/busybox.tar && ctr -n k8s.io images ls -q")
        assert imported.returncode == 0, imported.stderr
        assert image in imported.stdout.split()
    server = lab.ssh("master-1", f"ctr -n k8s.io run -d --net-host {image} web httpd -f -p 8080 -h /www")
    assert server.returncode == 0, server.stderr
    master_ip = lab.plan.masters[0].ip
    retry = f"for i in 1 2 3 4 5; do wget -qO- http://{master_ip}:8080/ && exit 0; sleep 1; done; exit 1"
    fetch = f"ctr -n k8s.io run --rm --net-host {image} probe sh -c '{retry}'"
    result = lab.ssh("worker-1", fetch)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "hello from master-1"


UP_SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from provisioner import plan, render, spec
    from provisioner.lab import LabDir
    from provisioner.providers.local import LocalProvider

    home, name, subnet = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    flags = dict(name=name, provider="local", node_subnet=subnet, masters=1, workers=2, lb="none")
    p = plan.make_plan(spec.build_spec(flag_values=flags))
    lab = LabDir(home / "labs" / name)
    render.write_lab(p, lab)
    LocalProvider(p, lab).up(lambda node, msg: print(node, msg, flush=True))
    """
)


def test_destroy_cleans_up_after_a_killed_up(tmp_path) -> None:
    if os.geteuid() != 0:
        pytest.skip("local namespace nodes need root")
    name, subnet = "it-local-killed", "10.77.103.0/24"
    lab = LabDir(tmp_path / "labs" / name)
    proc = subprocess.Popen([sys.executable, "-c", UP_SCRIPT, str(tmp_path), name, subnet], cwd=REPO)
    state_file = lab.root / "local" / "state.json"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            # Midway: at least one node recorded and started, the others maybe not yet.
            if state_file.is_file() and any("netns" in n for n in json.loads(state_file.read_text())["nodes"].values()):
                break
            time.sleep(0.05)
        assert proc.poll() is None, "up finished before it could be interrupted"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
        s = spec.build_spec(
            flag_values=dict(name=name, provider="local", node_subnet=subnet, masters=1, workers=2, lb="none")
        )
        provider = LocalProvider(plan.make_plan(s), lab)
        destroyed = provider.destroy()
    assert destroyed is True
    assert leftovers(name, subnet) == []
    assert not (lab.root / "local").exists()
    assert provider.destroy() is False


def _quiet(_node: str, _message: str) -> None:
    pass


def _rendered_provider(home: Path, name: str, subnet: str, workers: int = 0) -> LocalProvider:
    flags = dict(name=name, provider="local", node_subnet=subnet, masters=1, workers=workers, lb="none")
    lab_plan = plan.make_plan(spec.build_spec(flag_values=flags))
    lab = LabDir(home / "labs" / name)
    render.write_lab(lab_plan, lab)
    return LocalProvider(lab_plan, lab)


def test_dead_remnants_of_a_crashed_lab_are_removed_by_the_next_up_from_another_home(tmp_path_factory) -> None:
    if os.geteuid() != 0:
        pytest.skip("local namespace nodes need root")
    name, subnet = "it-local-ghost", "10.77.105.0/24"
    crashed_home = tmp_path_factory.mktemp("home-crashed")
    fresh = _rendered_provider(tmp_path_factory.mktemp("home-fresh"), name, subnet, workers=1)
    try:
        _rendered_provider(crashed_home, name, subnet, workers=1).up(_quiet)
        # The host session ends: every process is killed, the lab's folder is lost, host objects stay.
        assert crash(name)
        shutil.rmtree(crashed_home)
        left = leftovers(name, subnet)
        for kind in ("netns", "link", "rule", "cgroup"):
            assert any(item.startswith(kind) for item in left), (kind, left)
        assert not any(item.startswith("process") for item in left)

        messages: list[str] = []
        fresh.up(lambda _node, message: messages.append(message))
        assert any("removing dead remnants" in m for m in messages), messages
        assert {s.state for s in fresh.status()} == {"running"}
        assert fresh.destroy() is True
        assert leftovers(name, subnet) == []
    finally:
        fresh.destroy()
        sweep(name)


def test_a_running_lab_of_the_same_name_from_another_home_is_refused_and_left_running(local_lab, tmp_path) -> None:
    name, subnet = "it-local-live", "10.77.106.0/24"
    lab: LocalLab = local_lab(name=name, node_subnet=subnet)
    pid = lab.provider._state().node("master-1")["pid"]
    other = _rendered_provider(tmp_path, name, subnet)
    with pytest.raises(ProviderError, match=f"a lab named '{name}' is running on this host from lab folder"):
        other.up(_quiet)
    other.halt()
    assert other.destroy() is False
    assert local_host.pid_alive(pid)
    assert lab.ssh("master-1", "systemctl is-system-running", check=True).stdout.strip() == "running"
    assert lab.provider._state().node("master-1")["pid"] == pid
