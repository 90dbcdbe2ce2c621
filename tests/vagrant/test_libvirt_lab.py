"""Real Vagrant: `kubelab up --provider libvirt --until runtime` boots a VM on QEMU without KVM, Ansible
reaches it through Vagrant's SSH config and runs the prepare and runtime phases in it (containerd from
Debian: GitHub release downloads are unreachable here; time from a small SNTP server on the host through the
lab's `ntp_servers`: this machine reaches no public time server), `kubelab verify --only nodes` passes, the VM
survives `kubelab halt` and `kubelab resume`, and `kubelab destroy` leaves no domain, volume or network behind.

The box is built locally (boxbuilder.py, cached) and booted with direct kernel boot (no bootloader).
Every Ansible task costs a few seconds in a TCG guest: the test takes about 7 minutes on an idle 2-core host.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from boxbuilder import Box, build_box
from hosttools import require_tools
from sntp import SntpServer

pytestmark = pytest.mark.vagrant
NAME, SUBNET, MANAGEMENT = "it-life-vg", "10.77.128.0/24", "10.77.129.0/24"
HOST_ADDRESS = "10.77.128.1"  # the host on the lab's private network
BOX = "kubelab-it/debian12"
BOX_VOLUME_PREFIX = "kubelab-it-VAGRANTSLASH-debian12_"
BOOT_DIR = Path("/var/lib/libvirt/boot")  # qemu runs as libvirt-qemu: the kernel must be readable there
KERNEL, INITRD = BOOT_DIR / "kubelab-it-vmlinuz", BOOT_DIR / "kubelab-it-initrd.img"
# Vagrant merges $VAGRANT_HOME/Vagrantfile into the lab's: a TCG guest on a busy 2-core host can need more
# than the default 300 s before sshd answers.
VAGRANT_HOME_FILE = 'Vagrant.configure("2") { |config| config.vm.boot_timeout = 900 }\n'


def virsh(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["virsh", "-c", "qemu:///system", *args], capture_output=True, text=True, timeout=120)


def kubelab(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "provisioner.cli", *args],
        env={**os.environ, "KUBELAB_HOME": str(home)},  # VAGRANT_HOME: set by the `box` fixture
        capture_output=True,
        text=True,
        timeout=900,
        stdin=subprocess.DEVNULL,
    )


def _names(*args: str) -> list[str]:
    listing = virsh(*args)
    assert listing.returncode == 0, f"virsh {' '.join(args)}: {listing.stderr}"
    return [line.strip() for line in listing.stdout.splitlines() if line.strip()]


def _volumes() -> list[str]:
    """Volume names in the default pool (libvirt 9's `vol-list` has no --name: read the table); none before
    vagrant-libvirt first made the pool."""
    if virsh("pool-info", "default").returncode != 0:
        return []
    table = _names("vol-list", "default")[2:]  # after the header and its rule
    return [row.split()[0] for row in table]


def _ours(network: str) -> bool:
    """The lab's node network, or Vagrant's management network on the lab's management subnet."""
    if network == f"{NAME}-nodes":
        return True
    prefix = MANAGEMENT.rsplit(".", 1)[0] + "."
    return network == "vagrant-libvirt" and f"address='{prefix}" in virsh("net-dumpxml", network).stdout


def lab_objects() -> list[str]:
    """Every libvirt domain, volume and network of the test lab (not the box's base volume)."""
    found = [f"domain {d}" for d in _names("list", "--all", "--name") if d.startswith(f"{NAME}-")]
    found += [f"volume {v}" for v in _volumes() if v.startswith(f"{NAME}-")]
    found += [f"network {n}" for n in _names("net-list", "--all", "--name") if _ours(n)]
    return found


def remove_lab_objects() -> None:
    """Teardown of last resort: remove whatever the test lab left in libvirt."""
    for domain in _names("list", "--all", "--name"):
        if domain.startswith(f"{NAME}-"):
            virsh("destroy", domain)
            virsh("undefine", domain, "--remove-all-storage")
    for volume in _volumes():
        if volume.startswith(f"{NAME}-"):
            virsh("vol-delete", "--pool", "default", volume)
    for network in _names("net-list", "--all", "--name"):
        if _ours(network):
            virsh("net-destroy", network)
            virsh("net-undefine", network)


@pytest.fixture(scope="module")
def libvirtd() -> Iterator[None]:
    """A system libvirtd answering on qemu:///system; started here (no systemd) when none runs, and stopped after."""
    if os.geteuid() != 0:
        pytest.skip("the libvirt smoke test needs root (system libvirtd, debootstrap)")
    # the box builder's and libvirt's programs too: a missing one fails here, naming its package
    require_tools("vagrant", "virsh", "libvirtd", "virtlogd", "qemu-system-x86_64")
    require_tools("debootstrap", "chroot", "mkfs.ext4", "qemu-img", "tar")
    started: list[int] = []
    if virsh("uri").returncode != 0:
        for daemon, pidfile in (("virtlogd", "/run/virtlogd.pid"), ("libvirtd", "/run/libvirtd.pid")):
            if subprocess.run([daemon, "-d"], capture_output=True).returncode == 0:
                started.append(_wait_pid(Path(pidfile)))
        deadline = time.monotonic() + 30
        while virsh("uri").returncode != 0 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert virsh("uri").returncode == 0, "libvirtd did not start"
    try:
        yield
    finally:
        for pid in reversed(started):
            if pid:
                os.kill(pid, 15)


def _wait_pid(pidfile: Path) -> int:
    for _ in range(50):
        if pidfile.is_file() and pidfile.read_text().strip().isdigit():
            return int(pidfile.read_text().strip())
        time.sleep(0.1)
    return 0


@pytest.fixture(scope="module")
def box(libvirtd: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Box]:
    """The locally built box, added to a Vagrant home of the test's own; removed again (with its libvirt base
    volume) afterwards."""
    built = build_box(log=lambda message: print(f"[box] {message}", flush=True))
    vagrant_home = tmp_path_factory.mktemp("vagrant.d")
    (vagrant_home / "Vagrantfile").write_text(VAGRANT_HOME_FILE)
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("VAGRANT_HOME", str(vagrant_home))
    BOOT_DIR.mkdir(parents=True, exist_ok=True)
    shutil.copy(built.kernel, KERNEL)
    shutil.copy(built.initrd, INITRD)
    try:
        subprocess.run(
            ["vagrant", "box", "add", "--force", "--name", BOX, str(built.box_file)], check=True, capture_output=True
        )
        yield built
    finally:
        subprocess.run(["vagrant", "box", "remove", "--force", "--all", BOX], capture_output=True)
        for volume in _volumes():
            if volume.startswith(BOX_VOLUME_PREFIX):
                virsh("vol-delete", "--pool", "default", volume)
        KERNEL.unlink(missing_ok=True)
        INITRD.unlink(missing_ok=True)
        boxes = subprocess.run(["vagrant", "box", "list"], capture_output=True, text=True).stdout
        monkeypatch.undo()
    assert BOX not in boxes
    assert not [v for v in _volumes() if v.startswith(BOX_VOLUME_PREFIX)]


def lab_file(path: Path, built: Box) -> Path:
    """The lab file: name, box, size, subnets and the libvirt options for QEMU without KVM (JSON is YAML). The
    topology comes from flags, as a user types it."""
    data = {
        "name": NAME,
        "box": BOX,
        "master_cpus": 2,
        "master_memory": 1700,
        "node_subnet": SUBNET,
        "containerd_source": "distro",
        "ntp_servers": HOST_ADDRESS,
        "libvirt": {
            "driver": "qemu",
            "kernel": str(KERNEL),
            "initrd": str(INITRD),
            "cmd_line": built.cmd_line,
            "management_network_address": MANAGEMENT,
        },
    }
    path.write_text(json.dumps(data, indent=2))
    return path


@pytest.fixture(scope="module")
def time_server() -> Iterator[SntpServer]:
    """The lab's time server: SNTP on the host's UDP port 123."""
    with SntpServer(port=123) as server:
        yield server


def test_libvirt_lab_up_to_runtime_halt_resume_destroy(box: Box, time_server: SntpServer, tmp_path: Path) -> None:
    remove_lab_objects()  # a run killed earlier may have left the lab's objects
    home = tmp_path / "home"
    lab = home / "labs" / NAME
    try:
        lab_yml = str(lab_file(tmp_path / "lab.yml", box))
        flags = ["--provider", "libvirt", "--masters", "1", "--workers", "0", "--lb", "none", "--until", "runtime"]
        up = kubelab(home, "up", "-f", lab_yml, *flags)
        print(up.stdout, flush=True)  # the phase lines carry the boot and phase times
        assert up.returncode == 0, up.stdout + up.stderr + _log_tail(lab)
        assert f"lab '{NAME}' (libvirt): nodes, prepare, runtime\n" in up.stdout
        assert "1 node(s)" in up.stdout
        assert virsh("domstate", f"{NAME}-master-1").stdout.strip() == "running"
        assert "Machine booted and ready" in (lab / "logs" / "nodes.log").read_text()

        status = json.loads(kubelab(home, "status", "--name", NAME, "--json").stdout)
        assert status["provider"] == "libvirt" and status["phases"]["done"] == ["nodes", "prepare", "runtime"]
        assert status["nodes"] == [{"name": "master-1", "role": "master", "ip": "10.77.128.21", "state": "running"}]

        # Vagrant configured the private network: the lab address sits on a NIC of the VM.
        ssh = kubelab(home, "ssh", "--name", NAME, "master-1", "--", "ip -4 -o addr show")
        assert ssh.returncode == 0, ssh.stderr
        assert " 10.77.128.21/24 " in ssh.stdout

        # Ansible reaches the VM through the connection inventory made from `vagrant ssh-config`, with sudo.
        connection = (lab / "inventory" / "connection.yml").read_text()
        assert f"{NAME}/.vagrant/machines/master-1/libvirt/private_key" in connection
        adhoc = ["-m", "ansible.builtin.command", "-a", "sh -c 'id -u; hostname'", "-o"]
        ansible = subprocess.run(
            [str(Path(sys.executable).with_name("ansible")), "-i", str(lab / "inventory"), "master-1", *adhoc],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert ansible.returncode == 0, ansible.stdout + ansible.stderr
        assert "master-1 | CHANGED | rc=0 | (stdout) 0\\nmaster-1" in ansible.stdout

        # The runtime phase left containerd (Debian's package) running with the systemd cgroup driver.
        ssh = kubelab(home, "ssh", "--name", NAME, "master-1", "--", "systemctl is-active containerd; sudo ctr version")
        assert ssh.returncode == 0, ssh.stdout + ssh.stderr
        assert ssh.stdout.startswith("active\n") and "Server:" in ssh.stdout

        verify = kubelab(home, "verify", "--name", NAME, "--only", "nodes")
        print(verify.stdout, flush=True)
        outcomes = _outcomes(lab)
        assert verify.returncode == 0, verify.stdout + verify.stderr
        assert not [check for check, outcome in outcomes.items() if outcome == "failed"], verify.stdout
        assert outcomes["time_synchronised"] == "passed" and time_server.answered > 0
        for check in ("swap_off", "sysctl[net.ipv4.ip_forward]", "containerd_active", "containerd_systemd_cgroup"):
            assert outcomes[check] == "passed", verify.stdout

        # Halt shuts the domain down and keeps its disk; resume boots it again, new SSH config and all, and checks
        # that swap stayed off; containerd comes back by itself.
        halt = kubelab(home, "halt", "--name", NAME)
        assert halt.returncode == 0, halt.stdout + halt.stderr
        assert virsh("domstate", f"{NAME}-master-1").stdout.strip() == "shut off"
        resume = kubelab(home, "resume", "--name", NAME)
        assert resume.returncode == 0, resume.stdout + resume.stderr
        assert f"lab '{NAME}' is running: swap off" in resume.stdout
        ssh = kubelab(home, "ssh", "--name", NAME, "master-1", "--", "systemctl is-active containerd")
        assert ssh.stdout == "active\n", ssh.stdout + ssh.stderr

        destroy = kubelab(home, "destroy", "--name", NAME, "--yes")
        assert destroy.returncode == 0, destroy.stdout + destroy.stderr
        assert f"lab '{NAME}' destroyed: machines removed" in destroy.stdout
        assert not lab.exists()
        assert lab_objects() == []
    finally:
        if (lab / ".vagrant").is_dir():
            subprocess.run(
                ["vagrant", "destroy", "-f"],
                cwd=lab,
                env={**os.environ, "VAGRANT_CWD": str(lab)},
                capture_output=True,
                timeout=300,
            )
        remove_lab_objects()


def _log_tail(lab: Path) -> str:
    """The end of the newest phase log."""
    logs = sorted((lab / "logs").glob("*.log"), key=lambda log: log.stat().st_mtime)
    return "\n" + "\n".join(logs[-1].read_text().splitlines()[-30:]) if logs else ""


def _outcomes(lab: Path) -> dict[str, str]:
    """check -> outcome from `kubelab verify`'s summary (one node)."""
    summary = json.loads((lab / "verify" / "summary.json").read_text())
    return {row["check"]: row["outcome"] for row in summary["results"]}
