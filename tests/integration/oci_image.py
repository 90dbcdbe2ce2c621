"""Build small OCI image archives locally (no registry needed), e.g. for `ctr -n k8s.io images import`.

`build_image(archive, "example.org/kubelab/busybox:1", files={"www/index.html": b"hi"})` writes a tar of an
OCI image layout with one layer: Debian's static busybox at /bin/busybox with its applets linked in /bin,
plus the given files. The archive is byte-for-byte reproducible (fixed timestamps), so its digests are stable.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import tarfile
import tempfile
from pathlib import Path

BUSYBOX = Path("/bin/busybox")  # Debian package busybox-static
CACHE = Path.home() / ".cache" / "kubelab" / "oci-image"


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


def _add(
    tar: tarfile.TarFile, name: str, data: bytes | None = None, mode: int = 0o644, link: str | None = None
) -> None:
    info = tarfile.TarInfo(name)
    info.mtime = 0
    info.uid = info.gid = 0
    if link:
        info.type, info.linkname, info.mode = tarfile.SYMTYPE, link, 0o777
        tar.addfile(info)
    elif data is None:
        info.type, info.mode = tarfile.DIRTYPE, mode
        tar.addfile(info)
    else:
        info.size, info.mode = len(data), mode
        tar.addfile(info, io.BytesIO(data))


def _layer(files: dict[str, bytes], busybox: Path | None) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs = {"bin", "tmp", "etc"} | {str(p) for name in files for p in Path(name).parents if str(p) != "."}
        for directory in sorted(dirs):
            _add(tar, directory, mode=0o1777 if directory == "tmp" else 0o755)
        if busybox:
            _add(tar, "bin/busybox", busybox.read_bytes(), mode=0o755)
            applets = subprocess.run([str(busybox), "--list"], capture_output=True, text=True, check=True).stdout
            for applet in sorted(set(applets.split()) - {"busybox"}):
                _add(tar, f"bin/{applet}", link="busybox")
        for name, data in sorted(files.items()):
            _add(tar, name.lstrip("/"), data, mode=0o755 if data.startswith(b"#!") else 0o644)
    compressed = io.BytesIO()
    with gzip.GzipFile(fileobj=compressed, mode="wb", mtime=0) as gz:
        gz.write(raw.getvalue())
    return compressed.getvalue()


def build_image(
    archive: Path,
    reference: str,
    files: dict[str, bytes] | None = None,
    cmd: list[str] | None = None,
    env: list[str] | None = None,
    busybox: bool = True,
    arch: str = "amd64",
) -> Path:
    """Write an OCI image layout tar for `reference` (registry/name:tag) to `archive`; returns `archive`."""
    layer = _layer(files or {}, busybox_binary() if busybox else None)
    diff_id = "sha256:" + hashlib.sha256(gzip.decompress(layer)).hexdigest()
    config = {
        "architecture": arch,
        "os": "linux",
        "config": {"Cmd": cmd or ["/bin/sh"], "Env": env or ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }
    blobs: dict[str, bytes] = {}

    def blob(data: bytes, media_type: str) -> dict[str, object]:
        digest = hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}

    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": blob(json.dumps(config, sort_keys=True).encode(), "application/vnd.oci.image.config.v1+json"),
        "layers": [blob(layer, "application/vnd.oci.image.layer.v1.tar+gzip")],
    }
    descriptor = blob(json.dumps(manifest, sort_keys=True).encode(), "application/vnd.oci.image.manifest.v1+json")
    tag = reference.rsplit(":", 1)[1] if ":" in reference.rsplit("/", 1)[-1] else "latest"
    descriptor["annotations"] = {"io.containerd.image.name": reference, "org.opencontainers.image.ref.name": tag}
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [descriptor]}
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w", format=tarfile.PAX_FORMAT) as tar:
        _add(tar, "oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        _add(tar, "index.json", json.dumps(index, sort_keys=True).encode())
        _add(tar, "blobs")
        _add(tar, "blobs/sha256")
        for digest, data in sorted(blobs.items()):
            _add(tar, f"blobs/sha256/{digest}", data)
    return archive
