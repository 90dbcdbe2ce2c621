"""Ansible filter: the admin kubeconfig as the lab hands it out."""

from __future__ import annotations

from typing import Any


def control_plane_kubeconfig(text: str, endpoint: str) -> str:
    """admin.conf with every cluster's server set to https://<endpoint> (the VIP:port, or the single master)."""
    import yaml

    config = yaml.safe_load(text)
    clusters = config.get("clusters") if isinstance(config, dict) else None
    if not clusters:
        raise ValueError("admin.conf has no clusters: is it a kubeconfig?")
    for entry in clusters:
        entry["cluster"]["server"] = f"https://{endpoint!s}"
    return yaml.safe_dump(config, sort_keys=False)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"control_plane_kubeconfig": control_plane_kubeconfig}
