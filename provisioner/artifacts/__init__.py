"""Offline labs: the artifacts folder, what it must hold for a lab, and its checks; `fetch` fills one from the
official sources and `build` from upstream source (submodules).

Layout of a folder (``kubelab up --artifacts DIR``)::

    artifacts.json    the manifest: every file with kind, name, version and sha256
    bin/              kubeadm, kubelet, kubectl (crictl optional: kubeadm needs it only before 1.32)  -- or --
    debs/             kubeadm_*.deb kubelet_*.deb kubectl_*.deb cri-tools_*.deb kubernetes-cni_*.deb
    cni/              cni-plugins-linux-ARCH-vX.tgz (the bin/ form only; the debs bring kubernetes-cni)
    containerd/       containerd-X-linux-ARCH.tar.gz and runc.ARCH (containerd_source upstream only)
    images/           one OCI or docker-archive tar per image reference
    manifests/        the chosen CNI's manifest or chart

The images are those of ``kubeadm config images list`` (versions.KUBEADM_IMAGE_TAGS), the CNI manifest's and
the chosen add-ons' (whose manifests are kubelab's own, in the addons role).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from provisioner import versions
from provisioner.spec import SpecError

if TYPE_CHECKING:
    from provisioner.spec import LabSpec

MANIFEST = "artifacts.json"
MANIFEST_FORMAT = 1
FORMS = ("bin", "debs")
KUBE_BINARIES = ("kubeadm", "kubelet", "kubectl")
DEBS = ("kubeadm", "kubelet", "kubectl", "cri-tools", "kubernetes-cni")
DL_K8S = "https://dl.k8s.io/release"
GITHUB = "https://github.com"

# The CNI's manifest (file name, official URL) and the images it is expected to name. The manifest
# itself is authoritative: once it is in the folder, the images are read from it (cni_images).
CNI_MANIFESTS: dict[str, tuple[str, str]] = {
    "calico": ("calico.yaml", "https://raw.githubusercontent.com/projectcalico/calico/{v}/manifests/calico.yaml"),
    "flannel": ("kube-flannel.yml", GITHUB + "/flannel-io/flannel/releases/download/{v}/kube-flannel.yml"),
    "cilium": ("cilium-{n}.tgz", "https://helm.cilium.io/cilium-{n}.tgz"),
    # The community fork's release (Weaveworks' repository is archived; README "Pod networks").
    "weave": (
        "weave-daemonset-k8s-1.11.yaml",
        GITHUB + "/rajch/weave/releases/download/{v}/weave-daemonset-k8s-1.11.yaml",
    ),
}
CNI_EXPECTED_IMAGES: dict[str, tuple[str, ...]] = {
    "calico": ("quay.io/calico/cni:{v}", "quay.io/calico/node:{v}", "quay.io/calico/kube-controllers:{v}"),
    "flannel": ("ghcr.io/flannel-io/flannel:{v}", "ghcr.io/flannel-io/flannel-cni-plugin:v1.9.1-flannel3"),
    "cilium": ("quay.io/cilium/cilium:v{n}", "quay.io/cilium/operator-generic:v{n}"),
    "weave": ("docker.io/rajchaudhuri/weave-kube:{n}", "docker.io/rajchaudhuri/weave-npc:{n}"),
}


# The images of each add-on (versions.ADDON_VERSIONS), as the addons role's manifests name them.
ADDON_IMAGES: dict[str, tuple[str, ...]] = {
    "metrics-server": ("registry.k8s.io/metrics-server/metrics-server:{v}",),
    "lb-services": ("quay.io/metallb/controller:{v}", "quay.io/metallb/speaker:{v}"),
    "ingress": ("docker.io/library/traefik:{v}",),
}
# The release manifest of each add-on that kubelab applies as upstream ships it (file name, official URL); the
# others' manifests are the addons role's own templates.
ADDON_MANIFESTS: dict[str, tuple[str, str]] = {
    "lb-services": (
        "metallb-native.yaml",
        "https://raw.githubusercontent.com/metallb/metallb/{v}/config/manifests/metallb-native.yaml",
    ),
}


class ArtifactsError(SpecError):
    """The artifacts folder cannot serve this lab; the message names every file to fix."""


@dataclass(frozen=True)
class Artifact:
    """One file an offline lab needs. ``path`` is relative to the folder (a glob for .deb files)."""

    path: str
    kind: str  # binary, tarball, deb, containerd, image, manifest
    name: str  # e.g. kubeadm, cni-plugins, an image reference, a manifest file name
    version: str
    url: str | None = None  # official download; None for images (pulled and exported by a tool)
    checksum_url: str | None = None  # the official sha256 file next to url

    @property
    def is_glob(self) -> bool:
        return any(ch in self.path for ch in "*?[")


@dataclass(frozen=True)
class Needs:
    """What decides the folder's contents: versions, CNI, architecture and how Kubernetes is packaged."""

    kubernetes_version: str  # an exact patch, e.g. 1.36.5
    cni: str
    arch: str = "amd64"
    form: str = "bin"  # bin: plain binaries, debs: .deb packages
    lb: str = "none"
    containerd_source: str = "distro"
    containerd_version: str = versions.DEFAULT_CONTAINERD
    cni_images: tuple[str, ...] | None = field(default=None)  # read from the CNI manifest when known
    addons: tuple[str, ...] = ()

    @classmethod
    def of(
        cls, spec: LabSpec, version: str, arch: str, form: str = "bin", cni_images: tuple[str, ...] | None = None
    ) -> Needs:
        """What a lab of `spec` on Kubernetes `version` (an exact patch) needs in a folder."""
        return cls(
            kubernetes_version=version.lstrip("v"),
            cni=spec.cni,
            arch=arch,
            form=form,
            lb=spec.lb,
            containerd_source=spec.containerd_source,
            containerd_version=spec.containerd_version,
            cni_images=cni_images,
            addons=tuple(spec.addons),
        )


