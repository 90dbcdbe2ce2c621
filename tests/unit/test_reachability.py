"""`kubelab up`'s check that the host reaches every download source: which sources a lab needs (pure), the
probes with fake resolvers and connectors (no network), the one refusal message, and `up` refusing before
any machine or lab folder exists. Two tests use the real resolver on names and addresses that can never
answer (RFC 6761 `.invalid`, TEST-NET-1)."""

from __future__ import annotations

import io
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from provisioner import lifecycle, reachability, spec_layers
from provisioner.errors import LabError
from provisioner.lab import LabDir
from provisioner.phases import PHASE_NAMES
from provisioner.plan import Plan, make_plan
from provisioner.providers.base import Connection, NodeStatus, Progress, Provider
from provisioner.reachability import HostFacts, Source
from provisioner.render import write_lab
from provisioner.spec import build_spec
from provisioner.state import LabState, save_state

ALL = PHASE_NAMES
CACHED = HostFacts(local_image_cached=True)


def plan(**flags: Any) -> Plan:
    return make_plan(build_spec({}, {"masters": 1, "workers": 0, **flags}))


def hosts(sources: list[Source]) -> dict[str, str]:
    """host -> first phase that needs it."""
    found: dict[str, str] = {}
    for source in sources:
        found.setdefault(source.host, source.phase)
    return found


# ---------------------------------------------------------------------------------------------
# Which sources a lab needs
# ---------------------------------------------------------------------------------------------


def test_default_local_lab_needs_github_pkgs_registries_and_the_mirror() -> None:
    found = reachability.sources(plan(provider="local"), ALL, HostFacts())
    assert hosts(found) == {
        "deb.debian.org": "nodes",  # debootstrap of the base image
        "github.com": "runtime",
        "objects.githubusercontent.com": "runtime",
        "pkgs.k8s.io": "packages",
        "registry.k8s.io": "control-plane",
        "raw.githubusercontent.com": "cni",
        "quay.io": "cni",
    }
    assert [s.phase for s in found] == sorted((s.phase for s in found), key=PHASE_NAMES.index)
    github = next(s for s in found if s.host == "github.com")
    assert (github.port, "--containerd-source distro") == (443, github.avoid.split(",")[0])
    assert "--artifacts DIR" in github.avoid and "kubelab artifacts build" in github.avoid
    mirror = [s for s in found if s.host == "deb.debian.org"]
    assert {s.port for s in mirror} == {80}
    assert "kubelab cache start --offline" in mirror[1].avoid


def test_until_skips_what_later_phases_need() -> None:
    found = reachability.sources(plan(provider="local", containerd_source="distro"), ALL[:3], CACHED)
    assert hosts(found) == {"deb.debian.org": "prepare"}
    assert reachability.sources(plan(provider="local"), ["nodes"], CACHED) == []
    only_packages = reachability.sources(plan(provider="local"), ["packages"], CACHED)
    assert hosts(only_packages) == {"deb.debian.org": "packages", "pkgs.k8s.io": "packages"}


def test_artifacts_folder_provides_binaries_images_and_manifests(tmp_path: Path) -> None:
    folder = tmp_path / "artifacts"
    folder.mkdir()
    found = reachability.sources(plan(provider="local", artifacts=str(folder)), ALL, CACHED)
    # agnhost, which verify's cluster checks run, is not part of an artifacts folder (yet)
    assert hosts(found) == {"deb.debian.org": "prepare", "registry.k8s.io": "verify"}
    assert "--until cni" in found[-1].avoid
    with_agnhost = HostFacts(local_image_cached=True, artifacts_images=frozenset({reachability_agnhost()}))
    assert hosts(reachability.sources(plan(provider="local", artifacts=str(folder)), ALL, with_agnhost)) == {
        "deb.debian.org": "prepare"
    }


def reachability_agnhost() -> str:
    from provisioner.checks.manifests import AGNHOST_IMAGE

    return AGNHOST_IMAGE


def test_offline_apt_cache_replaces_the_mirror_but_not_debootstrap() -> None:
    offline = HostFacts(apt_cache_offline=True)
    found = reachability.sources(plan(provider="local", containerd_source="distro"), ALL[:3], offline)
    assert [(s.host, s.phase) for s in found] == [("deb.debian.org", "nodes")]
    assert "~/.cache/kubelab/rootfs" in found[0].avoid
    cached = HostFacts(apt_cache_offline=True, local_image_cached=True)
    assert reachability.sources(plan(provider="local", containerd_source="distro"), ALL[:3], cached) == []


