"""What `kubelab artifacts build` builds, as data: the Go programs of each upstream module, their version
stamps, and the images kubeadm and the CNI expect, each with the files it holds. Pure: no I/O.

Versions that Kubernetes pins (etcd, CoreDNS, pause) are never written here: they are read from
`kubeadm config images list` of the kubeadm just built (``pinned_tags``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from provisioner import gobuild, versions

ETCD_MODULES = ("go.etcd.io/etcd/server/v3", "go.etcd.io/etcd/etcdctl/v3", "go.etcd.io/etcd/etcdutl/v3")
CNI_PLUGINS_MODULE = "github.com/containernetworking/plugins"
# Flannel's own CNI plugin (github.com/flannel-io/cni-plugin) is refused by the Go module proxy; the plugin it
# was split from lives on in containernetworking/plugins up to v0.9.1 (plugins/meta/flannel), same protocol.
FLANNEL_CNI_PLUGIN = ("github.com/containernetworking/plugins", "v0.9.1", "plugins/meta/flannel")
# The reference plugins packed into cni/cni-plugins-linux-ARCH-VERSION.tgz (the release's set, minus Windows).
CNI_PLUGINS = (
    "main/bridge",
    "main/dummy",
    "main/host-device",
    "main/ipvlan",
    "main/loopback",
    "main/macvlan",
    "main/ptp",
    "main/tap",
    "main/vlan",
    "ipam/dhcp",
    "ipam/host-local",
    "ipam/static",
    "meta/bandwidth",
    "meta/firewall",
    "meta/portmap",
    "meta/sbr",
    "meta/tuning",
    "meta/vrf",
)
KUBERNETES_PROGRAMS = (
    "kubeadm",
    "kubelet",
    "kubectl",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kube-proxy",
)
AGNHOST_PACKAGE = "test/images/agnhost"  # the e2e test image's program, in the kubernetes module
CONTROL_PLANE_IMAGES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
CAP_NET_BIND_SERVICE = 10  # bit number in the capability sets (linux/capability.h)
METRICS_SERVER_MODULE = "sigs.k8s.io/metrics-server"
METALLB_MODULE = "go.universe.tf/metallb"
METALLB_MANIFEST = "config/manifests/metallb-native.yaml"  # in the module: L2 and BGP without FRR
METRICS_SERVER_REPOSITORY = "registry.k8s.io/metrics-server/metrics-server"
TRAEFIK_MODULE = "github.com/traefik/traefik/v3"
LOCAL_REGISTRY = "kubelab.local"  # images kubelab builds that have no upstream image of the same source


@dataclass(frozen=True)
class Program:
    """One ``go build`` output: ``package`` (import path of a main package) written as ``name``."""

    name: str
    package: str


@dataclass(frozen=True)
class Component:
    """Programs built together in one wrapper module that requires ``modules`` (all at ``version``)."""

    name: str
    modules: tuple[str, ...]
    version: str
    programs: tuple[Program, ...]
    cgo: bool = False
    tags: tuple[str, ...] = ()
    ldflags: tuple[str, ...] = ()  # -X stamps and linker options, without -s -w (always added)
    # Dependencies pinned to another version than the component's go.mod asks for, each with its reason
    # (recorded in artifacts.json): only where the proxy refuses the asked version.
    pinned: tuple[tuple[str, str, str], ...] = ()  # (module, version, reason)

    @property
    def source(self) -> str:
        text = ", ".join(f"{module}@{self.version}" for module in self.modules)
        for module, version, reason in self.pinned:
            text += f" (with {module}@{version}: {reason})"
        return text


def kubernetes(version: str, build_date: str) -> Component:
    """kubeadm, kubelet, kubectl and the control plane from k8s.io/kubernetes, stamped as the release build
    stamps them, static (CGO_ENABLED=0, which upstream moves the kubelet to as well)."""
    tag = "v" + version.lstrip("v")
    programs = tuple(Program(name, f"{gobuild.KUBERNETES}/cmd/{name}") for name in KUBERNETES_PROGRAMS)
    programs += (Program("agnhost", f"{gobuild.KUBERNETES}/{AGNHOST_PACKAGE}"),)
    stamps = tuple(gobuild.kubernetes_ldflags(tag, "", build_date))
    return Component("kubernetes", (gobuild.KUBERNETES,), tag, programs, tags=("selinux", "notest"), ldflags=stamps)


def etcd(tag: str) -> Component:
    """etcd, etcdctl and etcdutl at kubeadm's etcd tag (``3.6.8-0`` is etcd v3.6.8)."""
    version = etcd_module_version(tag)
    roots = ("etcd", "etcdctl", "etcdutl")
    programs = tuple(Program(name, module) for name, module in zip(roots, ETCD_MODULES, strict=True))
    return Component("etcd", ETCD_MODULES, version, programs)


