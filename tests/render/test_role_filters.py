"""The Kubernetes-phase roles' filter plugins, run as plain Python on kubeadm output, facts and manifests."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest
import yaml

ROLES = Path(__file__).resolve().parents[2] / "playbooks" / "roles"
FIXTURES = Path(__file__).parent / "fixtures"
TOKEN = "k3lab0.0123456789abcdef"
CA_HASH = "sha256:" + "0f" * 32
KEY = "9a" * 32


def _plugin(role: str, name: str) -> ModuleType:
    path = ROLES / role / "filter_plugins" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"kubelab_test_{name}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


secrets = _plugin("kubeadm", "kubeadm_secrets")
manifests = _plugin("cni", "cni_manifests")
kubeconfig = _plugin("control_plane", "control_plane_kubeconfig")
interface = _plugin("kube_vip", "kube_vip_interface")
redact = _plugin("control_plane", "control_plane_redact")


def test_every_filter_is_registered_under_its_name() -> None:
    assert set(secrets.FilterModule().filters()) == {"kubeadm_join_secrets", "kubeadm_certificate_key"}
    assert set(manifests.FilterModule().filters()) == {"cni_calico_manifest", "cni_flannel_manifest"}
    assert set(kubeconfig.FilterModule().filters()) == {"control_plane_kubeconfig"}
    assert set(interface.FilterModule().filters()) == {"kube_vip_interface_of"}
    assert set(redact.FilterModule().filters()) == {"control_plane_redact"}


# --- kubeadm's printed secrets -------------------------------------------------------------------------


def test_join_secrets_from_print_join_command() -> None:
    output = f"kubeadm join 10.77.116.10:6443 --token {TOKEN} --discovery-token-ca-cert-hash {CA_HASH} \n"
    assert secrets.kubeadm_join_secrets(output) == {"token": TOKEN, "ca_cert_hash": CA_HASH}


@pytest.mark.parametrize(
    "output",
    [
        "",
        f"kubeadm join 10.77.116.10:6443 --token {TOKEN}",  # no CA hash
        f"kubeadm join 10.77.116.10:6443 --token <value withheld> --discovery-token-ca-cert-hash {CA_HASH}",
        f"kubeadm join 10.77.116.10:6443 --token NOTATOKEN --discovery-token-ca-cert-hash {CA_HASH}",
    ],
)
def test_join_secrets_missing_fail_without_echoing_the_output(output: str) -> None:
    with pytest.raises(ValueError) as error:
        secrets.kubeadm_join_secrets(output)
    assert TOKEN not in str(error.value) and CA_HASH not in str(error.value)


def test_certificate_key_is_the_last_hex_line_of_upload_certs() -> None:
    output = (
        "W1123 10:00:00.000000 1 version.go:104] could not fetch a Kubernetes version from the internet\n"
        '[upload-certs] Storing the certificates in Secret "kubeadm-certs" in the "kube-system" Namespace\n'
        f"[upload-certs] Using certificate key:\n{'11' * 32}\n{KEY}\n"
    )
    assert secrets.kubeadm_certificate_key(output) == KEY


def test_certificate_key_on_the_same_line() -> None:
    assert secrets.kubeadm_certificate_key(f"[upload-certs] Using certificate key: {KEY}\n") == KEY


@pytest.mark.parametrize("output", ["", "[upload-certs] Using certificate key:\n", f"key {KEY} inline\n", KEY[:-2]])
def test_certificate_key_missing_fails(output: str) -> None:
    with pytest.raises(ValueError, match="no certificate key"):
        secrets.kubeadm_certificate_key(output)


def test_failed_init_output_is_shown_with_secrets_masked() -> None:
    output = (
        f"[upload-certs] Using certificate key:\n{KEY}\n"
        f"[bootstrap-token] Using token: {TOKEN}\n"
        f"kubeadm join 10.77.116.10:6443 --token {TOKEN} --discovery-token-ca-cert-hash {CA_HASH}\n"
        "error execution phase wait-control-plane: could not initialize a Kubernetes cluster\n"
    )
    masked = redact.control_plane_redact(output)
    assert TOKEN not in masked and KEY not in masked
    assert "[bootstrap-token] Using token: <token>" in masked and "<certificate key>" in masked
    assert CA_HASH in masked  # public: it identifies the cluster's CA
    assert "could not initialize a Kubernetes cluster" in masked


# --- the private interface, by address -----------------------------------------------------------------

FACTS = {
    "interfaces": ["lo", "eth0", "eth1", "br-lab", "eth1.30"],
    "lo": {"device": "lo", "ipv4": {"address": "127.0.0.1"}},
    "eth0": {"device": "eth0", "ipv4": {"address": "10.0.2.15"}},  # the NAT interface, first in line
    "eth1": {
        "device": "eth1",
        "ipv4": {"address": "192.168.56.21"},
        "ipv4_secondaries": [{"address": "192.168.56.10"}],
    },
    "br_lab": {"device": "br-lab", "ipv4": {"address": "172.30.0.1"}},
    "eth1.30": {"device": "eth1.30"},  # no IPv4 at all
}


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("192.168.56.21", "eth1"),
        ("192.168.56.10", "eth1"),  # a secondary address (e.g. the VIP on the holder)
        ("10.0.2.15", "eth0"),
        ("172.30.0.1", "br-lab"),  # facts key names with '-' as '_' in some versions
        ("192.168.56.22", ""),
    ],
)
def test_interface_found_by_address(address: str, expected: str) -> None:
    assert interface.kube_vip_interface_of(FACTS, address) == expected


# --- Calico ---------------------------------------------------------------------------------------------


def _docs(text: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def _by_kind(docs: list[dict], kind: str) -> dict:
    return next(doc for doc in docs if doc["kind"] == kind)


def _env(doc: dict, container: str) -> dict[str, dict]:
    containers = doc["spec"]["template"]["spec"]["containers"]
    entries = next(c for c in containers if c["name"] == container)["env"]
    names = [entry["name"] for entry in entries]
    assert len(names) == len(set(names)), f"duplicate env entries: {names}"
    return {entry["name"]: entry for entry in entries}


CALICO = (FIXTURES / "calico.yaml").read_text()
FLANNEL = (FIXTURES / "kube-flannel.yml").read_text()


def test_calico_pool_autodetection_and_untouched_objects() -> None:
    docs = _docs(manifests.cni_calico_manifest(CALICO, "10.200.0.0/16", "10.77.116.0/24"))
    env = _env(_by_kind(docs, "DaemonSet"), "calico-node")
    assert env["CALICO_IPV4POOL_CIDR"]["value"] == "10.200.0.0/16"
    assert env["IP_AUTODETECTION_METHOD"]["value"] == "cidr=10.77.116.0/24"
    assert env["IP"]["value"] == "autodetect"
    assert _by_kind(docs, "ConfigMap")["data"]["veth_mtu"] == "0"  # no MTU: Calico detects it
    original = _docs(CALICO)
    for kind in ("CustomResourceDefinition", "Deployment"):
        assert _by_kind(docs, kind) == _by_kind(original, kind)


@pytest.mark.parametrize(("encapsulation", "expected"), [("IPIP", "1380"), ("VXLAN", "1350"), (None, "1400")])
def test_calico_pod_mtu_leaves_room_for_the_encapsulation(encapsulation: str | None, expected: str) -> None:
    docs = _docs(CALICO)
    env = _env(_by_kind(docs, "DaemonSet"), "calico-node")
    env["CALICO_IPV4POOL_IPIP"]["value"] = "Always" if encapsulation == "IPIP" else "Never"
    env["CALICO_IPV4POOL_VXLAN"]["value"] = "CrossSubnet" if encapsulation == "VXLAN" else "Never"
    text = yaml.safe_dump_all(docs)
    result = _docs(manifests.cni_calico_manifest(text, "10.244.0.0/16", "10.77.116.0/24", 1400))
    assert _by_kind(result, "ConfigMap")["data"]["veth_mtu"] == expected


def test_calico_twice_gives_the_same_manifest() -> None:
    once = manifests.cni_calico_manifest(CALICO, "10.244.0.0/16", "10.77.116.0/24", 1450)
    assert manifests.cni_calico_manifest(once, "10.244.0.0/16", "10.77.116.0/24", 1450) == once


def test_calico_refuses_a_manifest_without_calico_node() -> None:
    docs = [doc for doc in _docs(CALICO) if doc["kind"] != "DaemonSet"]
    with pytest.raises(ValueError, match="DaemonSet 'calico-node'"):
        manifests.cni_calico_manifest(yaml.safe_dump_all(docs), "10.244.0.0/16", "10.77.116.0/24")


# --- Flannel --------------------------------------------------------------------------------------------


def test_flannel_network_interface_and_mtu() -> None:
    docs = _docs(manifests.cni_flannel_manifest(FLANNEL, "10.200.0.0/16", 1400))
    net_conf = json.loads(_by_kind(docs, "ConfigMap")["data"]["net-conf.json"])
    assert net_conf == {"Network": "10.200.0.0/16", "EnableNFTables": False, "Backend": {"Type": "vxlan", "MTU": 1400}}
    env = _env(_by_kind(docs, "DaemonSet"), "kube-flannel")
    assert env["FLANNELD_IFACE"] == {
        "name": "FLANNELD_IFACE",
        "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}},
    }
    assert env["EVENT_QUEUE_DEPTH"]["value"] == "5000"
    assert _by_kind(docs, "Namespace") == _by_kind(_docs(FLANNEL), "Namespace")


def test_flannel_without_mtu_keeps_the_backend() -> None:
    docs = _docs(manifests.cni_flannel_manifest(FLANNEL, "10.244.0.0/16"))
    assert json.loads(_by_kind(docs, "ConfigMap")["data"]["net-conf.json"])["Backend"] == {"Type": "vxlan"}


def test_flannel_twice_gives_the_same_manifest() -> None:
    once = manifests.cni_flannel_manifest(FLANNEL, "10.244.0.0/16", 1450)
    assert manifests.cni_flannel_manifest(once, "10.244.0.0/16", 1450) == once


@pytest.mark.parametrize("kind", ["ConfigMap", "DaemonSet"])
def test_flannel_refuses_a_manifest_without_its_objects(kind: str) -> None:
    docs = [doc for doc in _docs(FLANNEL) if doc["kind"] != kind]
    with pytest.raises(ValueError, match="kube-flannel"):
        manifests.cni_flannel_manifest(yaml.safe_dump_all(docs), "10.244.0.0/16")


# --- the lab's kubeconfig -------------------------------------------------------------------------------


def test_kubeconfig_server_is_the_endpoint_and_the_rest_is_kept() -> None:
    admin = yaml.safe_load((FIXTURES / "admin.conf").read_text())
    admin["clusters"].append({"name": "second", "cluster": {"server": "https://10.0.2.15:6443"}})
    result = yaml.safe_load(kubeconfig.control_plane_kubeconfig(yaml.safe_dump(admin), "10.77.116.10:8443"))
    assert [c["cluster"]["server"] for c in result["clusters"]] == ["https://10.77.116.10:8443"] * 2
    assert result["users"] == admin["users"]
    assert result["clusters"][0]["cluster"]["certificate-authority-data"] == "RkFLRS1DQQ=="


@pytest.mark.parametrize("text", ["", "kind: Config\nclusters: []\n", "- a list\n"])
def test_kubeconfig_refuses_what_is_not_a_kubeconfig(text: str) -> None:
    with pytest.raises(ValueError, match="no clusters"):
        kubeconfig.control_plane_kubeconfig(text, "10.77.116.10:6443")
