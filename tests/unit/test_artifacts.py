"""The artifacts folder: required files from versions, the manifest, checks, checksums, fetch over HTTP."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import pytest

from provisioner import artifacts, versions
from provisioner.artifacts import ArtifactsError, Needs, fetch
from provisioner.spec import SpecError, build_spec


def tiny_archive(path: Path, reference: str, docker: bool = False) -> Path:
    """A tar that names one image the way OCI (index.json) or docker-archive (manifest.json) does."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if docker:
        files = {"manifest.json": json.dumps([{"Config": "c.json", "RepoTags": [reference], "Layers": []}])}
    else:
        entry = {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": "sha256:" + "0" * 64,
            "size": 1,
            "annotations": {"io.containerd.image.name": reference, "org.opencontainers.image.ref.name": "x"},
        }
        files = {"oci-layout": '{"imageLayoutVersion":"1.0.0"}', "index.json": json.dumps({"manifests": [entry]})}
    with tarfile.open(path, "w") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def fill(folder: Path, needs: Needs) -> None:
    """Put a stand-in file for every required artifact (image archives that really name their image)."""
    for artifact in artifacts.required_artifacts(needs):
        target = folder / artifact.path.replace("*", "1.1")
        if artifact.kind == "image":
            tiny_archive(target, artifact.name)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(f"stand-in for {artifact.name}\n")
    artifacts.write_manifest(folder, needs)


def test_kubeadm_images_follow_kubeadm_config_images_list():
    assert artifacts.kubeadm_images("1.36.5") == [
        "registry.k8s.io/kube-apiserver:v1.36.5",
        "registry.k8s.io/kube-controller-manager:v1.36.5",
        "registry.k8s.io/kube-scheduler:v1.36.5",
        "registry.k8s.io/kube-proxy:v1.36.5",
        "registry.k8s.io/coredns/coredns:v1.14.2",
        "registry.k8s.io/pause:3.10.2",
        "registry.k8s.io/etcd:3.6.8-0",
    ]
    assert "registry.k8s.io/etcd:3.7.0-0" in artifacts.kubeadm_images("1.37.1")
    assert "registry.k8s.io/pause:3.10.1" in artifacts.kubeadm_images("1.35.2")
    with pytest.raises(ArtifactsError, match=r"1\.30"):
        artifacts.kubeadm_images("1.30.1")


def test_every_supported_minor_has_image_tags_and_a_known_patch():
    for minor in versions.SUPPORTED_MINORS:
        assert set(versions.KUBEADM_IMAGE_TAGS[minor]) == {"pause", "etcd", "coredns"}
        assert versions.minor_of(versions.LATEST_PATCH[minor]) == minor


def test_binaries_form_names_official_urls_and_checksums():
    found = {a.path: a for a in artifacts.required_artifacts(Needs("1.36.5", "calico"))}
    kubeadm = found["bin/kubeadm"]
    assert kubeadm.url == "https://dl.k8s.io/release/v1.36.5/bin/linux/amd64/kubeadm"
    assert kubeadm.checksum_url == kubeadm.url + ".sha256"
    plugins = found["cni/cni-plugins-linux-amd64-v1.10.0.tgz"]
    assert plugins.url.startswith("https://github.com/containernetworking/plugins/releases/download/v1.10.0/")
    assert found["manifests/calico.yaml"].url.endswith("/calico/v3.33.0/manifests/calico.yaml")
    assert "images/registry.k8s.io_pause_3.10.2.tar" in found
    assert "images/quay.io_calico_node_v3.33.0.tar" in found
    assert not any(path.startswith(("debs/", "containerd/")) for path in found)
    assert not any("kube-vip" in path for path in found)


