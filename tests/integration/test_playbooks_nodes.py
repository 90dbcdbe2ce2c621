"""The node-side phases (prepare, runtime, loadbalancer) for real on `local` nodes, twice, then VIP failover.

One lab: 2 haproxy+keepalived nodes and 3 masters, Debian 12, containerd from the Debian package (upstream
releases cannot be downloaded here; the last test installs one master from an artifacts folder). The phases run with
ansible-playbook exactly as `kubelab up` runs them. Kubernetes itself is not installed here: the haproxy
backends have no API server behind them, which the keepalived priorities are designed to tolerate.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import re
import shutil
import subprocess
import tarfile
import time
import tomllib
import urllib.request
from pathlib import Path

import pytest
from hosttools import require_tool

pytestmark = pytest.mark.integration

NAME, SUBNET = "it-pb-nodes", "10.77.111.0/24"
LBS = ("lb-1", "lb-2")
MASTERS = ("master-1", "master-2", "master-3")
PLAYBOOKS = ("prepare.yml", "runtime.yml", "loadbalancer.yml")
SYSCTLS = ("net.ipv4.ip_forward", "net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables")
SWAP_LINE = "/swapfile none swap sw 0 0"
RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)
VIP_MOVE_WAIT = 20.0  # seconds to wait for keepalived to move the VIP before the test fails


def run_phases(lab, *extra: str, playbooks: tuple[str, ...] = PLAYBOOKS) -> tuple[dict[str, dict[str, int]], str]:
    """Run the phase playbooks against the lab; returns the recap per host and the whole output."""
    started = time.monotonic()
    done = lab.playbook(*playbooks, extra=extra)
    print(f"{' '.join(playbooks)} {' '.join(extra)}: {time.monotonic() - started:.0f} s")
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-5000:]
    recap = {
        host: dict(zip(("ok", "changed", "unreachable", "failed"), map(int, counts), strict=True))
        for host, *counts in RECAP.findall(done.stdout)
    }
    print({host: counts["changed"] for host, counts in recap.items()})
    return recap, output


def sh(lab, node: str, cmd: str) -> str:
    result = lab.ssh(node, cmd)
    assert result.returncode == 0, f"{node}: {cmd}: {result.stdout}{result.stderr}"
    return result.stdout


def vip_holders(lab) -> list[str]:
    vip = lab.plan.spec.vip
    return [node for node in LBS if f" {vip}/" in sh(lab, node, "ip -4 -o addr show")]


def wait_for_holders(lab, expected: list[str]) -> list[str]:
    """Poll until the VIP sits exactly on `expected` (or the wait is over); returns the last holders seen."""
    deadline = time.monotonic() + VIP_MOVE_WAIT
    while True:
        holders = vip_holders(lab)
        if holders == expected or time.monotonic() > deadline:
            return holders
        time.sleep(0.5)


@pytest.fixture(scope="module")
def lab(local_lab_module):
    lab = local_lab_module(
        name=NAME, node_subnet=SUBNET, masters=3, workers=0, lb="haproxy", lb_nodes=2, containerd_source="distro"
    )
    # A swap entry the prepare phase must disable for good, and kernel parameters it must set (these are
    # per network namespace: the host's values stay as they are).
    sh(lab, "master-2", f"echo '{SWAP_LINE}' >> /etc/fstab")
    sh(lab, "master-3", " && ".join(f"sysctl -qw {key}=0" for key in SYSCTLS))
    return lab


@pytest.fixture(scope="module")
def first_run(lab) -> tuple[dict[str, dict[str, int]], str]:
    return run_phases(lab)


def test_first_run_reaches_every_node(first_run):
    recap, _ = first_run
    assert set(recap) == {*LBS, *MASTERS}
    assert all(c["failed"] == 0 and c["unreachable"] == 0 and c["changed"] > 0 for c in recap.values())


def test_nodes_are_prepared(lab, first_run):
    hosts_block = "".join(f"{node.ip} {node.name}\n" for node in lab.plan.nodes)
    for node in (*LBS, *MASTERS):
        hosts = sh(lab, node, "cat /etc/hosts")
        assert f"# BEGIN kubelab {NAME} nodes\n{hosts_block}# END kubelab {NAME} nodes" in hosts
        assert sh(lab, node, "cat /etc/modules-load.d/kubelab.conf").split("\n")[1:3] == ["overlay", "br_netfilter"]
        assert "overlay" in sh(lab, node, "cat /proc/filesystems")
        for key in SYSCTLS:
            assert sh(lab, node, f"sysctl -n {key}").strip() == "1", (node, key)
            assert f"{key} = 1" in sh(lab, node, "cat /etc/sysctl.d/90-kubelab.conf")
        active = [line for line in sh(lab, node, "cat /etc/fstab").splitlines() if not line.lstrip().startswith("#")]
        assert not [line for line in active if " swap " in line], (node, active)
    assert f"# {SWAP_LINE}  # disabled by kubelab" in sh(lab, "master-2", "cat /etc/fstab")
    # `swapoff -a` itself is skipped on these nodes by design: a container node's swap is the host's.


def test_containerd_runs_with_the_config_it_reads(lab, first_run):
    for node in MASTERS:
        assert sh(lab, node, "systemctl is-active containerd").strip() == "active"
        assert sh(lab, node, "systemctl is-enabled containerd").strip() == "enabled"
        version = sh(lab, node, "containerd --version")
        assert re.search(r" 1\.\d+\.\d+", version), version  # bookworm's package is containerd 1.x
        written = sh(lab, node, "cat /etc/containerd/config.toml")
        assert "version = 2" in written
        # kubeadm is not installed before the packages phase: no sandbox image is pinned yet, and the file says so.
        assert "sandbox_image" not in written and "until kubeadm is installed" in written
        # What containerd really loaded (its merged config), in the config-v2 table names.
        cri = tomllib.loads(sh(lab, node, "containerd config dump"))["plugins"]["io.containerd.grpc.v1.cri"]
        assert cri["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is True
        assert cri["containerd"]["default_runtime_name"] == "runc"
        assert cri["restrict_oom_score_adj"] is True  # the local provider's setting
        crictl = sh(lab, node, "cat /etc/crictl.yaml")
        assert "runtime-endpoint: unix:///run/containerd/containerd.sock" in crictl
        assert "image-endpoint: unix:///run/containerd/containerd.sock" in crictl
        assert sh(lab, node, "ctr version | grep -c Version").strip() == "2"  # client and server answer
    for node in LBS:
        assert lab.ssh(node, "command -v containerd").returncode != 0


def test_haproxy_balances_every_master(lab, first_run):
    port = lab.plan.spec.api_port
    servers = sorted(f"server {node.name} {node.ip}:6443 check" for node in lab.plan.nodes if node.name in MASTERS)
    for node in LBS:
        check = lab.ssh(node, "haproxy -c -f /etc/haproxy/haproxy.cfg")
        assert check.returncode == 0, check.stdout + check.stderr
        config = sh(lab, node, "cat /etc/haproxy/haproxy.cfg")
        assert sorted(line.strip() for line in config.splitlines() if line.strip().startswith("server ")) == servers
        listening = sh(lab, node, "ss -Hltn")
        assert f"{lab.plan.spec.vip}:{port} " in listening and f"127.0.0.1:{port} " in listening
        assert sh(lab, node, "systemctl is-active haproxy").strip() == "active"


def test_keepalived_secret_is_per_lab_private_and_never_printed(lab, first_run):
    secret_file = lab.lab.root / "secrets" / "keepalived-auth"
    secret = secret_file.read_text().strip()
    assert re.fullmatch(r"[A-Za-z0-9]{8}", secret)
    assert secret_file.stat().st_mode & 0o777 == 0o600
    assert secret_file.parent.stat().st_mode & 0o077 == 0
    assert secret not in first_run[1]
    for node in LBS:
        assert sh(lab, node, "stat -c %a /etc/keepalived/keepalived.conf").strip() == "600"
        assert f"auth_pass {secret}\n" in sh(lab, node, "cat /etc/keepalived/keepalived.conf")


def test_second_run_changes_nothing(lab, first_run):
    recap, output = run_phases(lab)
    assert {host: c["changed"] for host, c in recap.items()} == dict.fromkeys((*LBS, *MASTERS), 0)
    assert (lab.lab.root / "secrets" / "keepalived-auth").read_text().strip() not in output


def test_vip_on_one_node_and_moves_when_keepalived_or_haproxy_stops(lab, first_run):
    assert wait_for_holders(lab, ["lb-1"]) == ["lb-1"]  # the MASTER holds it
    try:
        sh(lab, "lb-1", "systemctl stop keepalived")
        assert wait_for_holders(lab, ["lb-2"]) == ["lb-2"]
        sh(lab, "lb-1", "systemctl start keepalived")
        assert wait_for_holders(lab, ["lb-1"]) == ["lb-1"]  # higher priority takes it back

        sh(lab, "lb-1", "systemctl stop haproxy")
        assert wait_for_holders(lab, ["lb-2"]) == ["lb-2"]
        sh(lab, "lb-1", "systemctl start haproxy")
        assert wait_for_holders(lab, ["lb-1"]) == ["lb-1"]
    finally:
        lab.ssh("lb-1", "systemctl start keepalived haproxy")


def debian_deb(suite: str, package: str, dest: Path) -> Path:
    """Download `package`'s amd64 .deb from Debian `suite` (deb.debian.org) into `dest`."""
    base = "http://deb.debian.org/debian"
    with urllib.request.urlopen(f"{base}/dists/{suite}/main/binary-amd64/Packages.xz", timeout=120) as response:
        index = lzma.decompress(response.read()).decode()
    stanza = next(s for s in index.split("\n\n") if s.startswith(f"Package: {package}\n"))
    filename = re.search(r"^Filename: (\S+)$", stanza, re.M).group(1)
    path = dest / Path(filename).name
    urllib.request.urlretrieve(f"{base}/{filename}", path)
    return path


