"""`kubelab artifacts build` for real: Kubernetes 1.36 and Flannel from the Go module proxy, checked file by file.

The first session on a machine builds everything (about 20 minutes on 2 cores); later sessions reuse the
caches and the build takes about a minute. Every assertion reads what was built: versions the binaries print,
the image list the built kubeadm prints, the references and contents of the image archives.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from builtartifacts import CNI, KUBERNETES_MINOR, build, build_lock, built_folder, kubernetes_version
from locallab import kubelab_cli

from provisioner import artifacts, versions

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def folder() -> Path:
    return built_folder()


def run(*argv: str | Path) -> str:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, check=True, timeout=60).stdout


def test_every_binary_reports_the_version_it_was_built_from(folder: Path, tmp_path: Path) -> None:
    version = kubernetes_version(folder)
    assert version.startswith(KUBERNETES_MINOR + ".")
    assert run(folder / "bin/kubeadm", "version", "-o", "short").strip() == f"v{version}"
    assert run(folder / "bin/kubelet", "--version").strip() == f"Kubernetes v{version}"
    client = json.loads(run(folder / "bin/kubectl", "version", "--client", "-o", "json"))["clientVersion"]
    assert (client["gitVersion"], client["major"], client["minor"]) == (f"v{version}", "1", version.split(".")[1])
    entries = {e["path"]: e for e in json.loads((folder / "artifacts.json").read_text())["artifacts"]}
    assert run(folder / "bin/crictl", "--version").strip() == f"crictl version {entries['bin/crictl']['version']}"
    runc = entries["containerd/runc.amd64"]
    assert run(folder / runc["path"], "--version").startswith(f"runc version {runc['version']}\n")
    containerd = next(e for e in entries.values() if e["name"] == "containerd")
    with tarfile.open(folder / containerd["path"]) as tar:
        assert {"bin/containerd", "bin/containerd-shim-runc-v2", "bin/ctr"} <= set(tar.getnames())
        tar.extract("bin/containerd", tmp_path, filter="data")
    assert f" v{containerd['version']}" in run(tmp_path / "bin/containerd", "--version")
    plugins = next(e for e in entries.values() if e["name"] == "cni-plugins")
    with tarfile.open(folder / plugins["path"]) as tar:
        assert {"./bridge", "./host-local", "./loopback", "./portmap"} <= set(tar.getnames())


def test_kubeadms_image_list_is_exactly_the_folders_kubeadm_images(folder: Path) -> None:
    version = kubernetes_version(folder)
    listed = run(folder / "bin/kubeadm", "config", "images", "list", "--kubernetes-version", f"v{version}").split()
    manifest = json.loads((folder / "artifacts.json").read_text())
    images = {e["name"]: e["path"] for e in manifest["artifacts"] if e["kind"] == "image"}
    addons = set(artifacts.addon_images(versions.ADDON_VERSIONS))  # every folder serves every add-on
    assert addons <= set(images)
    kubeadms = {name for name in images if name.startswith("registry.k8s.io/") and "e2e-test-images" not in name}
    assert kubeadms - addons == set(listed)
    for name, path in images.items():
        assert artifacts.archive_references(folder / path) == [name]


def test_every_file_names_its_upstream_source(folder: Path) -> None:
    manifest = json.loads((folder / "artifacts.json").read_text())
    for entry in manifest["artifacts"]:
        assert entry.get("source"), f"{entry['path']} has no source"
    kubeadm = next(e for e in manifest["artifacts"] if e["path"] == "bin/kubeadm")
    assert kubeadm["source"] == f"k8s.io/kubernetes@v{kubernetes_version(folder)}"
    assert "go1." in kubeadm["built_with"] and "CGO_ENABLED=0" in kubeadm["built_with"]


def test_kubelab_artifacts_check_accepts_the_folder(folder: Path, tmp_path: Path) -> None:
    version = kubernetes_version(folder)
    done = kubelab_cli(tmp_path, "artifacts", "check", str(folder), "--k8s-version", version, "--cni", CNI)
    assert done.returncode == 0, done.stderr
    assert f"complete for Kubernetes {version}, cni {CNI}" in done.stdout


def test_images_are_laid_out_like_the_official_ones(folder: Path, tmp_path: Path) -> None:
    manifest = json.loads((folder / "artifacts.json").read_text())
    paths = {
        e["name"].split("/")[-1].split(":")[0]: folder / e["path"]
        for e in manifest["artifacts"]
        if e["kind"] == "image"
    }
    coredns = layer_members(paths["coredns"])
    capability = coredns["coredns"].pax_headers.get("SCHILY.xattr.security.capability", "")
    assert capability, "/coredns lacks the file capability that lets it bind :53 as non-root"
    proxy = layer_members(paths["kube-proxy"])
    for tool in ("usr/local/bin/kube-proxy", "usr/sbin/iptables", "usr/sbin/ip6tables-restore", "usr/sbin/nft"):
        assert tool in proxy, f"kube-proxy's image lacks /{tool}"
    assert "usr/sbin/conntrack" in proxy and "bin/sh" in proxy
    assert {"usr/local/bin/etcd", "usr/local/bin/etcdctl"} <= set(layer_members(paths["etcd"]))
    assert "pause" in layer_members(paths["pause"])


def layer_members(archive: Path) -> dict[str, tarfile.TarInfo]:
    """Every path of every layer of an OCI archive (the last layer wins)."""
    found: dict[str, tarfile.TarInfo] = {}
    with tarfile.open(archive) as tar:
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        blob = index["manifests"][0]["digest"].split(":")[1]
        image = json.load(tar.extractfile(f"blobs/sha256/{blob}"))  # type: ignore[arg-type]
        for layer in image["layers"]:
            with tarfile.open(fileobj=tar.extractfile(f"blobs/sha256/{layer['digest'].split(':')[1]}")) as inner:
                found |= {m.name: m for m in inner.getmembers()}
    return found


def test_a_second_build_comes_from_the_caches(folder: Path) -> None:
    # Into a folder of its own: the other test worker's labs may be using `folder` meanwhile.
    repeat = folder.with_name(f"{folder.name}-repeat")
    try:
        with build_lock():
            done = build(repeat)
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        built = [line for line in lines if ": building " in line or ": built in" in line]
        assert not built, f"a repeat build of the same versions rebuilt: {built}"
        assert sum(": cached" in line for line in lines) >= 10
        sums = {e["path"]: e["sha256"] for e in json.loads((folder / "artifacts.json").read_text())["artifacts"]}
        again = {e["path"]: e["sha256"] for e in json.loads((repeat / "artifacts.json").read_text())["artifacts"]}
        assert again == sums, "the repeat build's files differ from the first build's"
    finally:
        shutil.rmtree(repeat, ignore_errors=True)