def test_debs_form_globs_the_package_revision_and_drops_cni_tarball():
    paths = [a.path for a in artifacts.required_artifacts(Needs("1.37.1", "none", form="debs", arch="arm64"))]
    assert "debs/kubeadm_1.37.1-*_arm64.deb" in paths
    assert "debs/kubernetes-cni_*_arm64.deb" in paths
    assert not any(p.startswith(("bin/", "cni/", "manifests/")) for p in paths)
    assert sum(p.startswith("images/") for p in paths) == 7  # cni none: kubeadm's images only


def test_upstream_containerd_is_required_when_the_lab_uses_it(tmp_path):
    fill(tmp_path, Needs("1.36.5", "none"))
    with pytest.raises(ArtifactsError, match=r"missing containerd/runc\.amd64 \(runc 1\.5\.1, from https://github"):
        artifacts.check_artifacts(tmp_path, spec(cni="none", containerd_source="upstream"))


def test_upstream_containerd_kube_vip_and_cilium_chart():
    needs = Needs("1.36.5", "cilium", lb="kube-vip", containerd_source="upstream", containerd_version="2.3.4")
    found = {a.path: a for a in artifacts.required_artifacts(needs)}
    assert found["containerd/containerd-2.3.4-linux-amd64.tar.gz"].checksum_url.endswith(".tar.gz.sha256sum")
    assert found["containerd/runc.amd64"].checksum_url.endswith("/runc.sha256sum")
    assert found["manifests/cilium-1.20.2.tgz"].url == "https://helm.cilium.io/cilium-1.20.2.tgz"
    assert "images/ghcr.io_kube-vip_kube-vip_v1.0.0.tar" in found


def test_weave_manifest_and_images_are_the_forks_release():
    version = versions.CNI_VERSIONS["weave"]
    found = {a.path: a for a in artifacts.required_artifacts(Needs("1.36.5", "weave"))}
    assert found["manifests/weave-daemonset-k8s-1.11.yaml"].url == (
        f"https://github.com/rajch/weave/releases/download/{version}/weave-daemonset-k8s-1.11.yaml"
    )
    bare = version.lstrip("v")
    assert artifacts.expected_cni_images("weave") == (
        f"docker.io/rajchaudhuri/weave-kube:{bare}",
        f"docker.io/rajchaudhuri/weave-npc:{bare}",
    )
    assert f"images/docker.io_rajchaudhuri_weave-npc_{bare}.tar" in found


def test_exact_version_and_archive_names():
    assert artifacts.exact_version("1.36") == versions.LATEST_PATCH["1.36"]
    assert artifacts.exact_version("v1.35.3") == "1.35.3"
    with pytest.raises(ArtifactsError, match="exact version"):
        artifacts.exact_version("1.20")
    assert artifacts.image_archive_name("quay.io/cilium/cilium:v1.20.2@sha256:abc") == (
        "images/quay.io_cilium_cilium_v1.20.2.tar"
    )


def test_images_are_read_from_manifests_and_charts(tmp_path):
    text = (
        "spec:\n  # image: quay.io/old:1\n  containers:\n  - image: quay.io/a/b:v1\n    name: x\n      image: 'c/d:2'\n"
    )
    assert artifacts.manifest_images(text) == ["quay.io/a/b:v1", "c/d:2"]
    values = (
        "image:\n  repository: quay.io/cilium/cilium\n  tag: v1.20.2\n  digest: sha256:abc\n  useDigest: true\n"
        "operator:\n  image:\n    repository: quay.io/cilium/operator\n    tag: v1.20.2\n"
        "other:\n  repository: not-an-image\n  tag: x\n"
    )
    chart = tmp_path / "cilium-1.20.2.tgz"
    with tarfile.open(chart, "w:gz") as tar:
        data = values.encode()
        info = tarfile.TarInfo("cilium/values.yaml")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    assert artifacts.chart_images(chart) == [
        "quay.io/cilium/cilium:v1.20.2@sha256:abc",
        "quay.io/cilium/operator:v1.20.2",
    ]


