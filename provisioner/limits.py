"""What kubeadm, the Kubernetes components and the CNIs would refuse later, refused at plan time.

``spec.validate`` has already checked that the networks parse, are IPv4, have no host bits set and do not overlap,
that the VIP is in the node subnet and the API port a TCP port. Each rule here, from the component's code or docs,
is a pure function: None, or a message saying what is wrong and what to use; ``check`` raises the first.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from provisioner.spec import VIP_HOST, LabSpec, SpecError

Net = ipaddress.IPv4Network
Address = ipaddress.IPv4Address

# kube-controller-manager --node-cidr-mask-size-ipv4 default, which kubeadm assumes when the flag is
# not set (kubelab does not set it): cmd/kube-controller-manager/app/core.go defaultNodeMaskCIDRIPv4,
# cmd/kubeadm/app/apis/kubeadm/validation/validation.go getClusterNodeMask.
NODE_CIDR_MASK = 24
# cmd/kubeadm/app/constants/constants.go: PodSubnetNodeMaskMaxDiff, MaximumBitsForServiceSubnet,
# MinimumAddressesInServiceSubnet.
POD_SUBNET_NODE_MASK_MAX_DIFF = 16
MAX_SERVICE_HOST_BITS = 20
MIN_SERVICE_ADDRESSES = 10
# kubeadm's constants.GetAPIServerVirtualIP and GetDNSIP: index 1 and 10 of the service range.
API_SERVICE_INDEX, DNS_SERVICE_INDEX = 1, 10

DEFAULT_POD_CIDR, DEFAULT_SERVICE_CIDR, DEFAULT_NODE_SUBNET = "10.244.0.0/16", "10.96.0.0/12", "192.168.56.0/24"

# Addresses Kubernetes refuses as endpoint addresses, so as pod IPs (pkg/apis/core/validation
# ValidateEndpointIP, used for EndpointSlice addresses); Calico also refuses a pool that overlaps
# link-local (libcalico-go/lib/validator/v3 validateIPPoolSpec).
POD_REFUSED: tuple[tuple[str, str], ...] = (
    ("0.0.0.0/32", "unspecified address"),
    ("127.0.0.0/8", "loopback range"),
    ("169.254.0.0/16", "link-local range"),
    ("224.0.0.0/24", "link-local multicast range"),
)
# Addresses the kubelet refuses as --node-ip (pkg/kubelet/kubelet_node_status.go validateNodeIP).
NODE_REFUSED: tuple[tuple[str, str], ...] = (
    ("0.0.0.0/32", "unspecified address"),
    ("127.0.0.0/8", "loopback range"),
    ("169.254.0.0/16", "link-local range"),
    ("224.0.0.0/4", "multicast range"),
)

# The host's own address on the lab network: the local bridge (providers/local_network.host_address),
# the VirtualBox host-only adapter, the libvirt network; see README "Addresses".
HOST_ADDRESS_HOST = 1
# Ports something else already listens on where the API port is bound. With haproxy, the LB nodes
# (sshd); with kube-vip or no LB, the masters, where kube-apiserver binds --api-port on every address:
# cmd/kubeadm/app/constants/constants.go (etcd, kubelet, scheduler, controller manager) and
# pkg/cluster/ports/ports.go (kube-proxy).
SSH_PORT = 22
MASTER_PORTS: dict[int, str] = {
    SSH_PORT: "sshd",
    2379: "etcd (clients)",
    2380: "etcd (peers)",
    2381: "etcd (metrics)",
    10248: "the kubelet (healthz)",
    10249: "kube-proxy (metrics)",
    10250: "the kubelet",
    10256: "kube-proxy (healthz)",
    10257: "kube-controller-manager",
    10259: "kube-scheduler",
}
# kube-vip's Prometheus metrics server on every master it runs on (cmd/kube-vip.go, --prometheusHTTPServer
# ":2112"; kubelab's manifest leaves it on).
KUBE_VIP_PORTS: dict[int, str] = {2112: "kube-vip (metrics)"}
# kube-apiserver's default --service-node-port-range (pkg/kubeapiserver/options DefaultServiceNodePortRange),
# which kubelab keeps. kube-proxy sends a NodePort Service's traffic to every local address of a node, the
# masters' own and a VIP they hold included, to the Service's pods.
NODE_PORT_RANGE = range(30000, 32768)


def _example(flag: str, candidate: Net | str, others: Iterable[Net]) -> str:
    """', e.g. --flag CANDIDATE' when the candidate overlaps none of the lab's other networks, else ''."""
    net = ipaddress.IPv4Network(candidate)
    if any(net.overlaps(other) for other in others):
        return ""
    return f", e.g. {flag} {net}"


