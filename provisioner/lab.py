"""The lab folder: where a lab's rendered files, state, logs and kubeconfig live."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def kubelab_home() -> Path:
    """$KUBELAB_HOME, else ~/.kubelab: holds labs/ and the shared caches."""
    return Path(os.environ.get("KUBELAB_HOME") or Path.home() / ".kubelab")


def cache_home() -> Path:
    """$XDG_CACHE_HOME/kubelab (default ~/.cache/kubelab): what labs share and can rebuild (images, builds)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kubelab"


@dataclass(frozen=True)
class LabDir:
    """Paths inside one lab folder."""

    root: Path

    @classmethod
    def for_name(cls, name: str) -> LabDir:
        return cls(kubelab_home() / "labs" / name)

    @property
    def spec_file(self) -> Path:
        return self.root / "lab.json"

    @property
    def vagrantfile(self) -> Path:
        return self.root / "Vagrantfile"

    @property
    def inventory_dir(self) -> Path:
        return self.root / "inventory"

    @property
    def hosts_inventory(self) -> Path:
        return self.inventory_dir / "hosts.yml"

    @property
    def group_vars(self) -> Path:
        return self.inventory_dir / "group_vars" / "all" / "lab.yml"

    @property
    def connection_inventory(self) -> Path:
        """Written by the provider: how Ansible reaches each node."""
        return self.inventory_dir / "connection.yml"

    @property
    def provider_vars(self) -> Path:
        """Written by the provider: settings its nodes need (e.g. for container nodes)."""
        return self.inventory_dir / "group_vars" / "all" / "provider.yml"

    def exists(self) -> bool:
        return self.spec_file.is_file()
