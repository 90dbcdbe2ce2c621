"""`kubelab status`: a lab's nodes, provider state, addresses, phases and API endpoint, as data and as text."""

from __future__ import annotations

import subprocess
from typing import Any

from provisioner import phases as phases_mod
from provisioner.lab import LabDir
from provisioner.lifecycle import api_endpoint, load_lab, provider_for
from provisioner.providers.base import ProviderError
from provisioner.state import kubeconfig_file, load_state


def status(lab: LabDir) -> dict[str, Any]:
    """Nodes, provider state, addresses, phases done and the API endpoint, as plain data."""
    plan = load_lab(lab)
    state = load_state(lab)
    provider = provider_for(plan, lab)
    roles = {node.name: node.role for node in plan.nodes}
    try:
        nodes = [
            {"name": n.name, "role": roles.get(n.name), "ip": n.address, "state": n.state} for n in provider.status()
        ]
        provider_error = None
    except (ProviderError, OSError, subprocess.CalledProcessError) as exc:
        nodes = [{"name": n.name, "role": n.role, "ip": n.ip, "state": "unknown"} for n in plan.nodes]
        provider_error = str(exc)
    done = [name for name in phases_mod.PHASE_NAMES if state.is_done(name)]
    pending = [name for name in phases_mod.PHASE_NAMES if name not in done]
    kubeconfig = kubeconfig_file(lab)
    try:
        endpoint = api_endpoint(plan, provider)
    except ProviderError:
        endpoint = f"{plan.api_host}:{plan.spec.api_port}"
    return {
        "name": plan.spec.name,
        "lab_dir": str(lab.root),
        "provider": plan.spec.provider,
        "provider_error": provider_error,
        "api_endpoint": f"https://{endpoint}",
        "kubeconfig": str(kubeconfig) if kubeconfig.is_file() else None,
        "nodes": nodes,
        "phases": {
            "done": done,
            "next": pending[0] if pending else None,
            "seconds": state.durations(),
        },
    }


def format_status(data: dict[str, Any]) -> str:
    phases = data["phases"]
    lines = [
        f"Lab '{data['name']}' ({data['provider']})  {data['lab_dir']}",
        f"  API          {data['api_endpoint']}",
        f"  kubeconfig   {data['kubeconfig'] or 'not yet (after the control-plane phase)'}",
        f"  phases done  {', '.join(phases['done']) or 'none'}",
        f"  next phase   {phases['next'] or 'none: the lab is complete'}",
    ]
    if data["provider_error"]:
        lines.append(f"  provider     {data['provider_error']}")
    lines += ["", f"  {'NODE':<12}{'ROLE':<9}{'IP':<17}STATE"]
    lines += [f"  {n['name']:<12}{n['role'] or '':<9}{n['ip'] or '':<17}{n['state']}" for n in data["nodes"]]
    return "\n".join(lines)