def test_archive_references_reads_oci_and_docker_archives(tmp_path):
    assert artifacts.archive_references(tiny_archive(tmp_path / "a.tar", "example.org/a:1")) == ["example.org/a:1"]
    docker = tiny_archive(tmp_path / "b.tar", "example.org/b:2", docker=True)
    assert artifacts.archive_references(docker) == ["example.org/b:2"]


def test_checksum_files_in_every_published_shape(tmp_path):
    digest = "a" * 64
    assert fetch.parse_checksum(digest + "\n", "kubeadm") == digest
    assert fetch.parse_checksum(f"{'b' * 64}  runc.arm64\n{digest}  runc.amd64\n", "runc.amd64") == digest
    assert fetch.parse_checksum(f"{digest} *dist/file.tgz\n", "file.tgz") == digest
    with pytest.raises(ArtifactsError, match=r"no sha256 for runc\.amd64"):
        fetch.parse_checksum(f"{digest}  runc.arm64\n", "runc.amd64")
    file = tmp_path / "kubeadm"
    file.write_bytes(b"real bytes")
    good = hashlib.sha256(b"real bytes").hexdigest()
    assert fetch.verify_download(file, good, "kubeadm") == good
    with pytest.raises(ArtifactsError, match="does not match the published"):
        fetch.verify_download(file, digest, "kubeadm")


def spec(**changes):
    values = {
        "kubernetes_version": "1.36.5",
        "cni": "flannel",
        "masters": 1,
        "lb": "none",
        "containerd_source": "distro",
    }
    return build_spec(values | changes)


def test_complete_folder_passes_and_minor_takes_the_folders_patch(tmp_path):
    fill(tmp_path, Needs("1.36.5", "flannel"))
    assert artifacts.check_artifacts(tmp_path, spec()).kubernetes_version == "1.36.5"
    needs = artifacts.check_artifacts(tmp_path, spec(kubernetes_version="1.36"))
    assert needs.kubernetes_version == "1.36.5" and needs.form == "bin"