def exact_version(kubernetes_version: str) -> str:
    """``1.36.5`` stays; a bare minor becomes the newest patch kubelab knows (versions.LATEST_PATCH)."""
    major, minor, patch = versions.parse_kubernetes_version(kubernetes_version)
    if patch is not None:
        return f"{major}.{minor}.{patch}"
    known = versions.LATEST_PATCH.get(f"{major}.{minor}")
    if known is None:
        raise ArtifactsError(
            f"no known patch release of Kubernetes {major}.{minor}: pass an exact version such as {major}.{minor}.0"
        )
    return known


def image_archive_name(reference: str) -> str:
    """images/ file name for an image reference: registry.k8s.io/pause:3.10 -> registry.k8s.io_pause_3.10.tar."""
    without_digest = reference.split("@", 1)[0]
    return "images/" + re.sub(r"[/:]", "_", without_digest) + ".tar"


def kubeadm_images(kubernetes_version: str) -> list[str]:
    """The images `kubeadm config images list` prints for an exact version, in its order."""
    minor = versions.minor_of(kubernetes_version)
    tags = versions.KUBEADM_IMAGE_TAGS.get(minor)
    if tags is None:
        raise ArtifactsError(f"kubelab does not know kubeadm's images for Kubernetes {minor}")
    tag = "v" + kubernetes_version.lstrip("v")
    components = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy")
    return [
        *(f"registry.k8s.io/{name}:{tag}" for name in components),
        f"registry.k8s.io/coredns/coredns:{tags['coredns']}",
        f"registry.k8s.io/pause:{tags['pause']}",
        f"registry.k8s.io/etcd:{tags['etcd']}",
    ]


def cni_manifest(cni: str) -> tuple[str, str] | None:
    """(file name, official URL) of the CNI's manifest or chart; None for cni 'none'."""
    if cni not in CNI_MANIFESTS:
        return None
    version = versions.CNI_VERSIONS[cni]
    name, url = CNI_MANIFESTS[cni]
    bare = version.lstrip("v")
    return name.format(v=version, n=bare), url.format(v=version, n=bare)


def addon_images(addons: Iterable[str]) -> list[str]:
    """The images the chosen add-ons run."""
    return [ref.format(v=versions.ADDON_VERSIONS[name]) for name in addons for ref in ADDON_IMAGES.get(name, ())]