def upstream_layout_folder(deb: Path, folder: Path) -> Path:
    """An artifacts folder whose containerd tarball has the upstream release layout (bin/...), made from `deb`."""
    unpacked = folder / "unpacked"
    unpacked.mkdir(parents=True)
    subprocess.run([require_tool("dpkg-deb"), "-x", str(deb), str(unpacked)], check=True)
    version = re.search(r"_(\d+\.\d+\.\d+)", deb.name).group(1)
    tarball = folder / "containerd" / f"containerd-{version}-linux-amd64.tar.gz"
    tarball.parent.mkdir()
    with tarfile.open(tarball, "w:gz") as tar:
        for name in ("containerd", "containerd-shim-runc-v2", "ctr"):
            tar.add(unpacked / "usr" / "bin" / name, arcname=f"bin/{name}")
    shutil.rmtree(unpacked)
    entry = {
        "path": str(tarball.relative_to(folder)),
        "kind": "containerd",
        "name": "containerd",
        "version": version,
        "sha256": hashlib.sha256(tarball.read_bytes()).hexdigest(),
    }
    (folder / "artifacts.json").write_text(json.dumps({"artifacts": [entry]}))
    return folder


def test_runtime_config_follows_containerd_major_and_kubeadm(lab, first_run, tmp_path):
    """The config table per containerd major, the upstream (offline) install, and the pause image kubeadm lists.

    master-1 keeps bookworm's containerd 1.x package. master-2 loses it and gets containerd 2.x the way an
    offline lab with `containerd_source: upstream` does: from an artifacts folder, unpacked to /usr/local with
    kubelab's systemd unit. No containerd release can be downloaded here, so the folder's tarball is a stand-in
    with the release's layout, made from Debian sid's containerd 2.x package (it runs on bookworm). No kubeadm
    binary is available either, so both masters get a stand-in script at kubeadm's path that answers
    `version -o short` and `config images list --kubernetes-version V` the way kubeadm 1.36 does; the role must
    pin the pause image from that list.
    """
    nodes = ("master-1", "master-2")
    folder = upstream_layout_folder(debian_deb("sid", "containerd", tmp_path), tmp_path / "artifacts")
    host_vars = lab.inventory / "host_vars" / "master-2.yml"
    host_vars.parent.mkdir(exist_ok=True)
    version = json.loads((folder / "artifacts.json").read_text())["artifacts"][0]["version"]
    upstream = {"kubelab_containerd_source": "upstream", "kubelab_containerd_version": version}
    offline = {"kubelab_artifacts_dir": str(folder), "kubelab_offline": True}
    host_vars.write_text(json.dumps({**upstream, **offline}) + "\n")
    sh(lab, "master-2", "DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq containerd && systemctl daemon-reload")
    pause = "registry.k8s.io/pause:3.10.2"
    images = ["registry.k8s.io/kube-apiserver:v1.36.4", pause, "registry.k8s.io/etcd:3.6.8-0"]
    stand_in = (
        "#!/bin/sh\n"
        'case "$*" in\n'
        '  "version -o short") echo v1.36.4 ;;\n'
        f'  "config images list --kubernetes-version v1.36.4") printf "%s\\n" {" ".join(images)} ;;\n'
        "  *) exit 1 ;;\n"
        "esac\n"
    )
    for node in nodes:
        sh(lab, node, f"cat > /usr/bin/kubeadm <<'EOF'\n{stand_in}EOF\nchmod 755 /usr/bin/kubeadm")
    try:
        recap, _ = run_phases(lab, "--limit", ",".join(nodes), playbooks=("runtime.yml",))
        assert all(recap[node]["changed"] > 0 for node in nodes)
        for node in nodes:
            assert "# Sandbox image from kubeadm v1.36.4." in sh(lab, node, "cat /etc/containerd/config.toml")
            assert sh(lab, node, "systemctl is-active containerd").strip() == "active"

        # containerd 1.x: config version 2, everything under the io.containerd.grpc.v1.cri plugin.
        cri = tomllib.loads(sh(lab, "master-1", "containerd config dump"))["plugins"]["io.containerd.grpc.v1.cri"]
        assert cri["sandbox_image"] == pause
        assert cri["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is True

        # containerd 2.x from the folder: kubelab's unit runs /usr/local/bin/containerd, enabled.
        unit = sh(lab, "master-2", "systemctl show -p FragmentPath -p ExecStart -p UnitFileState containerd")
        assert "FragmentPath=/etc/systemd/system/containerd.service" in unit
        assert "path=/usr/local/bin/containerd " in unit and "UnitFileState=enabled" in unit
        assert re.search(r" 2\.\d+\.\d+", sh(lab, "master-2", "/usr/local/bin/containerd --version"))
        # Its config: version 3, the CRI plugin split into runtime and images.
        assert "version = 3\n" in sh(lab, "master-2", "cat /etc/containerd/config.toml")
        plugins = tomllib.loads(sh(lab, "master-2", "/usr/local/bin/containerd config dump"))["plugins"]
        runtime = plugins["io.containerd.cri.v1.runtime"]
        assert runtime["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is True
        assert runtime["restrict_oom_score_adj"] is True
        assert plugins["io.containerd.cri.v1.images"]["pinned_images"]["sandbox"] == pause
        assert sh(lab, "master-2", "ctr version | grep -c Version").strip() == "2"

        recap, _ = run_phases(lab, "--limit", ",".join(nodes), playbooks=("runtime.yml",))
        assert {node: recap[node]["changed"] for node in nodes} == dict.fromkeys(nodes, 0)
    finally:
        host_vars.unlink()
        for node in nodes:
            lab.ssh(node, "rm -f /usr/bin/kubeadm")
