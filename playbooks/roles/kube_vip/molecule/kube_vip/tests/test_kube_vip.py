"""kube-vip holding the API's VIP on three masters: kubelab's shipped checks, the edge VIP and port, `kubelab up`
finishing the lab with nothing left to change and its verify passing, and failover of the VIP's holder."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

from provisioner.checks.labfacts import LabFacts
from provisioner.checks.test_cluster import (  # noqa: F401 (collected here)
    test_etcd_members_are_the_masters,
    test_etcd_members_healthy,
    test_kube_vip_runs_on_every_master,
    test_kubeconfig_server_is_the_endpoint,
    test_nodes_ready_with_private_ips,
    test_readyz_through_the_endpoint,
    test_system_and_cni_pods_running,
)
from provisioner.checks.test_lb import test_vip_on_exactly_one_node  # noqa: F401

SCENARIO_LAB = yaml.safe_load((Path(__file__).parents[1] / "lab.yml").read_text())


def test_the_api_answers_on_the_edge_vip_and_port(lab: LabFacts) -> None:
    kubeconfig = yaml.safe_load((lab.root / "kubeconfig").read_text())
    server = kubeconfig["clusters"][0]["cluster"]["server"]
    assert server == f"https://{SCENARIO_LAB['vip']}:{SCENARIO_LAB['api_port']}"


def kubelab(*args: str) -> subprocess.CompletedProcess[str]:
    """The kubelab CLI on this scenario's lab (KUBELAB_HOME comes from the scenario's environment)."""
    argv = [str(Path(sys.executable).parent / "kubelab"), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=1200)


def test_kubelab_up_finds_nothing_to_change_and_verifies_every_group(lab: LabFacts) -> None:
    done = kubelab("up", "--name", lab.root.name)
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-2000:]
    for phase in ("loadbalancer", "control-plane", "workers", "cni"):
        line = next(line for line in done.stdout.splitlines() if line.startswith(f"✓ {phase} "))
        assert not re.search(r"[1-9]\d* changed", line), line  # (workers: no host to run on)
    assert "✓ verify" in done.stdout and " 0 failed" in done.stdout


def test_failover_of_the_kube_vip_holder_keeps_the_api_up(lab: LabFacts) -> None:
    done = kubelab("test", "failover", "--name", lab.root.name)
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-2000:]
    assert "PASS  VIP moved" in done.stdout and "PASS  API answers through the VIP" in done.stdout
