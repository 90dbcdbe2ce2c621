"""OCI image archives built from local files, with no registry and no container engine.

A `Layer` is a reproducible gzip tar (entries sorted, mtime 0, owner 0:0) in a temporary file ($TMPDIR), removed
when it is garbage-collected or the program exits. `build_image` writes an OCI image-layout tar of layers and a
config for ``ctr -n k8s.io images import``; the same inputs give the same bytes, so digests are stable.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import stat
import struct
import subprocess
import tarfile
import tempfile
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path, PurePosixPath
from typing import BinaryIO, NamedTuple

CAP_NET_BIND_SERVICE = 10
EPOCH = "1970-01-01T00:00:00Z"
GZIP_LEVEL = 6
LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
CAPABILITY_XATTR = "SCHILY.xattr.security.capability"
VFS_CAP_REVISION_2 = 0x02000000
VFS_CAP_FLAGS_EFFECTIVE = 0x000001
BUSYBOX = Path("/bin/busybox")  # Debian package busybox-static
CACHE = Path.home() / ".cache" / "kubelab" / "oci-image"


@dataclass(frozen=True)
class Layer:
    """A compressed layer blob on disk: ``digest`` of the gzip bytes, ``diff_id`` of the tar inside."""

    path: Path
    digest: str  # sha256:...
    diff_id: str  # sha256:...
    size: int  # bytes of the gzip blob


@dataclass(frozen=True)
class ImageConfig:
    """The run configuration of an image (the ``config`` object of the OCI image config)."""

    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    env: tuple[str, ...] = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",)
    user: str | None = None  # e.g. "65532:65532"
    workdir: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)


class _Entry(NamedTuple):
    info: tarfile.TarInfo
    source: Path | bytes | None  # file contents; None for directories and symlinks


class _Digesting:
    """A write-only stream that hashes and counts the bytes it passes on to ``out``."""

    def __init__(self, out: BinaryIO | gzip.GzipFile) -> None:
        self.out = out
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        self.out.write(data)
        return len(data)

    def tell(self) -> int:
        return self.size

    @property
    def digest(self) -> str:
        return "sha256:" + self.sha256.hexdigest()


def capability_blob(caps: int) -> bytes:
    """The security.capability xattr value (vfs_cap_data, revision 2) that grants ``caps`` (a bitmask of
    capability numbers) as permitted and effective, nothing inheritable."""
    return struct.pack(
        "<5I", VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE, caps & 0xFFFFFFFF, 0, caps >> 32 & 0xFFFFFFFF, 0
    )


def _info(name: str, kind: bytes, mode: int, size: int = 0, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size, info.linkname = kind, mode, size, link
    info.mtime = info.uid = info.gid = 0
    return info


def _clean(name: str) -> str:
    path = PurePosixPath(name.lstrip("/"))
    if not path.parts or ".." in path.parts:
        raise ValueError(f"{name!r} is not a path inside a layer")
    return str(path)


def _write_layer(entries: Iterable[_Entry], file_caps: Mapping[str, int] | None = None) -> Layer:
    """Write the entries (sorted by path) as a gzip tar to a temporary file."""
    entries = sorted(entries, key=lambda e: e.info.name.split("/"))
    caps = {_clean(name): bits for name, bits in (file_caps or {}).items()}
    missing = sorted(set(caps) - {e.info.name for e in entries if e.info.isreg()})
    if missing:
        raise ValueError(f"file_caps names what is not a regular file in the layer: {', '.join(missing)}")
    fd, name = tempfile.mkstemp(prefix="kubelab-layer-", suffix=".tar.gz")
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            compressed = _Digesting(out)
            with gzip.GzipFile(fileobj=compressed, mode="wb", compresslevel=GZIP_LEVEL, mtime=0, filename="") as gz:
                raw = _Digesting(gz)
                with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT, encoding="utf-8") as tar:
                    for info, source in entries:
                        if info.name in caps:
                            value = capability_blob(caps[info.name]).decode("utf-8", "surrogateescape")
                            info.pax_headers = {CAPABILITY_XATTR: value}
                        if isinstance(source, Path):
                            with source.open("rb") as handle:
                                tar.addfile(info, handle)
                        else:
                            tar.addfile(info, BytesIO(source) if source is not None else None)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    layer = Layer(path=path, digest=compressed.digest, diff_id=raw.digest, size=compressed.size)
    weakref.finalize(layer, path.unlink, missing_ok=True)
    return layer


def layer_from_dir(root: Path, file_caps: Mapping[str, int] | None = None) -> Layer:
    """A layer of the directories, regular files (hard links become copies) and symlinks under ``root``, with their
    modes; ``file_caps`` maps layer paths to capability bitmasks, e.g. ``{"coredns": 1 << CAP_NET_BIND_SERVICE}``."""
    entries: list[_Entry] = []
    for dirpath, dirnames, filenames in os.walk(root):
        for child in (*dirnames, *filenames):
            path = Path(dirpath, child)
            name, st = path.relative_to(root).as_posix(), path.lstat()
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISDIR(st.st_mode):
                entries.append(_Entry(_info(name, tarfile.DIRTYPE, mode), None))
            elif stat.S_ISLNK(st.st_mode):
                entries.append(_Entry(_info(name, tarfile.SYMTYPE, 0o777, link=os.readlink(path)), None))
            elif stat.S_ISREG(st.st_mode):
                entries.append(_Entry(_info(name, tarfile.REGTYPE, mode, size=st.st_size), path))
            else:
                raise ValueError(f"{path} is neither a directory, a regular file nor a symlink")
    return _write_layer(entries, file_caps)


def layer_from_files(
    files: Mapping[str, bytes | Path],
    modes: Mapping[str, int] | None = None,
    symlinks: Mapping[str, str] | None = None,
) -> Layer:
    """A small layer of ``files`` (path -> bytes, or a host file) and ``symlinks`` (path -> target), parents 0755.
    Modes: ``modes`` (which may add directories), else the host file's, else 0755 for a script or ELF, else 0644."""
    modes = {_clean(name): mode for name, mode in (modes or {}).items()}
    entries: dict[str, _Entry] = {}
    for raw_name, data in files.items():
        name = _clean(raw_name)
        if isinstance(data, Path):
            st = data.stat()
            info = _info(name, tarfile.REGTYPE, modes.get(name, stat.S_IMODE(st.st_mode)), size=st.st_size)
        else:
            default = 0o755 if data.startswith((b"#!", b"\x7fELF")) else 0o644
            info = _info(name, tarfile.REGTYPE, modes.get(name, default), size=len(data))
        entries[name] = _Entry(info, data)
    for raw_name, target in (symlinks or {}).items():
        name = _clean(raw_name)
        if name in modes:
            raise ValueError(f"modes names the symlink {name}")
        entries[name] = _Entry(_info(name, tarfile.SYMTYPE, 0o777, link=target), None)
    directories = {str(p) for name in [*entries, *modes] for p in PurePosixPath(name).parents if str(p) != "."}
    directories |= set(modes) - set(entries)
    for name in directories - set(entries):
        entries[name] = _Entry(_info(name, tarfile.DIRTYPE, modes.get(name, 0o755)), None)
    return _write_layer(entries.values())


