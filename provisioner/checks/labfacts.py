"""What the checks know about a lab, read from its folder: nodes, groups, addresses and lab-wide settings."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provisioner.phases import PHASE_NAMES

PHASES: tuple[str, ...] = PHASE_NAMES  # checks name the phase they need
GROUPS: tuple[str, ...] = ("lb", "masters", "workers")


@dataclass(frozen=True)
class LabFacts:
    """A lab as the checks see it: node name -> private IP per group, and the `kubelab_*` variables."""

    root: Path
    groups: dict[str, dict[str, str]]
    variables: dict[str, Any] = field(default_factory=dict)

    @property
    def nodes(self) -> dict[str, str]:
        return {name: ip for group in GROUPS for name, ip in self.groups.get(group, {}).items()}

    def group_of(self, node: str) -> set[str]:
        """The inventory groups a node belongs to, with `k8s_cluster` for masters and workers."""
        names = {group for group in GROUPS if node in self.groups.get(group, {})}
        if names & {"masters", "workers"}:
            names.add("k8s_cluster")
        return names | {"all"}

    @property
    def masters(self) -> dict[str, str]:
        return self.groups.get("masters", {})

    @property
    def workers(self) -> dict[str, str]:
        return self.groups.get("workers", {})

    @property
    def lbs(self) -> dict[str, str]:
        return self.groups.get("lb", {})

    @property
    def k8s_nodes(self) -> dict[str, str]:
        return {**self.masters, **self.workers}

    @property
    def lb_kind(self) -> str:
        return str(self.variables.get("kubelab_lb", "none"))

    @property
    def vip(self) -> str | None:
        return self.variables.get("kubelab_vip")

    @property
    def pod_cidr(self) -> str:
        return str(self.variables.get("kubelab_pod_cidr", "10.244.0.0/16"))

    @property
    def api_port(self) -> int:
        return int(self.variables.get("kubelab_api_port", 6443))

    @property
    def apiserver_port(self) -> int:
        return int(self.variables.get("kubelab_apiserver_port", 6443))

    @property
    def api_host(self) -> str:
        """Where clients reach the API: the VIP, or the single master without a load balancer."""
        return self.vip or next(iter(self.masters.values()))

    @property
    def init_master(self) -> str:
        return str(self.variables.get("kubelab_init_master") or next(iter(self.masters)))

    @property
    def kubernetes_version(self) -> str:
        return str(self.variables["kubelab_kubernetes_version"])

    @property
    def kubernetes_minor(self) -> int | None:
        """The lab's Kubernetes minor version (1.36.4 -> 36)."""
        minor = str(self.variables.get("kubelab_kubernetes_minor") or self.variables.get("kubelab_kubernetes_version"))
        parts = minor.split(".")
        return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None

    @property
    def cni(self) -> str:
        return str(self.variables.get("kubelab_cni", "none"))

    @property
    def addons(self) -> dict[str, str]:
        """The lab's add-ons: name -> version."""
        return dict(self.variables.get("kubelab_addons") or {})

    @property
    def kubelet_serving_certificates(self) -> bool:
        """Whether the kubelets serve certificates of the cluster CA (serverTLSBootstrap)."""
        return bool(self.variables.get("kubelab_kubelet_serving_certificates"))

    @property
    def lb_services_range(self) -> str | None:
        """The addresses LoadBalancer Services get (lb-services add-on): 'FIRST-LAST'."""
        return self.variables.get("kubelab_lb_services_range")

    @property
    def artifacts_dir(self) -> Path | None:
        """The lab's artifacts folder on the host; None for a lab without one."""
        folder = self.variables.get("kubelab_artifacts_dir")
        return Path(str(folder)) if folder else None

    def _manifest(self) -> dict[str, Any]:
        """The folder's artifacts.json; empty without a folder."""
        folder = self.artifacts_dir
        return json.loads((folder / "artifacts.json").read_text()) if folder else {}

    @property
    def artifacts(self) -> list[dict[str, Any]]:
        """The entries of the folder's artifacts.json (path, kind, name, sha256, ...); none without a folder."""
        return self._manifest()["artifacts"] if self.artifacts_dir else []

    @property
    def artifacts_form(self) -> str | None:
        """How the lab's artifacts folder packs Kubernetes (bin or debs); None for a lab without a folder."""
        if self.artifacts_dir is None:
            return None
        try:
            return str(self._manifest().get("form", "bin"))
        except (OSError, ValueError):
            return "bin"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def vip_holders(self) -> dict[str, str]:
        """The nodes that may hold the VIP: the LB nodes (keepalived) or the masters (kube-vip)."""
        return {"haproxy": self.lbs, "kube-vip": self.masters}.get(self.lb_kind, {})


def _load_yaml(path: Path) -> Any:
    import yaml

    return yaml.safe_load(path.read_text()) or {}


def read_lab(root: Path) -> LabFacts:
    """Read `inventory/hosts.yml` and `inventory/group_vars/all/lab.yml` of a lab folder."""
    inventory = root / "inventory"
    hosts_file = inventory / "hosts.yml"
    if not hosts_file.is_file():
        raise FileNotFoundError(f"{hosts_file} is missing: is {root} a kubelab lab folder (see `kubelab render`)?")
    children = (_load_yaml(hosts_file).get("all") or {}).get("children") or {}
    groups: dict[str, dict[str, str]] = {}
    for group in GROUPS:
        hosts = (children.get(group) or {}).get("hosts") or {}
        groups[group] = {name: str((hostvars or {}).get("kubelab_ip", "")) for name, hostvars in hosts.items()}
    variables = _load_yaml(inventory / "group_vars" / "all" / "lab.yml")
    return LabFacts(root=root, groups=groups, variables=variables)


def phases_done(root: Path) -> set[str] | None:
    """Phases `kubelab up` recorded as finished in the lab's state file; None when no state is recorded."""
    state_file = root / "state.json"
    if not state_file.is_file():
        return None
    data = json.loads(state_file.read_text())
    phases = data.get("phases", data)
    return {str(name) for name in phases}


def phase_reached(done: set[str] | None, phase: str) -> bool:
    """True when `phase` is finished (or nothing is recorded, as for labs provisioned by hand)."""
    return done is None or phase in done
