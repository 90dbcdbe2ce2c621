"""Reliability matrix, bad input: every bad command or lab file exits non-zero with its own message,
creates nothing, and leaves an existing lab folder byte-for-byte untouched."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXISTING = "existing"
STARTED = "started"  # a lab whose nodes phase is done

BAD_FLAGS: list[tuple[list[str], str]] = [
    (["--masters", "2"], "--masters 2 is even"),
    (["--masters", "0"], "at least one master"),
    (["--masters", "9"], "--masters 9 is not supported"),
    (["--masters", "three"], "argument --masters: invalid int value: 'three'"),
    (["--workers", "-1"], "--workers -1 is negative"),
    (["--masters", "3", "--lb", "none"], "3 masters need a load balancer"),
    (["--lb-nodes", "5"], "--lb-nodes 5: use 1 or 2"),
    (["--provider", "hyperv"], "argument --provider: invalid choice: 'hyperv'"),
    (["--cni", "canal"], "argument --cni: invalid choice: 'canal'"),
    (["--os", "centos-9"], "argument --os: invalid choice: 'centos-9'"),
    (["--k8s-version", "1.99"], "Kubernetes 1.99 is not a supported version"),
    (["--k8s-version", "banana"], "'banana' is not a Kubernetes version"),
    (["--containerd-version", "1.6.0"], "containerd 1.6.0 is too old for Kubernetes 1.36"),
    (["--pod-cidr", "10.96.0.0/16"], "--pod-cidr 10.96.0.0/16 overlaps --service-cidr 10.96.0.0/12"),
    (["--pod-cidr", "10.244.0.1/16"], "has host bits set: did you mean 10.244.0.0/16?"),
    (["--service-cidr", "10.96.0.0/33"], "--service-cidr 10.96.0.0/33 is not a network"),
    (["--node-subnet", "10.244.0.0/24", "--vip", "10.244.0.10"], "overlaps --node-subnet 10.244.0.0/24"),
    (["--provider", "virtualbox", "--node-subnet", "10.0.0.0/24", "--vip", "10.0.0.10"], "/etc/vbox/networks.conf"),
    (["--node-subnet", "192.168.56.0/28"], "has too few addresses"),
    (["--vip", "10.1.1.1"], "--vip 10.1.1.1 is outside the node subnet"),
    (["--vip", "192.168.56.21"], "already the address of node master-1"),
    (["--vip", "192.168.56.0"], "--vip 192.168.56.0 is the network address of the node subnet 192.168.56.0/24"),
    (["--vip", "192.168.56.255"], "--vip 192.168.56.255 is the broadcast address of the node subnet"),
    (["--vip", "192.168.56.1"], "--vip 192.168.56.1 is the host's own address on the lab network"),
    (["--service-cidr", "10.64.0.0/11"], "--service-cidr 10.64.0.0/11 is too large: kubeadm accepts at most 20"),
    (["--service-cidr", "10.96.0.0/29"], "kubernetes API service on its address number 1 (10.96.0.1)"),
    (["--pod-cidr", "10.244.0.0/25"], "--pod-cidr 10.244.0.0/25 is smaller than the /24 range"),
    (["--pod-cidr", "10.0.0.0/7", "--service-cidr", "172.16.0.0/12"], "kubeadm allows at most 16 bits"),
    (["--pod-cidr", "10.244.0.0/23"], "gives one to each of this lab's 4 nodes (masters and workers): use a /22"),
    (["--pod-cidr", "169.254.0.0/16"], "overlaps the link-local range 169.254.0.0/16"),
    (["--node-subnet", "127.0.56.0/24", "--vip", "127.0.56.10"], "the kubelet refuses such a node IP"),
    (["--api-port", "22"], "--api-port 22 is sshd's port on the load-balancer nodes"),
    (["--masters", "1", "--api-port", "10250"], "--api-port 10250 is already used on the masters by the kubelet"),
    (["--lb", "kube-vip", "--api-port", "2112"], "--api-port 2112 is already used on the masters by kube-vip"),
    (["--masters", "1", "--api-port", "30080"], "--api-port 30080 is inside the NodePort range 30000-32767"),
    (["--master-cpus", "1"], "kubeadm needs at least 2 CPUs"),
    (["--master-memory", "1000"], "at least 1700 MB"),
    (["--api-port", "0"], "--api-port 0 is not a TCP port"),
    (["--mtu", "50"], "--mtu 50 is out of range"),
    (["--ntp-servers", "10.0.0.1,ntp;reboot"], "NTP server 'ntp;reboot' is not a host name or IPv4 address"),
    (["--provider", "hosts"], "pass -i/--inventory"),
    (["--artifacts", "/nonexistent/dir"], "artifacts folder /nonexistent/dir does not exist"),
    (["--workers", "40", "--worker-memory", "65536", "--strict"], "(an error because of --strict)"),
    (["--provider", "local", "--os", "ubuntu-24.04"], "builds Debian nodes only"),
    (["--provider", "local", "--cni", "cilium"], "--cni cilium cannot run on --provider local"),
    (["-f", "/nonexistent/lab.yaml"], "cannot read lab file /nonexistent/lab.yaml"),
]
BAD_NAMES: list[tuple[str, str]] = [
    ("a;rm -rf /", "lab name 'a;rm -rf /' is not allowed"),
    ("../../etc", "lab name '../../etc' is not allowed"),
    ("$(reboot)", "is not allowed"),
    ("UPPER", "lab name 'UPPER' is not allowed"),
    ("a" * 21, "is not allowed"),
]
BAD_FILES: list[tuple[str, str]] = [
    ("masters: 3\n  workers: 2\n", "line 2: not valid YAML"),
    ("masters: 3\nworkerz: 1\n", "lab.yaml:2: unknown key 'workerz' (did you mean 'workers'?)"),
    ("name: existing\nmasters: [3]\n", "lab.yaml:2: 'masters' must be a whole number"),
    ("- masters: 3\n", "a lab file is a YAML mapping"),
    ("libvirt:\n  memroy: 1\n", "unknown key 'libvirt.memroy'"),
    ("name: existing\nmasters: 4\n", "--masters 4 is even"),
    ("name: existing\npod_cidr: 192.168.56.0/24\n", "--pod-cidr 192.168.56.0/24 overlaps --node-subnet"),
    ("name: existing\nmasters: 1\nworkers: 1\nservice_cidr: 10.96.0.0/29\n", "--service-cidr 10.96.0.0/29 has 8"),
    ("name: existing\nmasters: 1\nworkers: 2\npod_cidr: 10.244.0.0/23\n", "this lab's 3 nodes"),
]

# `kubelab up` on top of `render`: its own flags, and a lab that has run phases refusing another spec (exit 1).
BAD_UPS: list[tuple[list[str], int, str]] = [
    (["--name", EXISTING, "--from", "cni", "--until", "prepare"], 1, "--from cni comes after --until prepare"),
    (["--name", "fresh", "--from", "workers", "--until", "nodes"], 1, "--from workers comes after --until nodes"),
    (["--name", "fresh", "--until", "nosuch"], 2, "argument --until: invalid choice: 'nosuch'"),
    (["--name", "fresh", "--masters", "2"], 2, "--masters 2 is even"),
    (["--name", "../fresh"], 2, "lab name '../fresh' is not allowed"),
    (
        ["--name", STARTED, "--workers", "2"],
        1,
        f"lab '{STARTED}' already exists with a different spec",
    ),
]


def snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("kubelab-home")
    kubelab(home, ["render", "--name", EXISTING, "--masters", "1", "--workers", "1"], expect_ok=True)
    kubelab(home, ["render", "--name", STARTED, "--masters", "1", "--workers", "1"], expect_ok=True)
    state = {
        "version": 1,
        "provider": "local",
        "phases": {"nodes": {"seconds": 1.0, "finished": "2026-01-01T00:00:00Z"}},
    }
    (home / "labs" / STARTED / "state.json").write_text(json.dumps(state))
    return home


def kubelab(home: Path, argv: list[str], expect_ok: bool = False) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBELAB_HOME": str(home)}
    result = subprocess.run([sys.executable, "-m", "provisioner.cli", *argv], capture_output=True, text=True, env=env)
    assert (result.returncode == 0) == expect_ok, result.stderr
    return result


def assert_rejected(home: Path, argv: list[str], message: str, code: int = 2) -> None:
    before = snapshot(home)
    result = kubelab(home, argv)
    assert result.returncode == code
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert snapshot(home) == before, "a rejected command changed the kubelab home"


@pytest.mark.parametrize(("flags", "message"), BAD_FLAGS, ids=[" ".join(f) for f, _ in BAD_FLAGS])
def test_bad_flags(home: Path, flags: list[str], message: str) -> None:
    name = [] if "--name" in flags else ["--name", EXISTING]
    assert_rejected(home, ["render", *name, *flags], message)


@pytest.mark.parametrize(("name", "message"), BAD_NAMES)
def test_bad_names(home: Path, name: str, message: str) -> None:
    assert_rejected(home, ["render", "--name", name], message)


@pytest.mark.parametrize(("text", "message"), BAD_FILES)
def test_bad_lab_files(home: Path, tmp_path: Path, text: str, message: str) -> None:
    lab_file = tmp_path / "lab.yaml"
    lab_file.write_text(text)
    assert_rejected(home, ["render", "-f", str(lab_file)], message)


@pytest.mark.parametrize(("argv", "code", "message"), BAD_UPS, ids=[" ".join(a) for a, _, _ in BAD_UPS])
def test_bad_up(home: Path, argv: list[str], code: int, message: str) -> None:
    assert_rejected(home, ["up", *argv], message, code)


def test_matrix_is_at_least_thirty_cases_and_the_lab_still_renders(home: Path) -> None:
    assert len(BAD_FLAGS) + len(BAD_NAMES) + len(BAD_FILES) >= 30
    result = kubelab(home, ["render", "--name", EXISTING, "--masters", "1", "--workers", "1"], expect_ok=True)
    assert "already up to date" in result.stdout