def coredns(tag: str) -> Component:
    return Component(
        "coredns", ("github.com/coredns/coredns",), tag, (Program("coredns", "github.com/coredns/coredns"),)
    )


def cni_plugins(version: str = versions.CNI_PLUGINS_VERSION) -> Component:
    stamp = f"-X {CNI_PLUGINS_MODULE}/pkg/utils/buildversion.BuildVersion={version}"
    programs = tuple(Program(path.rsplit("/", 1)[1], f"{CNI_PLUGINS_MODULE}/plugins/{path}") for path in CNI_PLUGINS)
    return Component("cni-plugins", (CNI_PLUGINS_MODULE,), version, programs, ldflags=(stamp,))


def cri_tools(version: str = versions.CRI_TOOLS_VERSION) -> Component:
    module = "sigs.k8s.io/cri-tools"
    stamp = f"-X {module}/pkg/version.Version={version}"
    return Component("cri-tools", (module,), version, (Program("crictl", f"{module}/cmd/crictl"),), ldflags=(stamp,))


def containerd(version: str) -> Component:
    module = "github.com/containerd/containerd/v2"
    tag = "v" + version.lstrip("v")
    names = ("containerd", "containerd-shim-runc-v2", "ctr")
    stamps = (f"-X {module}/version.Version={tag}", f"-X {module}/version.Package={module}")
    return Component(
        "containerd",
        (module,),
        tag,
        tuple(Program(name, f"{module}/cmd/{name}") for name in names),
        tags=("no_btrfs",),  # btrfs snapshotter needs cgo and btrfs headers; kubelab uses overlayfs
        ldflags=stamps,
    )


def runc(version: str) -> Component:
    """runc with seccomp: cgo against Debian's libseccomp-dev, linked statically like the release binary."""
    tag = "v" + version.lstrip("v")
    return Component(
        "runc",
        ("github.com/opencontainers/runc",),
        tag,
        (Program("runc", "github.com/opencontainers/runc"),),
        cgo=True,
        tags=("seccomp", "netgo", "osusergo", "urfave_cli_no_docs"),
        ldflags=(f"-X main.version={tag.lstrip('v')}", "-extldflags=-static"),
    )


# flannel v0.28.10 asks for tencentcloud-sdk-go/tencentcloud/vpc v1.3.188, which the module proxy refuses (403,
# as every v1.3.x tried); v1.0.900 is served and compiles against flannel's tencentvpc backend, which a lab
# never uses (its backend is vxlan).
FLANNEL_PINNED = (
    (
        "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/vpc",
        "v1.0.900",
        "the proxy refuses v1.3.188; only flannel's unused tencentvpc backend imports it",
    ),
)


def flannel(version: str) -> Component:
    """flanneld as flannel's Makefile builds it on amd64: cgo (its udp backend's proxy is C), linked statically."""
    module = "github.com/flannel-io/flannel"
    stamp = f"-X {module}/pkg/version.Version={version}"
    return Component(
        "flannel",
        (module,),
        version,
        # install-conf: the DaemonSet's install-cni init container copies the CNI config with it
        (Program("flanneld", module), Program("install-conf", f"{module}/cmd/install_conf")),
        cgo=True,
        tags=("netgo", "osusergo"),
        ldflags=(stamp, "-extldflags=-static"),
        pinned=FLANNEL_PINNED,
    )


def flannel_cni_plugin() -> Component:
    module, version, path = FLANNEL_CNI_PLUGIN
    stamp = f"-X {module}/pkg/utils/buildversion.BuildVersion={version}"
    program = Program("flannel", f"{module}/{path}")
    return Component(
        "flannel-cni-plugin",
        (module,),
        version,
        (program,),
        tags=("netgo", "osusergo", "static_build"),
        ldflags=(stamp,),
    )


def kube_vip(version: str) -> Component:
    """kube-vip as its Makefile builds it: static (CGO_ENABLED=0), version and build stamped in main."""
    module = "github.com/kube-vip/kube-vip"
    return Component(
        "kube-vip", (module,), version, (Program("kube-vip", module),), ldflags=(f"-X=main.Version={version}",)
    )


def kube_vip_recipe(version: str) -> ImageRecipe:
    """kube-vip's image: /kube-vip on an empty base (the official one is FROM scratch)."""
    return ImageRecipe(
        f"ghcr.io/kube-vip/kube-vip:{version}", {"kube-vip": ("kube-vip", "kube-vip")}, entrypoint=("/kube-vip",)
    )


