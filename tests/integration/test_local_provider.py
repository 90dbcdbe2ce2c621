"""The `local` provider on real namespace nodes: boot, reach, install, containerd, labs side by side, names taken
by a live lab or left by a crashed one, halt/resume, the CLI, and cleanup (also after a killed `up`).

Most tests share one 3-node lab (`three`, module scope); the last of them destroys it and checks the host."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from locallab import LocalLab, crash, leftovers, sweep

from provisioner import plan, render, spec
from provisioner.lab import LabDir
from provisioner.oci import build_image, busybox_layer, layer_from_files
from provisioner.providers import local_host, local_network, local_remnants
from provisioner.providers.base import ProviderError
from provisioner.providers.local import LocalProvider

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
KUBELAB = Path(sys.executable).with_name("kubelab")
APT_INSTALL = "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends"
THREE, THREE_SUBNET = "it-local-three", "10.77.101.0/24"


def _quiet(_node: str, _message: str) -> None:
    pass


def _rendered_provider(home: Path, name: str, subnet: str, workers: int = 0) -> LocalProvider:
    flags = dict(name=name, provider="local", node_subnet=subnet, masters=1, workers=workers, lb="none", no_image=True)
    lab_plan = plan.make_plan(spec.build_spec(flag_values=flags))
    lab = LabDir(home / "labs" / name)
    render.write_lab(lab_plan, lab)
    return LocalProvider(lab_plan, lab)


def _pids(lab: LocalLab) -> dict[str, int]:
    return {n.name: lab.provider._state().node(n.name)["pid"] for n in lab.plan.nodes}


@pytest.fixture(scope="module")
def three(local_lab_module) -> LocalLab:
    lab: LocalLab = local_lab_module(name=THREE, node_subnet=THREE_SUBNET, masters=1, workers=2)
    print(f"time to all-ready for 3 nodes: {lab.provider.last_ready_seconds:.1f} s")
    return lab


def test_nodes_boot_with_their_names_and_addresses_and_reach_each_other(three: LocalLab) -> None:
    nodes = three.plan.nodes
    assert [n.name for n in nodes] == ["master-1", "worker-1", "worker-2"]
    for node in nodes:
        facts = three.ssh(node.name, "systemctl is-system-running; hostname; ip -4 -o addr show dev eth0", check=True)
        state, hostname, addr = facts.stdout.splitlines()
        assert state == "running"
        assert hostname == node.name
        assert f" {node.ip}/24 " in addr
        others = [n.ip for n in nodes if n is not node]
        reach = three.ssh(node.name, " && ".join(f"timeout 5 bash -c '</dev/tcp/{ip}/22'" for ip in others))
        assert reach.returncode == 0, reach.stdout + reach.stderr
    # Each node has its own identity.
    assert len({three.ssh(n.name, "cat /etc/machine-id", check=True).stdout for n in nodes}) == 3
    # The connection inventory Ansible uses is written and strict; the lab key is private.
    assert "StrictHostKeyChecking=yes" in three.lab.connection_inventory.read_text()
    assert oct(Path(three.provider.key_file).stat().st_mode & 0o777) == "0o600"
    assert [(s.name, s.state, s.address) for s in three.provider.status()] == [(n.name, "running", n.ip) for n in nodes]


def test_a_node_installs_a_package_from_the_mirror(three: LocalLab) -> None:
    install = three.ssh("worker-2", f"apt-get update -qq && {APT_INSTALL} jq")
    assert install.returncode == 0, install.stderr
    assert three.ssh("worker-2", "echo '{\"a\": 7}' | jq .a", check=True).stdout.strip() == "7"


def test_up_again_leaves_running_nodes_alone(three: LocalLab) -> None:
    pids = _pids(three)
    three.provider.up(_quiet)
    assert _pids(three) == pids
    assert all(local_host.pid_alive(pid) for pid in pids.values())


def test_containerd_in_nodes_runs_a_locally_built_image_and_containers_reach_each_other(three, tmp_path) -> None:
    image, nodes = "example.org/kubelab/busybox:it", ("master-1", "worker-1")
    site = layer_from_files({"www/index.html": b"hello from master-1\n"})
    archive = build_image(tmp_path / "busybox.tar", image, [busybox_layer(), site])
    with ThreadPoolExecutor() as pool:
        installs = pool.map(lambda n: three.ssh(n, f"apt-get update -qq && {APT_INSTALL} containerd"), nodes)
    for install in installs:
        assert install.returncode == 0, install.stderr
    for node in nodes:
        three.put(node, archive, "/tmp/busybox.tar")
        imported = three.ssh(node, "ctr -n k8s.io images import /tmp/busybox.tar && ctr -n k8s.io images ls -q")
        assert imported.returncode == 0, imported.stderr
        assert image in imported.stdout.split()
    server = three.ssh("master-1", f"ctr -n k8s.io run -d --net-host {image} web httpd -f -p 8080 -h /www")
    assert server.returncode == 0, server.stderr
    master_ip = three.plan.masters[0].ip
    retry = f"for i in 1 2 3 4 5; do wget -qO- http://{master_ip}:8080/ && exit 0; sleep 1; done; exit 1"
    result = three.ssh("worker-1", f"ctr -n k8s.io run --rm --net-host {image} probe sh -c '{retry}'")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "hello from master-1"


def test_a_running_lab_of_the_same_name_from_another_home_is_refused_and_left_running(three, tmp_path) -> None:
    pids = _pids(three)
    other = _rendered_provider(tmp_path, THREE, THREE_SUBNET, workers=2)
    with pytest.raises(ProviderError, match=f"a lab named '{THREE}' is running on this host from lab folder"):
        other.up(_quiet)
    other.halt()
    assert other.destroy() is False
    assert _pids(three) == pids
    assert all(local_host.pid_alive(pid) for pid in pids.values())
    assert three.ssh("worker-2", "systemctl is-system-running", check=True).stdout.strip() == "running"


def test_a_second_lab_runs_beside_it_and_a_clashing_subnet_is_refused_before_anything_is_made(three, local_lab) -> None:
    side: LocalLab = local_lab(name="it-local-side", node_subnet="10.77.104.0/24")
    assert side.ssh("master-1", "hostname -I", check=True).stdout.split() == ["10.77.104.21"]
    assert local_network.bridge_name("it-local-side") != three.provider.bridge
    assert three.ssh("master-1", "systemctl is-system-running", check=True).stdout.strip() == "running"
    # A third lab wanting the subnet the first one routes is refused, and nothing of it is created.
    clash = _rendered_provider(side.home, "it-local-clash", THREE_SUBNET)
    with pytest.raises(ProviderError, match=f"node subnet {THREE_SUBNET} is already in use on this host"):
        clash.up(_quiet)
    assert leftovers("it-local-clash", "10.77.199.0/24") == []  # (an unused subnet: the first lab's is in use)
    assert clash.destroy() is False
    assert side.provider.destroy() is True
    assert leftovers("it-local-side", "10.77.104.0/24") == []
    assert three.ssh("master-1", "systemctl is-system-running", check=True).stdout.strip() == "running"


def test_halt_keeps_the_disks_and_resume_boots_the_nodes_again(three: LocalLab) -> None:
    three.ssh("worker-1", "echo kept > /root/marker", check=True)
    three.provider.halt()
    assert {s.state for s in three.provider.status()} == {"stopped"}
    assert not [item for item in leftovers(THREE, THREE_SUBNET) if item.startswith(("process", "netns"))]
    three.provider.resume(_quiet)
    marker = three.ssh("worker-1", "cat /root/marker; systemctl is-system-running", check=True).stdout.split()
    assert marker == ["kept", "running"]


def test_destroy_leaves_nothing_and_a_second_destroy_is_a_no_op(three: LocalLab) -> None:
    assert three.provider.destroy() is True
    assert leftovers(THREE, THREE_SUBNET) == []
    assert not (three.lab.root / "local").exists()
    assert three.provider.destroy() is False


def test_the_cli_creates_shows_reaches_halts_and_destroys_a_lab(tmp_path) -> None:
    if os.geteuid() != 0:
        pytest.skip("local namespace nodes need root")
    name, subnet = "it-local-cli", "10.77.107.0/24"
    env = {**os.environ, "KUBELAB_HOME": str(tmp_path)}

    def kubelab(*args: str, answer: str = "") -> subprocess.CompletedProcess[str]:
        argv = [str(KUBELAB), *args]
        return subprocess.run(argv, input=answer, capture_output=True, text=True, env=env, timeout=300)

    try:
        up = kubelab(
            "up", "--name", name, "--provider", "local", "--node-subnet", subnet,
            "--masters", "1", "--workers", "1", "--lb", "none", "--no-image", "--until", "nodes",
        )  # fmt: skip
        assert up.returncode == 0, up.stdout + up.stderr
        status = kubelab("status", "--name", name)
        assert status.returncode == 0, status.stderr
        rows = [line.split() for line in status.stdout.splitlines() if line.strip().startswith(("master-", "worker-"))]
        assert rows == [
            ["master-1", "master", "10.77.107.21", "running"],
            ["worker-1", "worker", "10.77.107.31", "running"],
        ]
        ssh = kubelab("ssh", "--name", name, "worker-1", "--", "sh", "-c", "hostname; hostname -I")
        assert ssh.returncode == 0, ssh.stderr
        assert ssh.stdout.split() == ["worker-1", "10.77.107.31"]
        assert kubelab("ssh", "--name", name, "worker-1", "--", "sh", "-c", "exit 3").returncode == 3

        refused = kubelab("destroy", "--name", name, answer="n\n")
        assert refused.returncode != 0 and "nothing destroyed" in refused.stdout
        assert kubelab("ssh", "--name", name, "master-1", "--", "true").returncode == 0
        # A halted lab keeps its nodes (stopped) until it is destroyed.
        assert kubelab("halt", "--name", name).returncode == 0
        halted = kubelab("status", "--name", name).stdout.splitlines()
        assert [line.split()[-1] for line in halted if line.strip().startswith(("master-", "worker-"))] == [
            "stopped",
            "stopped",
        ]
        destroyed = kubelab("destroy", "--name", name, "--yes")
        assert destroyed.returncode == 0, destroyed.stderr
        assert f"lab '{name}' destroyed: machines removed" in destroyed.stdout
        assert leftovers(name, subnet) == []
        assert not (tmp_path / "labs" / name).exists()
        again = kubelab("destroy", "--name", name, "--yes")
        assert again.returncode == 0 and "nothing to destroy" in again.stdout
    finally:
        kubelab("destroy", "--name", name, "--yes")
        sweep(name)


UP_SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from provisioner import plan, render, spec
    from provisioner.lab import LabDir
    from provisioner.providers.local import LocalProvider

    home, name, subnet = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    flags = dict(name=name, provider="local", node_subnet=subnet, masters=1, workers=2, lb="none", no_image=True)
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
        sweep(name)
    assert destroyed is True
    assert leftovers(name, subnet) == []
    assert not (lab.root / "local").exists()
    assert provider.destroy() is False


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


def test_a_node_that_boots_with_failed_units_is_refused_naming_them(tmp_path) -> None:
    if os.geteuid() != 0:
        pytest.skip("local namespace nodes need root")
    name, subnet = "it-local-broken", "10.77.108.0/24"
    provider = _rendered_provider(tmp_path, name, subnet)
    # A unit that fails at every boot, put into the node's own layer before it first starts.
    units = provider.state_dir / "nodes" / "master-1" / "upper" / "etc" / "systemd" / "system"
    (units / "multi-user.target.wants").mkdir(parents=True)
    (units / "it-broken.service").write_text(
        "[Unit]\nDescription=fails on purpose\n[Service]\nType=oneshot\nExecStart=/bin/false\n"
        "[Install]\nWantedBy=multi-user.target\n"
    )
    (units / "multi-user.target.wants" / "it-broken.service").symlink_to("../it-broken.service")
    try:
        with pytest.raises(ProviderError, match=r"(?s)node master-1 booted with failed units.*it-broken\.service"):
            provider.up(_quiet)
    finally:
        provider.destroy()
        sweep(name)
    assert leftovers(name, subnet) == []


def test_cgroup_scans_and_removal_tolerate_directories_vanishing_meanwhile() -> None:
    """A node's systemd creates and removes cgroups at any time; scanning or removing must not trip on that."""
    if os.geteuid() != 0:
        pytest.skip("cgroups need root")
    hierarchy = next(point for point, fstype, _options in local_host.cgroup_mounts() if fstype == "cgroup2")
    top = hierarchy / "it-local-race"
    leaf = top / "busy" / "kubelab-it-local-race-master-1"
    stop = threading.Event()

    def churn(parent: Path) -> None:
        while not stop.is_set():
            for i in range(20):
                (parent / f"unit-{i}.scope").mkdir(exist_ok=True)
            for i in range(20):
                (parent / f"unit-{i}.scope").rmdir()

    threads = [threading.Thread(target=churn, args=(d,)) for d in (top, top / "busy", leaf)]
    try:
        leaf.mkdir(parents=True)
        for thread in threads:
            thread.start()
        pattern = local_remnants.node_object_pattern("it-local-race")
        for _round in range(20):  # the former Path.glob scan raised FileNotFoundError about every other round
            assert local_host.find_cgroup_dirs(pattern) == [leaf]
            assert local_host.cgroup_pids(top) == []
        stop.set()
        for thread in threads:
            thread.join()
        assert local_host.remove_cgroup(top) is True
        assert not top.exists()
    finally:
        stop.set()
        for thread in threads:
            if thread.is_alive():
                thread.join()
        local_host.remove_cgroup(top)
