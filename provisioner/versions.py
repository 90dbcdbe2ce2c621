"""Every version kubelab knows about, in one place.

Patch releases move monthly: a minor (``1.36``) is resolved to its newest patch by the package
manager on the nodes; a patch (``1.36.4``) is pinned exactly.
"""

from __future__ import annotations

import re

# Kubernetes minors that kubelab provisions and tests its configs for (newest last).
SUPPORTED_MINORS: tuple[str, ...] = ("1.35", "1.36", "1.37")
# 1.36 is the newest minor whose containerd compatibility is documented (2.2.0+, 2.3.0+).
DEFAULT_KUBERNETES = "1.36"
# kubeadm's v1beta4 config API arrived in 1.31; v1beta3 was removed in 1.37.
KUBEADM_V1BETA4_SINCE = (1, 31)
KUBEADM_V1BETA3_REMOVED = (1, 37)
# From 1.29 admin.conf has no rights during `kubeadm init`: kube-vip needs super-admin.conf.
SUPER_ADMIN_CONF_SINCE = (1, 29)

# containerd: 2.3 is the LTS line. Config version 3 needs 2.0+, 1.x reads version 2.
DEFAULT_CONTAINERD = "2.3.4"
CONTAINERD_SOURCES: tuple[str, ...] = ("upstream", "distro")
# Oldest containerd the kubelet of each minor supports (Kubernetes containerd matrix).
CONTAINERD_MINIMUM: dict[str, str] = {"1.35": "1.7.28", "1.36": "2.2.0", "1.37": "2.2.0"}

CNI_VERSIONS: dict[str, str] = {
    "calico": "v3.33.0",
    "flannel": "v0.28.10",
    "cilium": "1.20.2",
    # Weave Net: Weaveworks' repository is archived (last release v2.8.1, January 2021); the community fork
    # rajch/weave goes on publishing releases and manifests for current Kubernetes. v2.8.8 is the newest fork
    # release its own manifest service (rajch/weave-endpoint) names in the sources read (README "Pod networks").
    "weave": "v2.8.8",
}
CNIS: tuple[str, ...] = ("calico", "flannel", "cilium", "weave", "none")
# Add-ons (`--addons`, the addons phase after cni): name -> version of what kubelab installs.
# metrics-server v0.8.0: the newest release the Go module proxy approves (v0.8.1 and v0.9.x are listed but not
# approved releases), so that `kubelab artifacts build` can make its image. lb-services is MetalLB in L2 mode:
# v0.15.2, a release the proxy serves (go.universe.tf/metallb), with its native manifest in the module. ingress is
# Traefik v3.6.12 (github.com/traefik/traefik/v3, served): maintained, one Go program (README "Add-ons").
ADDON_VERSIONS: dict[str, str] = {"metrics-server": "v0.8.0", "lb-services": "v0.15.2", "ingress": "v3.6.12"}
# Add-ons named by their job, not their project.
ADDON_PROJECTS: dict[str, str] = {"lb-services": "MetalLB", "ingress": "Traefik"}
# Add-ons a lab user asks for that kubelab cannot install yet, each with the reason (README "Add-ons").
ADDONS_NOT_AVAILABLE: dict[str, str] = {
    "dashboard": (
        "neither web UI can be built here: the Go module proxy refuses Headlamp's backend "
        "(github.com/kubernetes-sigs/headlamp/backend) and the Kubernetes Dashboard's modules (k8s.io/dashboard/api, "
        "/auth, /web), every version"
    ),
}
ADDONS: tuple[str, ...] = (*ADDON_VERSIONS, *ADDONS_NOT_AVAILABLE)
# kube-vip v1.0.0: the newest release the Go module proxy serves (v1.2.x is refused), so that
# `kubelab artifacts build` can make the image a lab runs.
KUBE_VIP_VERSION = "v1.0.0"

_VERSION_RE = re.compile(r"^v?(\d+)\.(\d+)(?:\.(\d+))?$")


def parse_kubernetes_version(text: str) -> tuple[int, int, int | None]:
    """Split ``1.36`` or ``1.36.4`` (an optional leading ``v`` is accepted) into numbers."""
    match = _VERSION_RE.match(text.strip())
    if not match:
        raise ValueError(f"'{text}' is not a Kubernetes version: use a minor like 1.36 or a patch like 1.36.4")
    major, minor, patch = match.groups()
    return int(major), int(minor), None if patch is None else int(patch)


def minor_of(text: str) -> str:
    major, minor, _ = parse_kubernetes_version(text)
    return f"{major}.{minor}"


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def kubeadm_api_version(kubernetes_version: str) -> str:
    """The kubeadm config API to render: v1beta4 from 1.31 on, v1beta3 before."""
    major, minor, _ = parse_kubernetes_version(kubernetes_version)
    return "kubeadm.k8s.io/v1beta4" if (major, minor) >= KUBEADM_V1BETA4_SINCE else "kubeadm.k8s.io/v1beta3"


# Offline labs (artifacts.py). kubeadm's own images per minor, as `kubeadm config images list` prints them:
# the pause, etcd and CoreDNS tags come from cmd/kubeadm/app/constants (PauseVersion, SupportedEtcdVersion,
# CoreDNSVersion); the same for every patch seen (1.35.0-1.35.9, 1.36.0-1.36.5, 1.37.0-1.37.1).
KUBEADM_IMAGE_TAGS: dict[str, dict[str, str]] = {
    "1.35": {"pause": "3.10.1", "etcd": "3.6.6-0", "coredns": "v1.13.1"},
    "1.36": {"pause": "3.10.2", "etcd": "3.6.8-0", "coredns": "v1.14.2"},
    "1.37": {"pause": "3.10.2", "etcd": "3.7.0-0", "coredns": "v1.14.6"},
}
# Newest patch known per minor: an offline lab needs exact file names, so a bare minor is resolved to this
# (`kubelab artifacts fetch` asks dl.k8s.io/release/stable-1.NN.txt instead).
LATEST_PATCH: dict[str, str] = {"1.35": "1.35.9", "1.36": "1.36.5", "1.37": "1.37.1"}
# The CNI reference plugins, runc and crictl: each a release the Go module proxy serves, so that
# `kubelab artifacts build` can make them (cri-tools v1.35.0 and v1.36.0 are not served; crictl v1.37 talks
# CRI v1 like every supported kubelet).
CNI_PLUGINS_VERSION = "v1.10.0"
RUNC_VERSION = "1.5.1"
CRI_TOOLS_VERSION = "v1.37.0"
