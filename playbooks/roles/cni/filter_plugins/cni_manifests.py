"""Ansible filters: adapt the CNIs' release manifests (calico.yaml, kube-flannel.yml, Weave Net's) to a lab.

Each filter takes the upstream text and returns the lab's version; it fails when the text does not have the
objects it must change, so a changed upstream layout stops the phase instead of applying upstream defaults.
"""

from __future__ import annotations

import json
from typing import Any

# Encapsulation overhead Calico's pod MTU leaves for (bytes): IP-in-IP 20, VXLAN 50.
CALICO_OVERHEAD = {"ipip": 20, "vxlan": 50}
CALICO_ENCAP_ENV = {"ipip": "CALICO_IPV4POOL_IPIP", "vxlan": "CALICO_IPV4POOL_VXLAN"}
CALICO_ENABLED = ("Always", "CrossSubnet")


def _load(text: str) -> list[dict[str, Any]]:
    import yaml

    return [doc for doc in yaml.safe_load_all(text) if doc]


def _dump(docs: list[dict[str, Any]]) -> str:
    import yaml

    return yaml.safe_dump_all(docs, sort_keys=False)


def _find(docs: list[dict[str, Any]], kind: str, name: str, what: str) -> dict[str, Any]:
    for doc in docs:
        if doc.get("kind") == kind and doc.get("metadata", {}).get("name") == name:
            return doc
    raise ValueError(f"the {what} manifest has no {kind} '{name}' to adapt: is it the release's {what} manifest?")


def _container(daemonset: dict[str, Any], name: str) -> dict[str, Any]:
    for container in daemonset["spec"]["template"]["spec"]["containers"]:
        if container.get("name") == name:
            return container
    raise ValueError(f"DaemonSet '{daemonset['metadata']['name']}' has no container '{name}'")


def _set_env(container: dict[str, Any], name: str, entry: dict[str, Any]) -> None:
    """Replace the variable `name` (or append it), keeping the order of the others."""
    env = container["env"] = container.get("env") or []  # a manifest may say `env: null`
    for index, item in enumerate(env):
        if item.get("name") == name:
            env[index] = {"name": name, **entry}
            return
    env.append({"name": name, **entry})


def _env_value(container: dict[str, Any], name: str) -> str | None:
    for item in container.get("env", []):
        if item.get("name") == name:
            return item.get("value")
    return None


def calico_encapsulation(container: dict[str, Any]) -> str | None:
    """'ipip' or 'vxlan': the overlay calico-node's default IP pool uses; None for none."""
    for encap, variable in CALICO_ENCAP_ENV.items():
        if _env_value(container, variable) in CALICO_ENABLED:
            return encap
    return None


def cni_calico_manifest(text: str, pod_cidr: str, node_subnet: str, mtu: int | None = None) -> str:
    """calico.yaml with the lab's pod CIDR as IP pool, node addresses from the node subnet, and the pod MTU.

    `mtu` is the node network's MTU; the pod (veth) MTU is that minus the pool's encapsulation overhead.
    """
    # Plain str: Ansible passes its own str subclasses, which yaml.safe_dump refuses.
    pod_cidr, node_subnet = str(pod_cidr), str(node_subnet)
    docs = _load(text)
    node = _container(_find(docs, "DaemonSet", "calico-node", "Calico"), "calico-node")
    _set_env(node, "CALICO_IPV4POOL_CIDR", {"value": pod_cidr})
    # Never the NAT interface: the address calico-node picks must be in the private node subnet.
    _set_env(node, "IP_AUTODETECTION_METHOD", {"value": f"cidr={node_subnet}"})
    if mtu:
        config = _find(docs, "ConfigMap", "calico-config", "Calico")
        encap = calico_encapsulation(node)
        config["data"]["veth_mtu"] = str(int(mtu) - CALICO_OVERHEAD.get(encap or "", 0))
    return _dump(docs)


FLANNEL_CONTAINER = "kube-flannel"