def _tag(reference: str) -> str:
    repository, _, tag = reference.rpartition(":")
    if "@" in reference or not repository or "/" in tag:
        raise ValueError(f"image reference {reference!r} needs a tag (registry/name:tag, no digest)")
    return tag


def _json(document: object) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def _descriptor(media_type: str, data: bytes) -> dict[str, object]:
    return {"mediaType": media_type, "digest": "sha256:" + hashlib.sha256(data).hexdigest(), "size": len(data)}


def build_image(
    archive: Path,
    reference: str,
    layers: Sequence[Layer],
    config: ImageConfig = ImageConfig(),
    arch: str = "amd64",
) -> Path:
    """Write the OCI image-layout tar of ``reference`` (registry/name:tag) to ``archive``; returns it.
    The file appears only when complete (written to ``archive.part`` first)."""
    tag = _tag(reference)
    run: dict[str, object] = {"Env": list(config.env)}
    optional = {"Entrypoint": config.entrypoint, "Cmd": config.cmd, "User": config.user}
    optional |= {"WorkingDir": config.workdir, "Labels": dict(config.labels) or None}
    run |= {key: list(value) if isinstance(value, tuple) else value for key, value in optional.items() if value}
    image_config = _json(
        {
            "architecture": arch,
            "os": "linux",
            "created": EPOCH,
            "config": run,
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
            "history": [{"created": EPOCH, "created_by": "kubelab"} for _ in layers],
        }
    )
    manifest = _json(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": _descriptor("application/vnd.oci.image.config.v1+json", image_config),
            "layers": [{"mediaType": LAYER_MEDIA_TYPE, "digest": x.digest, "size": x.size} for x in layers],
        }
    )
    descriptor = _descriptor("application/vnd.oci.image.manifest.v1+json", manifest)
    descriptor["platform"] = {"architecture": arch, "os": "linux"}
    descriptor["annotations"] = {"io.containerd.image.name": reference, "org.opencontainers.image.ref.name": tag}
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [descriptor]}
    blobs: dict[str, Path | bytes] = {layer.digest: layer.path for layer in layers}
    blobs |= {"sha256:" + hashlib.sha256(data).hexdigest(): data for data in (image_config, manifest)}
    archive.parent.mkdir(parents=True, exist_ok=True)
    part = archive.with_name(archive.name + ".part")
    try:
        with tarfile.open(part, "w", format=tarfile.PAX_FORMAT, encoding="utf-8") as tar:
            files = [("oci-layout", _json({"imageLayoutVersion": "1.0.0"})), ("index.json", _json(index))]
            for name, data in files:
                tar.addfile(_info(name, tarfile.REGTYPE, 0o644, size=len(data)), BytesIO(data))
            for name in ("blobs", "blobs/sha256"):
                tar.addfile(_info(name, tarfile.DIRTYPE, 0o755))
            for digest, blob in sorted(blobs.items()):
                name = "blobs/sha256/" + digest.removeprefix("sha256:")
                if isinstance(blob, Path):
                    with blob.open("rb") as handle:
                        tar.addfile(_info(name, tarfile.REGTYPE, 0o644, size=blob.stat().st_size), handle)
                else:
                    tar.addfile(_info(name, tarfile.REGTYPE, 0o644, size=len(blob)), BytesIO(blob))
        part.replace(archive)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return archive


def busybox_binary() -> Path:
    """The static busybox: the host's if busybox-static is installed, else extracted from the downloaded .deb."""
    if BUSYBOX.is_file() and b"ld-linux" not in BUSYBOX.read_bytes()[:4096]:  # no ELF interpreter: static
        return BUSYBOX
    extracted = CACHE / "busybox-static" / "bin" / "busybox"
    if not extracted.is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
            subprocess.run(["apt-get", "download", "busybox-static"], cwd=tmp, check=True, capture_output=True)
            deb = next(Path(tmp).glob("busybox-static_*.deb"))
            subprocess.run(["dpkg-deb", "-x", str(deb), str(CACHE / "busybox-static")], check=True)
    return extracted


def busybox_layer() -> Layer:
    """/bin/busybox with its applets linked in /bin, and empty /etc and /tmp (1777)."""
    busybox = busybox_binary()
    applets = subprocess.run([str(busybox), "--list"], capture_output=True, text=True, check=True).stdout.split()
    links = {f"bin/{applet}": "busybox" for applet in applets if applet != "busybox"}
    return layer_from_files({"bin/busybox": busybox}, {"bin/busybox": 0o755, "etc": 0o755, "tmp": 0o1777}, links)
