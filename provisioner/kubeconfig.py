"""The lab's admin kubeconfig: where it is, and merging it into ~/.kube/config as a context named after the lab."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

from provisioner.errors import KubelabError
from provisioner.lab import LabDir
from provisioner.state import kubeconfig_file


class KubeconfigError(KubelabError):
    """No kubeconfig yet, or one that cannot be merged; the message says what to do."""


def lab_kubeconfig(lab: LabDir) -> Path:
    path = kubeconfig_file(lab)
    if not path.is_file():
        raise KubeconfigError(
            f"lab '{lab.root.name}' has no kubeconfig yet ({path}): the control-plane phase fetches it; "
            f"run `kubelab up --name {lab.root.name}`"
        )
    return path


def user_kubeconfig() -> Path:
    return Path.home() / ".kube" / "config"


def _load(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise KubeconfigError(f"{path} is not valid YAML ({exc}); fix or move it, then merge again") from None
    if not isinstance(data, dict):
        raise KubeconfigError(f"{path} is not a kubeconfig (not a mapping); fix or move it, then merge again")
    return data


def _single(data: dict[str, Any], key: str, path: Path) -> dict[str, Any]:
    entries = data.get(key) or []
    if len(entries) != 1 or not isinstance(entries[0], dict):
        raise KubeconfigError(f"{path}: expected exactly one entry in '{key}', found {len(entries)}")
    return entries[0]


def merged(lab_config: dict[str, Any], user_config: dict[str, Any], name: str, source: Path) -> dict[str, Any]:
    """`user_config` with the lab's cluster, user and context added (or replaced) under `name`, made current."""
    cluster = _single(lab_config, "clusters", source)
    user = _single(lab_config, "users", source)
    result = dict(user_config) or {"apiVersion": "v1", "kind": "Config", "preferences": {}}
    result.setdefault("apiVersion", "v1")
    result.setdefault("kind", "Config")
    entries = {
        "clusters": {"name": name, "cluster": cluster["cluster"]},
        "users": {"name": name, "user": user["user"]},
        "contexts": {"name": name, "context": {"cluster": name, "user": name}},
    }
    for key, entry in entries.items():
        others = [item for item in (result.get(key) or []) if item.get("name") != name]
        result[key] = [*others, entry]
    result["current-context"] = name
    return result


def merge_into_user_config(lab: LabDir, target: Path | None = None) -> tuple[Path, Path | None]:
    """Merge the lab's kubeconfig into ~/.kube/config (0600). Returns (target, backup of the old file or None)."""
    import yaml

    source = lab_kubeconfig(lab)
    target = target or user_kubeconfig()
    name = lab.root.name
    existing = _load(target) if target.is_file() else {}
    result = merged(_load(source), existing, name, source)
    backup = None
    if target.is_file():
        backup = target.with_name(f"{target.name}.kubelab-backup-{time.strftime('%Y%m%d-%H%M%S')}")
        shutil.copy2(target, backup)
        backup.chmod(0o600)
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = target.with_name(f".{target.name}.kubelab.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        yaml.safe_dump(result, handle, default_flow_style=False, sort_keys=False)
    tmp.chmod(0o600)
    tmp.replace(target)
    return target, backup