def test_vagrant_box_host_unless_the_box_is_installed() -> None:
    lab = plan(provider="libvirt", os="ubuntu-24.04", containerd_source="distro")
    found = reachability.sources(lab, ["nodes", "prepare"], HostFacts())
    assert hosts(found) == {"vagrantcloud.com": "nodes", "archive.ubuntu.com": "prepare"}
    box = next(s for s in found if s.host == "vagrantcloud.com")
    assert "cloud-image/ubuntu-24.04" in box.what and "vagrant box add --name cloud-image/ubuntu-24.04" in box.avoid
    installed = reachability.sources(lab, ["nodes", "prepare"], HostFacts(box_installed=True))
    assert hosts(installed) == {"archive.ubuntu.com": "prepare"}
    elsewhere = HostFacts(vagrant_server="boxes.example.org")
    assert "boxes.example.org" in hosts(reachability.sources(lab, ["nodes"], elsewhere))


def test_hosts_provider_skips_the_mirror_of_machines_kubelab_did_not_make() -> None:
    found = reachability.sources(plan(provider="hosts", inventory="x.yml", containerd_source="distro"), ALL[:4], CACHED)
    assert hosts(found) == {"pkgs.k8s.io": "packages"}


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({"cni": "flannel"}, {"github.com", "objects.githubusercontent.com", "ghcr.io"}),
        ({"cni": "cilium"}, {"helm.cilium.io", "get.helm.sh", "quay.io"}),
        ({"cni": "weave"}, {"github.com", "objects.githubusercontent.com", "registry-1.docker.io"}),
        ({"cni": "none"}, set()),
    ],
)
def test_cni_sources(flags: dict[str, str], expected: set[str]) -> None:
    assert set(hosts(reachability.sources(plan(provider="local", **flags), ["cni"], CACHED))) == expected


@pytest.mark.parametrize(
    ("addons", "expected"),
    [
        (["metrics-server"], {"registry.k8s.io"}),
        (["lb-services"], {"raw.githubusercontent.com", "quay.io"}),
        ([], set()),
    ],
)
def test_addon_sources(addons: list[str], expected: set[str]) -> None:
    assert set(hosts(reachability.sources(plan(provider="local", addons=addons), ["addons"], CACHED))) == expected
    folder = plan(provider="local", addons=addons, artifacts="/nonexistent")
    assert not [s for s in reachability.sources(folder, ["addons"], CACHED) if s.phase == "addons"]


def test_kube_vip_image_registry() -> None:
    lab = plan(provider="local", masters=3, lb="kube-vip")
    found = [s for s in reachability.sources(lab, ["control-plane"], CACHED) if s.host == "ghcr.io"]
    assert len(found) == 1 and "--lb haproxy" in found[0].avoid


def test_vagrant_box_installed_reads_both_folder_layouts(tmp_path: Path) -> None:
    assert not reachability.vagrant_box_installed("debian/bookworm64", "libvirt", tmp_path)
    (tmp_path / "boxes" / "debian-VAGRANTSLASH-bookworm64" / "12.2024" / "virtualbox").mkdir(parents=True)
    assert not reachability.vagrant_box_installed("debian/bookworm64", "libvirt", tmp_path)
    assert reachability.vagrant_box_installed("debian/bookworm64", "virtualbox", tmp_path)
    (tmp_path / "boxes" / "bento-VAGRANTSLASH-debian-12" / "202510.0" / "amd64" / "libvirt").mkdir(parents=True)
    assert reachability.vagrant_box_installed("bento/debian-12", "libvirt", tmp_path)


def test_artifacts_images_are_read_from_the_manifest(tmp_path: Path) -> None:
    (tmp_path / "artifacts.json").write_text(
        '{"format": 1, "artifacts": [{"kind": "image", "name": "registry.k8s.io/pause:3.10.2"},'
        ' {"kind": "binary", "name": "kubeadm"}]}'
    )
    lab = plan(provider="local", artifacts=str(tmp_path))
    assert HostFacts.detect(lab).artifacts_images == frozenset({"registry.k8s.io/pause:3.10.2"})


# ---------------------------------------------------------------------------------------------
# Probing, with fakes
# ---------------------------------------------------------------------------------------------

WORLD = {"up.example": "192.0.2.10", "refusing.example": "192.0.2.11", "silent.example": "192.0.2.12"}


def fake_resolver(host: str, port: int) -> list[tuple[int, Any]]:
    if host not in WORLD:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return [(socket.AF_INET, (WORLD[host], port))]


