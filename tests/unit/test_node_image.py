"""Baked node images: the key follows every input, the layer loses the bake node's identity, nodes get containerd's
data as links, prune keeps what labs use."""

from __future__ import annotations

import ipaddress
import re
import shutil
from pathlib import Path

import pytest
import yaml

from provisioner import image_build, node_image
from provisioner.lab import REPO_ROOT, LabDir
from provisioner.plan import Node, make_plan
from provisioner.providers import local_network
from provisioner.providers.base import ProviderError
from provisioner.providers.local import LocalProvider
from provisioner.spec import LabSpec, build_spec
from provisioner.spec_layers import spec_differences


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "kubelab" / "node-images"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A copy of the files that go into the key."""
    copy = tmp_path / "repo"
    for rel in node_image.KEY_PATHS:
        source, target = REPO_ROOT / rel, copy / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target)
    return copy


def local_spec(**flags: object) -> LabSpec:
    return build_spec({}, {"provider": "local", "masters": 1, "lb": "none", **flags})


def key(spec: LabSpec, root: Path = REPO_ROOT) -> str:
    image = node_image.for_spec(spec, "amd64", root)
    assert image is not None
    return image.name


def test_the_key_is_stable_and_names_os_and_version(repo: Path) -> None:
    spec = local_spec(kubernetes_version="1.36.3")
    assert key(spec, repo) == key(spec, repo) == key(spec)
    assert re.fullmatch(r"debian-12-k8s1\.36\.3-[0-9a-f]{12}", key(spec))


@pytest.mark.parametrize(
    "rel",
    [
        "playbooks/roles/containerd/defaults/main.yml",
        "playbooks/roles/containerd/templates/config.toml.j2",
        "playbooks/roles/prepare/tasks/kernel.yml",
        "playbooks/packages.yml",
        "templates/group_vars.yml.j2",
    ],
)
def test_a_changed_role_default_template_or_playbook_makes_a_new_key(repo: Path, rel: str) -> None:
    spec = local_spec()
    before = key(spec, repo)
    with (repo / rel).open("a") as handle:
        handle.write("\n# changed\n")
    assert key(spec, repo) != before


def test_a_role_outside_the_baked_phases_does_not_change_the_key(repo: Path) -> None:
    spec = local_spec()
    before = key(spec, repo)
    (repo / "playbooks" / "roles" / "cni").mkdir(parents=True)
    (repo / "playbooks" / "roles" / "cni" / "defaults.yml").write_text("cni_x: 1\n")
    assert key(spec, repo) == before


def test_a_baked_roles_molecule_scenario_does_not_change_the_key(repo: Path) -> None:
    spec = local_spec()
    before = key(spec, repo)
    scenario = repo / "playbooks" / "roles" / "containerd" / "molecule" / "containerd"
    scenario.mkdir(parents=True, exist_ok=True)
    (scenario / "converge.yml").write_text("# changed\n")
    assert key(spec, repo) == before
    (repo / "playbooks" / "roles" / "containerd" / "defaults" / "main.yml").write_text("# changed\n")
    assert key(spec, repo) != before


def test_versions_os_containerd_and_the_artifacts_folder_are_in_the_key(tmp_path: Path) -> None:
    folder = tmp_path / "artifacts"
    folder.mkdir()
    (folder / "artifacts.json").write_text('{"format": 1}')
    base = local_spec(kubernetes_version="1.36.3", artifacts=str(folder))
    keys = {
        key(base),
        key(base.replace(kubernetes_version="1.36.4")),
        key(base.replace(os="debian-13")),
        key(base.replace(containerd_version="2.2.1")),
        key(base.replace(artifacts=None)),
    }
    (folder / "artifacts.json").write_text('{"format": 1, "artifacts": [{"name": "kubeadm", "sha256": "ab"}]}')
    keys.add(key(base))
    assert len(keys) == 6
    # The same files rebuilt later: the same image.
    (folder / "artifacts.json").write_text(
        '{"format": 1, "artifacts": [{"name": "kubeadm", "sha256": "ab"}], "built": "2026-12-07T06:22:56Z"}'
    )
    assert key(base) in keys


def test_settings_a_node_does_not_bake_share_the_image() -> None:
    spec = local_spec()
    assert key(spec) == key(spec.replace(name="other", workers=3, pod_cidr="10.200.0.0/16", cni="flannel"))


def _roles_used(path: Path, seen: set[str]) -> None:
    """Role names that a playbook or task file runs, followed into those roles' own tasks."""
    text = path.read_text()
    names = re.findall(r"^\s*(?:-\s*)?(?:role|name):\s*([a-z_]+)\s*$", text, re.M)
    for data in yaml.safe_load(text) or []:
        for role in data.get("roles", []) if isinstance(data, dict) else []:
            names.append(role["role"] if isinstance(role, dict) else role)
    roles_dir = REPO_ROOT / "playbooks" / "roles"
    for name in names:
        if (roles_dir / name).is_dir() and name not in seen:
            seen.add(name)
            for task_file in (roles_dir / name / "tasks").glob("*.yml"):
                _roles_used(task_file, seen)


