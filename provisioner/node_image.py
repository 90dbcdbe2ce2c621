"""Baked node images: what a `local` node looks like after the node-level phases, made once and shared.

An image is the upper layer of one throw-away node that ran prepare, runtime and packages (with the artifacts
folder's images imported into containerd), stacked between a node's own upper layer and the Debian base, plus
that node's containerd data, which each node receives as hard links. Its key hashes everything that went into
it, so an image whose inputs changed is never found again: a changed role default or template makes a new one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provisioner import boxes
from provisioner.lab import REPO_ROOT, cache_home
from provisioner.spec import LabSpec

RECIPE_VERSION = 1
BAKED_PHASES = ("prepare", "runtime", "packages")
# The roles those phases' playbooks run; tests/unit/test_node_image.py checks that no other role is used.
BAKED_ROLES = ("apt_proxy", "prepare", "artifacts", "containerd", "kube_packages")
# Files whose content goes into the key, below REPO_ROOT (folders: every file in them but NOT_KEY_PARTS).
KEY_PATHS = (
    "playbooks/ansible.cfg",
    "playbooks/filter_plugins",
    *(f"playbooks/{phase}.yml" for phase in BAKED_PHASES),
    *(f"playbooks/roles/{role}" for role in BAKED_ROLES),
    "templates/group_vars.yml.j2",
    "templates/inventory.yml.j2",
)
# Folders inside those that never reach a node: Python caches and a role's molecule scenarios (its tests).
NOT_KEY_PARTS = frozenset({"__pycache__", "molecule"})
# The throw-away node's identity, removed from its layer: every node writes its own at boot (hostname, hosts,
# machine-id, resolver, SSH host key and login key) or in the phases (the kubelet's node IP, and the apt cache
# settings of apt_proxy, which name the lab's own bridge address).
PER_NODE_PATHS = (
    "etc/hostname",
    "etc/hosts",
    "etc/machine-id",
    "etc/resolv.conf",
    "etc/ssh/ssh_host_ed25519_key",
    "etc/ssh/ssh_host_ed25519_key.pub",
    "etc/default/kubelet",
    "etc/apt/apt.conf.d/01kubelab-proxy",
    "usr/local/lib/kubelab/apt-proxy-detect",
    "var/lib/dbus/machine-id",
    "var/lib/systemd/random-seed",
    "var/log/journal",
    "root/.ssh",
    "root/.ansible",
    "tmp",
    "var/tmp",
)
# containerd's own id, made again by each node's containerd.
CONTAINERD_PER_NODE = ("io.containerd.grpc.v1.introspection/uuid",)
# Files containerd writes in place (its bolt databases): each node gets a copy, every other file is a hard link.
CONTAINERD_WRITTEN = ".db"


def images_root() -> Path:
    return cache_home() / "node-images"


def _file_digests(paths: tuple[str, ...], root: Path) -> dict[str, str]:
    digests = {}
    for rel in paths:
        top = root / rel
        files = sorted(p for p in top.rglob("*") if p.is_file()) if top.is_dir() else [top]
        for path in files:
            if not NOT_KEY_PARTS.intersection(path.relative_to(top).parts):
                digests[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


def inputs(spec: LabSpec, arch: str, root: Path = REPO_ROOT) -> dict[str, Any]:
    """Everything that decides an image's content for this spec; its hash is the image's key."""
    from provisioner.providers import local_image
    from provisioner.providers.local_vars import PROVIDER_VARS, SHARED_ARTIFACTS

    manifest = Path(spec.artifacts).expanduser() / "artifacts.json" if spec.artifacts else None
    folder = json.loads(manifest.read_text()) if manifest and manifest.is_file() else None
    return {
        "recipe": RECIPE_VERSION,
        "base": local_image.image_path(boxes.LOCAL_SUITES[spec.os]).name,
        "arch": arch,
        "kubernetes_version": spec.kubernetes_version,
        "containerd": [spec.containerd_source, spec.containerd_version],
        # The folder's files by checksum; not when it was built (a rebuild from the caches makes the same files).
        "artifacts": {key: value for key, value in folder.items() if key != "built"} if folder else None,
        "provider_vars": {**PROVIDER_VARS, "shared_artifacts": SHARED_ARTIFACTS},
        "per_node_paths": PER_NODE_PATHS,
        "files": _file_digests(KEY_PATHS, root),
    }


@dataclass(frozen=True)
class NodeImage:
    """One image folder: layer/ (the root fs changes), containerd/ (its data), image.json (what made it)."""

    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def key(self) -> str:
        """The hash of its inputs, the last part of its name."""
        return self.name.rsplit("-", 1)[-1]

    @property
    def layer(self) -> Path:
        return self.path / "layer"

    @property
    def containerd(self) -> Path:
        return self.path / "containerd"

    @property
    def info_file(self) -> Path:
        return self.path / "image.json"

    @property
    def users(self) -> Path:
        """One file per local lab whose nodes boot from this image, naming that lab's state folder."""
        return self.path / "users"

    @property
    def built(self) -> bool:
        return self.info_file.is_file()

    def info(self) -> dict[str, Any]:
        return dict(json.loads(self.info_file.read_text())) if self.built else {}

    def lab_folders(self) -> list[Path]:
        """The state folders of the labs that use this image and still exist."""
        if not self.users.is_dir():
            return []
        folders = (Path(entry.read_text().strip()) for entry in sorted(self.users.iterdir()))
        return [folder for folder in folders if folder.is_dir()]

    def add_user(self, state_dir: Path) -> None:
        self.users.mkdir(exist_ok=True)
        (self.users / _user_id(state_dir)).write_text(f"{state_dir}\n")

    def remove_user(self, state_dir: Path) -> None:
        (self.users / _user_id(state_dir)).unlink(missing_ok=True)


