"""Debian package closures from recorded apt-cache output (Debian 12), the .deb cache and alternatives links."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from provisioner import debpkgs
from provisioner.debpkgs import Alternative, DebError

SAMPLES = Path(__file__).parent / "samples"
DEPENDS = debpkgs.parse_depends((SAMPLES / "apt-cache-depends-recurse.txt").read_text())
CANDIDATES = debpkgs.parse_policy((SAMPLES / "apt-cache-policy.txt").read_text())
ROOTS = ["iptables", "nftables", "conntrack", "ipset", "iproute2"]


def test_depends_output_gives_each_package_its_groups_of_alternatives_and_virtual_providers():
    assert len(DEPENDS) == 57
    debconf = (Alternative("debconf"), Alternative("debconf-2.0", ("cdebconf", "debconf")))
    assert DEPENDS["iproute2"][0] == debconf
    assert DEPENDS["iproute2"][1:3] == [(Alternative("libbpf1"),), (Alternative("libbsd0"),)]
    assert DEPENDS["readline-common"] == [(Alternative("dpkg"), Alternative("install-info"))]
    assert (Alternative("libzstd1"),) in DEPENDS["dpkg"]  # PreDepends
    assert DEPENDS["debconf-2.0"] == DEPENDS["netbase"] == []


def test_other_relations_and_their_providers_are_ignored():
    text = "a\n  Conflicts: <x>\n    y\n |Depends: b\n  PreDepends: <c>\n    d\n  Breaks: e\n"
    assert debpkgs.parse_depends(text) == {"a": [(Alternative("b"), Alternative("c", ("d",)))]}


def test_policy_output_gives_candidate_versions_with_epochs_and_none_for_virtual_packages():
    assert len(CANDIDATES) == 57
    assert CANDIDATES["libgmp10"] == "2:6.2.1+dfsg1-1.1"
    assert CANDIDATES["iptables"] == "1.8.9-2"
    assert CANDIDATES["debconf-2.0"] is None


def test_the_closure_of_the_network_tools_leaves_out_debconf_and_dpkg():
    resolved = debpkgs.resolve(ROOTS, DEPENDS, CANDIDATES)
    names = [name for name, _ in resolved]
    assert names == sorted(names) and len(names) == 41
    assert {"libc6", "libgcc-s1", "libnftables1", "libtirpc3", "libssl3", "netbase"} <= set(names)
    assert not {"debconf", "cdebconf", "dpkg", "install-info", "tar", "readline-common"} & set(names)
    assert ("libgmp10", "2:6.2.1+dfsg1-1.1") in resolved
    # Without exclusions the first alternative of "debconf | debconf-2.0" is taken, not a provider of the second.
    unexcluded = {name for name, _ in debpkgs.resolve(ROOTS, DEPENDS, CANDIDATES, exclude=())}
    assert unexcluded - set(names) == {"debconf"}


def test_an_alternative_already_wanted_satisfies_a_group_and_virtual_packages_take_a_provider():
    depends = {
        "app": [(Alternative("big"), Alternative("small")), (Alternative("small"),), (Alternative("awk", ("mawk",)),)]
    }
    candidates = {"app": "1", "big": "2", "small": "3", "mawk": "4", "awk": None}
    assert debpkgs.resolve(["app", "small"], depends, candidates) == [("app", "1"), ("mawk", "4"), ("small", "3")]
    assert debpkgs.resolve(["app"], depends, candidates) == [("app", "1"), ("big", "2"), ("mawk", "4"), ("small", "3")]


def test_what_apt_cannot_install_is_named():
    with pytest.raises(DebError, match="no installable version of nosuch"):
        debpkgs.resolve(["nosuch"], {}, {})
    with pytest.raises(DebError, match=re.escape("app depends on gone | virtual: apt can install none")):
        debpkgs.resolve(["app"], {"app": [(Alternative("gone"), Alternative("virtual", ("x",)))]}, {"app": "1"})


def test_debs_in_the_cache_are_reused_by_apt_get_download_s_file_name(tmp_path, monkeypatch):
    cached = tmp_path / "libgmp10_2%3a6.2.1+dfsg1-1.1_amd64.deb"
    cached.write_bytes(b"deb")
    (tmp_path / "netbase_6.4_all.deb").write_bytes(b"deb")

    def no_apt(args, cwd=None):
        raise AssertionError(f"ran {args}")

    monkeypatch.setattr(debpkgs, "_run", no_apt)
    wanted = [("libgmp10", "2:6.2.1+dfsg1-1.1"), ("netbase", "6.4")]
    assert debpkgs.download(wanted, tmp_path) == [cached, tmp_path / "netbase_6.4_all.deb"]


def test_missing_debs_are_downloaded_in_one_call_and_moved_into_the_cache(tmp_path, monkeypatch):
    calls = []

    def fake_apt(args, cwd=None):
        calls.append(args)
        (cwd / "libmnl0_1.0.4-3_amd64.deb").write_bytes(b"deb")
        return ""

    monkeypatch.setattr(debpkgs, "_run", fake_apt)
    assert debpkgs.download([("libmnl0", "1.0.4-3")], tmp_path) == [tmp_path / "libmnl0_1.0.4-3_amd64.deb"]
    assert calls == [["apt-get", "download", "libmnl0=1.0.4-3"]]
    assert [p.name for p in tmp_path.iterdir()] == ["libmnl0_1.0.4-3_amd64.deb"]
    with pytest.raises(DebError, match=re.escape("no .deb for libnftnl11=1.2.4-2")):
        debpkgs.download([("libnftnl11", "1.2.4-2")], tmp_path)


def test_alternatives_links_replace_what_is_there_and_need_their_target(tmp_path):
    sbin = tmp_path / "usr/sbin"
    sbin.mkdir(parents=True)
    (sbin / "xtables-nft-multi").write_bytes(b"ELF")
    for name in ("iptables-nft", "iptables-nft-save", "iptables-nft-restore"):
        (sbin / name).symlink_to("xtables-nft-multi")
    (sbin / "iptables").write_text("old\n")
    links = {k: v for k, v in debpkgs.iptables_links("nft").items() if "ip6" not in k}
    debpkgs.alternatives(tmp_path, links | {"/bin/iptables": "/usr/sbin/iptables"})
    assert (sbin / "iptables").readlink() == Path("iptables-nft")
    assert (sbin / "iptables-save").readlink() == Path("iptables-nft-save")
    assert (tmp_path / "bin/iptables").readlink() == Path("/usr/sbin/iptables")
    with pytest.raises(FileNotFoundError, match="usr/sbin/iptables-legacy does not exist"):
        debpkgs.alternatives(tmp_path, {"usr/sbin/iptables": "iptables-legacy"})


def test_iptables_links_are_those_of_debians_postinst():
    assert debpkgs.iptables_links("legacy") == {
        "usr/sbin/iptables": "iptables-legacy",
        "usr/sbin/iptables-save": "iptables-legacy-save",
        "usr/sbin/iptables-restore": "iptables-legacy-restore",
        "usr/sbin/ip6tables": "ip6tables-legacy",
        "usr/sbin/ip6tables-save": "ip6tables-legacy-save",
        "usr/sbin/ip6tables-restore": "ip6tables-legacy-restore",
    }
    with pytest.raises(ValueError, match="neither nft nor legacy"):
        debpkgs.iptables_links("ebtables")
