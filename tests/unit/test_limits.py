"""limits: one failing case per rule, the boundary value the component still accepts, and the advice."""

from __future__ import annotations

import ipaddress

import pytest

from provisioner import limits
from provisioner.spec import HostInfo, SpecError, build_spec, validate

Net = ipaddress.IPv4Network
Address = ipaddress.IPv4Address
NODES = Net("192.168.56.0/24")


def test_the_default_lab_breaks_no_limit() -> None:
    assert limits.problems(build_spec()) == []
    assert limits.problems(build_spec({}, {"masters": 1})) == []


def test_service_range_at_most_20_host_bits() -> None:
    assert limits.service_range_too_large(Net("10.96.0.0/12")) is None
    message = limits.service_range_too_large(Net("10.64.0.0/11"))
    assert message == (
        "--service-cidr 10.64.0.0/11 is too large: kubeadm accepts at most 20 host bits for the service range; "
        "use a /12 or smaller, e.g. --service-cidr 10.64.0.0/12"
    )


def test_service_range_holds_the_api_and_dns_addresses() -> None:
    assert limits.service_range_too_small(Net("10.96.0.0/28")) is None
    message = limits.service_range_too_small(Net("10.96.0.0/29"))
    assert message is not None
    assert message.startswith("--service-cidr 10.96.0.0/29 has 8 addresses: kubeadm puts the kubernetes API")
    assert "(10.96.0.1)" in message
    assert "on number 10, so it needs at least 10; use a /28 or larger, e.g. --service-cidr 10.96.0.0/12" in message


def test_the_example_is_left_out_when_it_would_overlap_another_network() -> None:
    message = limits.service_range_too_small(Net("10.96.0.0/29"), (Net("10.0.0.0/8"),))
    assert message is not None and message.endswith("use a /28 or larger")


@pytest.mark.parametrize(
    ("pod", "refused"),
    [
        ("0.0.0.0/16", "unspecified address 0.0.0.0/32"),
        ("127.1.0.0/16", "loopback range 127.0.0.0/8"),
        ("169.254.0.0/16", "link-local range 169.254.0.0/16"),
        ("224.0.0.0/20", "link-local multicast range 224.0.0.0/24"),
    ],
)
def test_pod_range_avoids_addresses_kubernetes_refuses_as_endpoints(pod: str, refused: str) -> None:
    message = limits.pod_range_refused(Net(pod))
    assert message == (
        f"--pod-cidr {pod} overlaps the {refused}: Kubernetes refuses such pod addresses in EndpointSlices "
        "(and Calico refuses such a pool); use a private range such as 10.244.0.0/16"
    )


def test_pod_range_in_private_or_shared_address_space_is_fine() -> None:
    for pod in ("10.244.0.0/16", "172.16.0.0/16", "192.168.0.0/16", "100.64.0.0/16"):
        assert limits.pod_range_refused(Net(pod)) is None, pod


@pytest.mark.parametrize(
    ("subnet", "refused"),
    [
        ("127.0.0.0/24", "loopback range 127.0.0.0/8"),
        ("169.254.3.0/24", "link-local range 169.254.0.0/16"),
        ("239.1.1.0/24", "multicast range 224.0.0.0/4"),
        ("0.0.0.0/24", "unspecified address 0.0.0.0/32"),
    ],
)
def test_node_subnet_avoids_addresses_the_kubelet_refuses(subnet: str, refused: str) -> None:
    message = limits.node_subnet_refused(Net(subnet))
    assert message == (
        f"--node-subnet {subnet} overlaps the {refused}: the kubelet refuses such a node IP; "
        "use a private range such as 192.168.56.0/24"
    )


def test_pod_range_holds_at_least_one_per_node_range() -> None:
    assert limits.pod_range_smaller_than_node_mask(Net("10.244.0.0/24")) is None
    assert limits.pod_range_smaller_than_node_mask(Net("10.244.0.0/25")) == (
        "--pod-cidr 10.244.0.0/25 is smaller than the /24 range kube-controller-manager gives each node: "
        "use a /24 or larger, e.g. --pod-cidr 10.244.0.0/16"
    )


def test_pod_range_at_most_16_bits_above_the_node_mask() -> None:
    assert limits.pod_range_too_large(Net("10.0.0.0/8")) is None
    assert limits.pod_range_too_large(Net("10.0.0.0/7")) == (
        "--pod-cidr 10.0.0.0/7 is too large: kubeadm allows at most 16 bits between the pod range and the "
        "per-node /24; use a /8 or smaller, e.g. --pod-cidr 10.0.0.0/16"
    )


