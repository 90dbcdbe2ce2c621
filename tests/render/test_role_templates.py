"""The Kubernetes phases' configs rendered by Ansible for the golden labs and Kubernetes 1.35-1.37, field by field.

Nothing here runs kubeadm (no Kubernetes binaries on this machine): the files are what the roles would write.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from role_templates import (
    CA_HASH,
    CERT_KEY,
    GOLDEN,
    GOLDEN_LABS,
    INTERFACE,
    JOIN_TOKEN,
    ROLES,
    Rendered,
    kubeadm_version_for,
    render,
)

from provisioner import versions
from provisioner.providers.local_vars import PROVIDER_VARS

MINORS = ("1.35", "1.36", "1.37")
OFFLINE = {"kubelab_artifacts_dir": "/srv/kubelab-artifacts", "kubelab_offline": True}
KUBEADM = "kubeadm.k8s.io/v1beta4"


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory):
    """render(case, version=None, **overrides), each combination rendered once per module."""

    @cache
    def make(case: str, version: str | None = None, overrides: str = "{}") -> Rendered:
        return render(tmp_path_factory.mktemp(case), case, version, json.loads(overrides))

    def get(case: str, version: str | None = None, **overrides: Any) -> Rendered:
        version = version or lab_vars(case)["kubelab_kubernetes_version"]
        return make(case, version, json.dumps(overrides, sort_keys=True))

    return get


def lab_vars(case: str) -> dict[str, Any]:
    return yaml.safe_load((GOLDEN / case / "inventory" / "group_vars" / "all" / "lab.yml").read_text())


def hosts(case: str) -> dict[str, dict[str, str]]:
    """group -> {host: private IP} from the golden inventory."""
    children = yaml.safe_load((GOLDEN / case / "inventory" / "hosts.yml").read_text())["all"]["children"]
    return {
        group: {name: values["kubelab_ip"] for name, values in (children[group].get("hosts") or {}).items()}
        for group in ("lb", "masters", "workers")
    }


def kinds(docs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(doc["apiVersion"], doc["kind"]) for doc in docs]


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (doc,) = [doc for doc in docs if doc["kind"] == kind]
    return doc


# Every golden lab at its own version, and the HA labs at every supported minor (each render takes seconds).
CASES = sorted(
    {(case, lab_vars(case)["kubelab_kubernetes_version"]) for case in GOLDEN_LABS}
    | {(case, minor) for case in ("ha-haproxy", "kube-vip") for minor in MINORS}
    | {("five-masters", "1.35")}
)


# --- kubeadm init ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("case", "version"), CASES)
def test_init_config(rendered, case: str, version: str) -> None:
    lab, nodes = lab_vars(case), hosts(case)
    result = rendered(case, version)
    init = lab["kubelab_init_master"]
    docs = result.yaml_docs(init, "kubeadm-init.yaml")
    assert kinds(docs) == [
        (KUBEADM, "InitConfiguration"),
        (KUBEADM, "ClusterConfiguration"),
        ("kubelet.config.k8s.io/v1beta1", "KubeletConfiguration"),
        ("kubeproxy.config.k8s.io/v1alpha1", "KubeProxyConfiguration"),
    ]
    init_cfg, cluster, kubelet, proxy = docs
    ip = nodes["masters"][init]
    assert init_cfg["localAPIEndpoint"] == {"advertiseAddress": ip, "bindPort": lab["kubelab_apiserver_port"]}
    registration = init_cfg["nodeRegistration"]
    assert registration["name"] == init
    assert registration["kubeletExtraArgs"] == [{"name": "node-ip", "value": ip}]
    assert registration["criSocket"] == "unix:///run/containerd/containerd.sock"
    assert "ignorePreflightErrors" not in registration
    # Masters carry no taint only when there is no worker to run pods.
    assert ("taints" in registration) == (not nodes["workers"])
    if not nodes["workers"]:
        assert registration["taints"] == []

    assert cluster["kubernetesVersion"] == kubeadm_version_for(version)
    assert cluster["kubernetesVersion"].startswith(f"v{versions.minor_of(version)}.")
    assert cluster["controlPlaneEndpoint"] == lab["kubelab_control_plane_endpoint"]
    if lab["kubelab_lb"] != "none":
        assert cluster["controlPlaneEndpoint"] == f"{lab['kubelab_vip']}:{lab['kubelab_api_port']}"
    assert cluster["networking"] == {"podSubnet": lab["kubelab_pod_cidr"], "serviceSubnet": lab["kubelab_service_cidr"]}
    sans = cluster["apiServer"]["certSANs"]
    assert len(sans) == len(set(sans))
    expected = {name for group in ("lb", "masters") for name in nodes[group]}
    expected |= {ip for group in ("lb", "masters") for ip in nodes[group].values()}
    expected.add(lab["kubelab_control_plane_endpoint"].rsplit(":", 1)[0])
    if lab["kubelab_vip"]:
        expected.add(lab["kubelab_vip"])
    assert set(sans) == expected
    assert not set(sans) & set(nodes["workers"])

    assert kubelet["cgroupDriver"] == "systemd"
    assert kubelet["failCgroupV1"] is True
    assert "imageGCHighThresholdPercent" not in kubelet and "evictionHard" not in kubelet  # the kubelet's defaults
    assert proxy == {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clusterCIDR": lab["kubelab_pod_cidr"],
    }
    assert JOIN_TOKEN not in result.text(init, "kubeadm-init.yaml")


# --- kubeadm join ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("case", "version"), CASES)
def test_join_configs(rendered, case: str, version: str) -> None:
    lab, nodes = lab_vars(case), hosts(case)
    result = rendered(case, version)
    init = lab["kubelab_init_master"]
    joining = {**nodes["masters"], **nodes["workers"]}
    joining.pop(init)
    assert not result.exists(init, "kubeadm-join.yaml")
    for lb in nodes["lb"]:
        assert not result.exists(lb, "kubeadm-join.yaml") and not result.exists(lb, "kubeadm-init.yaml")
    for host, ip in joining.items():
        (join,) = result.yaml_docs(host, "kubeadm-join.yaml")
        assert (join["apiVersion"], join["kind"]) == (KUBEADM, "JoinConfiguration")
        assert join["discovery"] == {
            "bootstrapToken": {
                "apiServerEndpoint": lab["kubelab_control_plane_endpoint"],
                "token": JOIN_TOKEN,
                "caCertHashes": [CA_HASH],
            }
        }
        assert join["nodeRegistration"]["name"] == host
        assert join["nodeRegistration"]["kubeletExtraArgs"] == [{"name": "node-ip", "value": ip}]
        if host in nodes["masters"]:
            assert join["controlPlane"] == {
                "localAPIEndpoint": {"advertiseAddress": ip, "bindPort": lab["kubelab_apiserver_port"]},
                "certificateKey": CERT_KEY,
            }
            assert ("taints" in join["nodeRegistration"]) == (not nodes["workers"])
        else:
            assert "controlPlane" not in join
            assert "taints" not in join["nodeRegistration"]


# --- provider settings, versions outside the default, extra args ----------------------------------------


def test_local_provider_settings_reach_kubelet_and_kube_proxy(rendered) -> None:
    overrides = {key: value for key, value in PROVIDER_VARS.items() if key.startswith("kubeadm_")}
    docs = rendered("ha-haproxy", "1.36", **overrides, **OFFLINE).yaml_docs("master-1", "kubeadm-init.yaml")
    kubelet = by_kind(docs, "KubeletConfiguration")
    assert kubelet["failCgroupV1"] is False
    assert kubelet["imageGCHighThresholdPercent"] == 100  # the nodes' images come from the folder once
    assert kubelet["evictionHard"] == PROVIDER_VARS["kubeadm_kubelet_eviction_hard"]
    assert by_kind(docs, "KubeProxyConfiguration")["conntrack"] == {"maxPerCore": 0}
    # the one preflight check the local provider skips, with its reason in providers/local.py
    assert by_kind(docs, "InitConfiguration")["nodeRegistration"]["ignorePreflightErrors"] == ["SystemVerification"]


@pytest.mark.parametrize("serving", [True, False])
def test_kubelets_ask_the_cluster_ca_for_serving_certificates_only_for_metrics_server(rendered, serving) -> None:
    result = rendered("single", "1.36", kubelab_kubelet_serving_certificates=serving)
    kubelet = by_kind(result.yaml_docs("master-1", "kubeadm-init.yaml"), "KubeletConfiguration")
    assert kubelet.get("serverTLSBootstrap", False) is serving


def test_extra_args_are_name_value_lists_in_v1beta4(rendered) -> None:
    result = rendered(
        "ha-haproxy",
        "1.37",
        kubeadm_apiserver_extra_args={"audit-log-maxage": 7, "enable-admission-plugins": "NodeRestriction"},
        kubeadm_kubelet_extra_args={"max-pods": 150},
        kubeadm_ignore_preflight_errors=["SystemVerification"],
    )
    docs = result.yaml_docs("master-1", "kubeadm-init.yaml")
    assert by_kind(docs, "ClusterConfiguration")["apiServer"]["extraArgs"] == [
        {"name": "audit-log-maxage", "value": "7"},
        {"name": "enable-admission-plugins", "value": "NodeRestriction"},
    ]
    registration = by_kind(docs, "InitConfiguration")["nodeRegistration"]
    assert registration["kubeletExtraArgs"] == [
        {"name": "node-ip", "value": "192.168.56.21"},
        {"name": "max-pods", "value": "150"},
    ]
    assert registration["ignorePreflightErrors"] == ["SystemVerification"]
    (join,) = result.yaml_docs("worker-1", "kubeadm-join.yaml")
    assert join["nodeRegistration"]["ignorePreflightErrors"] == ["SystemVerification"]


def test_old_minor_renders_v1beta3_maps(rendered) -> None:
    result = rendered("ha-haproxy", "1.30", kubeadm_apiserver_extra_args={"audit-log-maxage": 7})
    docs = result.yaml_docs("master-1", "kubeadm-init.yaml")
    assert [doc["apiVersion"] for doc in docs[:2]] == ["kubeadm.k8s.io/v1beta3"] * 2
    assert by_kind(docs, "InitConfiguration")["nodeRegistration"]["kubeletExtraArgs"] == {"node-ip": "192.168.56.21"}
    assert by_kind(docs, "ClusterConfiguration")["apiServer"]["extraArgs"] == {"audit-log-maxage": "7"}
    assert "failCgroupV1" not in by_kind(docs, "KubeletConfiguration")  # the field arrived in 1.31
    (join,) = result.yaml_docs("worker-1", "kubeadm-join.yaml")
    assert join["nodeRegistration"]["kubeletExtraArgs"] == {"node-ip": "192.168.56.31"}


# --- packages -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("case", "version"), CASES)
def test_package_repository_per_minor(rendered, case: str, version: str) -> None:
    minor = versions.minor_of(version)
    values = rendered(case, version).vars(lab_vars(case)["kubelab_init_master"])
    assert values["kube_packages_repo_url"] == f"https://pkgs.k8s.io/core:/stable:/v{minor}/deb/"
    assert values["kube_packages_minor"] == minor
    assert Path(values["kube_packages_keyring"]).parent == Path("/etc/apt/keyrings")
    assert values["kube_packages_offline"] is False


@pytest.mark.parametrize(
    ("case", "version", "pin"),
    [("single", "1.36.4", "=1.36.4-*"), ("five-masters", "1.37.1", "=1.37.1-*"), ("ha-haproxy", "1.35", "")],
)
def test_package_pin_follows_a_patch_version(rendered, case: str, version: str, pin: str) -> None:
    result = rendered(case, version)
    values = result.vars("master-1")
    # A minor installs that minor's newest patch (the repository holds one minor); a patch is pinned.
    assert values["kube_packages_pin"] == pin
    assert values["kube_packages_repo_url"].endswith(f"/v{versions.minor_of(version)}/deb/")
    cluster = by_kind(result.yaml_docs("master-1", "kubeadm-init.yaml"), "ClusterConfiguration")
    assert cluster["kubernetesVersion"] == kubeadm_version_for(version)


def test_artifacts_folder_makes_the_phases_offline(rendered) -> None:
    overrides = {key: value for key, value in PROVIDER_VARS.items() if key.startswith("kubeadm_")}
    values = rendered("ha-haproxy", "1.36", **overrides, **OFFLINE).vars("master-1")
    assert values["kube_packages_offline"] is True and values["cni_offline"] is True


# --- kube-vip -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("minor", MINORS)
def test_kube_vip_static_pod(rendered, minor: str) -> None:  # the super-admin.conf choice: test_kube_vip_role.py
    lab, nodes = lab_vars("kube-vip"), hosts("kube-vip")
    result = rendered("kube-vip", minor)
    for master in nodes["masters"]:
        for conf in ("super-admin", "admin"):
            (pod,) = result.yaml_docs(master, f"kube-vip-{conf}.yaml")
            assert (pod["apiVersion"], pod["kind"]) == ("v1", "Pod")
            assert pod["metadata"] == {"name": "kube-vip", "namespace": "kube-system"}
            assert pod["spec"]["hostNetwork"] is True
            (container,) = pod["spec"]["containers"]
            assert container["image"] == f"ghcr.io/kube-vip/kube-vip:{lab['kubelab_kube_vip_version']}"
            env = {entry["name"]: entry.get("value") for entry in container["env"]}
            assert env["address"] == lab["kubelab_vip"]
            assert env["port"] == str(lab["kubelab_apiserver_port"]) == "8443"
            assert env["vip_interface"] == INTERFACE
            assert (env["vip_arp"], env["cp_enable"], env["vip_leaderelection"]) == ("true", "true", "true")
            assert env["svc_enable"] == "false"
            assert all(isinstance(value, str) for value in env.values() if value is not None)
            (mount,) = container["volumeMounts"]
            assert mount["mountPath"] == "/etc/kubernetes/admin.conf"
            (volume,) = pod["spec"]["volumes"]
            assert volume["name"] == mount["name"]
            assert volume["hostPath"] == {"path": f"/etc/kubernetes/{conf}.conf", "type": "File"}
            assert set(container["securityContext"]["capabilities"]["add"]) == {"NET_ADMIN", "NET_RAW"}
    assert result.vars("master-1")["kube_vip_port"] == 8443


# --- CNI ------------------------------------------------------------------------------------------------


def env_of(doc: dict[str, Any], container: str) -> dict[str, Any]:
    (found,) = [c for c in doc["spec"]["template"]["spec"]["containers"] if c["name"] == container]
    return {entry["name"]: entry.get("value", entry.get("valueFrom")) for entry in found["env"]}


@pytest.mark.parametrize("case", GOLDEN_LABS)
def test_calico_manifest(rendered, case: str) -> None:
    lab = lab_vars(case)
    docs = rendered(case).yaml_docs(lab["kubelab_init_master"], "calico-kubelab.yaml")
    env = env_of(by_kind(docs, "DaemonSet"), "calico-node")
    assert env["CALICO_IPV4POOL_CIDR"] == lab["kubelab_pod_cidr"]
    assert env["IP_AUTODETECTION_METHOD"] == f"cidr={lab['kubelab_node_subnet']}"
    mtu = lab["kubelab_mtu"]
    # The fixture pool uses IP-in-IP: 20 bytes less than the node network.
    assert by_kind(docs, "ConfigMap")["data"]["veth_mtu"] == (str(mtu - 20) if mtu else "0")


@pytest.mark.parametrize("case", GOLDEN_LABS)
def test_flannel_manifest(rendered, case: str) -> None:
    lab = lab_vars(case)
    docs = rendered(case).yaml_docs(lab["kubelab_init_master"], "kube-flannel-kubelab.yml")
    net_conf = json.loads(by_kind(docs, "ConfigMap")["data"]["net-conf.json"])
    assert net_conf["Network"] == lab["kubelab_pod_cidr"]
    assert net_conf["Backend"].get("MTU") == lab["kubelab_mtu"]
    env = env_of(by_kind(docs, "DaemonSet"), "kube-flannel")
    assert env["FLANNELD_IFACE"] == {"fieldRef": {"fieldPath": "status.hostIP"}}


@pytest.mark.parametrize("case", GOLDEN_LABS)
def test_weave_manifest(rendered, case: str) -> None:
    lab = lab_vars(case)
    docs = rendered(case).yaml_docs(lab["kubelab_init_master"], "weave-kubelab.yaml")
    env = env_of(by_kind(docs, "DaemonSet"), "weave")
    assert env["IPALLOC_RANGE"] == lab["kubelab_pod_cidr"]
    mtu = lab["kubelab_mtu"]
    assert env.get("WEAVE_MTU") == (str((mtu - 87) // 4 * 4) if mtu else None)


def test_weave_pod_range_follows_a_changed_pod_cidr(rendered) -> None:
    lab = lab_vars("single")
    result = rendered("single", kubelab_pod_cidr="10.200.0.0/16", kubelab_mtu=1400)
    env = env_of(by_kind(result.yaml_docs(lab["kubelab_init_master"], "weave-kubelab.yaml"), "DaemonSet"), "weave")
    assert (env["IPALLOC_RANGE"], env["WEAVE_MTU"]) == ("10.200.0.0/16", "1312")


@pytest.mark.parametrize("case", GOLDEN_LABS)
def test_cilium_values(rendered, case: str) -> None:
    lab, nodes = lab_vars(case), hosts(case)
    values = yaml.safe_load(rendered(case).text(lab["kubelab_init_master"], "cilium-values.yaml"))
    host, port = lab["kubelab_control_plane_endpoint"].rsplit(":", 1)
    assert values["ipam"] == {"mode": "kubernetes"}
    assert (values["k8sServiceHost"], values["k8sServicePort"]) == (host, int(port))
    assert values["kubeProxyReplacement"] is False
    assert values["operator"]["replicas"] == min(len(nodes["masters"]), 2)
    assert values.get("MTU") == lab["kubelab_mtu"]


@pytest.mark.parametrize("case", GOLDEN_LABS)
def test_cni_release_urls_follow_the_pinned_version(rendered, case: str) -> None:
    lab = lab_vars(case)
    values = rendered(case).vars(lab["kubelab_init_master"])
    assert values["cni_plugin"] == lab["kubelab_cni"]
    version = lab["kubelab_cni_version"]
    if lab["kubelab_cni"] == "calico":
        assert values["cni_calico_url"].endswith(f"/calico/{version}/manifests/calico.yaml")
    elif lab["kubelab_cni"] == "flannel":
        assert values["cni_flannel_url"].endswith(f"/download/{version}/kube-flannel.yml")
    elif lab["kubelab_cni"] == "cilium":
        assert values["cni_cilium_chart_url"] == f"https://helm.cilium.io/cilium-{version}.tgz"
        assert values["cni_cilium_chart_file"] == f"cilium-{version}.tgz"


def test_weave_release_url_and_file_are_the_artifacts_ones(rendered) -> None:
    """--cni weave: the fork's release manifest at the pinned version, under the name `kubelab artifacts` uses."""
    from provisioner import artifacts

    lab = lab_vars("single")
    version = versions.CNI_VERSIONS["weave"]
    values = rendered("single", kubelab_cni="weave", kubelab_cni_version=version).vars(lab["kubelab_init_master"])
    assert values["cni_plugin"] == "weave"
    assert values["cni_weave_url"] == (
        f"https://github.com/rajch/weave/releases/download/{version}/weave-daemonset-k8s-1.11.yaml"
    )
    assert (values["cni_weave_file"], values["cni_weave_url"]) == artifacts.cni_manifest("weave")


