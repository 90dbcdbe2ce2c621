"""The runtime phase's containerd config per containerd major, and containerd 2.x from an artifacts folder.

One lab, a master and a worker, Debian 12, prepared and given containerd from the Debian package. The phases run
with ansible-playbook exactly as `kubelab up` runs them. The roles' own scenarios (playbooks/roles/*/molecule,
run by test_molecule.py) cover prepare, containerd, haproxy and keepalived on fresh nodes.
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
NODES = ("master-1", "worker-1")
PLAYBOOKS = ("prepare.yml", "runtime.yml")
RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


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


@pytest.fixture(scope="module")
def lab(local_lab_module):
    return local_lab_module(name=NAME, node_subnet=SUBNET, masters=1, workers=1, containerd_source="distro")


@pytest.fixture(scope="module")
def first_run(lab) -> tuple[dict[str, dict[str, int]], str]:
    return run_phases(lab)


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

    master-1 keeps bookworm's containerd 1.x package. worker-1 loses it and gets containerd 2.x the way an
    offline lab with `containerd_source: upstream` does: from an artifacts folder, unpacked to /usr/local with
    kubelab's systemd unit. No containerd release can be downloaded here, so the folder's tarball is a stand-in
    with the release's layout, made from Debian sid's containerd 2.x package (it runs on bookworm). No kubeadm
    binary is available either, so both nodes get a stand-in script at kubeadm's path that answers
    `version -o short` and `config images list --kubernetes-version V` the way kubeadm 1.36 does; the role must
    pin the pause image from that list.
    """
    nodes = NODES
    folder = upstream_layout_folder(debian_deb("sid", "containerd", tmp_path), tmp_path / "artifacts")
    host_vars = lab.inventory / "host_vars" / "worker-1.yml"
    host_vars.parent.mkdir(exist_ok=True)
    version = json.loads((folder / "artifacts.json").read_text())["artifacts"][0]["version"]
    upstream = {"kubelab_containerd_source": "upstream", "kubelab_containerd_version": version}
    offline = {"kubelab_artifacts_dir": str(folder), "kubelab_offline": True}
    host_vars.write_text(json.dumps({**upstream, **offline}) + "\n")
    sh(lab, "worker-1", "DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq containerd && systemctl daemon-reload")
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
        unit = sh(lab, "worker-1", "systemctl show -p FragmentPath -p ExecStart -p UnitFileState containerd")
        assert "FragmentPath=/etc/systemd/system/containerd.service" in unit
        assert "path=/usr/local/bin/containerd " in unit and "UnitFileState=enabled" in unit
        assert re.search(r" 2\.\d+\.\d+", sh(lab, "worker-1", "/usr/local/bin/containerd --version"))
        # Its config: version 3, the CRI plugin split into runtime and images.
        assert "version = 3\n" in sh(lab, "worker-1", "cat /etc/containerd/config.toml")
        plugins = tomllib.loads(sh(lab, "worker-1", "/usr/local/bin/containerd config dump"))["plugins"]
        runtime = plugins["io.containerd.cri.v1.runtime"]
        assert runtime["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is True
        assert runtime["restrict_oom_score_adj"] is True
        assert plugins["io.containerd.cri.v1.images"]["pinned_images"]["sandbox"] == pause
        assert sh(lab, "worker-1", "ctr version | grep -c Version").strip() == "2"

        recap, _ = run_phases(lab, "--limit", ",".join(nodes), playbooks=("runtime.yml",))
        assert {node: recap[node]["changed"] for node in nodes} == dict.fromkeys(nodes, 0)
    finally:
        host_vars.unlink()
        for node in nodes:
            lab.ssh(node, "rm -f /usr/bin/kubeadm")
