"""Plan -> files in the lab folder, from the Jinja2 templates in templates/."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from provisioner import boxes, versions
from provisioner.lab import REPO_ROOT, LabDir
from provisioner.plan import Plan
from provisioner.providers.base import Connection
from provisioner.spec import ARCH_NAMES, LIBVIRT_KEYS

if TYPE_CHECKING:
    import jinja2

TEMPLATES_DIR = REPO_ROOT / "templates"


def _ruby_literal(value: Any) -> str:
    """A Ruby literal for a string/number/bool; JSON strings are Ruby strings once '#' is escaped."""
    return json.dumps(value).replace("#", "\\#")


def _environment() -> jinja2.Environment:
    import jinja2  # here, not at the top: render is not on every command's path

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["rb"] = _ruby_literal
    env.filters["tojson"] = json.dumps
    return env


def render_files(plan: Plan) -> dict[str, str]:
    """Relative path -> content for every file of the lab folder that comes from the plan."""
    env = _environment()
    spec = plan.spec
    context = {
        "spec": spec,
        "plan": plan,
        "netmask": str(ipaddress.IPv4Network(spec.node_subnet).netmask),
        "libvirt_keys": tuple(LIBVIRT_KEYS),
        "kube_vip_version": versions.KUBE_VIP_VERSION,
        "arch_map": ARCH_NAMES,
        "artifacts_dir": str(Path(spec.artifacts).expanduser().resolve()) if spec.artifacts else None,
        "groups": (("lb", plan.lbs), ("masters", plan.masters), ("workers", plan.workers)),
    }
    files = {
        "inventory/hosts.yml": env.get_template("inventory.yml.j2").render(context),
        "inventory/group_vars/all/lab.yml": env.get_template("group_vars.yml.j2").render(context),
        "lab.json": json.dumps({"spec": spec.to_dict(), "arch": plan.arch}, indent=2, sort_keys=True) + "\n",
    }
    if spec.provider in (*boxes.VAGRANT_PROVIDERS, "auto"):
        files["Vagrantfile"] = env.get_template("Vagrantfile.j2").render(context)
    return files


def write_lab(plan: Plan, lab: LabDir) -> list[Path]:
    """Write the rendered files; files whose content is unchanged are left alone. Returns changed paths."""
    return [
        path
        for relative, content in render_files(plan).items()
        if _write_if_changed(path := lab.root / relative, content)
    ]


def _write_if_changed(path: Path, content: str, mode: int = 0o644) -> bool:
    if path.is_file() and path.read_text() == content:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(content)
    tmp.chmod(mode)
    tmp.replace(path)
    return True


def write_connections(lab: LabDir, connections: dict[str, Connection]) -> None:
    """inventory/connection.yml: how Ansible reaches each node, as reported by the provider."""
    hosts = {name: connections[name].ansible_vars() for name in sorted(connections)}
    header = "# How Ansible reaches each node; written by kubelab from the provider, do not edit.\n"
    _write_if_changed(lab.connection_inventory, header + json.dumps({"all": {"hosts": hosts}}, indent=2) + "\n")


def write_provider_vars(lab: LabDir, variables: dict[str, Any]) -> None:
    """inventory/group_vars/all/provider.yml: settings a provider needs the playbooks to apply (no file if none)."""
    if not variables:
        lab.provider_vars.unlink(missing_ok=True)
        return
    header = "# Settings the provider needs on its nodes; written by kubelab from the provider, do not edit.\n"
    _write_if_changed(lab.provider_vars, header + json.dumps(variables, indent=2, sort_keys=True) + "\n")


def write_node_vars(lab: LabDir, variables: dict[str, dict[str, Any]]) -> None:
    """inventory/host_vars/NODE.yml: per-node settings of the provider, which outrank hosts.yml."""
    for node, values in sorted(variables.items()):
        _write_if_changed(lab.inventory_dir / "host_vars" / f"{node}.yml", json.dumps(values) + "\n")