def metrics_server(version: str, build_date: str) -> Component:
    """metrics-server as its Makefile builds it: static, version and build date stamped in client-go's version
    package (the module's time as the date, so a rebuild is the same file)."""
    stamp = "k8s.io/client-go/pkg/version"
    return Component(
        "metrics-server",
        (METRICS_SERVER_MODULE,),
        version,
        (Program("metrics-server", f"{METRICS_SERVER_MODULE}/cmd/metrics-server"),),
        ldflags=(f"-X {stamp}.gitVersion={version}", f"-X {stamp}.buildDate={build_date}"),
    )


def metrics_server_recipe(version: str) -> ImageRecipe:
    """metrics-server's image: /metrics-server run as nobody, as the official one (distroless static) is."""
    return ImageRecipe(
        f"{METRICS_SERVER_REPOSITORY}:{version}",
        {"metrics-server": ("metrics-server", "metrics-server")},
        entrypoint=("/metrics-server",),
        user="65534",
    )


def metallb(version: str) -> Component:
    """MetalLB's controller and speaker as its Dockerfiles build them: static; the version is in its source."""
    programs = (Program("controller", f"{METALLB_MODULE}/controller"), Program("speaker", f"{METALLB_MODULE}/speaker"))
    return Component("metallb", (METALLB_MODULE,), version, programs)


def metallb_recipes(version: str) -> list[ImageRecipe]:
    """MetalLB's two images as its native manifest names them: /controller and /speaker on an empty base (the
    official ones are distroless static; the manifest sets the users)."""
    return [
        ImageRecipe(f"quay.io/metallb/{name}:{version}", {name: ("metallb", name)}, entrypoint=(f"/{name}",))
        for name in ("controller", "speaker")
    ]


def traefik(version: str, build_date: str) -> Component:
    """Traefik as its Makefile builds it: static, version and build date stamped in its version package (the codename
    is the source's own). Its web UI is not in the module (webui/static holds a placeholder): no dashboard."""
    stamp = f"{TRAEFIK_MODULE}/pkg/version"
    return Component(
        "traefik",
        (TRAEFIK_MODULE,),
        version,
        (Program("traefik", f"{TRAEFIK_MODULE}/cmd/traefik"),),
        ldflags=(f"-X {stamp}.Version={version.lstrip('v')}", f"-X {stamp}.BuildDate={build_date}"),
    )


def traefik_recipe(version: str) -> ImageRecipe:
    """Traefik's image: /traefik on an empty base (the official one adds Alpine with CA certificates and time
    zones, which routes to plain-HTTP Services do not use); the addons role's manifest sets the user."""
    return ImageRecipe(
        f"docker.io/library/traefik:{version}", {"traefik": ("traefik", "traefik")}, entrypoint=("/traefik",)
    )


def etcd_module_version(tag: str) -> str:
    """etcd's module version for kubeadm's image tag: ``3.6.8-0`` -> ``v3.6.8`` (the suffix is the image's
    own revision)."""
    match = re.fullmatch(r"v?(\d+\.\d+\.\d+)(?:-\d+)?", tag)
    if not match:
        raise ValueError(f"kubeadm's etcd tag {tag!r} is not X.Y.Z-N")
    return "v" + match.group(1)


@dataclass(frozen=True)
class PinnedTags:
    """The tags kubeadm pins for its own images, read from `kubeadm config images list`."""

    pause: str
    etcd: str
    coredns: str


def pinned_tags(images: Sequence[str]) -> PinnedTags:
    """pause, etcd and CoreDNS tags from the image list kubeadm prints."""
    found: dict[str, str] = {}
    for reference in images:
        repository, _, tag = reference.rpartition(":")
        for name in ("pause", "etcd", "coredns"):
            if repository.endswith("/" + name):
                found[name] = tag
    missing = sorted({"pause", "etcd", "coredns"} - set(found))
    if missing:
        raise ValueError(f"kubeadm's image list names no {', '.join(missing)} image: {', '.join(images)}")
    return PinnedTags(found["pause"], found["etcd"], found["coredns"])


@dataclass(frozen=True)
class ImageRecipe:
    """An image: ``binaries`` maps a path in the image to (component, program name); ``debs`` are Debian
    packages unpacked into it (with their dependencies); ``shell`` adds a static busybox for sh and cp."""

    reference: str
    binaries: dict[str, tuple[str, str]]
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    user: str | None = None
    workdir: str | None = None
    debs: tuple[str, ...] = ()
    iptables: bool = False  # iptables with the legacy-or-nft selector (kubelab-iptables-select)
    shell: bool = False
    caps: dict[str, int] = field(default_factory=dict)  # image path -> file capability bits
    pause_source: bool = False  # /pause, compiled from the kubernetes module's build/pause/linux/pause.c