def service_range_too_large(service: Net, others: Iterable[Net] = ()) -> str | None:
    """kubeadm ValidateServiceSubnetSize: at most MaximumBitsForServiceSubnet (20) host bits, i.e. /12."""
    smallest = 32 - MAX_SERVICE_HOST_BITS
    if service.prefixlen >= smallest:
        return None
    inside = next(service.subnets(new_prefix=smallest))
    return (
        f"--service-cidr {service} is too large: kubeadm accepts at most {MAX_SERVICE_HOST_BITS} host bits for "
        f"the service range; use a /{smallest} or smaller{_example('--service-cidr', inside, others)}"
    )


def service_range_too_small(service: Net, others: Iterable[Net] = ()) -> str | None:
    """kubeadm ValidateIPNetFromString(MinimumAddressesInServiceSubnet) and GetDNSIP (the 10th address)."""
    if service.num_addresses >= MIN_SERVICE_ADDRESSES:
        return None
    largest = 32 - (MIN_SERVICE_ADDRESSES - 1).bit_length()
    return (
        f"--service-cidr {service} has {service.num_addresses} addresses: kubeadm puts the kubernetes API service "
        f"on its address number {API_SERVICE_INDEX} ({service.network_address + API_SERVICE_INDEX}) and cluster DNS "
        f"on number {DNS_SERVICE_INDEX}, so it needs at least {MIN_SERVICE_ADDRESSES}; use a /{largest} or larger"
        f"{_example('--service-cidr', DEFAULT_SERVICE_CIDR, others)}"
    )


def refused_range(flag: str, net: Net, refused: Iterable[tuple[str, str]], why: str, suggestion: str) -> str | None:
    """The first of `refused` (network, name) that `net` overlaps, as a message; None if none."""
    for special, name in refused:
        special_net = ipaddress.IPv4Network(special)
        if net.overlaps(special_net):
            return f"{flag} {net} overlaps the {name} {special_net}: {why}; use a private range such as {suggestion}"
    return None


def pod_range_refused(pod: Net) -> str | None:
    return refused_range(
        "--pod-cidr",
        pod,
        POD_REFUSED,
        "Kubernetes refuses such pod addresses in EndpointSlices (and Calico refuses such a pool)",
        DEFAULT_POD_CIDR,
    )


def node_subnet_refused(node_net: Net) -> str | None:
    return refused_range(
        "--node-subnet", node_net, NODE_REFUSED, "the kubelet refuses such a node IP", DEFAULT_NODE_SUBNET
    )


def pod_range_smaller_than_node_mask(pod: Net, others: Iterable[Net] = ()) -> str | None:
    """kubeadm ValidatePodSubnetNodeMask and the node IPAM controller: the pod range holds at least one /24."""
    if pod.prefixlen <= NODE_CIDR_MASK:
        return None
    return (
        f"--pod-cidr {pod} is smaller than the /{NODE_CIDR_MASK} range kube-controller-manager gives each node: "
        f"use a /{NODE_CIDR_MASK} or larger{_example('--pod-cidr', DEFAULT_POD_CIDR, others)}"
    )


def pod_range_too_large(pod: Net, others: Iterable[Net] = ()) -> str | None:
    """kubeadm ValidatePodSubnetNodeMask: node mask minus pod mask at most PodSubnetNodeMaskMaxDiff (16)."""
    largest = NODE_CIDR_MASK - POD_SUBNET_NODE_MASK_MAX_DIFF
    if pod.prefixlen >= largest:
        return None
    inside = next(pod.subnets(new_prefix=16))
    return (
        f"--pod-cidr {pod} is too large: kubeadm allows at most {POD_SUBNET_NODE_MASK_MAX_DIFF} bits between the pod "
        f"range and the per-node /{NODE_CIDR_MASK}; use a /{largest} or smaller{_example('--pod-cidr', inside, others)}"
    )


