"""The reset role for real, inside a throw-away network namespace on this machine (root only).

ansible-playbook runs in the namespace (connection local), so `ip link`, iptables and nftables act on the
namespace's own interfaces and rules; the role's file paths are pointed at a temporary folder. Kubernetes and
CNI leftovers are planted first: the role must remove exactly those and keep everything else, and a second
run must change nothing. (kubeadm itself is not on this machine: `kubeadm reset` is skipped, as on a node
where it is missing. This kernel has no dummy links: veth pairs stand in for the CNI's devices.)
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hosttools import require_tools

from provisioner.lab import REPO_ROOT

pytestmark = pytest.mark.integration

NAMESPACE = f"it-k8s-reset-{os.getpid()}"
RECAP = re.compile(r"ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)")
PLANT = """
set -e
ip link set lo up
ip link add cni0 type bridge
ip link add flannel.1 type veth peer name flannel-peer
ip link add kube-ipvs0 type veth peer name ipvs-peer
ip link add keep0 type veth peer name keep1
iptables -N KUBE-SERVICES
iptables -A INPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
iptables -t nat -N KUBE-POSTROUTING
iptables -t nat -A POSTROUTING -j KUBE-POSTROUTING
iptables -N cali-INPUT
iptables -A INPUT -m comment --comment "cali:Cz_u1IQiXIMmKD4c" -j cali-INPUT
iptables -N KEEP-ME
iptables -A INPUT -p tcp --dport 22 -j ACCEPT
iptables -t nat -A POSTROUTING -s 10.99.0.0/24 -j MASQUERADE
nft add table ip kube-proxy
nft add table inet keepme
"""


def in_ns(command: str) -> str:
    done = subprocess.run(["ip", "netns", "exec", NAMESPACE, "sh", "-c", command], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def namespace() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    require_tools("ip", "iptables", "nft")  # PLANT and the role run them in the namespace
    subprocess.run(["ip", "netns", "add", NAMESPACE], check=True)
    try:
        yield NAMESPACE
    finally:
        subprocess.run(["ip", "netns", "del", NAMESPACE], check=False)


def run_reset(tmp: Path, paths: list[str], emptied: list[str]) -> tuple[int, str]:
    inventory = tmp / "hosts.yml"
    inventory.write_text(json.dumps({"k8s_cluster": {"hosts": {"node": {"ansible_connection": "local"}}}}))
    values = {
        "reset_paths": paths,
        "reset_emptied_dirs": emptied,
        "kubelab_lab_dir": str(tmp / "lab"),
        "ansible_become": False,  # already root; this machine has no sudo
        "ansible_python_interpreter": sys.executable,
    }
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO_ROOT / "playbooks" / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    argv = ["ip", "netns", "exec", NAMESPACE, str(Path(sys.executable).with_name("ansible-playbook"))]
    argv += ["-i", str(inventory), "-e", json.dumps(values), str(REPO_ROOT / "playbooks" / "reset.yml")]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-5000:]
    changed = [int(match[1]) for match in RECAP.findall(done.stdout)]
    assert len(changed) == 1, output[-3000:]
    return changed[0], output


def test_reset_removes_kubernetes_leftovers_and_keeps_the_rest(namespace: str, tmp_path: Path) -> None:
    in_ns(PLANT)
    cni_conf = tmp_path / "etc-cni-net.d"
    cni_conf.mkdir()
    (cni_conf / "10-flannel.conflist").write_text("{}")
    state = tmp_path / "var-lib-cni" / "networks"
    state.mkdir(parents=True)
    kubeconfig = tmp_path / "lab" / "kubeconfig"
    kubeconfig.parent.mkdir()
    kubeconfig.write_text("kind: Config\n")
    keep = tmp_path / "keep"
    keep.write_text("not Kubernetes")

    changed, output = run_reset(tmp_path, [str(state.parent)], [str(cni_conf)])
    assert changed > 0, output[-3000:]

    links = in_ns("ip -o link show")
    for gone in ("cni0", "flannel.1", "kube-ipvs0"):
        assert not re.search(rf" {re.escape(gone)}[:@]", links), links
    assert re.search(r" keep0[:@]", links), links
    rules = in_ns("iptables-save")
    assert not re.search(r"KUBE-|cali", rules), rules
    assert "--dport 22 -j ACCEPT" in rules and ":KEEP-ME" in rules and "-s 10.99.0.0/24 -j MASQUERADE" in rules
    tables = in_ns("nft list tables")
    assert "kube-proxy" not in tables and "table inet keepme" in tables
    assert not state.parent.exists() and not kubeconfig.exists()
    assert cni_conf.is_dir() and not list(cni_conf.iterdir())  # emptied; containerd's CRI watches the folder
    assert keep.read_text() == "not Kubernetes"

    changed, output = run_reset(tmp_path, [str(state.parent)], [str(cni_conf)])
    assert changed == 0, output[-3000:]
