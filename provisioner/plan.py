"""LabSpec -> Plan: the nodes, their roles, addresses and sizes. Pure functions, no I/O."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from provisioner import boxes, versions
from provisioner.spec import (
    LB_FIRST_HOST,
    LB_SERVICES_FIRST_HOST,
    LB_SERVICES_LAST_HOST,
    MASTER_FIRST_HOST,
    WORKER_FIRST_HOST,
    LabSpec,
    node_numbers,
)

ROLES = ("lb", "master", "worker")


@dataclass(frozen=True)
class Node:
    name: str
    role: str  # one of ROLES
    index: int  # 1-based within the role
    ip: str
    cpus: int
    memory: int  # MB


@dataclass(frozen=True)
class Plan:
    spec: LabSpec
    nodes: tuple[Node, ...]
    arch: str

    @property
    def masters(self) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.role == "master")

    @property
    def workers(self) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.role == "worker")

    @property
    def lbs(self) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.role == "lb")

    @property
    def init_master(self) -> Node:
        return self.masters[0]

    @property
    def api_host(self) -> str:
        """Where clients reach the API: the VIP, or the single master without a load balancer."""
        return self.spec.vip if self.spec.lb != "none" else self.init_master.ip

    @property
    def apiserver_port(self) -> int:
        """The port kube-apiserver binds: behind haproxy always 6443, else the spec's API port."""
        return 6443 if self.spec.lb == "haproxy" else self.spec.api_port

    @property
    def control_plane_endpoint(self) -> str:
        return f"{self.api_host}:{self.spec.api_port}"

    @property
    def total_cpus(self) -> int:
        return sum(n.cpus for n in self.nodes)

    @property
    def total_memory(self) -> int:
        return sum(n.memory for n in self.nodes)

    @property
    def cni_version(self) -> str | None:
        return versions.CNI_VERSIONS.get(self.spec.cni)

    @property
    def addon_versions(self) -> dict[str, str]:
        """The chosen add-ons, in the order given, with the version of each."""
        return {name: versions.ADDON_VERSIONS[name] for name in self.spec.addons}

    @property
    def kubelet_serving_certificates(self) -> bool:
        """Kubelets get serving certificates signed by the cluster CA (serverTLSBootstrap, CSRs approved by
        kubelab): metrics-server checks the kubelets' certificates against that CA."""
        return "metrics-server" in self.spec.addons

    @property
    def lb_services_range(self) -> str | None:
        """The addresses LoadBalancer Services get (lb-services add-on), as MetalLB's pool writes a range."""
        if "lb-services" not in self.spec.addons:
            return None
        network = ipaddress.IPv4Network(self.spec.node_subnet).network_address
        return f"{network + LB_SERVICES_FIRST_HOST}-{network + LB_SERVICES_LAST_HOST}"

    @property
    def kubeadm_api_version(self) -> str:
        return versions.kubeadm_api_version(self.spec.kubernetes_version)

    def box_for(self, provider: str) -> str:
        """The Vagrant box for a provider: the user's --box, else the OS's default box."""
        return self.spec.box or boxes.BOXES[self.spec.os][provider]


def _node_specs(spec: LabSpec) -> list[tuple[str, int, int, int, int]]:
    """(role, index, host number, cpus, memory) for every node, LBs first."""
    rows = [("lb", i, LB_FIRST_HOST + i - 1, spec.lb_cpus, spec.lb_memory) for i in range(1, spec.lb_node_count + 1)]
    rows += [
        ("master", i, MASTER_FIRST_HOST + i - 1, spec.master_cpus, spec.master_memory)
        for i in node_numbers(spec, "master", spec.masters)
    ]
    rows += [
        ("worker", i, WORKER_FIRST_HOST + i - 1, spec.worker_cpus, spec.worker_memory)
        for i in node_numbers(spec, "worker", spec.workers)
    ]
    return rows


def node_addresses(spec: LabSpec) -> dict[str, str]:
    """Node name -> private IP, the lab's IP plan."""
    network = ipaddress.IPv4Network(spec.node_subnet)
    return {f"{role}-{i}": str(network.network_address + host) for role, i, host, _, _ in _node_specs(spec)}


def total_memory(spec: LabSpec) -> int:
    return sum(memory for *_, memory in _node_specs(spec))


def make_plan(spec: LabSpec, arch: str = "amd64") -> Plan:
    """Lay out the nodes of a validated spec."""
    network = ipaddress.IPv4Network(spec.node_subnet)
    nodes = tuple(
        Node(f"{role}-{i}", role, i, str(network.network_address + host), cpus, memory)
        for role, i, host, cpus, memory in _node_specs(spec)
    )
    return Plan(spec=spec, nodes=nodes, arch=arch)


def describe(plan: Plan) -> str:
    """The plan as a person reads it before anything is created."""
    spec = plan.spec
    lb = {
        "haproxy": f"haproxy + keepalived on {len(plan.lbs)} node(s)",
        "kube-vip": "kube-vip on the masters",
        "none": "none (single master)",
    }[spec.lb]
    provider = spec.provider if spec.provider != "auto" else "auto (libvirt or virtualbox, chosen at `up`)"
    cni = f"{spec.cni} {plan.cni_version}" if plan.cni_version else spec.cni
    containerd = (
        f"{spec.containerd_version} (upstream binaries)" if spec.containerd_source == "upstream" else "distro package"
    )
    addons = ", ".join(
        f"{name} ({versions.ADDON_PROJECTS[name]} {version})"
        if name in versions.ADDON_PROJECTS
        else f"{name} {version}"
        for name, version in plan.addon_versions.items()
    )
    addons = addons or "none"
    if plan.lb_services_range:
        addons += f" (LoadBalancer addresses {plan.lb_services_range})"
    lines = [
        f"Lab '{spec.name}'",
        f"  provider       {provider}",
        f"  os             {spec.os}",
        f"  kubernetes     {spec.kubernetes_version} (kubeadm config {plan.kubeadm_api_version})",
        f"  containerd     {containerd}",
        f"  cni            {cni}",
        f"  add-ons        {addons}",
        f"  load balancer  {lb}",
        f"  API endpoint   https://{plan.control_plane_endpoint}",
        f"  node subnet    {spec.node_subnet}" + (f"  (MTU {spec.mtu})" if spec.mtu else ""),
        f"  pod CIDR       {spec.pod_cidr}",
        f"  service CIDR   {spec.service_cidr}",
        "",
        f"  {'NODE':<12}{'ROLE':<9}{'IP':<17}{'CPUS':>5}{'RAM (MB)':>10}",
    ]
    for node in plan.nodes:
        role = "master*" if node == plan.init_master else node.role
        lines.append(f"  {node.name:<12}{role:<9}{node.ip:<17}{node.cpus:>5}{node.memory:>10}")
    lines.append(f"  {'total':<38}{plan.total_cpus:>5}{plan.total_memory:>10}")
    lines.append("  * runs `kubeadm init`; the other masters join it")
    return "\n".join(lines)