def pod_range_too_few_node_ranges(pod: Net, nodes: int, others: Iterable[Net] = ()) -> str | None:
    """The node IPAM controller's range allocator: one /24 per node; when none is left a node gets no
    podCIDR (cidrset ErrCIDRRangeNoCIDRsRemaining, event CIDRNotAvailable)."""
    available = 2 ** max(NODE_CIDR_MASK - pod.prefixlen, 0)
    if available >= nodes:
        return None
    needed = NODE_CIDR_MASK - (nodes - 1).bit_length()
    return (
        f"--pod-cidr {pod} holds {available} per-node /{NODE_CIDR_MASK} {'range' if available == 1 else 'ranges'}, "
        "but kube-controller-manager "
        f"gives one to each of this lab's {nodes} nodes (masters and workers): use a /{needed} or larger"
        f"{_example('--pod-cidr', pod.supernet(new_prefix=needed), others)}"
    )


def vip_not_a_host(vip: Address, node_net: Net) -> str | None:
    """The subnet's network and broadcast addresses are not host addresses: nothing can serve the API there."""
    usable = node_net.network_address + VIP_HOST
    if vip == node_net.network_address:
        what = "network address"
    elif vip == node_net.broadcast_address:
        what = "broadcast address"
    else:
        return None
    return f"--vip {vip} is the {what} of the node subnet {node_net}, not a host address: use e.g. --vip {usable}"


def vip_is_host_address(vip: Address, node_net: Net, provider: str) -> str | None:
    """The host holds .1 on the lab network (every provider but hosts, whose network is the user's)."""
    if provider == "hosts" or vip != node_net.network_address + HOST_ADDRESS_HOST:
        return None
    return (
        f"--vip {vip} is the host's own address on the lab network {node_net} (host number "
        f".{HOST_ADDRESS_HOST}): use e.g. --vip {node_net.network_address + VIP_HOST}"
    )


def api_port_taken(port: int, lb: str) -> str | None:
    """A port the nodes that bind --api-port already use (haproxy: the LB nodes; otherwise the masters, where
    NodePorts are taken too)."""
    if lb == "haproxy":
        if port != SSH_PORT:
            return None
        return f"--api-port {port} is sshd's port on the load-balancer nodes, where haproxy listens on it: use 6443"
    taken = MASTER_PORTS | (KUBE_VIP_PORTS if lb == "kube-vip" else {})
    if port in taken:
        return (
            f"--api-port {port} is already used on the masters by {taken[port]}, and with --lb {lb} "
            "kube-apiserver listens on --api-port there: use 6443"
        )
    if port in NODE_PORT_RANGE:
        return (
            f"--api-port {port} is inside the NodePort range {NODE_PORT_RANGE.start}-{NODE_PORT_RANGE.stop - 1}: "
            f"with --lb {lb} the API listens on the masters, where kube-proxy would send a NodePort Service's "
            "traffic on that port to the Service's pods instead; use 6443"
        )
    return None


def problems(spec: LabSpec) -> list[str]:
    """Every rule this (otherwise validated) spec breaks, in the order a user should fix them."""
    pod, service, node_net = (Net(value) for value in (spec.pod_cidr, spec.service_cidr, spec.node_subnet))
    found = [
        service_range_too_large(service, (pod, node_net)),
        service_range_too_small(service, (pod, node_net)),
        pod_range_refused(pod),
        node_subnet_refused(node_net),
        pod_range_smaller_than_node_mask(pod, (service, node_net)),
        pod_range_too_large(pod, (service, node_net)),
        pod_range_too_few_node_ranges(pod, spec.masters + spec.workers, (service, node_net)),
    ]
    if spec.lb != "none":
        vip = Address(spec.vip)
        found += [vip_not_a_host(vip, node_net), vip_is_host_address(vip, node_net, spec.provider)]
    found.append(api_port_taken(spec.api_port, spec.lb))
    return [message for message in found if message]


def check(spec: LabSpec) -> None:
    """Raise SpecError with the first limit the spec breaks."""
    found = problems(spec)
    if found:
        raise SpecError(found[0])