def cni_flannel_manifest(text: str, pod_cidr: str, mtu: int | None = None) -> str:
    """kube-flannel.yml with the lab's pod CIDR, the node network's MTU, and flanneld bound to the node's IP.

    flanneld reads each flag from FLANNELD_<FLAG>; its --iface takes an address too, and status.hostIP is the
    node's InternalIP (the kubelet's node-ip, the private address), so no interface name is needed.
    """
    pod_cidr = str(pod_cidr)
    docs = _load(text)
    config = next(
        (doc for doc in docs if doc.get("kind") == "ConfigMap" and "net-conf.json" in doc.get("data", {})), None
    )
    if config is None:
        raise ValueError("the Flannel manifest has no ConfigMap with net-conf.json: is it kube-flannel.yml?")
    net_conf = json.loads(config["data"]["net-conf.json"])
    net_conf["Network"] = pod_cidr
    if mtu:
        # The vxlan backend's MTU is the underlying network's; flannel.1 gets it minus 50.
        net_conf.setdefault("Backend", {"Type": "vxlan"})["MTU"] = int(mtu)
    config["data"]["net-conf.json"] = json.dumps(net_conf, indent=2) + "\n"
    daemonset = next((doc for doc in docs if doc.get("kind") == "DaemonSet"), None)
    if daemonset is None:
        raise ValueError("the Flannel manifest has no DaemonSet: is it kube-flannel.yml?")
    container = _container(daemonset, FLANNEL_CONTAINER)
    _set_env(container, "FLANNELD_IFACE", {"valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}})
    return _dump(docs)


WEAVE_CONTAINER = "weave"
# Weave Net's docs: the underlying network must carry WEAVE_MTU plus 84-87 bytes of overhead, and the MTU should
# be a multiple of four.
WEAVE_OVERHEAD = 87


def weave_mtu(node_mtu: int) -> int:
    """The WEAVE_MTU that fits a node network of `node_mtu` bytes."""
    return (int(node_mtu) - WEAVE_OVERHEAD) // 4 * 4


def _flatten(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The objects of the manifest: the items of a `kind: List` document (Weave's layout) or the documents."""
    objects: list[dict[str, Any]] = []
    for doc in docs:
        if doc.get("kind") == "List":
            objects += doc.get("items") or []
        else:
            objects.append(doc)
    return objects


def cni_weave_manifest(text: str, pod_cidr: str, mtu: int | None = None) -> str:
    """Weave Net's release manifest with the lab's pod CIDR as IPALLOC_RANGE and, given the node network's MTU,
    a WEAVE_MTU that leaves room for Weave's overhead; one document per object (the release has one List).

    Weave allocates pod addresses from IPALLOC_RANGE itself (default 10.32.0.0/12), not from the nodes'
    podCIDRs, so it must be kubeadm's podSubnet for kube-proxy's cluster CIDR to be right. Images are pinned
    by tag: IfNotPresent lets an offline lab use the imported ones. No version check against Weaveworks'
    checkpoint service (the company has wound down).
    """
    pod_cidr = str(pod_cidr)
    docs = _flatten(_load(text))
    daemonset = _find(docs, "DaemonSet", "weave-net", "Weave Net")
    pod = daemonset["spec"]["template"]["spec"]
    weave = _container(daemonset, WEAVE_CONTAINER)
    _set_env(weave, "IPALLOC_RANGE", {"value": pod_cidr})
    if mtu:
        _set_env(weave, "WEAVE_MTU", {"value": str(weave_mtu(int(mtu)))})
    _set_env(weave, "CHECKPOINT_DISABLE", {"value": "1"})
    for container in pod.get("initContainers", []) + pod["containers"]:
        if container.get("imagePullPolicy") == "Always":
            container["imagePullPolicy"] = "IfNotPresent"
    return _dump(docs)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "cni_calico_manifest": cni_calico_manifest,
            "cni_flannel_manifest": cni_flannel_manifest,
            "cni_weave_manifest": cni_weave_manifest,
        }