def test_the_key_covers_every_role_the_baked_phases_run() -> None:
    seen: set[str] = set()
    for phase in node_image.BAKED_PHASES:
        _roles_used(REPO_ROOT / "playbooks" / f"{phase}.yml", seen)
    assert seen == set(node_image.BAKED_ROLES)


def test_no_image_and_other_providers_boot_without_one() -> None:
    assert node_image.for_spec(local_spec(no_image=True), "amd64") is None
    assert node_image.for_spec(build_spec({}, {"provider": "libvirt"}), "amd64") is None
    assert "--no-image" in node_image.describe(local_spec(no_image=True), "amd64")
    assert "local provider" in node_image.describe(build_spec({}, {"provider": "libvirt"}), "amd64")
    assert "built once at `up`" in node_image.describe(local_spec(), "amd64")


def test_the_bake_nodes_identity_leaves_its_layer(tmp_path: Path) -> None:
    layer = tmp_path / "layer"
    for rel in ("etc/hostname", "etc/default/kubelet", "root/.ssh/authorized_keys", "var/log/journal/x/system.journal"):
        (layer / rel).parent.mkdir(parents=True, exist_ok=True)
        (layer / rel).write_text("bake node\n")
    kept = layer / "usr" / "local" / "bin" / "kubeadm"
    kept.parent.mkdir(parents=True)
    kept.write_text("binary")
    (layer / "etc" / "default" / "grub").write_text("kept")
    node_image.strip_node_identity(layer)
    left = sorted(str(p.relative_to(layer)) for p in layer.rglob("*") if p.is_file())
    assert left == ["etc/default/grub", "usr/local/bin/kubeadm"]


def make_image(name: str) -> node_image.NodeImage:
    image = node_image.NodeImage(node_image.images_root() / name)
    blobs = image.containerd / "io.containerd.content.v1.content" / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    (blobs / "abc").write_text("layer data")
    (image.containerd / "io.containerd.metadata.v1.bolt").mkdir()
    (image.containerd / "io.containerd.metadata.v1.bolt" / "meta.db").write_text("bolt")
    image.layer.mkdir()
    image.info_file.write_text('{"built": "2026-12-07 05:00"}')
    return image


def test_a_new_node_gets_containerd_data_as_links_and_its_own_databases(tmp_path: Path) -> None:
    image = make_image("debian-12-k8s1.36.3-000000000001")
    target = tmp_path / "node" / "var-lib" / "containerd"
    target.mkdir(parents=True)
    node_image.seed_containerd(image, target)
    blob = target / "io.containerd.content.v1.content" / "blobs" / "sha256" / "abc"
    db = target / "io.containerd.metadata.v1.bolt" / "meta.db"
    assert blob.read_text() == "layer data" and blob.stat().st_nlink == 2
    assert db.read_text() == "bolt" and db.stat().st_nlink == 1
    db.write_text("the node's own")
    node_image.seed_containerd(image, target)  # a node with data keeps it
    assert db.read_text() == "the node's own"
    assert (image.containerd / "io.containerd.metadata.v1.bolt" / "meta.db").read_text() == "bolt"


