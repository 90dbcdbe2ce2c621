"""Offline labs on real local nodes: the artifacts role installs and imports from the folder with egress dropped.

The folder holds real Debian packages and a locally built image. Stand-ins, honestly named: Debian's
containerd and runc .debs stand where kubeadm/kubelet/kubectl .debs would be (no registry here serves those),
a busybox image built here stands for kubeadm's images, a shell script for the plain kubelet binary (the bin/
form: the role installs it with the kubelet unit and kubeadm's drop-in) and a small tarball for the CNI plugins.
The role does not care what the files are: it installs whatever artifacts.json lists, exactly as it would install
the Kubernetes packages and binaries.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from hosttools import require_tools

from provisioner import artifacts
from provisioner.artifacts import fetch
from provisioner.versions import CNI_PLUGINS_VERSION as CNI_PLUGINS

pytestmark = pytest.mark.integration

SUBNET = "10.77.141.0/24"
IMAGE = "example.org/kubelab/busybox:offline"
BUSYBOX = Path("/bin/busybox")
STAND_IN_DEBS = ("containerd", "runc")


def _blob(layout: Path, data: bytes) -> dict[str, object]:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def build_busybox_image(layout: Path, reference: str) -> Path:
    """An OCI image layout (one layer: /bin/busybox) and its tar archive; returns the archive."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        info = tarfile.TarInfo("bin")
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(info)
        data = BUSYBOX.read_bytes()
        info = tarfile.TarInfo("bin/busybox")
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
    raw = layer.getvalue()
    layer_blob = _blob(layout, gzip.compress(raw, mtime=0))
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/bin/busybox", "sh"]},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(raw).hexdigest()}"]},
    }
    config_blob = _blob(layout, json.dumps(config).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config_blob},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **layer_blob}],
    }
    manifest_blob = _blob(layout, json.dumps(manifest).encode())
    tag = reference.rsplit(":", 1)[1]
    entry = {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        **manifest_blob,
        "annotations": {"io.containerd.image.name": reference, "org.opencontainers.image.ref.name": tag},
    }
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [entry]}))
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    archive = layout.with_suffix(".tar")
    with tarfile.open(archive, "w") as tar:
        for item in sorted(layout.rglob("*")):
            tar.add(item, arcname=item.relative_to(layout).as_posix(), recursive=False)
    return archive


def build_folder(folder: Path, work: Path) -> dict[str, str]:
    """debs/ with real Debian packages, images/ with the local image, artifacts.json listing both."""
    debs = folder / "debs"
    debs.mkdir(parents=True)
    subprocess.run(["apt-get", "download", *STAND_IN_DEBS], cwd=debs, check=True, capture_output=True)
    versions = {}
    entries = []
    for deb in sorted(debs.glob("*.deb")):
        fields = subprocess.run(["dpkg-deb", "--field", str(deb), "Package", "Version"], capture_output=True, text=True)
        name, version = (line.split(": ", 1)[1] for line in fields.stdout.splitlines())
        versions[name] = version
        entries.append({"path": f"debs/{deb.name}", "kind": "deb", "name": name, "version": version})
    (folder / "bin").mkdir()
    (folder / "bin" / "kubelet").write_text('#!/bin/sh\necho "kubelet stand-in $*"\n')
    entries.append({"path": "bin/kubelet", "kind": "binary", "name": "kubelet", "version": "stand-in"})
    plugins = f"cni/cni-plugins-linux-amd64-{CNI_PLUGINS}.tgz"
    (folder / "cni").mkdir()
    with tarfile.open(folder / plugins, "w:gz") as tar:
        tar.add(BUSYBOX, arcname="./loopback")
    entries.append({"path": plugins, "kind": "tarball", "name": "cni-plugins", "version": CNI_PLUGINS})
    archive = build_busybox_image(work / "busybox-oci", IMAGE)
    (folder / "images").mkdir()
    target = folder / artifacts.image_archive_name(IMAGE)
    shutil.copy(archive, target)
    entries.append(
        {"path": target.relative_to(folder).as_posix(), "kind": "image", "name": IMAGE, "version": "offline"}
    )
    for entry in entries:
        entry["sha256"] = artifacts.sha256_file(folder / entry["path"])
    (folder / artifacts.MANIFEST).write_text(json.dumps({"format": 1, "artifacts": entries}, indent=2))
    return versions


# master-1 installs from the folder as the local provider shares it (read-only mount); worker-1 as on any
# other provider, each file copied over SSH first.
PLAYBOOK = """\
- hosts: master-1
  become: true
  roles:
    - role: artifacts
- hosts: worker-1
  become: true
  roles:
    - role: artifacts
      vars:
        artifacts_shared_dir: ""
"""


def run_role(lab, playbook_dir: Path) -> subprocess.CompletedProcess[str]:
    playbook = playbook_dir / "artifacts.yml"
    playbook.write_text(PLAYBOOK)
    return lab.playbook(playbook)


def changed_count(output: str) -> int:
    return sum(int(n) for n in re.findall(r"changed=(\d+)", output))


# Two DROP rules for the lab subnet's forwarded traffic: TCP (any download) counted on its own, then the rest
# (e.g. DNS lookups from fact gathering, which are not downloads).
DROP_RULES = (
    ("1", ["-p", "tcp", "-m", "comment", "--comment", "kubelab-it-offline-tcp"]),
    ("2", ["-m", "comment", "--comment", "kubelab-it-offline"]),
)


