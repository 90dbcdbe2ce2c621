"""The lab spec: defaults, lab file and flags merged into one validated ``LabSpec``.

Every rule that can reject a lab lives here or, for the limits kubeadm, Kubernetes and the CNIs set, in
``limits``; each has a message that says what is wrong and how to fix it. Nothing in this module touches
the host beyond reading facts (``HostInfo``).
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import platform
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provisioner import boxes, versions
from provisioner.errors import KubelabError


class SpecError(KubelabError):
    """A lab that must not be created; the message says what to change."""

    exit_code = 2


@dataclass(frozen=True)
class Option:
    """One spec key: its lab-file name, flag, type, default and help text."""

    key: str
    type: type
    default: Any
    help: str
    choices: tuple[str, ...] | None = None
    metavar: str | None = None

    @property
    def flag(self) -> str:
        return "--" + self.key.replace("_", "-")


LIBVIRT_KEYS: dict[str, type] = {
    "driver": str,
    "kernel": str,
    "initrd": str,
    "cmd_line": str,
    "storage_pool_name": str,
    "management_network_address": str,
}
VIRTUALBOX_KEYS: dict[str, type] = {"linked_clone": bool}

# Defaults shown as "auto" are resolved from other keys (see LabSpec.resolve).
OPTIONS: tuple[Option, ...] = (
    Option("name", str, "kubelab", "lab name: lowercase letters, digits and '-', at most 20 characters"),
    Option("provider", str, "auto", "where nodes run; auto picks libvirt or virtualbox", ("auto", *boxes.PROVIDERS)),
    Option("os", str, "auto", "node OS; auto = ubuntu-24.04 (debian-12 for the local provider)", ("auto", *boxes.OSES)),
    Option("box", str, None, "Vagrant box to use instead of the OS's default box", metavar="BOX"),
    Option("box_version", str, None, "Vagrant box version constraint, e.g. '>= 202510.0'", metavar="VER"),
    Option("masters", int, 3, "control-plane nodes (stacked etcd): 1, 3, 5 or 7", metavar="N"),
    Option("workers", int, 1, "worker nodes", metavar="N"),
    Option(
        "lb",
        str,
        "auto",
        "API load balancer; auto = haproxy for several masters, none for one",
        ("auto", "haproxy", "kube-vip", "none"),
    ),
    Option("lb_nodes", int, 2, "dedicated haproxy+keepalived nodes (1 or 2) when lb is haproxy", metavar="N"),
    Option("vrrp_unicast", bool, False, "keepalived talks to its peer by unicast (networks that drop multicast)"),
    Option(
        "ntp_servers",
        str,
        None,
        "time servers for the nodes, comma-separated (default: the OS's pool; set it when nodes cannot reach it)",
        metavar="HOSTS",
    ),
    Option("cni", str, "calico", "pod network", versions.CNIS),
    Option(
        "addons",
        list,
        None,
        "add-ons installed after the pod network, comma-separated: " + ", ".join(versions.ADDON_VERSIONS),
        metavar="NAMES",
    ),
    Option(
        "kubernetes_version",
        str,
        versions.DEFAULT_KUBERNETES,
        "Kubernetes minor (" + ", ".join(versions.SUPPORTED_MINORS) + ") or patch like 1.36.4",
        metavar="VER",
    ),
    Option("allow_unsupported_version", bool, False, "accept a Kubernetes minor kubelab does not test"),
    Option(
        "containerd_source",
        str,
        "upstream",
        "containerd from upstream release binaries or the distro",
        versions.CONTAINERD_SOURCES,
    ),
    Option(
        "containerd_version", str, versions.DEFAULT_CONTAINERD, "containerd version (upstream source)", metavar="VER"
    ),
    Option("pod_cidr", str, "10.244.0.0/16", "pod network CIDR (kubeadm podSubnet, CNI pool)", metavar="CIDR"),
    Option("service_cidr", str, "10.96.0.0/12", "service CIDR (kubeadm serviceSubnet)", metavar="CIDR"),
    Option(
        "node_subnet",
        str,
        "auto",
        "node private network; auto = 192.168.56.0/24 (local provider: 10.77.X.0/24 from the name)",
        metavar="CIDR",
    ),
    Option("vip", str, "auto", "API virtual IP; auto = host .10 of the node subnet", metavar="IP"),
    Option("api_port", int, 6443, "API port on the virtual IP", metavar="PORT"),
    Option("master_cpus", int, 2, "CPUs per master", metavar="N"),
    Option("master_memory", int, 2048, "RAM per master in MB", metavar="MB"),
    Option("worker_cpus", int, 2, "CPUs per worker", metavar="N"),
    Option("worker_memory", int, 2048, "RAM per worker in MB", metavar="MB"),
    Option("lb_cpus", int, 1, "CPUs per load-balancer node", metavar="N"),
    Option("lb_memory", int, 512, "RAM per load-balancer node in MB", metavar="MB"),
    Option("mtu", int, None, "MTU of the node and pod networks (e.g. 1400 behind a VPN)", metavar="BYTES"),
    Option("artifacts", str, None, "artifacts folder for an offline lab", metavar="DIR"),
    Option("inventory", str, None, "Ansible inventory of existing machines (hosts provider)", metavar="FILE"),
    Option(
        "no_image",
        bool,
        False,
        "local provider: boot every node from the Debian base and run each phase in full, not from a baked node image",
    ),
    Option("strict", bool, False, "turn warnings (e.g. not enough host RAM) into errors"),
    Option(
        "skip_network_check",
        bool,
        False,
        "skip the check, before `up` creates anything, that the host reaches every source the lab downloads from",
    ),
    Option("libvirt", dict, None, "lab file only: libvirt provider options: " + ", ".join(LIBVIRT_KEYS)),
    Option("virtualbox", dict, None, "lab file only: VirtualBox provider options: " + ", ".join(VIRTUALBOX_KEYS)),
)
OPTIONS_BY_KEY: dict[str, Option] = {option.key: option for option in OPTIONS}

NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,19}$")
# A host name (letters, digits, dots, dashes) or an IPv4 address: what chrony and timesyncd take as a server.
NTP_SERVER_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,252}[A-Za-z0-9])?$")
MASTER_COUNTS = (1, 3, 5, 7)
VIRTUALBOX_RANGE = ipaddress.ip_network("192.168.56.0/21")
MIN_MASTER_CPUS, MIN_MASTER_MEMORY = 2, 1700  # kubeadm preflight: NumCPU and Mem
MIN_WORKER_MEMORY, MIN_LB_MEMORY = 1024, 256
# CNIs that cannot run in the local provider's namespace nodes, which share one kernel (README "Pod networks").
SHARED_KERNEL_REFUSED: dict[str, str] = {
    "cilium": (
        "--cni cilium cannot run on --provider local: its nodes are namespaces sharing the host's one kernel, and "
        "each node's Cilium agent loads its eBPF programs and maps into that kernel, mounts bpffs and attaches "
        "programs to the cgroup tree all nodes share, so no node has kernel state of its own; use --cni flannel or "
        "--cni calico with --provider local, or a VM provider (libvirt, virtualbox) for Cilium"
    ),
}
# Host numbers inside the node subnet (see plan.py): VIP, LBs, masters, workers.
VIP_HOST, LB_FIRST_HOST, MASTER_FIRST_HOST, WORKER_FIRST_HOST = 10, 11, 21, 31
# The addresses the lb-services add-on gives LoadBalancer Services (MetalLB's pool), inside the node subnet.
LB_SERVICES_FIRST_HOST, LB_SERVICES_LAST_HOST = 200, 249


@dataclass(frozen=True)
class HostInfo:
    """Facts about the machine kubelab runs on that validation needs."""

    memory_mb: int | None
    arch: str
    routes: tuple[ipaddress.IPv4Network, ...] = ()

    @classmethod
    def detect(cls) -> HostInfo:
        return cls(memory_mb=_host_memory_mb(), arch=_normalise_arch(platform.machine()), routes=_host_routes())


# Kernel machine names (uname -m, Ansible's architecture fact) -> the names release files and images use.
# The playbooks get this map as kubelab_arch_map in the lab's group_vars.
ARCH_NAMES: dict[str, str] = {"x86_64": "amd64", "aarch64": "arm64"}


def _normalise_arch(machine: str) -> str:
    return ARCH_NAMES.get(machine.lower(), machine.lower())


def _host_memory_mb() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return None


def _host_routes() -> tuple[ipaddress.IPv4Network, ...]:
    """Networks routed on the host, from /proc/net/route (Linux); the default route is left out."""
    routes = []
    try:
        lines = Path("/proc/net/route").read_text().splitlines()[1:]
    except OSError:
        return ()
    for line in lines:
        cols = line.split()
        if len(cols) < 8:
            continue
        dest = ipaddress.IPv4Address(bytes.fromhex(cols[1])[::-1])
        mask = ipaddress.IPv4Address(bytes.fromhex(cols[7])[::-1])
        if int(mask) == 0:
            continue
        routes.append(ipaddress.IPv4Network(f"{dest}/{mask}", strict=False))
    return tuple(routes)


@dataclass(frozen=True)
class LabSpec:
    """A lab as the user asked for it, with every 'auto' resolved."""

    name: str = "kubelab"
    provider: str = "auto"
    os: str = "auto"
    box: str | None = None
    box_version: str | None = None
    masters: int = 3
    workers: int = 1
    lb: str = "auto"
    lb_nodes: int = 2
    vrrp_unicast: bool = False
    ntp_servers: str | None = None
    cni: str = "calico"
    addons: list[str] = field(default_factory=list)
    kubernetes_version: str = versions.DEFAULT_KUBERNETES
    allow_unsupported_version: bool = False
    containerd_source: str = "upstream"
    containerd_version: str = versions.DEFAULT_CONTAINERD
    pod_cidr: str = "10.244.0.0/16"
    service_cidr: str = "10.96.0.0/12"
    node_subnet: str = "auto"
    vip: str = "auto"
    api_port: int = 6443
    master_cpus: int = 2
    master_memory: int = 2048
    worker_cpus: int = 2
    worker_memory: int = 2048
    lb_cpus: int = 1
    lb_memory: int = 512
    mtu: int | None = None
    artifacts: str | None = None
    inventory: str | None = None
    no_image: bool = False
    strict: bool = False
    skip_network_check: bool = False
    libvirt: dict[str, Any] = field(default_factory=dict)
    virtualbox: dict[str, Any] = field(default_factory=dict)
    # Nodes `kubelab node remove` took out ("worker-1"): the plan skips their numbers and addresses for good.
    # Recorded by kubelab, not a flag or lab-file key.
    removed_nodes: list[str] = field(default_factory=list)

    @property
    def kubernetes_minor(self) -> str:
        return versions.minor_of(self.kubernetes_version)

    @property
    def ntp_server_list(self) -> list[str]:
        return [server.strip() for server in (self.ntp_servers or "").split(",") if server.strip()]

    @property
    def lb_node_count(self) -> int:
        return self.lb_nodes if self.lb == "haproxy" else 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> LabSpec:
        return dataclasses.replace(self, **changes)


# ---------------------------------------------------------------------------------------------
# Loading: lab file (with line numbers for errors) + flags
# ---------------------------------------------------------------------------------------------


def load_lab_file(path: Path) -> dict[str, Any]:
    """Read a YAML lab file; errors name the file, key and line."""
    import yaml

    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecError(f"cannot read lab file {path}: {exc.strerror}") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError(f"{path}:{where}: not valid YAML: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict) or root is None:
        raise SpecError(f"{path}: a lab file is a YAML mapping of keys such as 'masters: 3'")
    lines = {str(key.value): key.start_mark.line + 1 for key, _ in root.value}
    # YAML reads `kubernetes_version: 1.30` as the float 1.3: keep the text as written instead.
    raw = {str(key.value): node.value for key, node in root.value if isinstance(node, yaml.ScalarNode)}
    for key, value in data.items():
        where = f"{path}:{lines.get(str(key), '?')}"
        option = OPTIONS_BY_KEY.get(str(key))
        if option is None:
            hint = difflib.get_close_matches(str(key), OPTIONS_BY_KEY, n=1)
            suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
            raise SpecError(f"{where}: unknown key '{key}'{suggestion}; see README 'Lab file keys'")
        if option.type is str and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = data[key] = raw[str(key)]
        if option.type is list and isinstance(value, str):  # `addons: a, b` as well as a YAML list
            value = data[key] = comma_list(value)
        _check_type(option, value, where)
        if option.type is dict:
            _check_sub_keys(option.key, value, where)
    return data


def _check_type(option: Option, value: Any, where: str) -> None:
    if value is None:
        return
    wrong_items = option.type is list and isinstance(value, list) and not all(isinstance(v, str) for v in value)
    if not isinstance(value, option.type) or (option.type is int and isinstance(value, bool)) or wrong_items:
        expected = {
            int: "a whole number",
            str: "a string",
            bool: "true or false",
            dict: "a mapping",
            list: "a list of names",
        }[option.type]
        raise SpecError(f"{where}: '{option.key}' must be {expected}, got {value!r}")


def comma_list(text: str) -> list[str]:
    """`a, b,,c` -> ['a', 'b', 'c'] (the --addons flag, or a lab file's key written as one string)."""
    return [part.strip() for part in text.split(",") if part.strip()]


def default_value(key: str) -> Any:
    """A spec key's default as LabSpec has it (a fresh list for list keys)."""
    spec_field = next(f for f in dataclasses.fields(LabSpec) if f.name == key)
    if spec_field.default_factory is not dataclasses.MISSING:
        return spec_field.default_factory()
    return spec_field.default


def _check_sub_keys(key: str, value: dict[str, Any], where: str) -> None:
    allowed = {"libvirt": LIBVIRT_KEYS, "virtualbox": VIRTUALBOX_KEYS}[key]
    for sub, sub_value in value.items():
        if sub not in allowed:
            raise SpecError(f"{where}: unknown key '{key}.{sub}'; allowed: {', '.join(sorted(allowed))}")
        expected = allowed[sub]
        if not isinstance(sub_value, expected):
            raise SpecError(f"{where}: '{key}.{sub}' must be {expected.__name__}, got {sub_value!r}")


def build_spec(file_values: dict[str, Any] | None = None, flag_values: dict[str, Any] | None = None) -> LabSpec:
    """Merge defaults < lab file < flags (flags given as None are 'not set') and resolve 'auto'."""
    merged: dict[str, Any] = {}
    for source in (file_values or {}, flag_values or {}):
        merged.update({key: value for key, value in source.items() if value is not None})
    return resolve(LabSpec(**merged))


def resolve(spec: LabSpec) -> LabSpec:
    """Fill in every 'auto' that does not depend on the host (provider 'auto' stays until `up`)."""
    changes: dict[str, Any] = {}
    if spec.os == "auto":
        changes["os"] = "debian-12" if spec.provider == "local" else "ubuntu-24.04"
    if spec.lb == "auto":
        changes["lb"] = "haproxy" if spec.masters > 1 else "none"
    if spec.node_subnet == "auto":
        changes["node_subnet"] = default_node_subnet(spec.name, spec.provider)
    resolved = spec.replace(**changes)
    if resolved.vip == "auto" and resolved.lb != "none":
        network = _network(resolved.node_subnet, "node_subnet")
        changes["vip"] = str(network.network_address + VIP_HOST)
    return spec.replace(**changes)


def default_node_subnet(name: str, provider: str) -> str:
    if provider == "local":
        # One /24 per lab name so several local labs live side by side.
        return f"10.77.{zlib.crc32(name.encode()) % 250 + 1}.0/24"
    return "192.168.56.0/24"


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------


def validate(spec: LabSpec, host: HostInfo) -> list[str]:
    """Raise SpecError for the first rule the spec breaks; return warnings for the rest."""
    warnings: list[str] = []
    _check_names(spec)
    _check_box(spec, host)
    _check_counts(spec)
    _check_versions(spec, warnings)
    _check_addons(spec)
    _check_networks(spec, host, warnings)
    from provisioner import limits  # what kubeadm, Kubernetes and the CNIs would refuse later

    limits.check(spec)
    _check_resources(spec, host, warnings)
    if spec.strict and warnings:
        raise SpecError(warnings[0] + " (an error because of --strict)")
    # A note on the CNI the user chose on purpose: printed like a warning, never an error under --strict.
    return warnings + cni_notes(spec)


def _check_names(spec: LabSpec) -> None:
    if not NAME_RE.match(spec.name):
        raise SpecError(
            f"lab name '{spec.name}' is not allowed: use 1-20 lowercase letters, digits or '-', "
            "starting with a letter (it names VMs, bridges and folders)"
        )
    _choice("provider", spec.provider)
    _choice("os", spec.os)
    _choice("lb", spec.lb)
    _choice("cni", spec.cni)
    _choice("containerd_source", spec.containerd_source)
    if spec.provider == "local" and spec.os not in boxes.LOCAL_SUITES:
        raise SpecError(f"the local provider builds Debian nodes only: use --os {' or --os '.join(boxes.LOCAL_SUITES)}")
    if spec.provider == "local" and spec.cni in SHARED_KERNEL_REFUSED:
        raise SpecError(SHARED_KERNEL_REFUSED[spec.cni])
    if spec.provider == "hosts" and not spec.inventory:
        raise SpecError("the hosts provider needs your machines: pass -i/--inventory FILE")
    if spec.inventory and spec.provider not in ("hosts", "auto"):
        raise SpecError(f"--inventory is for --provider hosts, not {spec.provider}")
    for server in spec.ntp_server_list:
        if not NTP_SERVER_RE.match(server):
            raise SpecError(
                f"NTP server '{server}' is not a host name or IPv4 address: use e.g. --ntp-servers 10.0.0.1"
            )
    if spec.artifacts and not Path(spec.artifacts).expanduser().is_dir():
        raise SpecError(f"artifacts folder {spec.artifacts} does not exist (see `kubelab artifacts list`)")


def _check_box(spec: LabSpec, host: HostInfo) -> None:
    if spec.box or spec.provider not in boxes.VAGRANT_PROVIDERS:
        return
    if host.arch == "arm64" and spec.provider in boxes.ARM64_UNSUPPORTED:
        raise SpecError(
            f"there is no default arm64 box for {spec.os} on {spec.provider}: pass --box with an arm64 box "
            "built for it, or use --provider vmware_desktop, parallels or virtualbox"
        )


def cni_notes(spec: LabSpec) -> list[str]:
    """One line about the chosen CNI that a user should read before building (empty for most)."""
    if spec.cni == "weave":
        return [
            f"Weave Net is unmaintained upstream (Weaveworks archived it); kubelab installs the community fork "
            f"rajch/weave {versions.CNI_VERSIONS['weave']}: for a maintained CNI use --cni calico or --cni flannel"
        ]
    return []


def _choice(key: str, value: str) -> None:
    choices = OPTIONS_BY_KEY[key].choices or ()
    if value not in choices:
        shown = ", ".join(c for c in choices if c != "auto")
        raise SpecError(f"unknown {key.replace('_', ' ')} '{value}': choose one of {shown}")


def _check_addons(spec: LabSpec) -> None:
    for name in spec.addons:
        if name in versions.ADDONS_NOT_AVAILABLE:
            raise SpecError(f"add-on '{name}' is not available: {versions.ADDONS_NOT_AVAILABLE[name]}")
        if name not in versions.ADDON_VERSIONS:
            hint = difflib.get_close_matches(name, versions.ADDONS, n=1)
            suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
            raise SpecError(f"unknown add-on '{name}'{suggestion}: choose from {', '.join(versions.ADDON_VERSIONS)}")
    repeated = sorted({name for name in spec.addons if spec.addons.count(name) > 1})
    if repeated:
        raise SpecError(f"--addons names {', '.join(repeated)} more than once: name each add-on once")


def _check_counts(spec: LabSpec) -> None:
    if spec.masters < 1:
        raise SpecError("a lab needs at least one master: use --masters 1, 3, 5 or 7")
    if spec.masters % 2 == 0:
        raise SpecError(
            f"--masters {spec.masters} is even: etcd needs a majority to stay available, and an even "
            f"count adds no fault tolerance; use {spec.masters - 1} or {spec.masters + 1}"
        )
    if spec.masters not in MASTER_COUNTS:
        raise SpecError(f"--masters {spec.masters} is not supported: use 1, 3, 5 or 7")
    if spec.workers < 0:
        raise SpecError(f"--workers {spec.workers} is negative: use 0 or more")
    if spec.lb == "none" and spec.masters > 1:
        raise SpecError(
            f"{spec.masters} masters need a load balancer in front of their API servers: "
            "use --lb haproxy or --lb kube-vip (--lb none is for a single master)"
        )
    if spec.lb == "haproxy" and spec.lb_nodes not in (1, 2):
        raise SpecError(f"--lb-nodes {spec.lb_nodes}: use 1 or 2 haproxy+keepalived nodes")


def _check_versions(spec: LabSpec, warnings: list[str]) -> None:
    try:
        minor = spec.kubernetes_minor
    except ValueError as exc:
        raise SpecError(f"unknown Kubernetes version: {exc}") from None
    if minor not in versions.SUPPORTED_MINORS:
        supported = ", ".join(versions.SUPPORTED_MINORS)
        if not spec.allow_unsupported_version:
            raise SpecError(
                f"Kubernetes {minor} is not a supported version ({supported}); "
                "pass --allow-unsupported-version to try it anyway"
            )
        warnings.append(f"Kubernetes {minor} is outside the tested versions ({supported}): expect surprises")
    if spec.containerd_source == "upstream":
        if not re.match(r"^\d+\.\d+\.\d+$", spec.containerd_version):
            raise SpecError(f"containerd version '{spec.containerd_version}' must look like 2.3.4")
        minimum = versions.CONTAINERD_MINIMUM.get(minor)
        if minimum and versions.version_tuple(spec.containerd_version) < versions.version_tuple(minimum):
            raise SpecError(
                f"containerd {spec.containerd_version} is too old for Kubernetes {minor} "
                f"(needs {minimum} or newer): use --containerd-version {versions.DEFAULT_CONTAINERD}"
            )


def _network(value: str, key: str) -> ipaddress.IPv4Network:
    flag = OPTIONS_BY_KEY[key].flag
    try:
        network = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise SpecError(f"{flag} {value} is not a network: write it like 10.244.0.0/16") from None
    if not isinstance(network, ipaddress.IPv4Network):
        raise SpecError(f"{flag} {value}: kubelab labs are IPv4 only")
    if str(network) != value:
        raise SpecError(f"{flag} {value} has host bits set: did you mean {network}?")
    return network


def _check_networks(spec: LabSpec, host: HostInfo, warnings: list[str]) -> None:
    nets = {key: _network(getattr(spec, key), key) for key in ("pod_cidr", "service_cidr", "node_subnet")}
    keys = list(nets)
    for i, first in enumerate(keys):
        for second in keys[i + 1 :]:
            if nets[first].overlaps(nets[second]):
                raise SpecError(
                    f"{OPTIONS_BY_KEY[first].flag} {nets[first]} overlaps {OPTIONS_BY_KEY[second].flag} "
                    f"{nets[second]}: pod, service and node networks must be disjoint"
                )
    for key, net in nets.items():
        for route in host.routes:
            # The node subnet equal to a host route is this lab's own (or a sibling's) network.
            if net.overlaps(route) and not (key == "node_subnet" and net == route):
                warnings.append(
                    f"{OPTIONS_BY_KEY[key].flag} {net} overlaps the host route {route}: "
                    "traffic to those addresses may go the wrong way"
                )
    node_net = nets["node_subnet"]
    if spec.provider == "virtualbox" and not node_net.subnet_of(VIRTUALBOX_RANGE):
        raise SpecError(
            f"--node-subnet {node_net} is outside 192.168.56.0/21, the only host-only range VirtualBox "
            "6.1.28+ allows by default: pick a subnet inside it, or widen the range in /etc/vbox/networks.conf "
            "(e.g. '* 10.0.0.0/8 192.168.0.0/16')"
        )
    masters, workers = node_numbers(spec, "master", spec.masters), node_numbers(spec, "worker", spec.workers)
    if masters[-1] > WORKER_FIRST_HOST - MASTER_FIRST_HOST:
        raise SpecError(
            f"master-{masters[-1]} would take an address of the workers' range (.{WORKER_FIRST_HOST} on): masters "
            "removed and added again used up their numbers; recreate the lab"
        )
    last_host = WORKER_FIRST_HOST + workers[-1] - 1 if workers else MASTER_FIRST_HOST + masters[-1] - 1
    if last_host >= node_net.num_addresses - 1:
        raise SpecError(
            f"--node-subnet {node_net} has too few addresses: this lab uses host numbers up to .{last_host}; "
            f"use a /24 or larger"
        )
    no_pool_room = last_host >= LB_SERVICES_FIRST_HOST or node_net.num_addresses - 1 <= LB_SERVICES_LAST_HOST
    if "lb-services" in spec.addons and no_pool_room:
        raise SpecError(
            f"--addons lb-services gives LoadBalancer Services the node subnet's hosts .{LB_SERVICES_FIRST_HOST}"
            f"-.{LB_SERVICES_LAST_HOST}, but {node_net} with these nodes (up to .{last_host}) has no room for "
            "them: use fewer workers or a /24 or larger --node-subnet"
        )
    _check_vip(spec, node_net)
    if spec.api_port < 1 or spec.api_port > 65535:
        raise SpecError(f"--api-port {spec.api_port} is not a TCP port (1-65535)")
    if spec.mtu is not None and not 1280 <= spec.mtu <= 9000:
        raise SpecError(f"--mtu {spec.mtu} is out of range: use 1280-9000 (1400 suits most VPNs)")


def node_numbers(spec: LabSpec, role: str, count: int) -> list[int]:
    """The numbers of a role's `count` nodes: 1, 2, ... except those `kubelab node remove` took out."""
    numbers: list[int] = []
    number = 0
    while len(numbers) < count:
        number += 1
        if f"{role}-{number}" not in spec.removed_nodes:
            numbers.append(number)
    return numbers


def _check_vip(spec: LabSpec, node_net: ipaddress.IPv4Network) -> None:
    if spec.lb == "none":
        if spec.vip not in ("auto", None):
            raise SpecError("--vip needs a load balancer: use --lb haproxy or --lb kube-vip, or drop --vip")
        return
    try:
        vip = ipaddress.IPv4Address(spec.vip)
    except ValueError:
        raise SpecError(f"--vip {spec.vip} is not an IPv4 address") from None
    if vip not in node_net:
        raise SpecError(
            f"--vip {vip} is outside the node subnet {node_net}: the VIP must be a free address on the "
            "node network so the load balancer can announce it"
        )
    from provisioner.plan import node_addresses

    taken = node_addresses(spec)
    if str(vip) in taken.values():
        holder = next(name for name, ip in taken.items() if ip == str(vip))
        raise SpecError(f"--vip {vip} is already the address of node {holder}: pick a free address")


def _check_resources(spec: LabSpec, host: HostInfo, warnings: list[str]) -> None:
    if spec.master_cpus < MIN_MASTER_CPUS:
        raise SpecError(f"--master-cpus {spec.master_cpus}: kubeadm needs at least {MIN_MASTER_CPUS} CPUs")
    if spec.master_memory < MIN_MASTER_MEMORY:
        raise SpecError(
            f"--master-memory {spec.master_memory}: kubeadm needs at least {MIN_MASTER_MEMORY} MB "
            "on a control-plane node; use 2048"
        )
    if spec.worker_cpus < 1 or spec.lb_cpus < 1:
        raise SpecError("every node needs at least 1 CPU")
    if spec.worker_memory < MIN_WORKER_MEMORY:
        raise SpecError(f"--worker-memory {spec.worker_memory}: a worker needs at least {MIN_WORKER_MEMORY} MB")
    if spec.lb_memory < MIN_LB_MEMORY:
        raise SpecError(f"--lb-memory {spec.lb_memory}: a load-balancer node needs at least {MIN_LB_MEMORY} MB")
    if spec.provider == "hosts" or host.memory_mb is None:
        return
    from provisioner.plan import total_memory

    needed = total_memory(spec)
    if needed > host.memory_mb:
        warnings.append(
            f"this lab needs {needed} MB of RAM but the host has {host.memory_mb} MB: "
            "use fewer nodes or less --master-memory/--worker-memory"
        )