@pytest.mark.parametrize(("pod", "nodes"), [("10.244.0.0/24", 1), ("10.244.0.0/23", 2), ("10.244.0.0/22", 4)])
def test_pod_range_with_a_range_for_every_node(pod: str, nodes: int) -> None:
    assert limits.pod_range_too_few_node_ranges(Net(pod), nodes) is None


def test_pod_range_with_too_few_node_ranges_names_the_size_that_fits() -> None:
    assert limits.pod_range_too_few_node_ranges(Net("10.244.0.0/24"), 2) == (
        "--pod-cidr 10.244.0.0/24 holds 1 per-node /24 range, but kube-controller-manager gives one to each of "
        "this lab's 2 nodes (masters and workers): use a /23 or larger, e.g. --pod-cidr 10.244.0.0/23"
    )
    message = limits.pod_range_too_few_node_ranges(Net("10.244.0.0/22"), 5)
    assert message is not None
    assert "holds 4 per-node /24 ranges" in message
    assert message.endswith("use a /21 or larger, e.g. --pod-cidr 10.244.0.0/21")


@pytest.mark.parametrize(("vip", "what"), [("192.168.56.0", "network"), ("192.168.56.255", "broadcast")])
def test_vip_on_the_network_or_broadcast_address_says_which(vip: str, what: str) -> None:
    assert limits.vip_not_a_host(Address(vip), NODES) == (
        f"--vip {vip} is the {what} address of the node subnet 192.168.56.0/24, not a host address: "
        "use e.g. --vip 192.168.56.10"
    )
    assert limits.vip_not_a_host(Address("192.168.56.254"), NODES) is None


def test_vip_on_the_hosts_own_address() -> None:
    assert limits.vip_is_host_address(Address("192.168.56.1"), NODES, "libvirt") == (
        "--vip 192.168.56.1 is the host's own address on the lab network 192.168.56.0/24 (host number .1): "
        "use e.g. --vip 192.168.56.10"
    )
    assert limits.vip_is_host_address(Address("192.168.56.1"), NODES, "hosts") is None
    assert limits.vip_is_host_address(Address("192.168.56.2"), NODES, "local") is None


def test_api_port_taken_where_it_is_bound() -> None:
    assert limits.api_port_taken(22, "haproxy") == (
        "--api-port 22 is sshd's port on the load-balancer nodes, where haproxy listens on it: use 6443"
    )
    assert limits.api_port_taken(2379, "haproxy") is None  # the masters keep 6443 behind haproxy
    assert limits.api_port_taken(2379, "none") == (
        "--api-port 2379 is already used on the masters by etcd (clients), and with --lb none kube-apiserver "
        "listens on --api-port there: use 6443"
    )
    for port in (22, 2380, 2381, 10248, 10249, 10250, 10256, 10257, 10259):
        assert limits.api_port_taken(port, "kube-vip") is not None, port
    assert limits.api_port_taken(8443, "kube-vip") is None
    assert limits.api_port_taken(2112, "kube-vip") == (
        "--api-port 2112 is already used on the masters by kube-vip (metrics), and with --lb kube-vip "
        "kube-apiserver listens on --api-port there: use 6443"
    )
    assert limits.api_port_taken(2112, "none") is None  # no kube-vip without it


@pytest.mark.parametrize("lb", ["none", "kube-vip"])
def test_api_port_on_the_masters_stays_out_of_the_node_port_range(lb: str) -> None:
    for port in (30000, 31000, 32767):
        message = limits.api_port_taken(port, lb)
        assert message is not None and message.startswith(
            f"--api-port {port} is inside the NodePort range 30000-32767: with --lb {lb} the API listens"
        ), message
    assert limits.api_port_taken(29999, lb) is None
    assert limits.api_port_taken(32768, lb) is None
    assert limits.api_port_taken(30000, "haproxy") is None  # the LB nodes run no kube-proxy


def test_check_raises_the_first_problem_as_a_spec_error() -> None:
    spec = build_spec({}, {"pod_cidr": "10.244.0.0/24", "vip": "192.168.56.255"})
    assert len(limits.problems(spec)) == 2
    with pytest.raises(SpecError, match=r"^--pod-cidr 10.244.0.0/24 holds 1 per-node /24 range"):
        limits.check(spec)


def test_validate_runs_the_limits_after_the_spec_rules() -> None:
    host = HostInfo(memory_mb=64_000, arch="amd64")
    # A malformed network is the spec's message, not a limit's.
    with pytest.raises(SpecError, match="is not a network"):
        validate(build_spec({}, {"pod_cidr": "10.244.0.0/33"}), host)
    with pytest.raises(SpecError, match="is the broadcast address of the node subnet"):
        validate(build_spec({}, {"vip": "192.168.56.255"}), host)
