"""Before `kubelab up` creates anything: can this host reach every place the lab will download from?

`sources` (pure: the plan, the phases to run, what the host already provides) lists the (host, port) each phase
downloads from and the flag or command that makes it unneeded; `unreachable` probes them all at once; `check`
raises one error naming every unreachable source. Local and Vagrant nodes reach the internet through this host;
the hosts provider's machines may have other routes: the error says so, and `--skip-network-check` goes on.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from provisioner import boxes
from provisioner.phases import PHASE_NAMES
from provisioner.plan import Plan

TIMEOUT = 3.0  # seconds for name resolution, and again for the TCP connect, of each host
VAGRANT_SERVER = "https://vagrantcloud.com"  # Vagrant's default box catalogue (VAGRANT_SERVER_URL overrides it)
# Where the node OS's packages come from: the mirror the boxes and kubelab's local root file systems use.
MIRRORS: dict[str, str] = {"debian": "deb.debian.org", "ubuntu": "archive.ubuntu.com"}
# GitHub release downloads answer on github.com with a redirect to this host.
GITHUB_HOSTS = ("github.com", "objects.githubusercontent.com")
PKGS_K8S = "pkgs.k8s.io"
KUBE_REGISTRY = "registry.k8s.io"  # every image `kubeadm config images list` names
KUBE_VIP_IMAGE = "ghcr.io/kube-vip/kube-vip"  # the kube_vip role's image (kube_vip_image)
DOCKER_HUB = "registry-1.docker.io"  # where pulls of docker.io/... images go
HELM_DOWNLOADS = "get.helm.sh"  # the helm binary the cilium CNI is installed with
# Phases that install the node OS's packages with apt (prepare: base tools, runtime: distro containerd,
# packages: the Kubernetes packages' dependencies, loadbalancer: haproxy and keepalived).
APT_PHASES = ("prepare", "runtime", "packages", "loadbalancer")

ARTIFACTS_HINT = "--artifacts DIR (`kubelab artifacts build` or `kubelab artifacts fetch` makes one)"

Resolver = Callable[[str, int], list[tuple[int, Any]]]  # (host, port) -> [(address family, socket address)]
Connector = Callable[[int, Any, float], None]  # (family, socket address, timeout); raises OSError when it fails


@dataclass(frozen=True)
class Source:
    """One host a lab downloads from: what it serves, the first phase that needs it, and how to do without."""

    what: str
    host: str
    port: int
    phase: str
    avoid: str

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class HostFacts:
    """What this host already provides, so the lab needs no download for it."""

    apt_cache_offline: bool = False  # `kubelab cache start --offline` runs: node packages come from the cache
    local_image_cached: bool = False  # the local provider's base root fs is built (no debootstrap at `up`)
    box_installed: bool = False  # the lab's Vagrant box is already in `vagrant box list`
    artifacts_images: frozenset[str] = field(default_factory=frozenset)  # images the artifacts folder holds
    vagrant_server: str = "vagrantcloud.com"  # where Vagrant looks boxes up (VAGRANT_SERVER_URL)

    @classmethod
    def detect(cls, plan: Plan) -> HostFacts:
        from provisioner import cache

        spec = plan.spec
        local_image_cached = False
        if spec.provider == "local" and spec.os in boxes.LOCAL_SUITES:
            from provisioner.providers.local_image import image_path

            local_image_cached = image_path(boxes.LOCAL_SUITES[spec.os]).is_dir()
        box_installed = spec.provider in boxes.VAGRANT_PROVIDERS and vagrant_box_installed(
            plan.box_for(spec.provider), spec.provider
        )
        return cls(
            apt_cache_offline=cache.serves_offline(),
            local_image_cached=local_image_cached,
            box_installed=box_installed,
            artifacts_images=_artifacts_images(spec.artifacts),
            vagrant_server=urlsplit(os.environ.get("VAGRANT_SERVER_URL") or VAGRANT_SERVER).hostname or "",
        )


def vagrant_box_installed(box: str, provider: str, vagrant_home: Path | None = None) -> bool:
    """Whether `vagrant box list` has `box` for `provider` (any version), read from Vagrant's box folder:
    ``boxes/NAME/VERSION/PROVIDER`` (Vagrant 2.4 puts an architecture folder before PROVIDER)."""
    home = vagrant_home or Path(os.environ.get("VAGRANT_HOME") or Path.home() / ".vagrant.d")
    folder = home / "boxes" / box.replace("/", "-VAGRANTSLASH-")
    return any(folder.glob(f"*/{provider}")) or any(folder.glob(f"*/*/{provider}"))


def _artifacts_images(folder: str | None) -> frozenset[str]:
    """Image references the artifacts folder's manifest lists (empty without a folder or a readable manifest)."""
    if not folder:
        return frozenset()
    import json

    try:
        data = json.loads((Path(folder) / "artifacts.json").read_text())
        entries = data.get("artifacts", []) if isinstance(data, dict) else []
        return frozenset(str(e.get("name")) for e in entries if isinstance(e, dict) and e.get("kind") == "image")
    except (OSError, ValueError):
        return frozenset()


