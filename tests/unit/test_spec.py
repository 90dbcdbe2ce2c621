"""The lab spec: merging, defaults, and one failing case per validation rule."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from provisioner import versions
from provisioner.spec import HostInfo, LabSpec, SpecError, build_spec, load_lab_file, validate

BIG_HOST = HostInfo(memory_mb=64_000, arch="amd64")


def check(host: HostInfo = BIG_HOST, **flags) -> list[str]:
    return validate(build_spec({}, flags), host)


def test_defaults_are_a_valid_ha_lab() -> None:
    spec = build_spec()
    assert check() == []
    assert (spec.masters, spec.workers, spec.lb, spec.lb_nodes) == (3, 1, "haproxy", 2)
    assert spec.os == "ubuntu-24.04"
    assert spec.node_subnet == "192.168.56.0/24"
    assert spec.vip == "192.168.56.10"


def test_single_master_defaults_to_no_load_balancer() -> None:
    spec = build_spec({}, {"masters": 1})
    assert spec.lb == "none"
    assert spec.lb_node_count == 0
    assert validate(spec, BIG_HOST) == []


def test_flags_override_file_and_none_means_not_given(tmp_path: Path) -> None:
    lab = tmp_path / "lab.yaml"
    lab.write_text("masters: 5\nworkers: 4\ncni: flannel\n")
    spec = build_spec(load_lab_file(lab), {"workers": 2, "cni": None})
    assert (spec.masters, spec.workers, spec.cni) == (5, 2, "flannel")


def test_local_provider_gets_debian_and_a_subnet_per_lab_name() -> None:
    one = build_spec({}, {"provider": "local", "name": "one"})
    two = build_spec({}, {"provider": "local", "name": "two"})
    assert one.os == "debian-12"
    assert ipaddress.ip_network(one.node_subnet).subnet_of(ipaddress.ip_network("10.77.0.0/16"))
    assert one.node_subnet != two.node_subnet
    assert build_spec({}, {"provider": "local", "name": "one"}).node_subnet == one.node_subnet


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"masters": 0}, "at least one master"),
        ({"masters": 2}, "--masters 2 is even"),
        ({"masters": 4}, "use 3 or 5"),
        ({"masters": 9}, "--masters 9 is not supported"),
        ({"workers": -1}, "--workers -1 is negative"),
        ({"masters": 3, "lb": "none"}, "3 masters need a load balancer"),
        ({"lb_nodes": 3}, "--lb-nodes 3"),
        ({"provider": "hyperv"}, "unknown provider 'hyperv'"),
        ({"cni": "canal"}, "unknown cni 'canal': choose one of calico, flannel, cilium, weave, none"),
        ({"provider": "local", "cni": "cilium"}, "--cni cilium cannot run on --provider local"),
        ({"os": "centos-9"}, "unknown os 'centos-9'"),
        ({"lb": "nginx"}, "unknown lb 'nginx'"),
        ({"containerd_source": "snap"}, "unknown containerd source 'snap'"),
        ({"kubernetes_version": "1.99"}, "Kubernetes 1.99 is not a supported version"),
        ({"kubernetes_version": "latest"}, "'latest' is not a Kubernetes version"),
        ({"kubernetes_version": "1.36", "containerd_version": "1.7.28"}, "containerd 1.7.28 is too old"),
        ({"containerd_version": "two"}, "must look like 2.3.4"),
        ({"pod_cidr": "10.96.0.0/16"}, "--pod-cidr 10.96.0.0/16 overlaps --service-cidr 10.96.0.0/12"),
        ({"node_subnet": "10.244.8.0/24", "vip": "10.244.8.10"}, "overlaps --node-subnet"),
        ({"pod_cidr": "10.244.0.1/16"}, "has host bits set: did you mean 10.244.0.0/16"),
        ({"pod_cidr": "banana"}, "is not a network"),
        ({"pod_cidr": "fd00::/64"}, "IPv4 only"),
        ({"provider": "virtualbox", "node_subnet": "10.10.0.0/24"}, "/etc/vbox/networks.conf"),
        ({"node_subnet": "192.168.56.0/27"}, "too few addresses"),
        ({"vip": "192.168.57.10"}, "outside the node subnet"),
        ({"vip": "192.168.56.21"}, "already the address of node master-1"),
        ({"vip": "not-an-ip"}, "is not an IPv4 address"),
        ({"vip": "192.168.56.0"}, "--vip 192.168.56.0 is the network address of the node subnet"),
        ({"vip": "192.168.56.255"}, "--vip 192.168.56.255 is the broadcast address of the node subnet"),
        ({"vip": "192.168.56.1"}, "the host's own address on the lab network"),
        ({"service_cidr": "10.64.0.0/11"}, "--service-cidr 10.64.0.0/11 is too large"),
        ({"service_cidr": "10.96.0.0/29"}, "--service-cidr 10.96.0.0/29 has 8 addresses"),
        ({"pod_cidr": "169.254.0.0/16"}, "overlaps the link-local range 169.254.0.0/16"),
        ({"node_subnet": "169.254.56.0/24", "vip": "169.254.56.10"}, "the kubelet refuses such a node IP"),
        ({"pod_cidr": "10.244.0.0/25"}, "smaller than the /24 range kube-controller-manager gives each node"),
        ({"pod_cidr": "10.0.0.0/7", "service_cidr": "172.16.0.0/12"}, "kubeadm allows at most 16 bits"),
        ({"pod_cidr": "10.244.0.0/23"}, "holds 2 per-node /24 ranges, but"),
        ({"api_port": 22}, "--api-port 22 is sshd's port on the load-balancer nodes"),
        ({"masters": 1, "api_port": 2379}, "already used on the masters by etcd (clients)"),
        ({"masters": 1, "vip": "192.168.56.10"}, "--vip needs a load balancer"),
        ({"master_cpus": 1}, "at least 2 CPUs"),
        ({"master_memory": 1024}, "at least 1700 MB"),
        ({"worker_memory": 512}, "a worker needs at least 1024 MB"),
        ({"lb_memory": 128}, "load-balancer node needs at least 256 MB"),
        ({"worker_cpus": 0}, "at least 1 CPU"),
        ({"api_port": 70000}, "not a TCP port"),
        ({"mtu": 100}, "--mtu 100 is out of range"),
        ({"name": "Bad_Name"}, "lab name 'Bad_Name' is not allowed"),
        ({"name": "../../etc"}, "is not allowed"),
        ({"name": "x; rm -rf /"}, "is not allowed"),
        ({"provider": "hosts"}, "pass -i/--inventory"),
        ({"provider": "libvirt", "inventory": "hosts.yml"}, "--inventory is for --provider hosts"),
        ({"provider": "local", "os": "ubuntu-24.04"}, "builds Debian nodes only"),
        ({"artifacts": "/nonexistent/artifacts"}, "artifacts folder /nonexistent/artifacts does not exist"),
    ],
)
def test_each_rule_rejects_with_a_specific_message(flags: dict, message: str) -> None:
    with pytest.raises(SpecError) as excinfo:
        check(**flags)
    assert message in str(excinfo.value)


def test_unsupported_minor_runs_only_with_override_and_warns() -> None:
    warnings = check(kubernetes_version="1.30", allow_unsupported_version=True, containerd_source="distro")
    assert any("1.30 is outside the tested versions" in w for w in warnings)


@pytest.mark.parametrize("provider", ["libvirt", "virtualbox", "hosts"])
def test_cilium_stays_selectable_where_each_node_has_its_own_kernel(provider: str) -> None:
    inventory = "hosts.yml" if provider == "hosts" else None
    assert check(provider=provider, cni="cilium", inventory=inventory) == []


@pytest.mark.parametrize("cni", ["calico", "flannel", "weave", "none"])
def test_local_provider_takes_the_cnis_that_need_no_kernel_of_their_own(cni: str) -> None:
    check(provider="local", cni=cni)


def test_weave_gets_a_one_line_note_that_strict_does_not_turn_into_an_error() -> None:
    (note,) = check(cni="weave")
    assert "\n" not in note
    assert "Weave Net is unmaintained upstream" in note and f"rajch/weave {versions.CNI_VERSIONS['weave']}" in note
    assert "--cni calico or --cni flannel" in note
    assert check(cni="weave", strict=True) == [note]
    assert check(cni="flannel") == []


def test_arm64_host_has_no_default_libvirt_box() -> None:
    arm = HostInfo(memory_mb=64_000, arch="arm64")
    with pytest.raises(SpecError, match="no default arm64 box"):
        check(arm, provider="libvirt")
    assert check(arm, provider="libvirt", box="me/arm64-box") == []
    assert check(arm, provider="virtualbox") == []


def test_host_ram_is_a_warning_and_an_error_with_strict() -> None:
    small = HostInfo(memory_mb=4096, arch="amd64")
    warnings = check(small)
    assert warnings == [
        "this lab needs 9216 MB of RAM but the host has 4096 MB: "
        "use fewer nodes or less --master-memory/--worker-memory"
    ]
    with pytest.raises(SpecError, match=r"9216 MB.*--strict"):
        check(small, strict=True)
    assert check(small, provider="hosts", inventory="x.yml") == []


def test_route_overlap_is_a_warning_but_the_labs_own_subnet_is_not() -> None:
    host = HostInfo(
        memory_mb=64_000,
        arch="amd64",
        routes=(ipaddress.IPv4Network("10.244.3.0/24"), ipaddress.IPv4Network("192.168.56.0/24")),
    )
    warnings = check(host)
    assert len(warnings) == 1
    assert "--pod-cidr 10.244.0.0/16 overlaps the host route 10.244.3.0/24" in warnings[0]


def test_host_facts_are_read_from_this_machine() -> None:
    host = HostInfo.detect()
    assert host.memory_mb and host.memory_mb > 0
    assert host.arch and host.arch != "x86_64"
    assert all(isinstance(route, ipaddress.IPv4Network) for route in host.routes)


# ---- lab files ---------------------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "lab.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("masters: 3\nworkerz: 2\n", "lab.yaml:2: unknown key 'workerz' (did you mean 'workers'?)"),
        ("masters: 3\nworkers: two\n", "lab.yaml:2: 'workers' must be a whole number, got 'two'"),
        ("masters: true\n", "lab.yaml:1: 'masters' must be a whole number, got True"),
        ("strict: yes please\n", "'strict' must be true or false"),
        ("cni: [calico]\n", "lab.yaml:1: 'cni' must be a string"),
        ("masters: 3\n  workers: 2\n", "lab.yaml: line 2: not valid YAML"),
        ("- masters\n", "a lab file is a YAML mapping"),
        ("libvirt:\n  drver: qemu\n", "unknown key 'libvirt.drver'"),
        ("virtualbox:\n  linked_clone: maybe\n", "'virtualbox.linked_clone' must be bool"),
    ],
)
def test_malformed_lab_files_name_key_and_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(SpecError) as excinfo:
        load_lab_file(write(tmp_path, text))
    assert message in str(excinfo.value)


def test_missing_lab_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read lab file"):
        load_lab_file(tmp_path / "nope.yaml")


def test_lab_file_versions_keep_the_text_as_written(tmp_path: Path) -> None:
    spec = build_spec(load_lab_file(write(tmp_path, "kubernetes_version: 1.30\nname: 7\n")))
    assert spec.kubernetes_version == "1.30"
    assert spec.name == "7"


def test_empty_lab_file_is_the_default_lab(tmp_path: Path) -> None:
    assert (
        build_spec(load_lab_file(write(tmp_path, "")))
        == build_spec()
        == LabSpec().replace(os="ubuntu-24.04", lb="haproxy", node_subnet="192.168.56.0/24", vip="192.168.56.10")
    )