def expected_cni_images(cni: str) -> tuple[str, ...]:
    version = versions.CNI_VERSIONS.get(cni, "")
    return tuple(ref.format(v=version, n=version.lstrip("v")) for ref in CNI_EXPECTED_IMAGES.get(cni, ()))


def required_artifacts(needs: Needs) -> list[Artifact]:
    """Every file the folder must hold for a lab, with official URLs where there is a download."""
    if needs.form not in FORMS:
        raise ArtifactsError(f"unknown artifacts form '{needs.form}': use one of {', '.join(FORMS)}")
    version = needs.kubernetes_version.lstrip("v")
    if versions.parse_kubernetes_version(version)[2] is None:
        raise ArtifactsError(f"artifacts need an exact Kubernetes version, not {version}")
    arch, tag = needs.arch, f"v{version}"
    found: list[Artifact] = []
    if needs.form == "bin":
        for name in KUBE_BINARIES:
            url = f"{DL_K8S}/{tag}/bin/linux/{arch}/{name}"
            found.append(Artifact(f"bin/{name}", "binary", name, tag, url, url + ".sha256"))
        plugins = versions.CNI_PLUGINS_VERSION
        file = f"cni-plugins-linux-{arch}-{plugins}.tgz"
        url = f"{GITHUB}/containernetworking/plugins/releases/download/{plugins}/{file}"
        found.append(Artifact(f"cni/{file}", "tarball", "cni-plugins", plugins, url, url + ".sha256"))
    else:
        # pkgs.k8s.io revisions vary (1.36.2-2.1, 1.36.4-1.1), so the version part is a glob.
        for name in DEBS:
            pinned = f"{version}-*" if name in KUBE_BINARIES else "*"
            found.append(Artifact(f"debs/{name}_{pinned}_{arch}.deb", "deb", name, version if pinned != "*" else ""))
    if needs.containerd_source == "upstream":
        cv = needs.containerd_version
        file = f"containerd-{cv}-linux-{arch}.tar.gz"
        url = f"{GITHUB}/containerd/containerd/releases/download/v{cv}/{file}"
        found.append(Artifact(f"containerd/{file}", "containerd", "containerd", cv, url, url + ".sha256sum"))
        runc = f"{GITHUB}/opencontainers/runc/releases/download/v{versions.RUNC_VERSION}"
        found.append(
            Artifact(
                f"containerd/runc.{arch}",
                "containerd",
                "runc",
                versions.RUNC_VERSION,
                f"{runc}/runc.{arch}",
                f"{runc}/runc.sha256sum",
            )
        )
    manifest = cni_manifest(needs.cni)
    if manifest:
        name, url = manifest
        found.append(Artifact(f"manifests/{name}", "manifest", name, versions.CNI_VERSIONS[needs.cni], url))
    for addon in needs.addons:
        if addon in ADDON_MANIFESTS:
            addon_version = versions.ADDON_VERSIONS[addon]
            name, url = ADDON_MANIFESTS[addon]
            found.append(Artifact(f"manifests/{name}", "manifest", name, addon_version, url.format(v=addon_version)))
    images = kubeadm_images(version)
    if needs.lb == "kube-vip":
        images.append(f"ghcr.io/kube-vip/kube-vip:{versions.KUBE_VIP_VERSION}")
    images += needs.cni_images if needs.cni_images is not None else expected_cni_images(needs.cni)
    images += addon_images(needs.addons)
    for ref in dict.fromkeys(images):
        found.append(Artifact(image_archive_name(ref), "image", ref, ref.split("@")[0].rsplit(":", 1)[-1]))
    return found


# ---------------------------------------------------------------------------------------------
# Reading what a folder holds
# ---------------------------------------------------------------------------------------------


_IMAGE_LINE = re.compile(r"^\s*(?:-\s*)?image:\s*['\"]?([^\s'\"#]+)", re.MULTILINE)


def manifest_images(text: str) -> list[str]:
    """Image references named by `image:` lines of a Kubernetes YAML manifest (comments ignored)."""
    lines = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    return list(dict.fromkeys(_IMAGE_LINE.findall(lines)))


