"""`kubelab artifacts build` without building: the recipes, the Go checks and the refusals before long work."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioner import buildrecipes, gotool
from provisioner.artifacts import build as artifacts_build
from provisioner.artifacts.build import BuildRequest
from provisioner.gotool import BuildError

KUBEADM_1_36_IMAGES = [
    "registry.k8s.io/kube-apiserver:v1.36.3",
    "registry.k8s.io/kube-controller-manager:v1.36.3",
    "registry.k8s.io/kube-scheduler:v1.36.3",
    "registry.k8s.io/kube-proxy:v1.36.3",
    "registry.k8s.io/coredns/coredns:v1.14.2",
    "registry.k8s.io/pause:3.10.2",
    "registry.k8s.io/etcd:3.6.8-0",
]


def test_pinned_tags_are_read_from_kubeadms_list() -> None:
    tags = buildrecipes.pinned_tags(KUBEADM_1_36_IMAGES)
    assert (tags.pause, tags.etcd, tags.coredns) == ("3.10.2", "3.6.8-0", "v1.14.2")
    with pytest.raises(ValueError, match="no etcd"):
        buildrecipes.pinned_tags([ref for ref in KUBEADM_1_36_IMAGES if "etcd" not in ref])


@pytest.mark.parametrize(("tag", "module"), [("3.6.8-0", "v3.6.8"), ("3.7.0-0", "v3.7.0"), ("v3.6.13", "v3.6.13")])
def test_etcd_module_version_drops_the_image_revision(tag: str, module: str) -> None:
    assert buildrecipes.etcd_module_version(tag) == module
    assert buildrecipes.etcd(tag).version == module


def test_etcd_module_version_refuses_a_tag_that_is_no_version() -> None:
    with pytest.raises(ValueError, match=r"not X\.Y\.Z-N"):
        buildrecipes.etcd_module_version("latest")


def test_kubernetes_component_is_static_and_stamped_in_both_version_packages() -> None:
    component = buildrecipes.kubernetes("1.36.3", "2026-07-22T18:07:38Z")
    assert component.version == "v1.36.3" and not component.cgo
    assert {p.name for p in component.programs} >= {"kubeadm", "kubelet", "kubectl", "kube-apiserver"}
    stamps = " ".join(component.ldflags)
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        for key, value in (("gitVersion", "v1.36.3"), ("gitMajor", "1"), ("gitMinor", "36")):
            assert f"-X {package}.{key}={value}" in stamps
        assert f"-X {package}.buildDate=2026-07-22T18:07:38Z" in stamps


def test_runc_is_built_with_cgo_and_seccomp_and_linked_statically() -> None:
    runc = buildrecipes.runc("1.5.1")
    assert runc.cgo and "seccomp" in runc.tags and "-extldflags=-static" in runc.ldflags
    assert "-X main.version=1.5.1" in runc.ldflags


def test_every_kubeadm_image_gets_the_official_layout() -> None:
    recipes = {
        r.reference.rsplit("/", 1)[-1].split(":")[0]: r for r in buildrecipes.kubeadm_image_recipes(KUBEADM_1_36_IMAGES)
    }
    assert recipes["kube-apiserver"].binaries == {"usr/local/bin/kube-apiserver": ("kubernetes", "kube-apiserver")}
    assert set(recipes["etcd"].binaries) == {f"usr/local/bin/{t}" for t in ("etcd", "etcdctl", "etcdutl")}
    assert recipes["coredns"].entrypoint == ("/coredns",) and recipes["coredns"].caps == {"coredns": 1 << 10}
    assert recipes["pause"].pause_source and recipes["pause"].entrypoint == ("/pause",)
    proxy = recipes["kube-proxy"]
    assert proxy.iptables and {"iptables", "nftables", "conntrack"} <= set(proxy.debs)


def test_an_image_kubelab_has_no_recipe_for_is_an_error() -> None:
    with pytest.raises(ValueError, match="does not know how to build"):
        buildrecipes.kubeadm_image_recipes(["registry.k8s.io/something-new:v1"])


def test_flannel_manifest_names_the_cni_plugin_kubelab_built() -> None:
    text = "      - name: install-cni-plugin\n        image: ghcr.io/flannel-io/flannel-cni-plugin:v1.9.1-flannel3\n"
    text += "        image: ghcr.io/flannel-io/flannel:v0.28.10\n"
    text += '  cni-conf.json: |\n    {\n      "name": "cbr0",\n      "cniVersion": "1.0.0",\n'
    rewritten = buildrecipes.flannel_manifest(text, "v0.9.1")
    assert '"cniVersion": "0.4.0"' in rewritten and "1.0.0" not in rewritten
    assert "image: kubelab.local/flannel-cni-plugin:v0.9.1" in rewritten
    assert "ghcr.io/flannel-io/flannel:v0.28.10" in rewritten and "flannel-cni-plugin:v1.9.1" not in rewritten
    with pytest.raises(ValueError, match="names no flannel-cni-plugin"):
        buildrecipes.flannel_manifest("image: ghcr.io/flannel-io/flannel:v0.28.10\n", "v0.9.1")
    with pytest.raises(ValueError, match="no CNI config"):
        buildrecipes.flannel_manifest("image: ghcr.io/flannel-io/flannel-cni-plugin:v1\n", "v0.9.1")


@pytest.mark.parametrize(
    ("package", "name"),
    [
        ("k8s.io/kubernetes/cmd/kubeadm", "kubeadm"),
        ("go.etcd.io/etcd/server/v3", "server"),
        ("go.etcd.io/etcd/etcdctl/v3", "etcdctl"),
        ("github.com/coredns/coredns", "coredns"),
    ],
)
def test_default_name_follows_go_builds_naming(package: str, name: str) -> None:
    assert artifacts_build.default_name(package) == name


def test_newest_patch_of_a_minor_skips_prereleases_and_other_minors() -> None:
    served = ["v1.35.4", "v1.36.1", "v1.36.10-rc.0", "v1.36.3", "v1.37.2"]
    assert gotool.newest_patch(served, "1.36") == "v1.36.3"
    assert gotool.newest_patch(served, "1.38") is None


def test_go_version_is_parsed_and_compared() -> None:
    assert gotool.parse_version("go version go1.26.8 linux/amd64") == "go1.26.8"
    assert gotool.version_tuple("go1.26.8") > gotool.version_tuple("go1.26")
    with pytest.raises(BuildError, match="cannot read Go's version"):
        gotool.parse_version("command not found")


def test_a_module_the_proxy_refuses_is_named_with_its_version() -> None:
    stderr = (
        "go: github.com/flannel-io/cni-plugin@v1.9.1-flannel3: reading https://proxy.golang.org/github.com/"
        "flannel-io/cni-plugin/@v/v1.9.1-flannel3.info: 403 Forbidden\n\tserver response: not available\n"
    )
    message = gotool.explain_failure(["mod", "download"], stderr)
    assert "does not serve github.com/flannel-io/cni-plugin@v1.9.1-flannel3 (403 Forbidden)" in message
    assert "go list -m -versions github.com/flannel-io/cni-plugin" in message


def test_a_missing_go_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gotool.shutil, "which", lambda *a, **k: None)
    with pytest.raises(BuildError, match="found no `go` on PATH"):
        gotool.find_go()


def test_a_too_old_go_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "go"
    fake.write_text("#!/bin/sh\necho go version go1.24.2 linux/amd64\n")
    fake.chmod(0o755)
    monkeypatch.setattr(gotool.shutil, "which", lambda *a, **k: str(fake))
    with pytest.raises(BuildError, match=r"go1.24.2; building Kubernetes needs go1.26 or newer"):
        gotool.find_go(tmp_path / "cache")


@pytest.mark.parametrize("cni", ["calico", "cilium"])
def test_a_cni_that_cannot_be_built_is_refused_with_its_reason(cni: str, tmp_path: Path) -> None:
    with pytest.raises(BuildError, match=f"cannot build the images of cni {cni} from source: .*--cni flannel"):
        artifacts_build.check_request(BuildRequest("1.36", cni, tmp_path / "out", cache=tmp_path / "cache"))


def test_too_little_disk_is_refused_before_the_build(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(artifacts_build.shutil, "disk_usage", lambda path: _Usage())
    with pytest.raises(BuildError, match=r"has 0.5 GiB free; the build needs about 8 GiB"):
        artifacts_build.check_request(BuildRequest("1.36", "flannel", tmp_path / "out", cache=tmp_path / "cache"))


class _Usage:
    free = 512 << 20


def test_replacing_a_folder_refuses_one_that_is_not_an_artifacts_folder(tmp_path: Path) -> None:
    out = tmp_path / "home"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    staging = tmp_path / ".home.building"
    staging.mkdir()
    with pytest.raises(BuildError, match="is not an artifacts folder"):
        artifacts_build._replace_folder(staging, out)
    assert (out / "notes.txt").read_text() == "mine"


def test_replacing_an_earlier_build_keeps_only_the_new_one(tmp_path: Path) -> None:
    out, staging = tmp_path / "art", tmp_path / ".art.building"
    for folder, text in ((out, "old"), (staging, "new")):
        folder.mkdir()
        (folder / "artifacts.json").write_text(text)
    artifacts_build._replace_folder(staging, out)
    assert (out / "artifacts.json").read_text() == "new" and not staging.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]


def test_missing_c_tools_are_named_with_their_debian_packages(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(artifacts_build.shutil, "which", lambda tool: None if tool == "pkg-config" else "/usr/bin/x")
    with pytest.raises(BuildError, match="needs pkg-config on this machine: apt-get install pkg-config"):
        artifacts_build.check_request(BuildRequest("1.36", "flannel", tmp_path / "out", cache=tmp_path / "cache"))


def test_a_pinned_dependency_is_named_in_the_components_source() -> None:
    source = buildrecipes.flannel("v0.28.10").source
    assert source.startswith("github.com/flannel-io/flannel@v0.28.10 (with ")
    assert "tencentcloud/vpc@v1.0.900: the proxy refuses v1.3.188" in source
