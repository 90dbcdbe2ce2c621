"""Rendered lab folders: golden files, determinism, the repository's Vagrantfile, real Vagrant and Ansible."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hosttools import require_tool

from provisioner.lab import REPO_ROOT, LabDir
from provisioner.plan import make_plan
from provisioner.render import render_files, write_lab
from provisioner.spec import ARCH_NAMES, build_spec

GOLDEN = Path(__file__).parent / "golden"
# The golden labs of the foundation issue: name -> flags.
LABS: dict[str, dict] = {
    "single": {"name": "single", "masters": 1, "workers": 1, "cni": "flannel"},
    "ha-haproxy": {"name": "ha", "masters": 3, "workers": 2, "cni": "calico", "lb": "haproxy"},
    "kube-vip": {"name": "kv", "masters": 3, "workers": 0, "lb": "kube-vip", "cni": "cilium", "api_port": 8443},
    "five-masters": {
        "name": "five",
        "masters": 5,
        "workers": 1,
        "lb_nodes": 1,
        "mtu": 1400,
        "kubernetes_version": "1.37.1",
        "libvirt": {
            "driver": "qemu",
            "kernel": "/boot/vmlinuz",
            "initrd": "/boot/initrd.img",
            "cmd_line": "root=/dev/vda rw",
            "storage_pool_name": "default",
            "management_network_address": "192.168.121.0/24",
        },
        "virtualbox": {"linked_clone": True},
        "box_version": ">= 1.0",
        "ntp_servers": "10.0.0.1, ntp.example.org",
    },
}
UPDATE = os.environ.get("KUBELAB_UPDATE_GOLDEN") == "1"


def rendered(case: str) -> dict[str, str]:
    return render_files(make_plan(build_spec({}, LABS[case]), arch="amd64"))


@pytest.mark.parametrize("case", sorted(LABS))
def test_golden_files(case: str) -> None:
    files = rendered(case)
    folder = GOLDEN / case
    if UPDATE:
        shutil.rmtree(folder, ignore_errors=True)
        for relative, content in files.items():
            (folder / relative).parent.mkdir(parents=True, exist_ok=True)
            (folder / relative).write_text(content)
    expected = {str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()}
    assert sorted(files) == sorted(expected), "rendered file set changed (KUBELAB_UPDATE_GOLDEN=1 to accept)"
    for relative, content in files.items():
        assert content == expected[relative], f"{case}/{relative} differs (KUBELAB_UPDATE_GOLDEN=1 to accept)"


def test_repository_vagrantfile_is_the_default_lab() -> None:
    default = render_files(make_plan(build_spec(), arch="amd64"))["Vagrantfile"]
    assert (REPO_ROOT / "Vagrantfile").read_text() == default, "run: kubelab render --out . (or update Vagrantfile)"


def test_writing_twice_is_byte_identical_and_touches_nothing(tmp_path: Path) -> None:
    plan = make_plan(build_spec({}, LABS["ha-haproxy"]), arch="amd64")
    lab = LabDir(tmp_path / "lab")
    first = write_lab(plan, lab)
    snapshot = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in first}
    assert write_lab(plan, lab) == []
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in first} == snapshot


def test_vagrantfile_nodes_and_provider_blocks() -> None:
    text = rendered("ha-haproxy")["Vagrantfile"]
    nodes = re.findall(r'\{ name: "([^"]+)", ip: "([^"]+)", cpus: (\d+), memory: (\d+) \}', text)
    assert nodes == [
        ("lb-1", "192.168.56.11", "1", "512"),
        ("lb-2", "192.168.56.12", "1", "512"),
        ("master-1", "192.168.56.21", "2", "2048"),
        ("master-2", "192.168.56.22", "2", "2048"),
        ("master-3", "192.168.56.23", "2", "2048"),
        ("worker-1", "192.168.56.31", "2", "2048"),
        ("worker-2", "192.168.56.32", "2", "2048"),
    ]
    assert 'config.vm.synced_folder ".", "/vagrant", disabled: true' in text
    assert 'machine.vm.network "private_network", ip: node[:ip], netmask: NETMASK' in text
    # Nothing may depend on an interface name (eth1, enp0s8, ens6 differ per box and provider).
    assert not re.search(r"\b(eth\d|enp\d+s\d+|ens\d+)\b", text)
    # `vagrant validate` cannot see inside the VirtualBox block without VirtualBox: check it here.
    vbox = text.split('machine.vm.provider "virtualbox" do |vb|')[1].split("end")[0]
    assert set(re.findall(r"vb\.(\w+) =", vbox)) == {"name", "cpus", "memory"}
    assert "vb.cpus = node[:cpus]" in vbox and "vb.memory = node[:memory]" in vbox


def test_vagrantfile_passes_provider_options_through() -> None:
    text = rendered("five-masters")["Vagrantfile"]
    assert 'lv.driver = "qemu"' in text
    assert 'lv.cmd_line = "root=/dev/vda rw"' in text
    assert "vb.linked_clone = true" in text
    assert 'config.vm.box_version = ">= 1.0"' in text
    assert "libvirt__mtu: 1400" in text


def test_ruby_strings_cannot_interpolate() -> None:
    spec = build_spec({}, {"masters": 1, "libvirt": {"cmd_line": 'console=#{`id`} "x"'}})
    text = render_files(make_plan(spec))["Vagrantfile"]
    assert r'lv.cmd_line = "console=\#{`id`} \"x\""' in text


def test_inventory_groups_and_vars() -> None:
    files = rendered("ha-haproxy")
    inventory = yaml.safe_load(files["inventory/hosts.yml"])["all"]["children"]
    assert list(inventory["lb"]["hosts"]) == ["lb-1", "lb-2"]
    assert inventory["masters"]["hosts"]["master-2"] == {"kubelab_ip": "192.168.56.22"}
    assert list(inventory["workers"]["hosts"]) == ["worker-1", "worker-2"]
    assert set(inventory["k8s_cluster"]["children"]) == {"masters", "workers"}
    lab_vars = yaml.safe_load(files["inventory/group_vars/all/lab.yml"])
    assert lab_vars["kubelab_init_master"] == "master-1"
    assert lab_vars["kubelab_control_plane_endpoint"] == "192.168.56.10:6443"
    assert lab_vars["kubelab_pod_cidr"] == "10.244.0.0/16"
    assert lab_vars["kubelab_arch_map"] == ARCH_NAMES  # the containerd and cni roles' release file names
    assert json.loads(files["lab.json"])["spec"]["masters"] == 3


@pytest.mark.parametrize("offline", [False, True])
def test_a_lab_with_an_artifacts_folder_is_offline(tmp_path: Path, offline: bool) -> None:
    """kubelab_offline is the one switch the phases and roles read; the folder itself is rendered absolute."""
    flags = {"masters": 1, **({"artifacts": str(tmp_path)} if offline else {})}
    lab_vars = yaml.safe_load(render_files(make_plan(build_spec({}, flags)))["inventory/group_vars/all/lab.yml"])
    assert lab_vars["kubelab_offline"] is offline
    assert lab_vars["kubelab_artifacts_dir"] == (str(tmp_path.resolve()) if offline else None)


def test_vagrantfile_only_for_vagrant_providers() -> None:
    local = render_files(make_plan(build_spec({}, {"provider": "local", "masters": 1})))
    assert "Vagrantfile" not in local
    assert "inventory/hosts.yml" in local


def _bin(name: str) -> str:
    found = shutil.which(name, path=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
    if not found:
        pytest.fail(f"{name} is not installed: run `make test` (it installs the test dependencies)")
    return found


@pytest.mark.vagrant
@pytest.mark.parametrize("case", sorted(LABS))
def test_vagrant_validate(case: str, tmp_path: Path) -> None:
    """Real Vagrant parses the Vagrantfile and checks core and libvirt settings."""
    (tmp_path / "Vagrantfile").write_text(rendered(case)["Vagrantfile"])
    result = subprocess.run([require_tool("vagrant"), "validate"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "validated successfully" in result.stdout


@pytest.mark.vagrant
def test_vagrant_validate_catches_a_libvirt_typo(tmp_path: Path) -> None:
    broken = rendered("single")["Vagrantfile"].replace("lv.memory =", "lv.memroy =")
    (tmp_path / "Vagrantfile").write_text(broken)
    result = subprocess.run([require_tool("vagrant"), "validate"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode != 0
    assert "memroy" in result.stdout + result.stderr


@pytest.mark.parametrize("case", sorted(LABS))
def test_ansible_inventory_graph(case: str, tmp_path: Path) -> None:
    plan = make_plan(build_spec({}, LABS[case]), arch="amd64")
    lab = LabDir(tmp_path / "lab")
    write_lab(plan, lab)
    result = subprocess.run(
        [_bin("ansible-inventory"), "-i", str(lab.inventory_dir), "--graph"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "WARNING" not in result.stderr, result.stderr
    graph = result.stdout
    for node in plan.nodes:
        group = {"lb": "@lb:", "master": "@masters:", "worker": "@workers:"}[node.role]
        section = graph.split(group)[1].split("@")[0] if group in graph else ""
        assert f"--{node.name}" in section, f"{node.name} not under {group}\n{graph}"
    assert "@k8s_cluster:" in graph
    host_vars = subprocess.run(
        [_bin("ansible-inventory"), "-i", str(lab.inventory_dir), "--host", plan.init_master.name],
        capture_output=True,
        text=True,
        check=True,
    )
    variables = json.loads(host_vars.stdout)
    assert variables["kubelab_ip"] == plan.init_master.ip
    assert variables["kubelab_init_master"] == plan.init_master.name