def egress(block: bool) -> None:
    """Insert the DROP rules, or remove them; copies left by a killed earlier run are removed first."""
    for position, match in DROP_RULES:
        rule = ["FORWARD", "-s", SUBNET, *match, "-j", "DROP"]
        while subprocess.run(["iptables", "-w", "-D", *rule], capture_output=True).returncode == 0:
            pass
        if block:
            subprocess.run(["iptables", "-w", "-I", rule[0], position, *rule[1:]], check=True, capture_output=True)


def dropped_tcp_packets() -> int:
    out = subprocess.run(["iptables", "-L", "FORWARD", "-v", "-x", "-n"], capture_output=True, text=True, check=True)
    line = next(line for line in out.stdout.splitlines() if "kubelab-it-offline-tcp" in line)
    return int(line.split()[0])


def test_role_installs_and_imports_from_the_folder_with_egress_dropped(local_lab, tmp_path):
    require_tools("busybox", "skopeo", "apt-get", "dpkg-deb", "iptables")
    folder, work = tmp_path / "artifacts", tmp_path / "work"
    work.mkdir()
    deb_versions = build_folder(folder, work)
    lab = local_lab(name="it-offline", node_subnet=SUBNET, masters=1, workers=1, artifacts=str(folder))
    for node in ("master-1", "worker-1"):
        assert lab.ssh(node, "command -v ctr containerd").returncode != 0  # nothing installed before the role
    try:
        egress(block=True)
        first = run_role(lab, work)
        assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-2000:]
        assert dropped_tcp_packets() == 0  # the role opened no connection out of the lab
        second = run_role(lab, work)
        assert second.returncode == 0 and changed_count(second.stdout) == 0, second.stdout[-3000:]
        probe = lab.ssh(node, "timeout 5 bash -c 'exec 3<>/dev/tcp/192.0.2.1/80'")  # TEST-NET-1
        assert probe.returncode != 0 and dropped_tcp_packets() > 0  # egress really was cut off
    finally:
        egress(block=False)

    for node in ("master-1", "worker-1"):
        for name, version in deb_versions.items():
            installed = lab.ssh(node, ["dpkg-query", "--show", "--showformat=${Version}", name], check=True).stdout
            assert installed == version
        assert lab.ssh(node, "kubelet --version").stdout.strip() == "kubelet stand-in --version"
        unit = lab.ssh(node, "systemctl cat kubelet", check=True).stdout
        assert "kubelet.service.d/10-kubeadm.conf" in unit
        assert "ExecStart=/usr/bin/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS" in unit
        assert lab.ssh(node, "test -x /opt/cni/bin/loopback").returncode == 0
        images = lab.ssh(node, "ctr -n k8s.io images list --quiet", check=True).stdout.split()
        assert IMAGE in images
        probe = f"ctr -n k8s.io run --rm {IMAGE} it-offline-probe /bin/busybox echo hello-from-the-folder"
        run = lab.ssh(node, probe)
        assert run.returncode == 0 and run.stdout.strip() == "hello-from-the-folder", run.stderr
    # The shared folder is read-only on the node and nothing was copied there; the other node got copies.
    mount = lab.ssh("master-1", "findmnt --noheadings --output OPTIONS /var/lib/kubelab/host-artifacts").stdout
    assert mount.split(",")[0] == "ro", mount
    assert lab.ssh("master-1", "test -e /var/cache/kubelab/artifacts").returncode != 0
    assert lab.ssh("worker-1", "ls /var/cache/kubelab/artifacts/debs").stdout.split()
    node = "master-1"

    # The export step of `kubelab artifacts fetch`, with both tools, on the locally built image.
    (exported,) = fetch.export_commands(
        "skopeo", IMAGE, str(work / "skopeo.tar"), source=f"oci:{work / 'busybox-oci'}:offline"
    )
    subprocess.run(exported, check=True, capture_output=True)
    assert artifacts.archive_references(work / "skopeo.tar") == [IMAGE]
    upload = lab.connection(node).ssh_argv(
        ["cat > /tmp/skopeo.tar && ctr -n kubelab-skopeo images import /tmp/skopeo.tar"]
    )
    subprocess.run(upload, input=(work / "skopeo.tar").read_bytes(), capture_output=True, check=True)
    assert IMAGE in lab.ssh(node, "ctr -n kubelab-skopeo images list --quiet").stdout.split()
    local = lab.ssh(
        node, f"ctr -n k8s.io images export /tmp/seed.tar {IMAGE} && ctr -n kubelab-fetch images import /tmp/seed.tar"
    )
    assert local.returncode == 0, local.stderr
    (export,) = fetch.export_commands("ctr", IMAGE, "/tmp/ctr-export.tar", source="local")
    assert lab.ssh(node, export).returncode == 0
    copy = lab.connection(node).ssh_argv(["cat", "/tmp/ctr-export.tar"])
    (work / "ctr-export.tar").write_bytes(subprocess.run(copy, capture_output=True, check=True).stdout)
    assert IMAGE in artifacts.archive_references(work / "ctr-export.tar")