def test_missing_corrupt_and_unlisted_files_are_all_named(tmp_path):
    fill(tmp_path, Needs("1.36.5", "flannel"))
    (tmp_path / "bin" / "kubelet").unlink()
    (tmp_path / "images" / "registry.k8s.io_pause_3.10.2.tar").write_bytes(b"flipped")
    manifest = json.loads((tmp_path / "artifacts.json").read_text())
    manifest["artifacts"] = [e for e in manifest["artifacts"] if e["path"] != "bin/kubectl"]
    (tmp_path / "artifacts.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactsError) as error:
        artifacts.check_artifacts(tmp_path, spec())
    message = str(error.value)
    assert "missing bin/kubelet (listed in artifacts.json)" in message
    assert "corrupt images/registry.k8s.io_pause_3.10.2.tar: sha256" in message
    assert "bin/kubectl: present but not listed in artifacts.json" in message
    assert "kubelab artifacts fetch --k8s-version 1.36.5 --cni flannel" in message
    assert isinstance(error.value, SpecError)  # the CLI prints it as a usage error


def test_files_absent_from_folder_and_manifest_name_their_download(tmp_path):
    fill(tmp_path, Needs("1.36.5", "none"))
    with pytest.raises(ArtifactsError) as error:
        artifacts.check_artifacts(tmp_path, spec(cni="calico"))
    message = str(error.value)
    assert "missing manifests/calico.yaml (calico.yaml v3.33.0, from https://raw.githubusercontent.com/" in message
    assert "missing images/quay.io_calico_node_v3.33.0.tar (quay.io/calico/node:v3.33.0 v3.33.0)" in message


def test_image_archive_must_hold_its_reference(tmp_path):
    fill(tmp_path, Needs("1.36.5", "none"))
    tiny_archive(tmp_path / "images" / "registry.k8s.io_pause_3.10.2.tar", "registry.k8s.io/pause:9.9")
    artifacts.write_manifest(tmp_path, Needs("1.36.5", "none"))  # checksums match, the content is wrong
    with pytest.raises(ArtifactsError, match=r"does not hold image registry.k8s.io/pause:3.10.2 .*pause:9.9"):
        artifacts.check_artifacts(tmp_path, spec(cni="none"))


def test_cni_images_come_from_the_manifest_in_the_folder(tmp_path):
    needs = Needs("1.36.5", "flannel", cni_images=("ghcr.io/flannel-io/flannel:v0.28.9",))
    fill(tmp_path, needs)
    (tmp_path / "manifests" / "kube-flannel.yml").write_text(
        "      - image: ghcr.io/flannel-io/flannel:v0.28.9\n      - image: example.org/extra:1\n"
    )
    artifacts.write_manifest(tmp_path, needs)
    with pytest.raises(ArtifactsError, match=r"missing images/example.org_extra_1.tar"):
        artifacts.check_artifacts(tmp_path, spec())


def test_wrong_version_no_manifest_and_debs_form(tmp_path):
    with pytest.raises(ArtifactsError, match="does not exist"):
        artifacts.check_artifacts(tmp_path / "nope", spec())
    with pytest.raises(ArtifactsError, match=r"has no artifacts\.json.*kubelab artifacts index"):
        artifacts.check_artifacts(tmp_path, spec())
    fill(tmp_path, Needs("1.36.5", "none", form="debs"))
    assert artifacts.check_artifacts(tmp_path, spec(cni="none")).form == "debs"
    with pytest.raises(ArtifactsError, match=r"holds Kubernetes 1\.36\.5, the lab wants 1\.37") as other:
        artifacts.check_artifacts(tmp_path, spec(cni="none", kubernetes_version="1.37"))
    assert str(other.value).startswith(f"artifacts folder {tmp_path} cannot serve Kubernetes 1.37 with cni none")
    assert "artifacts build --k8s-version 1.37 --cni none --out DIR" in str(other.value)


def test_export_commands():
    (skopeo,) = fetch.export_commands("skopeo", "registry.k8s.io/pause:3.10.2", "/o/p.tar", "arm64")
    assert skopeo[-2:] == ["docker://registry.k8s.io/pause:3.10.2", "oci-archive:/o/p.tar:registry.k8s.io/pause:3.10.2"]
    assert "arm64" in skopeo
    pull, export = fetch.export_commands("ctr", "r/x:1", "/o/x.tar")
    assert pull[:5] == ["ctr", "-n", "kubelab-fetch", "images", "pull"]
    assert export[-2:] == ["/o/x.tar", "r/x:1"] and "linux/amd64" in export
    with pytest.raises(ArtifactsError, match="skopeo or ctr"):
        fetch.export_commands("docker", "r/x:1", "/o")


def test_resolve_patch_asks_the_stable_marker():
    asked = []

    def read(url):
        asked.append(url)
        return "v1.36.7\n"

    assert fetch.resolve_patch("1.36", read) == "1.36.7"
    assert asked == ["https://dl.k8s.io/release/stable-1.36.txt"]
    assert fetch.resolve_patch("1.36.2", read) == "1.36.2" and len(asked) == 1


@pytest.fixture
def release_server(tmp_path, monkeypatch):
    """A local HTTP server laid out like dl.k8s.io and the GitHub release pages, with .sha256 files."""
    root = tmp_path / "www"
    files = {
        "dl/stable-1.36.txt": b"v1.36.5\n",
        "gh/flannel-io/flannel/releases/download/v0.28.10/kube-flannel.yml": b"- image: example.org/flannel:1\n",
    }
    for name in artifacts.KUBE_BINARIES:
        files[f"dl/v1.36.5/bin/linux/amd64/{name}"] = f"#!/bin/sh\necho {name}\n".encode()
    files["gh/containernetworking/plugins/releases/download/v1.10.0/cni-plugins-linux-amd64-v1.10.0.tgz"] = b"tgz"
    for path, data in list(files.items()):
        if not path.endswith((".txt", ".yml")):
            files[path + ".sha256"] = (hashlib.sha256(data).hexdigest() + f"  {Path(path).name}\n").encode()
    for path, data in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    monkeypatch.setattr(artifacts, "DL_K8S", base + "/dl")
    monkeypatch.setattr(artifacts, "GITHUB", base + "/gh")
    monkeypatch.setitem(
        artifacts.CNI_MANIFESTS,
        "flannel",
        ("kube-flannel.yml", base + "/gh/flannel-io/flannel/releases/download/{v}/kube-flannel.yml"),
    )
    yield root
    server.shutdown()


def test_fetch_downloads_verifies_resumes_and_refuses_tampered_files(tmp_path, release_server):
    exported = []

    def fake_export(argv):  # stands in for skopeo: the export step itself is tested on real images elsewhere
        exported.append(argv[-1])
        tiny_archive(Path(argv[-1].split(":", 2)[1]), argv[-1].split(":", 2)[2])

    out = tmp_path / "out"
    lab = spec(kubernetes_version="1.36")
    fetch.fetch(lab, out, image_tool="skopeo", progress=lambda _: None, run=fake_export)
    assert (out / "bin" / "kubeadm").read_text() == "#!/bin/sh\necho kubeadm\n"
    assert (out / "bin" / "kubeadm").stat().st_mode & 0o111
    assert any("example.org/flannel:1" in ref for ref in exported)  # CNI images read from the fetched manifest
    assert artifacts.check_artifacts(out, lab).kubernetes_version == "1.36.5"
    manifest = json.loads((out / "artifacts.json").read_text())
    kubeadm = next(e for e in manifest["artifacts"] if e["path"] == "bin/kubeadm")
    assert kubeadm["source"].endswith("/dl/v1.36.5/bin/linux/amd64/kubeadm")

    exported.clear()
    messages = []
    fetch.fetch(lab, out, image_tool="skopeo", progress=messages.append, run=fake_export)
    fetched = [m for m in messages if not m.startswith("have")]
    assert exported == [] and fetched == [m for m in fetched if m.endswith("kube-flannel.yml")]  # no checksum

    (release_server / "dl/v1.36.5/bin/linux/amd64/kubelet").write_bytes(b"tampered")
    (out / "bin" / "kubelet").unlink()
    with pytest.raises(ArtifactsError, match=r"kubelet: downloaded sha256 .* does not match the published"):
        fetch.fetch(lab, out, image_tool="skopeo", progress=lambda _: None, run=fake_export)


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_up_refuses_an_incomplete_folder_before_creating_anything(tmp_path, damage):
    folder, home = tmp_path / "artifacts", tmp_path / "home"
    fill(folder, Needs("1.36.5", "none"))
    artifacts.write_manifest(folder, Needs("1.36.5", "none"))
    if damage == "missing":
        (folder / "bin" / "kubelet").unlink()
    else:
        (folder / "images" / "registry.k8s.io_pause_3.10.2.tar").write_bytes(b"flipped")
    argv = ["up", "--name", "it-offline-up", "--provider", "local", "--masters", "1", "--workers", "0"]
    argv += ["--k8s-version", "1.36.5", "--cni", "none", "--artifacts", str(folder)]
    kubelab = Path(sys.executable).parent / "kubelab"
    env = {**os.environ, "KUBELAB_HOME": str(home)}
    result = subprocess.run([str(kubelab), *argv], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    wanted = "missing bin/kubelet (listed in artifacts.json)" if damage == "missing" else "corrupt images/registry"
    assert wanted in result.stderr and "kubelab artifacts fetch --k8s-version 1.36.5 --cni none" in result.stderr
    assert not home.exists()  # no lab folder, no lock file: nothing was created
