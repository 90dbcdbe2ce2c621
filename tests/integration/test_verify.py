"""`kubelab verify` node and load-balancer checks on real `local` nodes, then broken one thing at a time.

One lab (2 LBs + 1 master, Debian's containerd) is provisioned by the real prepare, runtime and loadbalancer
playbooks, as `kubelab up --until loadbalancer` does. The checks must pass on it (kubelet and package checks
report "not applicable" before their phases); then one thing at a time is broken on a node, the matching check
must fail with a message naming what is wrong while every other check still passes, and the node is repaired.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from provisioner import verify
from provisioner.lab import REPO_ROOT
from provisioner.state import LabState, save_state

pytestmark = pytest.mark.integration

NAME, SUBNET = "it-verify", "10.77.131.0/24"
DONE = {"nodes", "prepare", "runtime", "loadbalancer"}
CONTAINERD_CONFIG = "/etc/containerd/config.toml"
VIP_WAIT = 30.0  # seconds for keepalived to put the VIP on lb-1 before the fixture gives up


def vip_nodes(lab) -> list[str]:
    vip = lab.plan.spec.vip
    return [node for node in ("lb-1", "lb-2") if f" {vip}/" in lab.ssh(node, "ip -4 -o addr show").stdout]


@pytest.fixture(scope="module")
def lab(local_lab_module):
    lab = local_lab_module(
        name=NAME, node_subnet=SUBNET, masters=1, workers=0, lb="haproxy", lb_nodes=2, containerd_source="distro"
    )
    started = time.monotonic()
    done = lab.playbook("prepare.yml", "runtime.yml", "loadbalancer.yml")
    assert done.returncode == 0, (done.stdout + done.stderr)[-5000:]
    deadline = time.monotonic() + VIP_WAIT
    while vip_nodes(lab) != ["lb-1"] and time.monotonic() < deadline:
        time.sleep(0.5)
    assert vip_nodes(lab) == ["lb-1"], "keepalived did not put the VIP on lb-1 alone"
    print(f"nodes prepared in {time.monotonic() - started:.0f} s")
    return lab


def run(lab, *groups: str) -> tuple[int, list[dict[str, str]]]:
    """Run verify on some check groups; (exit code, result rows from the JSON summary)."""
    out = io.StringIO()
    code = verify.run_verify(lab.lab, only=set(groups), phases=DONE, out=out)
    summary = json.loads((lab.lab.root / "verify" / "summary.json").read_text())
    print(out.getvalue())
    return code, summary["results"]


def failures(rows: list[dict[str, str]]) -> dict[tuple[str, str], str]:
    return {(r["node"], r["check"]): r["message"] for r in rows if r["outcome"] in ("failed", "error")}


@contextmanager
def broken(lab, node: str, break_cmd: str, repair_cmd: str) -> Iterator[None]:
    """Break something on a node; repair it afterwards, also when the assertions fail."""
    result = lab.ssh(node, break_cmd)
    assert result.returncode == 0, f"could not break {node}: {result.stderr}"
    try:
        yield
    finally:
        repaired = lab.ssh(node, repair_cmd)
        assert repaired.returncode == 0, f"could not repair {node}: {repaired.stderr}"


def test_prepared_lab_passes_node_and_lb_checks(lab):
    code, rows = run(lab, "nodes", "lb")
    assert failures(rows) == {}
    assert code == 0
    by_check = {(r["node"], r["check"]): r for r in rows}
    for node in ("lb-1", "lb-2", "master-1"):
        assert by_check[(node, "swap_off")]["outcome"] == "passed"
    for check in (
        "containerd_active",
        "containerd_systemd_cgroup",
        "kernel_module[overlay]",
        "sysctl[net.ipv4.ip_forward]",
    ):
        assert by_check[("master-1", check)]["outcome"] == "passed", check
    # Kubernetes packages and the kubelet come later: reported as not applicable, never as passed.
    packages = by_check[("master-1", "kubernetes_packages_pinned_and_held")]
    assert (packages["outcome"], packages["message"]) == ("skipped", "not applicable before the packages phase")
    kubelet = by_check[("master-1", "kubelet_running_with_node_ip")]
    assert (kubelet["outcome"], kubelet["message"]) == ("skipped", "not applicable before the control-plane phase")
    # LB nodes run no containerd: those checks are not collected for them at all.
    assert ("lb-1", "containerd_active") not in by_check
    passed = {(r["node"], r["check"]) for r in rows if r["outcome"] == "passed"}
    assert {
        ("lb-1", "haproxy_listening"),
        ("lb-2", "haproxy_backends_are_all_masters"),
        ("lb-2", "keepalived_active"),
        ("lab", "vip_on_exactly_one_node"),
    } <= passed

    junit = ET.parse(lab.lab.root / "verify" / "junit.xml").getroot()
    suite = junit if junit.tag == "testsuite" else junit.find("testsuite")
    assert int(suite.get("failures")) == 0 and int(suite.get("errors")) == 0 and int(suite.get("tests")) == len(rows)
    summary = json.loads((lab.lab.root / "verify" / "summary.json").read_text())
    assert summary["groups"] == ["lb", "nodes"]
    assert summary["totals"]["passed"] == len(passed)
    # verify closed the SSH connections its checks shared (none left under its per-run ControlPath).
    config = (lab.lab.root / "verify" / "ssh_config").read_text()
    control_path = next(line.split()[1] for line in config.splitlines() if line.strip().startswith("ControlPath"))
    assert control_path.endswith("-%C")
    assert list(Path(control_path).parent.glob(Path(control_path).name.replace("%C", "*"))) == []


def test_swap_on_fails_only_the_swap_checks(lab):
    # Swap on now and at boot. `swapon` in a namespace node would turn swap on for the whole host, so the node is
    # shown a /proc/swaps with an active swap file instead (a bind mount in the node's own mount namespace).
    swaps = r"Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n/swapfile file\t\t1048572\t\t0\t\t-2\n"
    with broken(
        lab,
        "master-1",
        "cp /etc/fstab /root/fstab.kubelab && echo '/swapfile none swap sw 0 0' >> /etc/fstab"
        f" && printf '{swaps}' > /root/swaps.kubelab && mount --bind /root/swaps.kubelab /proc/swaps",
        "umount /proc/swaps && rm /root/swaps.kubelab && mv /root/fstab.kubelab /etc/fstab",
    ):
        code, rows = run(lab, "nodes")
    assert code == 1
    found = failures(rows)
    assert sorted(found) == [("master-1", "swap_not_in_fstab"), ("master-1", "swap_off")]
    assert found[("master-1", "swap_not_in_fstab")] == "/etc/fstab turns swap on at boot: /swapfile none swap sw 0 0"
    assert found[("master-1", "swap_off")].startswith("swap is on: /swapfile")


def test_stopped_containerd_fails_only_that_check(lab):
    with broken(lab, "master-1", "systemctl stop containerd", "systemctl start containerd"):
        code, rows = run(lab, "nodes")
    assert code == 1
    assert failures(rows) == {("master-1", "containerd_active"): "containerd is inactive"}


def test_systemd_cgroup_false_fails_only_that_check(lab):
    with broken(
        lab,
        "master-1",
        f"cp {CONTAINERD_CONFIG} /root/config.toml.kubelab"
        f" && sed -i 's/SystemdCgroup = true/SystemdCgroup = false/' {CONTAINERD_CONFIG}"
        f" && grep -q 'SystemdCgroup = false' {CONTAINERD_CONFIG}",
        f"mv /root/config.toml.kubelab {CONTAINERD_CONFIG}",
    ):
        code, rows = run(lab, "nodes")
    assert code == 1
    found = failures(rows)
    assert list(found) == [("master-1", "containerd_systemd_cgroup")]
    assert found[("master-1", "containerd_systemd_cgroup")].startswith("SystemdCgroup = false in plugins.")


def test_vip_on_two_nodes_fails_only_that_check(lab):
    vip = lab.plan.spec.vip
    # lb-2 is keepalived's BACKUP: the VIP sits on lb-1; a second copy on lb-2 is the split-brain case.
    with broken(lab, "lb-2", f"ip addr add {vip}/32 dev eth0", f"ip addr del {vip}/32 dev eth0"):
        code, rows = run(lab, "lb")
    assert code == 1
    assert failures(rows) == {
        ("lab", "vip_on_exactly_one_node"): f"VIP {vip} is on 2 load balancer nodes: lb-1 (eth0), lb-2 (eth0)"
    }


def test_stopped_haproxy_fails_only_that_check(lab):
    # Stopped on the BACKUP (lb-2) so keepalived keeps the VIP where it is while the checks run.
    with broken(lab, "lb-2", "systemctl stop haproxy", "systemctl start haproxy"):
        code, rows = run(lab, "lb")
    assert code == 1
    assert failures(rows) == {("lb-2", "haproxy_listening"): "haproxy is inactive"}


def kubelab(lab, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**lab.env, "PATH": f"{REPO_ROOT / '.venv' / 'bin'}:{os.environ['PATH']}"}
    argv = [str(REPO_ROOT / ".venv" / "bin" / "kubelab"), *args, "--name", NAME]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)


def test_cli_verify_before_the_cluster_phases(lab):
    # As after `kubelab up --until loadbalancer`: the lab's state says which phases are done.
    state = LabState(provider="local")
    for phase in ("nodes", "prepare", "runtime", "packages", "loadbalancer"):
        state.mark_done(phase, 1.0)
    save_state(lab.lab, state)
    try:
        done = kubelab(lab, "verify", "--only", "lb,cluster")
    finally:
        (lab.lab.root / "state.json").unlink()
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["GROUP", "NODE", "CHECK", "RESULT"]
    assert any(line.split()[:4] == ["lb", "lb-1", "haproxy_listening", "PASS"] for line in lines[1:])
    cluster = [line for line in lines if line.split()[:2] == ["cluster", "lab"]]
    assert cluster and all(line.split()[3] == "N/A" and "not applicable before the" in line for line in cluster)
    assert "cluster checks did not run: the control-plane phase of `kubelab up` has not run" in done.stdout


def test_cli_verify_cluster_without_a_cluster(lab):
    # No state recorded (a lab provisioned by hand): the cluster checks try, and say what is missing.
    done = kubelab(lab, "verify", "--only", "cluster")
    assert done.returncode == 1, done.stdout + done.stderr
    cluster = [line for line in done.stdout.splitlines() if line.split()[:2] == ["cluster", "lab"]]
    assert cluster and all("ERROR" in line and "has the control-plane phase run?" in line for line in cluster), cluster


def test_cli_unknown_group_is_refused(lab):
    done = kubelab(lab, "verify", "--only", "nodes,network")
    assert done.returncode == 2
    assert "unknown check group(s) network; choose from nodes, lb, cluster, addons, workloads" in done.stderr