def chart_images(chart: Path) -> list[str]:
    """Image references in a Helm chart's values.yaml (repository + tag [+ digest when useDigest])."""
    import yaml

    with tarfile.open(chart) as tar:
        member = next((m for m in tar.getmembers() if m.name.count("/") == 1 and m.name.endswith("/values.yaml")), None)
        if member is None:
            raise ArtifactsError(f"{chart} is not a Helm chart: it has no values.yaml")
        values = yaml.safe_load(tar.extractfile(member).read())  # type: ignore[union-attr]
    refs: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            repo, tag = node.get("repository"), node.get("tag")
            if isinstance(repo, str) and "/" in repo and isinstance(tag, str) and tag:
                digest = node.get("digest")
                pinned = f"@{digest}" if node.get("useDigest") and isinstance(digest, str) and digest else ""
                refs.append(f"{repo}:{tag}{pinned}")
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(values)
    return list(dict.fromkeys(refs))


def cni_images(folder: Path, cni: str) -> tuple[str, ...] | None:
    """The images the folder's CNI manifest names; None when the manifest is not there yet."""
    manifest = cni_manifest(cni)
    if manifest is None:
        return ()
    path = folder / "manifests" / manifest[0]
    if not path.is_file():
        return None
    if path.suffix == ".tgz":
        return tuple(chart_images(path))
    return tuple(manifest_images(path.read_text(errors="replace")))


def archive_references(path: Path) -> list[str]:
    """Image references an OCI (index.json annotations) or docker-archive (manifest.json) tar declares."""
    refs: list[str] = []
    with tarfile.open(path) as tar:
        names = {m.name.lstrip("./"): m for m in tar.getmembers()}
        if "index.json" in names:
            index = json.load(tar.extractfile(names["index.json"]))  # type: ignore[arg-type]
            for entry in index.get("manifests", []):
                notes = entry.get("annotations") or {}
                ref = notes.get("io.containerd.image.name") or notes.get("org.opencontainers.image.ref.name")
                if ref:
                    refs.append(ref)
        if "manifest.json" in names:
            for entry in json.load(tar.extractfile(names["manifest.json"])):  # type: ignore[arg-type]
                refs.extend(entry.get("RepoTags") or [])
    return list(dict.fromkeys(refs))


def agnhost_image(folder: Path | str | None) -> str | None:
    """The e2e test image (agnhost) the folder's manifest lists, if any: verify's checks run it."""
    if not folder:
        return None
    try:
        entries = load_manifest(Path(folder).expanduser())["artifacts"]
    except ArtifactsError:
        return None
    names = [str(e.get("name")) for e in entries if isinstance(e, dict) and e.get("kind") == "image"]
    return next((name for name in names if "/e2e-test-images/agnhost:" in name), None)


def archive_digest(path: Path) -> str | None:
    """The manifest digest an OCI archive's index names for its image (what `ctr images list` shows as DIGEST);
    None for a docker-archive."""
    with tarfile.open(path) as tar:
        try:
            member = tar.extractfile("index.json")
        except KeyError:
            return None
        manifests = json.load(member).get("manifests", []) if member else []  # type: ignore[arg-type]
    return str(manifests[0]["digest"]) if len(manifests) == 1 else None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_manifest(folder: Path) -> dict:
    path = folder / MANIFEST
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ArtifactsError(
            f"artifacts folder {folder} has no {MANIFEST}: fill it with `kubelab artifacts fetch`, or write the "
            f"manifest for files you put there yourself with `kubelab artifacts index {folder} --k8s-version V`"
        ) from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ArtifactsError(f"{path} is not a readable JSON manifest: {exc}") from None
    if (
        not isinstance(data, dict)
        or data.get("format") != MANIFEST_FORMAT
        or not isinstance(data.get("artifacts"), list)
    ):
        raise ArtifactsError(f"{path} is not a kubelab artifacts manifest (format {MANIFEST_FORMAT})")
    return data


def detect_form(folder: Path, entries: Iterable[dict] = ()) -> str:
    """bin when the folder (or its manifest) has bin/kubeadm, debs when it has a kubeadm .deb."""
    paths = {str(e.get("path", "")) for e in entries}
    if (folder / "bin" / "kubeadm").exists() or "bin/kubeadm" in paths:
        return "bin"
    if any(fnmatch.fnmatch(p, "debs/kubeadm_*.deb") for p in paths) or any((folder / "debs").glob("kubeadm_*.deb")):
        return "debs"
    return "bin"