def test_prune_keeps_images_an_existing_lab_uses(tmp_path: Path) -> None:
    used, unused, orphaned = (make_image(f"debian-12-k8s1.36.3-00000000000{i}") for i in (1, 2, 3))
    lab_state = tmp_path / "labs" / "a" / "local"
    lab_state.mkdir(parents=True)
    used.add_user(lab_state)
    orphaned.add_user(tmp_path / "labs" / "gone" / "local")
    removed = node_image.prune()
    assert sorted(i.name for i in removed) == sorted([unused.name, orphaned.name])
    assert [i.name for i in node_image.all_images()] == [used.name]
    used.remove_user(lab_state)
    assert [i.name for i in node_image.prune()] == [used.name]


def test_a_lab_made_before_the_no_image_key_existed_is_not_a_changed_spec() -> None:
    new = local_spec().to_dict()
    old = {k: v for k, v in new.items() if k != "no_image"}
    assert spec_differences(old, new) == []
    assert spec_differences(old, {**new, "no_image": True}) == ["no_image: False -> True"]


def local_provider(tmp_path: Path, **flags: object) -> LocalProvider:
    plan = make_plan(local_spec(name="imgtest", workers=1, **flags), arch="amd64")
    return LocalProvider(plan, LabDir(tmp_path / "labs" / "imgtest"))


def test_new_kubernetes_nodes_get_the_image_over_the_base_and_lb_nodes_the_base(tmp_path: Path) -> None:
    provider = local_provider(tmp_path)
    planned = provider.node_image()
    assert planned is not None and not planned.built
    image = make_image(planned.name)
    state = provider._state()
    base = tmp_path / "base"
    master, worker = provider.plan.nodes
    assert provider._lowers(state, master, base, image) == [str(image.layer), str(base)]
    assert (provider.node_files("master-1").host_dir("containerd") / "io.containerd.metadata.v1.bolt").is_dir()
    lb = Node("lb-1", "lb", 1, "10.77.1.11", 1, 512)
    assert provider._lowers(state, lb, base, image) == [str(base)]
    # A node from before node images (its layer has data, no layers recorded) keeps the base alone.
    (provider.node_files("worker-1").upper / "etc").mkdir(parents=True)
    assert provider._lowers(state, worker, base, image) == [str(base)]


def test_nodes_keep_the_layers_they_were_created_on(tmp_path: Path) -> None:
    provider = local_provider(tmp_path)
    state = provider._state()
    old = make_image("debian-12-k8s1.35.4-000000000009")
    for name in ("master-1", "worker-1"):
        state.record_node(name, lowers=[str(old.layer), str(tmp_path)])
    assert provider.node_image() is None  # nothing new to boot: no image to build
    master = provider.plan.nodes[0]
    assert provider._lowers(state, master, tmp_path / "new-base", None) == [str(old.layer), str(tmp_path)]
    shutil.rmtree(old.path)
    with pytest.raises(ProviderError, match=r"was created on .* which is gone"):
        provider._lowers(state, master, tmp_path, None)


def test_an_image_that_is_not_built_is_refused_before_a_node_starts(tmp_path: Path) -> None:
    provider = local_provider(tmp_path)
    with pytest.raises(ProviderError, match="is not built: `kubelab up` builds it"):
        provider._use_image()
    assert local_provider(tmp_path, no_image=True)._use_image() is None


def test_the_bake_node_takes_the_first_subnet_no_lab_routes(monkeypatch: pytest.MonkeyPatch) -> None:
    routed = [ipaddress.IPv4Network("10.77.0.0/23"), ipaddress.IPv4Network("10.77.250.0/24")]
    monkeypatch.setattr(local_network, "routed_networks", lambda: [(n, str(n), "klb") for n in routed])
    assert image_build.free_subnet(7) == "10.77.7.0/24"
    assert image_build.free_subnet(250) == "10.77.2.0/24"  # .250 and .1 are taken, wraps past .0
    routed.append(ipaddress.IPv4Network("10.77.0.0/16"))
    with pytest.raises(image_build.ImageError, match="no free"):
        image_build.free_subnet(7)
