"""The spec an `up` works on: the lab's stored spec, then a lab file, then flags, validated; a lab that has
run phases keeps its spec."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from provisioner import spec as spec_mod
from provisioner.errors import LabError
from provisioner.lab import LabDir
from provisioner.state import load_state

# Spec keys about one run of `up`, not the lab: changing them never counts as changing the lab.
RUN_OPTIONS = frozenset({"skip_network_check"})


def stored_spec(lab: LabDir) -> dict[str, Any] | None:
    if not lab.exists():
        return None
    return dict(json.loads(lab.spec_file.read_text())["spec"])


def spec_for_up(file_values: dict[str, Any], flag_values: dict[str, Any]) -> tuple[LabDir, spec_mod.LabSpec, list[str]]:
    """The lab folder and validated spec an `up` works on, an existing lab's spec as base (a bare `kubelab up
    --name X` resumes X as created); refuses to change a lab that has run phases."""
    name = flag_values.get("name") or file_values.get("name") or spec_mod.LabSpec.name
    lab = LabDir.for_name(name)
    stored = stored_spec(lab) or {}
    base = {key: value for key, value in stored.items() if value not in (None, {}) and key not in RUN_OPTIONS}
    file_layer = {**base, **file_values}
    for layer in (file_layer, flag_values):
        for key in ("inventory", "artifacts"):  # stored absolute: a resumed `up` may run from another folder
            if layer.get(key):
                layer[key] = str(Path(layer[key]).expanduser().resolve())
    provider = flag_values.get("provider") or file_layer.get("provider")
    if provider == "hosts":
        _counts_from_inventory(file_layer, flag_values)
    spec = spec_mod.build_spec(file_layer, flag_values)
    host = spec_mod.HostInfo.detect()
    warnings = spec_mod.validate(spec, host)  # the user's own mistakes first, before looking at the host's tools
    if stored and load_state(lab).phases:
        changed = spec_differences(stored, spec.to_dict())
        if changed:
            raise LabError(
                f"lab '{name}' already exists with a different spec ({'; '.join(changed)}) and nothing was changed. "
                f"Run `kubelab up --name {name}` without those settings to resume it, `kubelab destroy --name "
                f"{name}` first to rebuild it, or pick another --name"
            )
    if spec.provider == "auto":
        from provisioner.providers.detect import detect_provider

        spec = spec_mod.resolve(spec.replace(provider=detect_provider()))
        warnings = spec_mod.validate(spec, host)
    check_vm_memory(spec, host)
    return lab, spec, warnings


def check_vm_memory(spec: spec_mod.LabSpec, host: spec_mod.HostInfo) -> None:
    """VMs get their RAM for real: a Vagrant lab larger than the host's memory is refused (a warning elsewhere)."""
    from provisioner.boxes import VAGRANT_PROVIDERS
    from provisioner.plan import total_memory

    if spec.provider not in VAGRANT_PROVIDERS or host.memory_mb is None:
        return
    needed = total_memory(spec)
    if needed > host.memory_mb:
        raise LabError(
            f"this lab's VMs need {needed} MB of RAM but the host has {host.memory_mb} MB; nothing was created: "
            "use fewer nodes or less --master-memory/--worker-memory/--lb-memory"
        )


def spec_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """'key: old -> new' for every key whose value differs ('auto' on either side matches anything; a key the old
    spec lacks, from an older kubelab, has its default)."""
    before = {key: spec_mod.default_value(key) for key in new if key not in old} | old
    return [
        f"{key}: {before.get(key)!r} -> {new.get(key)!r}"
        for key in sorted(set(before) | set(new))
        if before.get(key) != new.get(key) and "auto" not in (before.get(key), new.get(key)) and key not in RUN_OPTIONS
    ]


def _counts_from_inventory(file_layer: dict[str, Any], flag_values: dict[str, Any]) -> None:
    """For --provider hosts the inventory decides the node counts; flags that disagree are an error."""
    from provisioner.providers.hosts import inventory_counts

    inventory = flag_values.get("inventory") or file_layer.get("inventory")
    if not inventory:
        return  # validate() reports the missing inventory
    for key, count in inventory_counts(Path(inventory)).items():
        given = flag_values.get(key)
        if given is not None and given != count:
            raise LabError(f"--{key.replace('_', '-')} {given} disagrees with {inventory}, which has {count}")
        file_layer[key] = count
