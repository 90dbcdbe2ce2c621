"""OCI image archives: layer contents read back with tarfile, the capability blob, the image layout, and
byte-for-byte reproducibility."""

from __future__ import annotations

import gc
import gzip
import hashlib
import json
import os
import tarfile
from pathlib import Path

import pytest

from provisioner import artifacts, oci
from provisioner.oci import ImageConfig, build_image, layer_from_dir, layer_from_files

NET_BIND = 1 << oci.CAP_NET_BIND_SERVICE


def _members(layer: oci.Layer) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(layer.path) as tar:
        return {m.name: m for m in tar.getmembers()}


def _layout(archive: Path) -> tuple[dict, dict, dict, dict[str, bytes]]:
    """index.json, the manifest, the config and every blob (by sha256:digest) of an image archive."""
    with tarfile.open(archive) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]
    blobs = {"sha256:" + name.rsplit("/", 1)[1]: data for name, data in files.items() if name.startswith("blobs/")}
    index = json.loads(files["index.json"])
    manifest = json.loads(blobs[index["manifests"][0]["digest"]])
    config = json.loads(blobs[manifest["config"]["digest"]])
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    return index, manifest, config, blobs


@pytest.fixture
def staging(tmp_path: Path) -> Path:
    root = tmp_path / "staging"
    (root / "usr/local/bin").mkdir(parents=True)
    (root / "coredns").write_bytes(b"\x7fELF coredns")
    (root / "coredns").chmod(0o755)
    (root / "usr/local/bin/su").write_bytes(b"setuid")
    (root / "usr/local/bin/su").chmod(0o4755)
    (root / "tmp").mkdir()
    (root / "tmp").chmod(0o1777)
    (root / "etc").mkdir()
    (root / "etc/hosts").write_text("127.0.0.1 localhost\n")
    (root / "etc/hosts").chmod(0o644)
    os.link(root / "coredns", root / "coredns-copy")
    (root / "bin").symlink_to("usr/local/bin")
    (root / "usr/local/bin/sh").symlink_to("/bin/busybox")
    return root


def test_the_capability_blob_is_a_revision_2_vfs_cap_data_with_the_effective_bit():
    assert oci.capability_blob(NET_BIND) == bytes.fromhex("01000002 00040000 00000000 00000000 00000000")
    # CAP_SETUID (7) and CAP_BPF (39): the high word holds capabilities 32..63.
    assert oci.capability_blob(1 << 7 | 1 << 39) == bytes.fromhex("01000002 80000000 00000000 80000000 00000000")


def test_a_directory_layer_keeps_modes_symlinks_and_hard_links_as_files_with_owner_root_and_time_zero(staging):
    members = _members(layer_from_dir(staging))
    assert list(members) == [
        "bin",
        "coredns",
        "coredns-copy",
        "etc",
        "etc/hosts",
        "tmp",
        "usr",
        "usr/local",
        "usr/local/bin",
        "usr/local/bin/sh",
        "usr/local/bin/su",
    ]
    assert all(m.uid == m.gid == m.mtime == 0 and m.uname == m.gname == "" for m in members.values())
    assert members["usr/local/bin/su"].mode == 0o4755
    assert members["tmp"].isdir() and members["tmp"].mode == 0o1777
    assert members["etc/hosts"].mode == 0o644
    assert members["bin"].issym() and members["bin"].linkname == "usr/local/bin"
    assert members["usr/local/bin/sh"].linkname == "/bin/busybox"
    assert members["coredns-copy"].isreg() and members["coredns-copy"].size == len(b"\x7fELF coredns")


def test_file_capabilities_are_pax_xattrs_that_read_back_as_the_exact_bytes(staging):
    layer = layer_from_dir(staging, file_caps={"coredns": NET_BIND, "/usr/local/bin/su": 1 << 7 | 1 << 39})
    members = _members(layer)
    for name, caps in (("coredns", NET_BIND), ("usr/local/bin/su", 1 << 7 | 1 << 39)):
        value = members[name].pax_headers[oci.CAPABILITY_XATTR]
        assert value.encode("utf-8", "surrogateescape") == oci.capability_blob(caps)
    assert oci.CAPABILITY_XATTR not in members["coredns-copy"].pax_headers
    with pytest.raises(ValueError, match="not a regular file in the layer: bin, missing"):
        layer_from_dir(staging, file_caps={"missing": NET_BIND, "bin": NET_BIND})


def test_layer_digests_are_those_of_the_blob_and_of_the_tar_inside(staging):
    layer = layer_from_dir(staging)
    blob = layer.path.read_bytes()
    assert layer.size == len(blob)
    assert layer.digest == "sha256:" + hashlib.sha256(blob).hexdigest()
    assert layer.diff_id == "sha256:" + hashlib.sha256(gzip.decompress(blob)).hexdigest()


def test_a_layer_s_temporary_file_goes_away_with_the_layer(staging):
    layer = layer_from_dir(staging)
    path = layer.path
    assert path.is_file()
    del layer
    gc.collect()
    assert not path.exists()


