"""The wrapper go.mod and the version stamps, from the real go.mod files of k8s.io/kubernetes v1.36.3 and
go.etcd.io/etcd/server/v3 v3.6.8 (`go mod edit -json` of the proxy's .mod files, in samples/)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from provisioner import gobuild

SAMPLES = Path(__file__).parent / "samples"


def requirement(path: str, version: str, sample: str) -> gobuild.Requirement:
    return gobuild.Requirement(path, version, json.loads((SAMPLES / sample).read_text()))


KUBERNETES = requirement("k8s.io/kubernetes", "v1.36.3", "gomod-kubernetes-v1.36.3.json")
ETCD = requirement("go.etcd.io/etcd/server/v3", "v3.6.8", "gomod-etcd-server-v3.6.8.json")
TRAEFIK = requirement("github.com/traefik/traefik/v3", "v3.6.12", "gomod-traefik-v3.6.12.json")


def test_every_staging_module_is_replaced_by_its_published_v0_version() -> None:
    replaces = gobuild.sibling_replaces(KUBERNETES)
    required = {e["Path"] for e in KUBERNETES.gomod["Require"]}
    staged = {e["Old"]["Path"] for e in KUBERNETES.gomod["Replace"] if e["New"]["Path"].startswith("./staging")}
    assert set(replaces) == staged & required  # a staging module nothing requires (a sample) needs no replace
    assert len(staged) > 25 and "k8s.io/api" in staged and "k8s.io/kubelet" in staged
    assert set(replaces.values()) == {"v0.36.3"}


def test_etcd_siblings_keep_the_tag_and_forbidden_dependencies_are_left_out() -> None:
    replaces = gobuild.sibling_replaces(ETCD)
    assert replaces == {
        "go.etcd.io/etcd/api/v3": "v3.6.8",
        "go.etcd.io/etcd/client/pkg/v3": "v3.6.8",
        "go.etcd.io/etcd/client/v3": "v3.6.8",
        "go.etcd.io/etcd/pkg/v3": "v3.6.8",
    }


def test_wrapper_gomod_requires_the_component_and_replaces_its_siblings() -> None:
    text = gobuild.wrapper_gomod([KUBERNETES], "1.26.0")
    lines = text.splitlines()
    assert lines[0] == f"module {gobuild.WRAPPER_MODULE}"
    assert "go 1.26.0" in lines and "require k8s.io/kubernetes v1.36.3" in lines
    assert "replace k8s.io/api => k8s.io/api v0.36.3" in lines
    assert not any("./staging" in line for line in lines)


def test_two_components_wanting_one_sibling_at_two_versions_is_an_error() -> None:
    other = gobuild.Requirement("go.etcd.io/etcd/etcdctl/v3", "v3.6.9", ETCD.gomod)
    with pytest.raises(ValueError, match=r"etcd/api/v3 is wanted as go.etcd.io/etcd/api/v3 v3.6.8 and as .* v3.6.9"):
        gobuild.wrapper_gomod([ETCD, other], "1.26.0")


def test_kubernetes_ldflags_stamp_all_six_keys_in_both_packages() -> None:
    flags = gobuild.kubernetes_ldflags("1.36.3", "abc123", "2026-12-02T00:00:00Z")
    for package in gobuild.VERSION_PACKAGES:
        assert f"-X {package}.gitVersion=v1.36.3" in flags
        assert f"-X {package}.gitMajor=1" in flags
        assert f"-X {package}.gitMinor=36" in flags
        assert f"-X {package}.gitCommit=abc123" in flags
        assert f"-X {package}.gitTreeState=archive" in flags
        assert f"-X {package}.buildDate=2026-12-02T00:00:00Z" in flags
    assert len(flags) == 12


@pytest.mark.parametrize(
    ("have", "need", "ok"),
    [
        ("go1.26.8", "1.26.3", True),
        ("go1.26.8", "1.26.8", True),
        ("go1.26.8", "1.27", False),
        ("go1.27.3", "1.26", True),
    ],
)
def test_go_version_comparison(have: str, need: str, ok: bool) -> None:
    assert gobuild.go_at_least(have, need) is ok


def test_go_directive_of_the_kubernetes_module() -> None:
    assert gobuild.go_directive(KUBERNETES.gomod) == "1.26.0"


def test_pinned_dependencies_are_replaced_in_the_wrapper() -> None:
    pinned = {"github.com/example/sdk": "v1.0.900"}
    text = gobuild.wrapper_gomod([ETCD], "1.24", pinned)
    assert "replace github.com/example/sdk => github.com/example/sdk v1.0.900" in text


def test_a_components_replaces_by_forks_are_stated_again_in_the_wrapper() -> None:
    """Replaces apply only in the main module: Traefik builds only with its three forks replaced in."""
    text = gobuild.wrapper_gomod([TRAEFIK], "1.25.0")
    assert "require github.com/traefik/traefik/v3 v3.6.12" in text.splitlines()
    assert "replace github.com/gorilla/mux => github.com/containous/mux v0.0.0-20250523120546-41b6ec3aed59" in text
    assert text.count("=> github.com/containous/") == 3
    assert gobuild.module_replaces(KUBERNETES) == {}  # its replaces are all local paths


def test_a_module_replaced_by_two_targets_is_an_error() -> None:
    other = gobuild.Requirement(
        "example.com/other",
        "v1.0.0",
        {
            "Replace": [
                {
                    "Old": {"Path": "github.com/gorilla/mux"},
                    "New": {"Path": "github.com/gorilla/mux", "Version": "v1.8.1"},
                }
            ]
        },
    )
    with pytest.raises(ValueError, match=r"github.com/gorilla/mux is wanted as github.com/containous/mux"):
        gobuild.wrapper_gomod([TRAEFIK, other], "1.25.0")