def _registry(image: str) -> str:
    """The host containerd pulls an image reference from (Docker Hub's when the reference names none)."""
    first = image.split("/", 1)[0]
    host = first if "/" in image and ("." in first or ":" in first or first == "localhost") else "docker.io"
    return DOCKER_HUB if host in ("docker.io", "index.docker.io") else host


def sources(plan: Plan, phases: Iterable[str], facts: HostFacts) -> list[Source]:
    """Every (host, port) the given phases of this lab download from, in phase order; pure (no I/O)."""
    from provisioner import artifacts
    from provisioner.checks.manifests import AGNHOST_IMAGE

    spec = plan.spec
    running = set(phases)
    offline = bool(spec.artifacts)
    found: list[Source] = []

    def need(phase: str | Iterable[str], what: str, hosts: Iterable[str], port: int, avoid: str) -> None:
        wanted = [phase] if isinstance(phase, str) else list(phase)
        first = next((name for name in PHASE_NAMES if name in wanted and name in running), None)
        if first is not None:
            found.extend(Source(what, host, port, first, avoid) for host in dict.fromkeys(hosts))

    mirror = MIRRORS.get(spec.os.split("-", 1)[0])
    if spec.provider == "local" and not facts.local_image_cached:
        need(
            "nodes",
            "Debian packages for the local nodes' base image (debootstrap, built once, then cached)",
            [MIRRORS["debian"]],
            80,
            "no flag: the base image is built from this mirror once, then reused from ~/.cache/kubelab/rootfs",
        )
    if spec.provider != "hosts" and mirror and not facts.apt_cache_offline:  # own machines: their own mirror
        need(
            APT_PHASES,
            f"{spec.os} packages the phases install with apt",
            [mirror],
            80,
            "`kubelab cache start --offline` (serves the packages an earlier lab put into the apt cache)",
        )
    if spec.provider in boxes.VAGRANT_PROVIDERS and not facts.box_installed:
        box = plan.box_for(spec.provider)
        need(
            "nodes",
            f"the Vagrant box {box}",
            [facts.vagrant_server],
            443,
            f"`vagrant box add --name {box} FILE.box` from a box file, or --box with a box you have",
        )
    if spec.containerd_source == "upstream" and not offline:
        need(
            "runtime",
            "containerd, runc and CNI plugin releases (GitHub)",
            GITHUB_HOSTS,
            443,
            f"--containerd-source distro, or {ARTIFACTS_HINT}",
        )
    if not offline:
        need("packages", "kubeadm, kubelet and kubectl packages", [PKGS_K8S], 443, ARTIFACTS_HINT)
        need("control-plane", "kubeadm's control-plane images", [KUBE_REGISTRY], 443, ARTIFACTS_HINT)
        if spec.lb == "kube-vip":
            kube_vip = _registry(KUBE_VIP_IMAGE)
            need("control-plane", "the kube-vip image", [kube_vip], 443, f"--lb haproxy, or {ARTIFACTS_HINT}")
        manifest = artifacts.cni_manifest(spec.cni)
        if manifest:
            hosts = [urlsplit(manifest[1]).hostname or ""]
            if hosts[0] == "github.com":
                hosts += GITHUB_HOSTS
            if spec.cni == "cilium":
                hosts.append(HELM_DOWNLOADS)
            what = "the cilium Helm chart and helm" if spec.cni == "cilium" else f"the {spec.cni} manifest"
            need("cni", what, hosts, 443, ARTIFACTS_HINT)
            registries = map(_registry, artifacts.expected_cni_images(spec.cni))
            need("cni", f"the {spec.cni} images", registries, 443, ARTIFACTS_HINT)
        for addon in spec.addons:
            addon_manifest = artifacts.ADDON_MANIFESTS.get(addon)
            hosts = [urlsplit(addon_manifest[1]).hostname or ""] if addon_manifest else []
            hosts += map(_registry, artifacts.addon_images([addon]))
            need("addons", f"the {addon} add-on's images and manifest", hosts, 443, ARTIFACTS_HINT)
    if not any("/e2e-test-images/agnhost:" in image for image in facts.artifacts_images):
        need(
            "verify",
            "the agnhost test image of the verify phase's cluster checks",
            [_registry(AGNHOST_IMAGE)],
            443,
            "--until cni (then `kubelab verify --only nodes,lb` checks what needs no image)",
        )
    return sorted(found, key=lambda source: PHASE_NAMES.index(source.phase))


# ---------------------------------------------------------------------------------------------
# Probing: name resolution and a TCP connect per host, all at once
# ---------------------------------------------------------------------------------------------