def _user_id(state_dir: Path) -> str:
    return hashlib.sha256(str(state_dir).encode()).hexdigest()[:16]


def for_spec(spec: LabSpec, arch: str, root: Path = REPO_ROOT) -> NodeImage | None:
    """The image a new lab of this spec boots its Kubernetes nodes from, or None (--no-image, not local)."""
    if spec.provider != "local" or spec.no_image or spec.os not in boxes.LOCAL_SUITES:
        return None
    key = hashlib.sha256(json.dumps(inputs(spec, arch, root), sort_keys=True).encode()).hexdigest()[:12]
    return NodeImage(images_root() / f"{spec.os}-k8s{spec.kubernetes_version}-{key}")


def describe(spec: LabSpec, arch: str) -> str:
    """The plan's line on the node image."""
    if spec.provider != "local":
        return "none (baked images are built for the local provider)"
    image = for_spec(spec, arch)
    if image is None:
        return "none (--no-image: every node runs every phase from the Debian base)"
    if image.built:
        return f"{image.name} (cached, built {image.info().get('built', '?')})"
    return f"{image.name} (built once at `up` or by `kubelab image build`, then cached)"


def all_images() -> list[NodeImage]:
    root = images_root()
    if not root.is_dir():
        return []
    return [NodeImage(p) for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(".")]


def remove(image: NodeImage) -> None:
    from provisioner.providers.local_image import remove_tree

    remove_tree(image.path)
    image.path.with_name(image.name + ".lock").unlink(missing_ok=True)


def prune() -> list[NodeImage]:
    """Remove the images no existing lab uses; returns them."""
    removed = [image for image in all_images() if not image.lab_folders()]
    for image in removed:
        remove(image)
    return removed


def strip_node_identity(layer: Path) -> None:
    """Remove the throw-away node's identity from its upper layer."""
    for rel in PER_NODE_PATHS:
        path = layer / rel
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def _link_or_copy(source: str, target: str) -> None:
    if source.endswith(CONTAINERD_WRITTEN):
        shutil.copy2(source, target)
        return
    try:
        os.link(source, target)
    except OSError:  # another file system than the cache
        shutil.copy2(source, target)


def seed_containerd(image: NodeImage, target: Path) -> None:
    """Give a new node the image's containerd data: hard links to the immutable files, copies of the databases."""
    if target.exists() and any(target.iterdir()):
        return  # the node's containerd has data of its own
    if target.exists():
        target.rmdir()
    shutil.copytree(image.containerd, target, symlinks=True, copy_function=_link_or_copy)


def write_info(image: NodeImage, spec: LabSpec, arch: str, seconds: float) -> None:
    info = {
        "built": time.strftime("%Y-%m-%d %H:%M", time.localtime()),
        "build_seconds": round(seconds, 1),
        "os": spec.os,
        "kubernetes_version": spec.kubernetes_version,
        "inputs": inputs(spec, arch),
    }
    image.info_file.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")


def folder_bytes(path: Path) -> int:
    """Bytes of the files below `path`, each inode counted once."""
    seen: set[int] = set()
    total = 0
    for entry in path.rglob("*"):
        stat = entry.lstat()
        if entry.is_file() and not entry.is_symlink() and stat.st_ino not in seen:
            seen.add(stat.st_ino)
            total += stat.st_size
    return total