def kubeadm_image_recipes(images: Sequence[str]) -> list[ImageRecipe]:
    """One recipe per image `kubeadm config images list` printed, laid out like the official image."""
    recipes: list[ImageRecipe] = []
    for reference in images:
        repository = reference.rpartition(":")[0]
        name = repository.rsplit("/", 1)[-1]
        if name in CONTROL_PLANE_IMAGES:
            recipes.append(ImageRecipe(reference, {f"usr/local/bin/{name}": ("kubernetes", name)}))
        elif name == "kube-proxy":
            recipes.append(
                ImageRecipe(
                    reference,
                    {"usr/local/bin/kube-proxy": ("kubernetes", "kube-proxy")},
                    debs=("iptables", "nftables", "conntrack", "ipset"),
                    iptables=True,
                    shell=True,
                )
            )
        elif name == "etcd":
            binaries = {f"usr/local/bin/{tool}": ("etcd", tool) for tool in ("etcd", "etcdctl", "etcdutl")}
            recipes.append(ImageRecipe(reference, binaries, workdir="/var/lib/etcd"))
        elif name == "coredns":
            recipes.append(
                ImageRecipe(
                    reference,
                    {"coredns": ("coredns", "coredns")},
                    entrypoint=("/coredns",),
                    user="65532:65532",
                    caps={"coredns": 1 << CAP_NET_BIND_SERVICE},
                )
            )
        elif name == "pause":
            recipes.append(ImageRecipe(reference, {}, entrypoint=("/pause",), user="65535:65535", pause_source=True))
        else:
            raise ValueError(f"kubelab does not know how to build kubeadm's image {reference}")
    return recipes


def agnhost_recipe(version: str) -> ImageRecipe:
    """Kubernetes' e2e test image at the version its source says (test/images/agnhost/VERSION, the tag the e2e
    suite of that release pulls), with the tools the checks run in it: sh, curl, nslookup, nc, ip."""
    return ImageRecipe(
        f"registry.k8s.io/e2e-test-images/agnhost:{version}",
        {"agnhost": ("kubernetes", "agnhost")},
        entrypoint=("/agnhost",),
        cmd=("pause",),
        debs=("curl", "bind9-dnsutils", "netcat-openbsd", "iproute2"),
        shell=True,
    )


def flannel_image_recipes(flannel_reference: str, plugin_version: str) -> list[ImageRecipe]:
    """flanneld (with iptables, and cp for the DaemonSet's install-cni step) and the CNI plugin's image."""
    return [
        ImageRecipe(
            flannel_reference,
            {"opt/bin/flanneld": ("flannel", "flanneld"), "opt/bin/install-conf": ("flannel", "install-conf")},
            entrypoint=("/opt/bin/flanneld",),
            debs=("iptables", "nftables", "iproute2"),
            iptables=True,
            shell=True,
        ),
        ImageRecipe(
            flannel_cni_plugin_reference(plugin_version),
            {"flannel": ("flannel-cni-plugin", "flannel")},
            shell=True,
        ),
    ]


def flannel_cni_plugin_reference(version: str) -> str:
    return f"{LOCAL_REGISTRY}/flannel-cni-plugin:{version}"


# The newest CNI spec version the flannel plugin of containernetworking/plugins v0.9.1 speaks.
FLANNEL_CNI_PLUGIN_SPEC = "0.4.0"


def flannel_manifest(text: str, plugin_version: str) -> str:
    """Flannel's manifest with its CNI plugin image replaced by the one built here, under kubelab's own name,
    and its CNI config at spec version 0.4.0, which that plugin and the bridge and portmap plugins speak."""
    pattern = re.compile(r"(image:\s*)\S*/flannel-cni-plugin:\S+")
    if not pattern.search(text):
        raise ValueError("flannel's manifest names no flannel-cni-plugin image")
    text = pattern.sub(lambda m: m.group(1) + flannel_cni_plugin_reference(plugin_version), text)
    spec = re.compile(r'("cniVersion":\s*)"[^"]*"')
    if not spec.search(text):
        raise ValueError("flannel's manifest has no CNI config with a cniVersion")
    return spec.sub(lambda m: f'{m.group(1)}"{FLANNEL_CNI_PLUGIN_SPEC}"', text)
