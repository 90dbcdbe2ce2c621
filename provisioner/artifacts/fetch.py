"""`kubelab artifacts fetch`: fill an artifacts folder from the official download sites and registries, every
published checksum verified, then write its manifest."""

from __future__ import annotations

import re
import shutil
import subprocess
import tarfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from provisioner import artifacts, versions
from provisioner.artifacts import (
    ArtifactsError,
    Needs,
    archive_references,
    cni_images,
    required_artifacts,
    sha256_file,
    write_manifest,
)

if TYPE_CHECKING:
    import http.client

    from provisioner.spec import LabSpec


def parse_checksum(text: str, file_name: str) -> str:
    """The sha256 for file_name from a .sha256 file: a bare digest, or `digest  name` lines."""
    for line in text.splitlines():
        parts = line.split()
        if not parts or not re.fullmatch(r"[0-9a-fA-F]{64}", parts[0]):
            continue
        if len(parts) == 1 or parts[-1].lstrip("*").rsplit("/", 1)[-1] == file_name:
            return parts[0].lower()
    raise ArtifactsError(f"no sha256 for {file_name} in its checksum file")


def verify_download(file: Path, checksum_text: str, file_name: str) -> str:
    """Compare a downloaded file with its official checksum; the digest, or ArtifactsError."""
    expected = parse_checksum(checksum_text, file_name)
    actual = sha256_file(file)
    if actual != expected:
        raise ArtifactsError(f"{file.name}: downloaded sha256 {actual} does not match the published {expected}")
    return actual


def _open(url: str) -> http.client.HTTPResponse:
    try:
        return urllib.request.urlopen(url, timeout=60)
    except (urllib.error.URLError, OSError) as exc:
        raise ArtifactsError(f"cannot download {url}: {getattr(exc, 'reason', exc)}") from None


def _download(url: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    with _open(url) as response, partial.open("wb") as out:
        shutil.copyfileobj(response, out, 1 << 20)
    partial.replace(target)


def _read_url(url: str) -> str:
    with _open(url) as response:
        return response.read().decode()


def resolve_patch(kubernetes_version: str, read_url: Callable[[str], str] = _read_url) -> str:
    """An exact version; a bare minor is resolved with dl.k8s.io/release/stable-1.NN.txt."""
    major, minor, patch = versions.parse_kubernetes_version(kubernetes_version)
    if patch is not None:
        return f"{major}.{minor}.{patch}"
    return read_url(f"{artifacts.DL_K8S}/stable-{major}.{minor}.txt").strip().lstrip("v")


# Runs argv and raises on failure; fetch runs it on this machine.
Runner = Callable[[list[str]], None]


def _run(argv: list[str]) -> None:
    try:
        subprocess.run(argv, check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise ArtifactsError(f"`{' '.join(argv)}` failed: {exc}") from None


def export_commands(
    tool: str, reference: str, out: str, arch: str = "amd64", source: str | None = None
) -> list[list[str]]:
    """Commands that put one image into an archive ctr imports, under its reference: skopeo copies it from the
    registry (or ``source``, e.g. ``oci:DIR:TAG``) to an OCI archive; ctr pulls it into a scratch namespace, exports."""
    if tool == "skopeo":
        src = source or f"docker://{reference}"
        return [
            ["skopeo", "copy", "--override-os", "linux", "--override-arch", arch, src, f"oci-archive:{out}:{reference}"]
        ]
    if tool == "ctr":
        platform = f"linux/{arch}"
        pull = ["ctr", "-n", "kubelab-fetch", "images", "pull", "--platform", platform, reference]
        export = ["ctr", "-n", "kubelab-fetch", "images", "export", "--platform", platform, out, reference]
        return [export] if source == "local" else [pull, export]
    raise ArtifactsError(f"unknown image tool '{tool}': use skopeo or ctr")


def pick_image_tool() -> str:
    if shutil.which("skopeo"):
        return "skopeo"
    if shutil.which("ctr") and Path("/run/containerd/containerd.sock").exists():
        return "ctr"
    raise ArtifactsError(
        "fetching images needs skopeo (apt-get install skopeo) or a running containerd with ctr on this machine"
    )


def fetch(
    spec: LabSpec,
    out: Path,
    arch: str = "amd64",
    image_tool: str | None = None,
    progress: Callable[[str], None] = print,
    run: Runner = _run,
) -> Path:
    """Fill ``out`` from official sources, verify every published checksum, write artifacts.json. Files already
    present with a matching checksum are kept, so an interrupted fetch resumes."""
    out = out.expanduser()
    out.mkdir(parents=True, exist_ok=True)
    version = resolve_patch(spec.kubernetes_version)
    needs = Needs.of(spec, version, arch)
    sources: dict[str, str] = {}
    for artifact in required_artifacts(needs):
        if artifact.kind == "image" or not artifact.url:
            continue
        target = out / artifact.path
        sources[artifact.path] = artifact.url
        checksum = _read_url(artifact.checksum_url) if artifact.checksum_url else None
        if target.is_file() and checksum and parse_checksum(checksum, target.name) == sha256_file(target):
            progress(f"have  {artifact.path}")
            continue
        progress(f"fetch {artifact.url}")
        _download(artifact.url, target)
        if checksum:
            verify_download(target, checksum, target.name)
        if artifact.kind == "binary":
            target.chmod(0o755)
    needs = Needs(**{**needs.__dict__, "cni_images": cni_images(out, spec.cni)})
    tool = image_tool or pick_image_tool()
    for artifact in required_artifacts(needs):
        if artifact.kind != "image":
            continue
        target = out / artifact.path
        if target.is_file() and artifact.name in _safe_refs(target):
            progress(f"have  {artifact.path}")
            continue
        progress(f"image {artifact.name} ({tool})")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)
        for argv in export_commands(tool, artifact.name, str(target), arch):
            run(argv)
    return write_manifest(out, needs, sources)


def _safe_refs(path: Path) -> list[str]:
    try:
        return archive_references(path)
    except (tarfile.TarError, OSError, ValueError):
        return []
