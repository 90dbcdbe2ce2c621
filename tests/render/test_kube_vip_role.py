"""The kube_vip role's tasks run for real on this machine (connection local), into a temporary Kubernetes folder.

What is real: fact gathering, the interface found by address (127.0.0.1 is on `lo`), the stat of admin.conf and
kubelet.conf, the super-admin.conf/admin.conf choice, the manifest written or not, and changed=0 on a re-run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml
from role_templates import PLAYBOOKS

PLAYBOOK = """
- name: kube-vip on this machine
  hosts: all
  connection: local
  gather_facts: true
  gather_subset: [network]
  roles:
    - role: kube_vip
"""
RECAP = re.compile(r"ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)")


def run_role(tmp: Path, kubernetes_dir: Path, **extra: object) -> tuple[int, int, str]:
    """Run the role against localhost; returns (exit code, changed count, output)."""
    playbook = tmp / "kube-vip.yml"
    playbook.write_text(PLAYBOOK)
    values = {
        "kubelab_vip": "192.0.2.250",
        "kubelab_apiserver_port": 6443,
        "kubelab_ip": "127.0.0.1",
        "kubelab_init_master": "localhost",
        "kubelab_kubernetes_minor": "1.36",
        "kubelab_kube_vip_version": "v1.0.0",
        "kube_vip_kubernetes_dir": str(kubernetes_dir),
        "ansible_python_interpreter": sys.executable,
        **extra,
    }
    env = {**os.environ, "ANSIBLE_CONFIG": str(PLAYBOOKS / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    argv = [str(Path(sys.executable).with_name("ansible-playbook")), "-i", "localhost,", "-e", json.dumps(values)]
    done = subprocess.run([*argv, str(playbook)], capture_output=True, text=True, env=env, check=False)
    output = done.stdout + done.stderr
    recap = RECAP.search(done.stdout)
    return done.returncode, int(recap.group(2)) if recap else -1, output


def manifest(kubernetes_dir: Path) -> dict:
    return yaml.safe_load((kubernetes_dir / "manifests" / "kube-vip.yaml").read_text())


def kubeconfig_of(pod: dict) -> str:
    (volume,) = pod["spec"]["volumes"]
    return volume["hostPath"]["path"]


def test_first_master_uses_super_admin_until_admin_conf_exists(tmp_path: Path) -> None:
    k8s = tmp_path / "kubernetes"
    rc, changed, out = run_role(tmp_path, k8s)
    assert rc == 0, out[-4000:]
    pod = manifest(k8s)
    assert kubeconfig_of(pod) == f"{k8s}/super-admin.conf"
    env = {entry["name"]: entry.get("value") for entry in pod["spec"]["containers"][0]["env"]}
    assert env["vip_interface"] == "lo" and env["address"] == "192.0.2.250" and env["port"] == "6443"
    assert (k8s / "manifests" / "kube-vip.yaml").stat().st_mode & 0o777 == 0o600

    rc, changed, out = run_role(tmp_path, k8s)
    assert (rc, changed) == (0, 0), out[-4000:]

    (k8s / "admin.conf").write_text("kind: Config\n")  # what `kubeadm init` leaves behind
    rc, changed, out = run_role(tmp_path, k8s)
    assert rc == 0 and changed == 1, out[-4000:]
    assert kubeconfig_of(manifest(k8s)) == f"{k8s}/admin.conf"


def test_before_1_29_admin_conf_is_used_from_the_start(tmp_path: Path) -> None:
    k8s = tmp_path / "kubernetes"
    rc, _, out = run_role(tmp_path, k8s, kubelab_kubernetes_minor="1.28")
    assert rc == 0, out[-4000:]
    assert kubeconfig_of(manifest(k8s)) == f"{k8s}/admin.conf"


def test_other_masters_get_kube_vip_only_after_joining(tmp_path: Path) -> None:
    k8s = tmp_path / "kubernetes"
    rc, _, out = run_role(tmp_path, k8s, kubelab_init_master="master-1")
    assert rc == 0, out[-4000:]
    assert not (k8s / "manifests" / "kube-vip.yaml").exists()  # kubeadm join wants an empty manifests folder

    (k8s / "kubelet.conf").write_text("kind: Config\n")  # what `kubeadm join` leaves behind
    (k8s / "admin.conf").write_text("kind: Config\n")
    rc, changed, out = run_role(tmp_path, k8s, kubelab_init_master="master-1")
    assert (rc, changed) == (0, 1), out[-4000:]
    assert kubeconfig_of(manifest(k8s)) == f"{k8s}/admin.conf"


def test_a_node_without_the_private_address_fails_clearly(tmp_path: Path) -> None:
    k8s = tmp_path / "kubernetes"
    rc, _, out = run_role(tmp_path, k8s, kubelab_ip="198.51.100.77")
    assert rc != 0
    assert "No interface of localhost has the address 198.51.100.77" in out
    assert not (k8s / "manifests").exists()
