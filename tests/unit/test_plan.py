"""The IP plan and the readable plan."""

from __future__ import annotations

from provisioner.plan import describe, make_plan, node_addresses
from provisioner.spec import build_spec


def test_ip_plan_puts_roles_in_their_ranges() -> None:
    plan = make_plan(build_spec({}, {"masters": 5, "workers": 3, "lb_nodes": 1}))
    assert [(n.name, n.ip) for n in plan.nodes] == [
        ("lb-1", "192.168.56.11"),
        ("master-1", "192.168.56.21"),
        ("master-2", "192.168.56.22"),
        ("master-3", "192.168.56.23"),
        ("master-4", "192.168.56.24"),
        ("master-5", "192.168.56.25"),
        ("worker-1", "192.168.56.31"),
        ("worker-2", "192.168.56.32"),
        ("worker-3", "192.168.56.33"),
    ]
    assert plan.init_master.name == "master-1"
    assert len({n.ip for n in plan.nodes} | {plan.spec.vip}) == len(plan.nodes) + 1


def test_addresses_follow_the_subnet() -> None:
    spec = build_spec({}, {"node_subnet": "10.20.0.0/23", "masters": 1, "workers": 1})
    assert node_addresses(spec) == {"master-1": "10.20.0.21", "worker-1": "10.20.0.31"}


def test_endpoint_is_the_vip_behind_a_load_balancer() -> None:
    plan = make_plan(build_spec({}, {"api_port": 8443}))
    assert plan.control_plane_endpoint == "192.168.56.10:8443"
    assert plan.apiserver_port == 6443  # haproxy fronts the API servers, which keep 6443


def test_kube_vip_and_single_master_endpoints() -> None:
    kube_vip = make_plan(build_spec({}, {"lb": "kube-vip", "api_port": 8443}))
    assert kube_vip.lbs == ()
    assert (kube_vip.control_plane_endpoint, kube_vip.apiserver_port) == ("192.168.56.10:8443", 8443)
    single = make_plan(build_spec({}, {"masters": 1, "workers": 0}))
    assert single.control_plane_endpoint == "192.168.56.21:6443"


def test_resources_and_totals() -> None:
    plan = make_plan(build_spec({}, {"masters": 3, "workers": 2, "worker_cpus": 4, "worker_memory": 4096}))
    assert plan.total_cpus == 2 * 1 + 3 * 2 + 2 * 4
    assert plan.total_memory == 2 * 512 + 3 * 2048 + 2 * 4096


def test_describe_shows_everything_a_user_checks_before_creating() -> None:
    text = describe(make_plan(build_spec({}, {"masters": 3, "workers": 2, "cni": "calico", "mtu": 1400})))
    for expected in (
        "Lab 'kubelab'",
        "kubernetes     1.36 (kubeadm config kubeadm.k8s.io/v1beta4)",
        "cni            calico v3.33.0",
        "haproxy + keepalived on 2 node(s)",
        "API endpoint   https://192.168.56.10:6443",
        "node subnet    192.168.56.0/24  (MTU 1400)",
        "pod CIDR       10.244.0.0/16",
        "service CIDR   10.96.0.0/12",
        "master-1    master*  192.168.56.21        2      2048",
        "worker-2    worker   192.168.56.32        2      2048",
        "total                                    12     11264",
    ):
        assert expected in text, expected
