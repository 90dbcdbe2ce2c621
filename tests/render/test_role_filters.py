"""The roles' filter plugins (each role's own and the shared playbooks/filter_plugins), run as plain Python on
kubeadm output, facts and manifests."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest
import yaml

PLAYBOOKS = Path(__file__).resolve().parents[2] / "playbooks"
ROLES = PLAYBOOKS / "roles"
FIXTURES = Path(__file__).parent / "fixtures"
TOKEN = "k3lab0.0123456789abcdef"
CA_HASH = "sha256:" + "0f" * 32
KEY = "9a" * 32


def _plugin(role: str | None, name: str) -> ModuleType:
    """A role's filter plugin, or with role None one of playbooks/filter_plugins (shared by every role)."""
    path = (PLAYBOOKS if role is None else ROLES / role) / "filter_plugins" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"kubelab_test_{name}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


secrets = _plugin("kubeadm", "kubeadm_secrets")
manifests = _plugin("cni", "cni_manifests")
kubeconfig = _plugin("control_plane", "control_plane_kubeconfig")
interface = _plugin(None, "interface_of")
redact = _plugin("control_plane", "control_plane_redact")


def test_every_filter_is_registered_under_its_name() -> None:
    assert set(secrets.FilterModule().filters()) == {"kubeadm_join_secrets", "kubeadm_certificate_key"}
    assert set(manifests.FilterModule().filters()) == {
        "cni_calico_manifest",
        "cni_flannel_manifest",
        "cni_weave_manifest",
    }
    assert set(kubeconfig.FilterModule().filters()) == {"control_plane_kubeconfig"}
    assert set(interface.FilterModule().filters()) == {"interface_of"}
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
    assert interface.interface_of(FACTS, address) == expected


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
WEAVE = (FIXTURES / "weave-daemonset-k8s-1.11.yaml").read_text()


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


# --- Weave Net ------------------------------------------------------------------------------------------


def _pod_spec(docs: list[dict]) -> dict:
    return _by_kind(docs, "DaemonSet")["spec"]["template"]["spec"]


@pytest.mark.parametrize("pod_cidr", ["10.244.0.0/16", "10.200.0.0/16", "172.20.0.0/14"])
def test_weave_allocation_range_follows_the_pod_cidr(pod_cidr: str) -> None:
    docs = _docs(manifests.cni_weave_manifest(WEAVE, pod_cidr))
    env = _env(_by_kind(docs, "DaemonSet"), "weave")
    assert env["IPALLOC_RANGE"] == {"name": "IPALLOC_RANGE", "value": pod_cidr}
    assert "WEAVE_MTU" not in env  # no --mtu: Weave's own default
    assert env["CHECKPOINT_DISABLE"]["value"] == "1"
    assert env["HOSTNAME"]["valueFrom"] == {"fieldRef": {"apiVersion": "v1", "fieldPath": "spec.nodeName"}}
    assert env["INIT_CONTAINER"]["value"] == "true"
    assert "IPALLOC_RANGE" not in _env(_by_kind(docs, "DaemonSet"), "weave-npc")


def test_weave_release_list_becomes_one_document_per_object() -> None:
    docs = _docs(manifests.cni_weave_manifest(WEAVE, "10.244.0.0/16"))
    assert [doc["kind"] for doc in docs] == ["ServiceAccount", "DaemonSet"]
    assert _by_kind(docs, "ServiceAccount") == _by_kind(yaml.safe_load(WEAVE)["items"], "ServiceAccount")


@pytest.mark.parametrize(("mtu", "expected"), [(1500, "1412"), (1450, "1360"), (1400, "1312"), (9000, "8912")])
def test_weave_mtu_leaves_room_for_its_overhead_in_fours(mtu: int, expected: str) -> None:
    env = _env(_by_kind(_docs(manifests.cni_weave_manifest(WEAVE, "10.244.0.0/16", mtu)), "DaemonSet"), "weave")
    assert env["WEAVE_MTU"]["value"] == expected
    assert int(expected) % 4 == 0 and mtu - int(expected) >= manifests.WEAVE_OVERHEAD


def test_weave_images_are_used_when_present() -> None:
    pod = _pod_spec(_docs(manifests.cni_weave_manifest(WEAVE, "10.244.0.0/16")))
    policies = {c["name"]: c.get("imagePullPolicy") for c in pod["initContainers"] + pod["containers"]}
    assert policies == {"weave-init": "IfNotPresent", "weave": "IfNotPresent", "weave-npc": None}
    assert {c["image"] for c in pod["containers"]} == {"rajchaudhuri/weave-kube:2.8.8", "rajchaudhuri/weave-npc:2.8.8"}


def test_weave_twice_gives_the_same_manifest() -> None:
    once = manifests.cni_weave_manifest(WEAVE, "10.244.0.0/16", 1450)
    assert manifests.cni_weave_manifest(once, "10.244.0.0/16", 1450) == once


def test_weave_multi_document_manifest_is_adapted_too() -> None:
    items = yaml.safe_load(WEAVE)["items"]
    docs = _docs(manifests.cni_weave_manifest(yaml.safe_dump_all(items), "10.200.0.0/16"))
    assert _env(_by_kind(docs, "DaemonSet"), "weave")["IPALLOC_RANGE"]["value"] == "10.200.0.0/16"


def test_weave_refuses_a_manifest_without_its_daemonset() -> None:
    listing = yaml.safe_load(WEAVE)
    listing["items"] = [item for item in listing["items"] if item["kind"] != "DaemonSet"]
    with pytest.raises(ValueError, match="Weave Net manifest has no DaemonSet 'weave-net'"):
        manifests.cni_weave_manifest(yaml.safe_dump(listing), "10.244.0.0/16")


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


etcd_filter = _plugin("kubeadm", "kubeadm_etcd")
# `etcdctl member list -w json` while a second master's join was cut short: its member was added (a learner,
# never started: no name, no client URLs); the first master's member is started.
MEMBER_LIST = json.dumps(
    {
        "members": [
            {
                "ID": 1311040932312137089,
                "name": "master-1",
                "peerURLs": ["https://10.77.160.21:2380"],
                "clientURLs": ["https://10.77.160.21:2379"],
            },
            {"ID": 9372538179322589801, "peerURLs": ["https://10.77.160.22:2380"], "isLearner": True},
        ]
    }
)


def test_etcd_member_of_a_cut_short_join_is_found_by_peer_url_with_its_hex_id() -> None:
    member = etcd_filter.kubeadm_etcd_member(MEMBER_LIST, "10.77.160.22")
    assert member == {"id": format(9372538179322589801, "x"), "started": False, "learner": True}
    assert etcd_filter.kubeadm_etcd_member(MEMBER_LIST, "10.77.160.21")["started"] is True
    assert etcd_filter.kubeadm_etcd_member(MEMBER_LIST, "10.77.160.23") == {}