def system_resolver(host: str, port: int) -> list[tuple[int, Any]]:
    return [(family, address) for family, _, _, _, address in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


def system_connector(family: int, address: Any, timeout: float) -> None:
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(address)


def _resolve(resolve: Resolver, host: str, port: int, timeout: float) -> list[tuple[int, Any]] | str:
    """The addresses of `host`, or why there are none, within `timeout` seconds."""
    answers: list[list[tuple[int, Any]] | str] = []
    answered = threading.Event()

    def attempt() -> None:
        try:
            result: list[tuple[int, Any]] | str = resolve(host, port) or "the name resolves to no address"
        except OSError as exc:
            result = f"name not resolved ({exc.strerror or exc})"
        except Exception as exc:  # a broken resolver must not hang the check
            result = f"name not resolved ({exc})"
        answers.append(result)
        answered.set()

    # getaddrinfo takes no timeout: a slow attempt is a daemon thread left behind. A second one after a third of
    # the time keeps one lost DNS packet (the C library retries after 5 s) from making a host look unreachable.
    started = time.monotonic()
    threading.Thread(target=attempt, daemon=True).start()
    if not answered.wait(timeout / 3):
        threading.Thread(target=attempt, daemon=True).start()
        answered.wait(max(0.0, started + timeout - time.monotonic()))
    return answers[0] if answers else f"name resolution took longer than {timeout:g} s"


def _describe(exc: OSError, timeout: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer to a TCP connect within {timeout:g} s"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return exc.strerror or str(exc) or type(exc).__name__


def _probe(host: str, port: int, resolve: Resolver, connect: Connector, timeout: float) -> str | None:
    """Why (host, port) cannot be reached, or None when it accepts a TCP connection."""
    addresses = _resolve(resolve, host, port, timeout)
    if isinstance(addresses, str):
        return addresses
    deadline = time.monotonic() + timeout
    problem = f"no answer to a TCP connect within {timeout:g} s"
    for family, address in addresses:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            connect(family, address, remaining)
        except OSError as exc:
            problem = _describe(exc, timeout)
            continue
        return None
    return problem


def unreachable(
    targets: Iterable[tuple[str, int]],
    resolve: Resolver | None = None,
    connect: Connector | None = None,
    timeout: float = TIMEOUT,
) -> dict[tuple[str, int], str]:
    """(host, port) -> why it cannot be reached, for each target that cannot; all probed at once, each with
    `timeout` seconds to resolve and `timeout` more to connect, so at most about twice `timeout` in all."""
    resolve = resolve or system_resolver
    connect = connect or system_connector
    wanted = list(dict.fromkeys(targets))
    results: dict[tuple[str, int], str | None] = {}

    def run(target: tuple[str, int]) -> None:
        try:
            results[target] = _probe(*target, resolve, connect, timeout)
        except Exception as exc:  # a broken connector must not crash the check
            results[target] = f"check failed: {exc}"

    threads = [threading.Thread(target=run, args=(target,), daemon=True) for target in wanted]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 2 * timeout + 0.5
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    late = f"no answer within {2 * timeout:g} s"
    found = {target: results.get(target, late) for target in wanted}
    return {target: reason for target, reason in found.items() if reason}


# ---------------------------------------------------------------------------------------------
# For `kubelab up`
# ---------------------------------------------------------------------------------------------


def problems(
    needed: list[Source],
    resolve: Resolver | None = None,
    connect: Connector | None = None,
    timeout: float = TIMEOUT,
) -> str | None:
    """One message listing every unreachable source with what avoids it; None when all of them answer."""
    failed = unreachable(((s.host, s.port) for s in needed), resolve, connect, timeout)
    if not failed:
        return None
    lines = ["this host cannot reach every source the lab downloads from, so nothing was created:"]
    by_what: dict[tuple[str, str, str], list[str]] = {}
    for source in needed:
        reason = failed.get((source.host, source.port))
        if reason:
            by_what.setdefault((source.what, source.phase, source.avoid), []).append(f"{source.address} {reason}")
    for (what, phase, avoid), hosts in by_what.items():
        lines.append(f"  - {what} ({phase} phase): {'; '.join(hosts)}")
        lines.append(f"    avoid it with {avoid}")
    lines.append(
        "Or stop before the phase that needs it with --until PHASE, or pass --skip-network-check if the nodes "
        "reach these sources another way (a proxy, or your own machines with other routes)."
    )
    return "\n".join(lines)


def check(
    plan: Plan,
    phases: Iterable[str],
    facts: HostFacts | None = None,
    resolve: Resolver | None = None,
    connect: Connector | None = None,
) -> str | None:
    """The message `up` refuses with, or None when every source the phases need answers."""
    needed = sources(plan, phases, facts if facts is not None else HostFacts.detect(plan))
    return problems(needed, resolve, connect) if needed else None