# ---------------------------------------------------------------------------------------------
# Checking a folder against a lab
# ---------------------------------------------------------------------------------------------


def needs_for(spec: LabSpec, folder: Path | None = None, arch: str = "amd64", manifest: dict | None = None) -> Needs:
    """The Needs of a lab spec; the patch and form come from the folder's manifest when there is one."""
    version = spec.kubernetes_version
    if manifest and versions.parse_kubernetes_version(version)[2] is None:
        version = str(manifest.get("kubernetes_version", version))
    elif versions.parse_kubernetes_version(version)[2] is None:
        version = exact_version(version)
    form = detect_form(folder, manifest.get("artifacts", []) if manifest else ()) if folder else "bin"
    return Needs.of(spec, version, arch, form, cni_images=cni_images(folder, spec.cni) if folder else None)


def check_artifacts(folder: Path | str, spec: LabSpec, arch: str = "amd64") -> Needs:
    """Raise ArtifactsError naming every missing, unlisted or corrupt file; return what was checked.
    It reads only the folder: call it before any node is touched."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise ArtifactsError(f"artifacts folder {folder} does not exist (see `kubelab artifacts list`)")
    manifest = load_manifest(folder)
    problems: list[str] = []
    have = str(manifest.get("kubernetes_version", "")).lstrip("v")
    want = spec.kubernetes_version.lstrip("v")
    exact = versions.parse_kubernetes_version(want)[2] is not None  # a patch, not only a minor
    other_version = bool(have) and (have != want if exact else versions.minor_of(have) != want)
    if not have:
        problems.append(f"{MANIFEST} does not say which Kubernetes version the folder holds (kubernetes_version)")
    elif other_version:
        problems.append(f"the folder holds Kubernetes {have}, the lab wants {want}")
    if manifest.get("arch", arch) != arch:
        problems.append(f"the folder holds {manifest.get('arch')} files, this lab's nodes are {arch}")
    needs = needs_for(spec, folder, arch, manifest)
    entries = {str(e.get("path")): e for e in manifest["artifacts"] if isinstance(e, dict)}
    for artifact in required_artifacts(needs):
        matches = (
            [p for p in entries if fnmatch.fnmatch(p, artifact.path)]
            if artifact.is_glob
            else ([artifact.path] if artifact.path in entries else [])
        )
        if not matches:
            on_disk = list(folder.glob(artifact.path))
            what = f"{artifact.name} {artifact.version}".strip()
            source = f", from {artifact.url}" if artifact.url else ""
            if on_disk:
                problems.append(f"{artifact.path}: present but not listed in {MANIFEST} ({what})")
            else:
                problems.append(f"missing {artifact.path} ({what}{source})")
    for path, entry in entries.items():
        problems.extend(_entry_problems(folder, path, entry))
    if problems:
        listing = "\n".join(f"  - {p}" for p in problems)
        if other_version:  # another version's folder: a folder of its own for the wanted one
            raise ArtifactsError(
                f"artifacts folder {folder} cannot serve Kubernetes {want} with cni {spec.cni}:\n{listing}\n"
                f"Pass a folder of {want}, or make one with `kubelab artifacts build --k8s-version {want} --cni "
                f"{spec.cni} --out DIR` (or `kubelab artifacts fetch` on a connected machine)."
            )
        raise ArtifactsError(
            f"artifacts folder {folder} cannot serve Kubernetes {needs.kubernetes_version} with cni {spec.cni}:\n"
            f"{listing}\nFill it with `kubelab artifacts fetch --k8s-version {needs.kubernetes_version} "
            f"--cni {spec.cni} --out {folder}` on a connected machine (see `kubelab artifacts list`)."
        )
    return needs


def _entry_problems(folder: Path, path: str, entry: dict) -> list[str]:
    file = folder / path
    if ".." in Path(path).parts or Path(path).is_absolute():
        return [f"{MANIFEST} lists {path}, which is outside the folder"]
    if not file.is_file():
        return [f"missing {path} (listed in {MANIFEST})"]
    expected = str(entry.get("sha256", "")).lower()
    if not re.fullmatch(r"[0-9a-f]{64}", expected):
        return [f"{path}: {MANIFEST} has no valid sha256 for it"]
    actual = sha256_file(file)
    if actual != expected:
        return [f"corrupt {path}: sha256 {actual[:12]}..., {MANIFEST} says {expected[:12]}..."]
    if entry.get("kind") == "image":
        try:
            refs = archive_references(file)
        except (tarfile.TarError, OSError, ValueError) as exc:
            return [f"corrupt {path}: not an image archive ({exc})"]
        if entry.get("name") not in refs:
            return [f"{path} does not hold image {entry.get('name')} (it declares {', '.join(refs) or 'no name'})"]
    return []


# ---------------------------------------------------------------------------------------------
# Writing the manifest
# ---------------------------------------------------------------------------------------------


def write_manifest(folder: Path, needs: Needs, sources: dict[str, str] | None = None) -> Path:
    """artifacts.json for the files of ``needs`` present in the folder, with their sha256."""
    entries = []
    for artifact in required_artifacts(needs):
        for file in sorted(folder.glob(artifact.path)) if artifact.is_glob else [folder / artifact.path]:
            if not file.is_file():
                continue
            relative = file.relative_to(folder).as_posix()
            entry = {"path": relative, "kind": artifact.kind, "name": artifact.name, "version": artifact.version}
            entry["sha256"] = sha256_file(file)
            if sources and relative in sources:
                entry["source"] = sources[relative]
            entries.append(entry)
    data = manifest_document(needs.kubernetes_version, needs.arch, needs.form, needs.cni, entries)
    path = folder / MANIFEST
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def manifest_document(kubernetes_version: str, arch: str, form: str, cni: str, entries: list[dict]) -> dict:
    """The artifacts.json document for ``entries`` (each with path, kind, name, version and sha256)."""
    return {
        "format": MANIFEST_FORMAT,
        "kubernetes_version": kubernetes_version,
        "arch": arch,
        "form": form,
        "cni": cni,
        "cni_version": versions.CNI_VERSIONS.get(cni),
        "artifacts": entries,
    }


def listing(spec: LabSpec, arch: str = "amd64", form: str = "bin") -> str:
    """`kubelab artifacts list`: what the folder must hold for a lab, computed from its versions."""
    bare_minor = versions.parse_kubernetes_version(spec.kubernetes_version)[2] is None
    return describe(Needs.of(spec, exact_version(spec.kubernetes_version), arch, form), exact_from_minor=bare_minor)


def index_folder(folder: Path | str, spec: LabSpec, arch: str = "amd64") -> Path:
    """Write artifacts.json for files a user put into the folder by hand (their sha256 as they are now)."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise ArtifactsError(f"artifacts folder {folder} does not exist")
    return write_manifest(folder, needs_for(spec, folder, arch))


