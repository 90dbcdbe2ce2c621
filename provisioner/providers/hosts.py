"""Machines the user already has (`--provider hosts -i inventory.yml`): no VMs, the same phases over SSH.

The inventory is Ansible's YAML with the groups `lb` (optional), `masters` and `workers`. A host (or all.vars) sets
`ansible_user` (root or passwordless sudo) and `ansible_ssh_private_key_file`, and may set `ansible_host` (default:
its name), `ansible_port` (22), `ansible_ssh_common_args`/`ansible_ssh_extra_args`, and `kubelab_ip`, its address
in --node-subnet (default: ansible_host), where --vip must be free. Hosts become nodes in order: the first master
is master-1 (`kubeadm init`).
"""

from __future__ import annotations

import ipaddress
import shlex
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provisioner.providers.base import Connection, NodeStatus, Progress, Provider, ProviderError

GROUPS = {"lb": "lb", "masters": "master", "workers": "worker"}
SSH_CHECK_OPTIONS = ("-oBatchMode=yes", "-oConnectTimeout=10", "-oLogLevel=ERROR")
# After the inventory's own ssh arguments: ssh keeps the first value of an option, so the user's win.
SSH_DEFAULT_OPTIONS = ("-oStrictHostKeyChecking=accept-new",)


@dataclass(frozen=True)
class Host:
    """One machine of the user's inventory and the lab node it becomes."""

    inventory_name: str
    node: str
    ip: str
    connection: Connection


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ProviderError(f"{where} must be a mapping")
    return value