@pytest.mark.parametrize("case", ["single", "ha-haproxy", "kube-vip"])  # flannel, calico, cilium
def test_cni_files_are_where_the_artifacts_role_puts_them(rendered, case: str) -> None:
    """Offline labs: the cni role reads the very file names and folder `kubelab artifacts` and its role use."""
    from provisioner import artifacts

    lab = lab_vars(case)
    values = rendered(case).vars(lab["kubelab_init_master"])
    role_defaults = yaml.safe_load((ROLES / "artifacts" / "defaults" / "main.yml").read_text())
    assert values["cni_manifest_dir"] == role_defaults["artifacts_manifests_dest"]
    name, url = artifacts.cni_manifest(lab["kubelab_cni"])
    key = {"calico": "calico", "flannel": "flannel", "cilium": "cilium_chart"}[lab["kubelab_cni"]]
    assert values[f"cni_{key}_file"] == name
    assert values[f"cni_{key}_url"] == url


# --- kubeconfig -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", GOLDEN_LABS)
def test_lab_kubeconfig_points_at_the_endpoint(rendered, case: str) -> None:
    lab = lab_vars(case)
    result = rendered(case)
    init = lab["kubelab_init_master"]
    config = yaml.safe_load(result.text(init, "kubeconfig"))
    assert [c["cluster"]["server"] for c in config["clusters"]] == [f"https://{lab['kubelab_control_plane_endpoint']}"]
    values = result.vars(init)
    assert values["control_plane_kubeconfig_dest"] == str(result.lab_dir / "kubeconfig")
    assert values["reset_kubeconfig"] == values["control_plane_kubeconfig_dest"]