def test_small_layers_get_parent_directories_default_modes_and_symlinks(tmp_path):
    source = tmp_path / "tool"
    source.write_bytes(b"binary")
    source.chmod(0o750)
    members = _members(
        layer_from_files(
            {"/www/index.html": b"hi\n", "bin/run": b"#!/bin/sh\n", "opt/tool": source, "etc/secret": b"x"},
            modes={"etc/secret": 0o600, "tmp": 0o1777},
            symlinks={"bin/sh": "busybox"},
        )
    )
    modes = {name: m.mode for name, m in members.items() if not m.issym()}
    assert modes == {
        "bin": 0o755,
        "bin/run": 0o755,
        "etc": 0o755,
        "etc/secret": 0o600,
        "opt": 0o755,
        "opt/tool": 0o750,
        "tmp": 0o1777,
        "www": 0o755,
        "www/index.html": 0o644,
    }
    assert members["bin/sh"].issym() and members["bin/sh"].linkname == "busybox"
    assert set(members) == {*modes, "bin/sh"}
    with pytest.raises(ValueError, match="not a path inside a layer"):
        layer_from_files({"../escape": b""})


def test_an_image_archive_is_an_oci_layout_whose_reference_archive_references_reads_back(staging, tmp_path):
    layers = [layer_from_dir(staging), layer_from_files({"etc/motd": b"hello\n"})]
    config = ImageConfig(entrypoint=("/coredns",), cmd=("-conf", "/etc/coredns/Corefile"), user="65532:65532")
    reference = "registry.k8s.io/coredns/coredns:v1.14.1"
    archive = build_image(tmp_path / "out" / "coredns.tar", reference, layers, config)
    assert artifacts.archive_references(archive) == [reference]
    index, manifest, image, blobs = _layout(archive)
    [descriptor] = index["manifests"]
    assert descriptor["annotations"] == {
        "io.containerd.image.name": reference,
        "org.opencontainers.image.ref.name": "v1.14.1",
    }
    assert descriptor["platform"] == {"architecture": "amd64", "os": "linux"}
    assert [x["digest"] for x in manifest["layers"]] == [x.digest for x in layers]
    assert image["rootfs"] == {"type": "layers", "diff_ids": [x.diff_id for x in layers]}
    assert image["created"] == "1970-01-01T00:00:00Z" and len(image["history"]) == 2
    assert image["config"] == {
        "Entrypoint": ["/coredns"],
        "Cmd": ["-conf", "/etc/coredns/Corefile"],
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "User": "65532:65532",
    }
    for digest, data in blobs.items():
        assert digest == "sha256:" + hashlib.sha256(data).hexdigest()
    assert not (tmp_path / "out" / "coredns.tar.part").exists()


def test_two_builds_of_the_same_files_give_identical_archives_whatever_the_timestamps(staging, tmp_path):
    config = ImageConfig(workdir="/var/lib/etcd", labels={"org.example": "etcd"})
    first = build_image(tmp_path / "a.tar", "registry.k8s.io/etcd:3.6.7-0", [layer_from_dir(staging)], config)
    for path in (staging / "etc/hosts", staging / "coredns"):
        os.utime(path, (1_700_000_000, 1_700_000_000))
    second = build_image(tmp_path / "b.tar", "registry.k8s.io/etcd:3.6.7-0", [layer_from_dir(staging)], config)
    assert first.read_bytes() == second.read_bytes()
    assert _layout(first)[2]["config"]["WorkingDir"] == "/var/lib/etcd"


def test_a_failed_build_leaves_neither_the_archive_nor_the_part_file(tmp_path):
    gone = oci.Layer(path=tmp_path / "gone.tar.gz", digest="sha256:" + "0" * 64, diff_id="sha256:" + "1" * 64, size=1)
    with pytest.raises(FileNotFoundError):
        build_image(tmp_path / "x.tar", "example.org/x:1", [gone])
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize("reference", ["example.org/x", "example.org:5000/x", "example.org/x@sha256:" + "0" * 64])
def test_a_reference_without_a_tag_is_refused(tmp_path, reference):
    with pytest.raises(ValueError, match="needs a tag"):
        build_image(tmp_path / "x.tar", reference, [])


def test_the_busybox_layer_links_its_applets_to_bin_busybox(tmp_path, monkeypatch):
    fake = tmp_path / "busybox"
    fake.write_text("#!/bin/sh\necho busybox; echo sh; echo wget\n")
    fake.chmod(0o755)
    monkeypatch.setattr(oci, "busybox_binary", lambda: fake)
    members = _members(oci.busybox_layer())
    assert sorted(members) == ["bin", "bin/busybox", "bin/sh", "bin/wget", "etc", "tmp"]
    assert members["bin/busybox"].mode == 0o755 and members["bin/busybox"].size == fake.stat().st_size
    assert members["bin/wget"].linkname == "busybox" and members["tmp"].mode == 0o1777