def fake_connector(family: int, address: Any, timeout: float) -> None:
    if address[0] == WORLD["refusing.example"]:
        raise ConnectionRefusedError(111, "Connection refused")
    if address[0] == WORLD["silent.example"]:
        time.sleep(timeout)
        raise TimeoutError("timed out")


def test_each_kind_of_failure_is_named() -> None:
    targets = [("up.example", 443), ("nowhere.example", 443), ("refusing.example", 443), ("silent.example", 80)]
    failed = reachability.unreachable(targets, fake_resolver, fake_connector, timeout=0.2)
    assert failed == {
        ("nowhere.example", 443): "name not resolved (Name or service not known)",
        ("refusing.example", 443): "connection refused",
        ("silent.example", 80): "no answer to a TCP connect within 0.2 s",
    }


def test_slow_name_resolution_is_cut_off_and_probes_run_at_once() -> None:
    release = threading.Event()

    def stuck(host: str, port: int) -> list[tuple[int, Any]]:
        if host.startswith("stuck"):
            release.wait(10)
        time.sleep(0.3)
        return fake_resolver("up.example", port)

    targets = [(f"stuck{i}.example", 443) for i in range(4)] + [(f"ok{i}.example", 443) for i in range(4)]
    started = time.monotonic()
    failed = reachability.unreachable(targets, stuck, fake_connector, timeout=0.5)
    elapsed = time.monotonic() - started
    release.set()
    assert failed == {(f"stuck{i}.example", 443): "name resolution took longer than 0.5 s" for i in range(4)}
    assert elapsed < 1.2  # eight probes of 0.3-0.5 s each, in parallel


def test_a_lost_dns_query_is_asked_again() -> None:
    calls: list[float] = []

    def first_query_lost(host: str, port: int) -> list[tuple[int, Any]]:
        calls.append(time.monotonic())
        if len(calls) == 1:
            time.sleep(5)  # the C library would retry only after 5 s
        return fake_resolver("up.example", port)

    assert reachability.unreachable([("flaky.example", 443)], first_query_lost, fake_connector, timeout=0.6) == {}
    assert len(calls) == 2


def test_every_address_is_tried_before_giving_up() -> None:
    def two_addresses(host: str, port: int) -> list[tuple[int, Any]]:
        return [(socket.AF_INET6, ("2001:db8::1", port, 0, 0)), (socket.AF_INET, (WORLD["up.example"], port))]

    def no_ipv6(family: int, address: Any, timeout: float) -> None:
        if family == socket.AF_INET6:
            raise OSError(101, "Network is unreachable")

    assert reachability.unreachable([("dual.example", 443)], two_addresses, no_ipv6, timeout=0.5) == {}


def test_one_message_lists_every_unreachable_source_and_how_to_avoid_it() -> None:
    needed = [
        Source("packages", "up.example", 80, "prepare", "`kubelab cache start --offline`"),
        Source("releases", "nowhere.example", 443, "runtime", "--containerd-source distro"),
        Source("releases", "refusing.example", 443, "runtime", "--containerd-source distro"),
        Source("images", "silent.example", 443, "control-plane", "--artifacts DIR"),
    ]
    message = reachability.problems(needed, fake_resolver, fake_connector, timeout=0.2)
    assert message is not None
    lines = message.splitlines()
    assert lines[0] == "this host cannot reach every source the lab downloads from, so nothing was created:"
    assert lines[1] == (
        "  - releases (runtime phase): nowhere.example:443 name not resolved (Name or service not known); "
        "refusing.example:443 connection refused"
    )
    assert lines[2] == "    avoid it with --containerd-source distro"
    assert lines[3].startswith("  - images (control-plane phase): silent.example:443 no answer")
    assert lines[4] == "    avoid it with --artifacts DIR"
    assert "--skip-network-check" in lines[5] and "--until PHASE" in lines[5]
    assert "up.example" not in message
    assert reachability.problems(needed[:1], fake_resolver, fake_connector, timeout=0.2) is None


# ---------------------------------------------------------------------------------------------
# Real resolver and sockets, on names and addresses that never answer
# ---------------------------------------------------------------------------------------------


def test_real_check_reports_unresolvable_and_unanswering_hosts_quickly() -> None:
    started = time.monotonic()
    failed = reachability.unreachable([("kubelab-check.invalid", 443), ("192.0.2.1", 9)])  # RFC 6761, TEST-NET-1
    elapsed = time.monotonic() - started
    assert set(failed) == {("kubelab-check.invalid", 443), ("192.0.2.1", 9)}
    assert failed[("kubelab-check.invalid", 443)].startswith("name")
    assert elapsed < 2 * reachability.TIMEOUT + 1