def describe(needs: Needs, exact_from_minor: bool = False) -> str:
    """`kubelab artifacts list`: the folder a lab needs, one file per line."""
    lines = [
        f"Artifacts for Kubernetes {needs.kubernetes_version}, cni {needs.cni}, linux/{needs.arch} ({needs.form}):"
    ]
    if exact_from_minor:
        lines.append(f"  (a bare minor was given: {needs.kubernetes_version} is the newest patch kubelab knows)")
    for artifact in required_artifacts(needs):
        line = f"  {artifact.path}"
        if artifact.kind == "image":
            line += f"\n      image {artifact.name}"
        elif artifact.url:
            line += f"\n      {artifact.url}"
            if artifact.checksum_url:
                line += f"  (sha256: {artifact.checksum_url})"
        lines.append(line)
    if needs.cni_images is None and needs.cni in CNI_MANIFESTS:
        lines.append(
            f"  CNI images are the ones manifests/{cni_manifest(needs.cni)[0]} names; listed: the expected set."
        )  # type: ignore[index]
    lines.append(f"  {MANIFEST}  (every file above with kind, name, version and sha256)")
    lines.append(
        "Debian/Ubuntu packages the phases install (curl, haproxy, keepalived, the distro's containerd) are not in "
        "the folder: the host's apt cache serves them (`kubelab cache start`, then `--offline` once a lab filled it)."
    )
    return "\n".join(lines)