def read_inventory(path: Path) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """Group ('lb', 'masters', 'workers') -> [(host name, merged vars)] in file order."""
    import yaml

    try:
        data = yaml.safe_load(path.expanduser().read_text())
    except OSError as exc:
        raise ProviderError(f"cannot read the hosts inventory {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ProviderError(f"{path} is not valid YAML: {exc}") from None
    data = _mapping(data, str(path))
    root = _mapping(data.get("all"), f"{path}: 'all'") if "all" in data else {"children": data}
    base_vars = _mapping(root.get("vars"), f"{path}: all.vars")
    children = _mapping(root.get("children"), f"{path}: all.children")
    unknown = sorted(set(children) - set(GROUPS))
    if unknown:
        raise ProviderError(f"{path}: unknown group(s) {', '.join(unknown)}; use lb, masters and workers")
    groups: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for group in GROUPS:
        body = _mapping(children.get(group), f"{path}: group {group}")
        group_vars = _mapping(body.get("vars"), f"{path}: {group}.vars")
        hosts = _mapping(body.get("hosts"), f"{path}: {group}.hosts")
        groups[group] = [
            (name, {**base_vars, **group_vars, **_mapping(host_vars, f"{path}: host {name}")})
            for name, host_vars in hosts.items()
        ]
    if not groups["masters"]:
        raise ProviderError(f"{path}: the group 'masters' has no hosts; a lab needs at least one")
    return groups


def inventory_counts(path: Path) -> dict[str, int]:
    """Lab-spec counts the inventory implies: masters, workers and (when it has an lb group) lb_nodes."""
    groups = read_inventory(path)
    counts = {"masters": len(groups["masters"]), "workers": len(groups["workers"])}
    if groups["lb"]:
        counts["lb_nodes"] = len(groups["lb"])
    return counts


def map_hosts(path: Path, node_subnet: str, vip: str | None, lb_nodes: int) -> list[Host]:
    """The inventory's hosts as lab nodes (lb-1.., master-1.., worker-1..), each checked for the lab."""
    groups = read_inventory(path)
    if lb_nodes and len(groups["lb"]) != lb_nodes:
        raise ProviderError(
            f"{path}: lb haproxy needs {lb_nodes} host(s) in group 'lb', found {len(groups['lb'])}; "
            "add them, or use --lb kube-vip (no extra machines)"
        )
    network = ipaddress.IPv4Network(node_subnet)
    hosts: list[Host] = []
    for group, role in GROUPS.items():
        members = groups[group] if role != "lb" or lb_nodes else []
        for index, (name, variables) in enumerate(members, start=1):
            hosts.append(_host(path, name, f"{role}-{index}", variables, network, vip))
    seen: dict[str, str] = {}
    for host in hosts:
        if host.ip in seen:
            raise ProviderError(f"{path}: hosts {seen[host.ip]} and {host.inventory_name} have the same kubelab_ip")
        seen[host.ip] = host.inventory_name
    return hosts


def _host(
    path: Path, name: str, node: str, variables: dict[str, Any], network: ipaddress.IPv4Network, vip: str | None
) -> Host:
    address = str(variables.get("ansible_host") or name)
    user = variables.get("ansible_user")
    key = variables.get("ansible_ssh_private_key_file") or variables.get("ansible_private_key_file")
    if not user or not key:
        raise ProviderError(
            f"{path}: host {name} needs ansible_user and ansible_ssh_private_key_file (on the host or in all.vars)"
        )
    key_path = Path(str(key)).expanduser()
    if not key_path.is_file():
        raise ProviderError(f"{path}: host {name}: key file {key_path} does not exist")
    ip_text = str(variables.get("kubelab_ip") or address)
    try:
        ip = ipaddress.IPv4Address(ip_text)
    except ValueError:
        raise ProviderError(
            f"{path}: host {name}: kubelab_ip {ip_text!r} is not an IPv4 address; set kubelab_ip to the "
            "host's address on the node network"
        ) from None
    if ip not in network:
        raise ProviderError(
            f"{path}: host {name}: kubelab_ip {ip} is outside --node-subnet {network}: pass --node-subnet with "
            "the network your machines share (and --vip with a free address in it)"
        )
    if vip and str(ip) == vip:
        raise ProviderError(f"{path}: host {name} has the VIP {vip} as its address: pass --vip with a free address")
    user_args = [
        arg
        for key in ("ansible_ssh_common_args", "ansible_ssh_extra_args")
        for arg in shlex.split(variables.get(key) or "")
    ]
    connection = Connection(
        host=address,
        port=int(variables.get("ansible_port", 22)),
        user=str(user),
        key_file=str(key_path),
        extra_ssh_args=(*user_args, *SSH_DEFAULT_OPTIONS),
    )
    return Host(inventory_name=name, node=node, ip=str(ip), connection=connection)


def ssh_problem(connection: Connection) -> str | None:
    """None when `ssh ... true` works, else ssh's error."""
    argv = connection.ssh_argv(["true"])
    argv[1:1] = list(SSH_CHECK_OPTIONS)
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return "no answer within 30 s"
    if done.returncode == 0:
        return None
    lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
    return lines[-1] if lines else f"ssh exited with {done.returncode}"


class HostsProvider(Provider):
    """Runs the phases on machines from the user's inventory; creates and removes no machines."""

    name = "hosts"

    def hosts(self) -> list[Host]:
        spec = self.plan.spec
        if not spec.inventory:
            raise ProviderError("the hosts provider needs your machines: pass -i/--inventory FILE")
        vip = spec.vip if spec.lb != "none" else None
        return map_hosts(Path(spec.inventory), spec.node_subnet, vip, spec.lb_node_count)

    def check(self) -> None:
        hosts = self.hosts()
        with ThreadPoolExecutor(max_workers=8) as pool:
            problems = list(pool.map(lambda host: ssh_problem(host.connection), hosts))
        failed = [
            f"  {host.inventory_name} ({host.connection.user}@{host.connection.host}:{host.connection.port}): {problem}"
            for host, problem in zip(hosts, problems, strict=True)
            if problem
        ]
        if failed:
            raise ProviderError(
                "unreachable host(s) in the inventory:\n"
                + "\n".join(failed)
                + "\n  check ansible_host/ansible_port/ansible_user/ansible_ssh_private_key_file and that sshd runs"
            )

    def up(self, progress: Progress) -> None:
        """Nothing to create: say which of the user's machines each node is."""
        for host in self.hosts():
            progress(host.node, f"is {host.inventory_name} ({host.ip})")

    def api_host(self) -> str:
        """Where clients reach the API on these machines."""
        if self.plan.spec.lb != "none":
            return self.plan.spec.vip
        return next(host.ip for host in self.hosts() if host.node == self.plan.init_master.name)

    def ansible_vars(self) -> dict[str, object]:
        """Without a load balancer the API endpoint is the first master's address on the user's network."""
        if self.plan.spec.lb != "none":
            return {}
        return {"kubelab_control_plane_endpoint": f"{self.api_host()}:{self.plan.spec.api_port}"}

    def node_vars(self) -> dict[str, dict[str, object]]:
        """Each host's node-network address, which outranks the lab's IP plan in hosts.yml."""
        return {host.node: {"kubelab_ip": host.ip} for host in self.hosts()}

    def status(self) -> list[NodeStatus]:
        hosts = self.hosts()
        with ThreadPoolExecutor(max_workers=8) as pool:
            problems = list(pool.map(lambda host: ssh_problem(host.connection), hosts))
        return [
            NodeStatus(host.node, "unreachable" if problem else "reachable", host.ip)
            for host, problem in zip(hosts, problems, strict=True)
        ]

    def connections(self) -> dict[str, Connection]:
        return {host.node: host.connection for host in self.hosts()}

    def halt(self) -> None:
        raise ProviderError("the hosts provider does not power off machines it did not create: shut them down yourself")

    def resume(self, progress: Progress) -> None:
        self.check()

    def destroy(self) -> bool:
        """Forget the machines; they are left as they are (kubelab did not create them)."""
        host_vars = self.lab.inventory_dir / "host_vars"
        existed = host_vars.is_dir()
        if existed:
            for path in host_vars.glob("*.yml"):
                path.unlink()
            host_vars.rmdir()
        return existed