# ---------------------------------------------------------------------------------------------
# `kubelab up`
# ---------------------------------------------------------------------------------------------


class StandIn(Provider):
    """Machines that need nothing: records what `up` asked of it."""

    name = "stand-in"

    def __init__(self, plan: Plan, lab: LabDir) -> None:
        super().__init__(plan, lab)
        self.calls: list[str] = []

    def check(self) -> None:
        self.calls.append("check")

    def up(self, progress: Progress) -> None:
        self.calls.append("up")

    def status(self) -> list[NodeStatus]:
        return [NodeStatus(node.name, "running", node.ip) for node in self.plan.nodes]

    def connections(self) -> dict[str, Connection]:
        return {node.name: Connection("127.0.0.1", 22, "root", "/dev/null") for node in self.plan.nodes}

    def halt(self) -> None:
        self.calls.append("halt")

    def destroy(self) -> bool:
        return True


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KUBELAB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("VAGRANT_HOME", str(tmp_path / "vagrant"))  # no boxes installed
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # no local base image built
    return tmp_path / "home"


def test_up_refuses_before_any_machine_or_lab_folder_exists(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The real resolver: Vagrant's box catalogue moved to a name that never resolves.
    monkeypatch.setenv("VAGRANT_SERVER_URL", "https://kubelab-boxes.invalid")
    spec = build_spec({}, {"name": "netcheck", "provider": "libvirt", "masters": 1, "workers": 0})
    lab = LabDir.for_name("netcheck")
    provider = StandIn(make_plan(spec), lab)
    started = time.monotonic()
    with pytest.raises(LabError) as refused:
        lifecycle.up(lab, spec, until="nodes", out=io.StringIO(), provider=provider)
    assert time.monotonic() - started < 2 * reachability.TIMEOUT + 1
    message = str(refused.value)
    assert "the Vagrant box cloud-image/ubuntu-24.04 (nodes phase): kubelab-boxes.invalid:443 name not" in message
    assert "vagrant box add --name cloud-image/ubuntu-24.04" in message
    assert provider.calls == ["check"]  # the tools were checked, no machine was asked for
    assert not lab.root.exists()


def test_skip_network_check_goes_on(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def never(*args: object, **kwargs: object) -> str:
        raise AssertionError("the network check ran")

    monkeypatch.setattr(reachability, "check", never)
    spec = build_spec({}, {"name": "netskip", "provider": "libvirt", "masters": 1, "workers": 0})
    spec = spec.replace(skip_network_check=True)
    provider = StandIn(make_plan(spec), LabDir.for_name("netskip"))
    assert lifecycle.up(LabDir.for_name("netskip"), spec, until="nodes", out=io.StringIO(), provider=provider) == 0
    assert provider.calls == ["check", "up"]


def test_only_the_phases_that_will_run_are_checked(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []

    def record(plan: Plan, phases: list[str]) -> str:
        seen.append(list(phases))
        return "stopped by the test"

    monkeypatch.setattr(reachability, "check", record)
    spec = build_spec({}, {"name": "netresume", "provider": "libvirt", "masters": 1, "workers": 0})
    lab = LabDir.for_name("netresume")
    lab.root.mkdir(parents=True)
    state = LabState()
    for name in ("nodes", "prepare", "runtime"):
        state.mark_done(name, 1.0)
    save_state(lab, state)
    provider = StandIn(make_plan(spec), lab)
    for start, until in ((None, "runtime"), (None, "packages"), ("runtime", "workers")):
        with pytest.raises(LabError, match="stopped by the test"):
            lifecycle.up(lab, spec, start=start, until=until, out=io.StringIO(), provider=provider)
    assert seen == [[], ["packages"], ["runtime", "packages", "loadbalancer", "control-plane", "workers"]]
    assert provider.calls == ["check"] * 3


def test_skip_network_check_is_for_one_run_and_does_not_change_the_lab(home: Path) -> None:
    old = build_spec({}, {"masters": 1}).to_dict()
    new = build_spec({}, {"masters": 1, "skip_network_check": True}).to_dict()
    assert spec_layers.spec_differences(old, new) == []
    flags = {"name": "netonce", "provider": "libvirt", "masters": 1, "workers": 0}
    write_lab(make_plan(build_spec({}, {**flags, "skip_network_check": True})), LabDir.for_name("netonce"))
    _, resumed, _ = spec_layers.spec_for_up({}, {"name": "netonce"})
    assert resumed.provider == "libvirt" and not resumed.skip_network_check  # a resumed `up` checks again
