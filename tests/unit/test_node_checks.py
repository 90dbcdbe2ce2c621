"""Node/LB check parsers, lab facts, the verify report and the failover arithmetic (no nodes needed)."""

from __future__ import annotations

import io
import json
import socket
from pathlib import Path

import pytest

from provisioner import failover, verify
from provisioner.checks import conftest, labfacts, nodeparse
from provisioner.lab import LabDir

PROC_SWAPS_ON = """Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority
/swap.img                               file\t\t2097148\t\t0\t\t-2
"""
FSTAB = """# /etc/fstab: static file system information.
UUID=0b4c2f6e-1f3a-4a8e-9d2c-5e7f8a9b0c1d /      ext4  errors=remount-ro 0 1
/swap.img       none    swap    sw      0       0
# /dev/sdb1 none swap sw 0 0
"""
# `ss -Htlnp` on a load balancer: haproxy on the VIP and loopback, sshd everywhere.
SS_LB = """LISTEN 0      4096   10.77.131.10:6443      0.0.0.0:*    users:(("haproxy",pid=812,fd=7))
LISTEN 0      4096      127.0.0.1:6443      0.0.0.0:*    users:(("haproxy",pid=812,fd=8))
LISTEN 0      128         0.0.0.0:22        0.0.0.0:*    users:(("sshd",pid=201,fd=3))
LISTEN 0      128            [::]:22           [::]:*    users:(("sshd",pid=201,fd=4))
"""
HAPROXY_CFG = """global
    daemon
defaults
    mode tcp
frontend kube-apiserver
    bind 10.77.131.10:6443
    bind 127.0.0.1:6443
    default_backend kube-apiserver
backend kube-apiserver
    option httpchk
    server master-1 10.77.131.21:6443 check
    server master-2 10.77.131.22:6443 check
    # server master-3 10.77.131.23:6443 check
"""
IP_JSON = json.dumps(
    [
        {"ifname": "lo", "addr_info": [{"family": "inet", "local": "127.0.0.1", "prefixlen": 8}]},
        {
            "ifname": "eth0",
            "addr_info": [
                {"family": "inet", "local": "10.77.131.11", "prefixlen": 24},
                {"family": "inet", "local": "10.77.131.10", "prefixlen": 32},
            ],
        },
    ]
)


def test_swap_parsers():
    assert nodeparse.active_swaps(PROC_SWAPS_ON) == ["/swap.img"]
    assert nodeparse.active_swaps(PROC_SWAPS_ON.splitlines()[0] + "\n") == []
    assert nodeparse.fstab_swap_entries(FSTAB) == ["/swap.img       none    swap    sw      0       0"]


def test_listeners_and_haproxy_on_the_vip():
    listeners = nodeparse.tcp_listeners(SS_LB)
    assert nodeparse.Listener("10.77.131.10", 6443, "haproxy") in listeners
    assert [x.address for x in nodeparse.listens_on(listeners, "10.77.131.10", 6443)] == ["10.77.131.10"]
    assert [x.address for x in nodeparse.listens_on(listeners, "10.77.131.10", 22)] == ["0.0.0.0", "::"]
    assert nodeparse.listens_on(listeners, "10.77.131.10", 8443) == []


def test_haproxy_servers_ignore_comments_and_frontends():
    assert nodeparse.haproxy_servers(HAPROXY_CFG) == {"10.77.131.21:6443", "10.77.131.22:6443"}
    assert nodeparse.haproxy_sections(HAPROXY_CFG)["frontend kube-apiserver"]["bind"] == [
        "10.77.131.10:6443",
        "127.0.0.1:6443",
    ]


def test_ipv4_addresses_per_interface():
    assert nodeparse.ipv4_addresses(IP_JSON)["eth0"] == {"10.77.131.11", "10.77.131.10"}


def test_kubelet_flag_from_proc_cmdline_and_ps():
    cmdline = b"/usr/bin/kubelet\0--kubeconfig=/etc/kubernetes/kubelet.conf\0--node-ip=10.77.131.21\0"
    assert nodeparse.kubelet_flag(cmdline, "node-ip") == "10.77.131.21"
    assert nodeparse.kubelet_flag("/usr/bin/kubelet --node-ip 10.77.131.31 --v=2", "node-ip") == "10.77.131.31"
    assert nodeparse.kubelet_flag(b"/usr/bin/kubelet\0--v=2\0", "node-ip") is None


def test_dpkg_versions_and_pins():
    output = "kubelet 1.36.4-1.1 installed\nkubeadm 1.36.4-1.1 installed\nkubectl  not-installed\n"
    assert nodeparse.dpkg_versions(output) == {"kubelet": "1.36.4-1.1", "kubeadm": "1.36.4-1.1"}
    assert nodeparse.version_matches("1.36.4-1.1", "1.36")
    assert nodeparse.version_matches("1.36.4-1.1", "1.36.4")
    assert not nodeparse.version_matches("1.36.4-1.1", "1.36.5")
    assert not nodeparse.version_matches("1.360.1-1.1", "1.36")
    assert not nodeparse.version_matches("1.35.9-1.1", "1.36")


def test_crictl_runtime_ready():
    info = {
        "status": {
            "conditions": [
                {"type": "RuntimeReady", "status": True, "reason": "", "message": ""},
                {"type": "NetworkReady", "status": False, "reason": "NetworkPluginNotReady", "message": "cni"},
            ]
        }
    }
    ready, summary = nodeparse.crictl_runtime_ready(json.dumps(info))
    assert ready and "NetworkReady=False (NetworkPluginNotReady)" in summary
    info["status"]["conditions"][0]["status"] = False
    assert not nodeparse.crictl_runtime_ready(json.dumps(info))[0]


# --- lab facts ------------------------------------------------------------------------------------


def write_lab(root: Path, masters: int = 3, lb: str = "haproxy", state: dict | None = None) -> LabDir:
    lab = LabDir(root)
    lab.group_vars.parent.mkdir(parents=True)
    lbs = {"lb-1": {"kubelab_ip": "10.77.131.11"}, "lb-2": {"kubelab_ip": "10.77.131.12"}} if lb == "haproxy" else {}
    hosts = {
        "all": {
            "children": {
                "lb": {"hosts": lbs},
                "masters": {
                    "hosts": {f"master-{i}": {"kubelab_ip": f"10.77.131.{20 + i}"} for i in range(1, masters + 1)}
                },
                "workers": {"hosts": {"worker-1": {"kubelab_ip": "10.77.131.31"}}},
                "k8s_cluster": {"children": {"masters": {}, "workers": {}}},
            }
        }
    }
    lab.hosts_inventory.write_text(json.dumps(hosts))
    variables = {
        "kubelab_lb": lb,
        "kubelab_vip": "10.77.131.10" if lb != "none" else None,
        "kubelab_api_port": 6443,
        "kubelab_apiserver_port": 6443,
        "kubelab_kubernetes_version": "1.36",
        "kubelab_init_master": "master-1",
    }
    lab.group_vars.write_text(json.dumps(variables))
    if state is not None:
        (root / "state.json").write_text(json.dumps(state))
    return lab


def test_lab_facts_groups_and_vip_holders(tmp_path):
    facts = labfacts.read_lab(write_lab(tmp_path).root)
    assert facts.masters == {"master-1": "10.77.131.21", "master-2": "10.77.131.22", "master-3": "10.77.131.23"}
    assert facts.group_of("worker-1") == {"workers", "k8s_cluster", "all"}
    assert facts.group_of("lb-1") == {"lb", "all"}
    assert facts.vip_holders == {"lb-1": "10.77.131.11", "lb-2": "10.77.131.12"}
    assert facts.api_host == "10.77.131.10"
    assert facts.kubernetes_minor == 36


def test_lab_facts_kube_vip_holders_are_masters(tmp_path):
    facts = labfacts.read_lab(write_lab(tmp_path, lb="kube-vip").root)
    assert set(facts.vip_holders) == {"master-1", "master-2", "master-3"}


def test_missing_inventory_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="kubelab render"):
        labfacts.read_lab(tmp_path)


def test_phases_from_the_state_file(tmp_path):
    lab = write_lab(tmp_path, state={"version": 1, "phases": {"nodes": {}, "prepare": {}}})
    done = labfacts.phases_done(lab.root)
    assert done == {"nodes", "prepare"}
    assert labfacts.phase_reached(done, "prepare") and not labfacts.phase_reached(done, "runtime")
    assert labfacts.phase_reached(None, "cni")


# --- verify report --------------------------------------------------------------------------------


def test_phases_given_on_the_command_line(tmp_path):
    class Config:
        def __init__(self, value):
            self.value = value

        def getoption(self, name):
            return self.value

    lab = labfacts.read_lab(write_lab(tmp_path).root)
    assert conftest._done(Config("none"), lab) == set()  # verify's argv when no phase is done
    assert conftest._done(Config("all"), lab) is None
    assert conftest._done(Config("prepare,runtime"), lab) == {"prepare", "runtime"}
    with pytest.raises(pytest.UsageError, match="unknown phase"):
        conftest._done(Config("prepare,bogus"), lab)
    assert "--kubelab-phases=none" in verify.pytest_argv(LabDir(tmp_path), {"nodes"}, phases=set())


def test_parse_groups():
    assert verify.parse_groups("nodes, lb") == {"nodes", "lb"}
    assert verify.parse_groups(None) is None
    with pytest.raises(verify.VerifyError, match="choose from nodes, lb, cluster, addons, workloads"):
        verify.parse_groups("nodes,etcd")


def test_pytest_argv_selects_group_modules_and_phases(tmp_path):
    argv = verify.pytest_argv(LabDir(tmp_path), {"lb", "nodes"}, phases={"prepare", "nodes"})
    modules = [Path(a).name for a in argv if a.endswith(".py")]
    assert modules == ["test_nodes.py", "test_lb.py"]
    assert f"--ansible-inventory={tmp_path / 'inventory'}" in argv
    assert "--kubelab-phases=nodes,prepare" in argv


def test_table_shows_observed_value_of_failures():
    rows = [
        {
            "group": "nodes",
            "node": "master-1",
            "check": "swap_off",
            "outcome": "failed",
            "message": "swap is on: /swap.img",
        },
        {"group": "lb", "node": "lb-1", "check": "haproxy_listening", "outcome": "passed", "message": ""},
        {"group": "nodes", "node": "master-1", "check": "kubelet", "outcome": "skipped", "message": "not applicable"},
    ]
    lines = verify.format_table(rows).splitlines()
    assert lines[0].split() == ["GROUP", "NODE", "CHECK", "RESULT"]
    assert lines[1].split()[:4] == ["nodes", "master-1", "swap_off", "FAIL"] and lines[1].endswith(
        "swap is on: /swap.img"
    )
    assert lines[2].split() == ["lb", "lb-1", "haproxy_listening", "PASS"]
    assert lines[3].split()[3] == "N/A"
    assert verify.summarise(rows) == {"passed": 1, "failed": 1, "error": 0, "skipped": 1}


def test_verify_refuses_a_lab_without_nodes(tmp_path):
    lab = write_lab(tmp_path)
    with pytest.raises(verify.VerifyError, match="not up"):
        verify.run_verify(lab, out=io.StringIO())


def test_every_check_group_has_its_module():
    assert [g for g in verify.GROUPS if not (verify.CHECKS_DIR / f"test_{g}.py").is_file()] == []


def test_cluster_checks_before_the_cluster_phases_say_so(tmp_path):
    # As after `kubelab up --until loadbalancer`: no check can run, nothing fails, and the reason is printed.
    done = {p: {} for p in ("nodes", "prepare", "runtime", "packages", "loadbalancer")}
    lab = write_lab(tmp_path / "lab-x", state={"version": 1, "phases": done})
    lab.connection_inventory.write_text("all: {}\n")
    out = io.StringIO()
    assert verify.run_verify(lab, only={"cluster"}, workloads=True, out=out) == 0
    text = out.getvalue()
    rows = json.loads((lab.root / "verify" / "summary.json").read_text())["results"]
    assert {r["group"] for r in rows} == {"cluster", "workloads"}
    assert {r["outcome"] for r in rows} == {"skipped"}
    assert {r["message"] for r in rows} == {
        "not applicable before the control-plane phase",
        "not applicable before the cni phase",
    }
    for group, phase in (("cluster", "control-plane"), ("workloads", "cni")):
        assert (
            f"{group} checks did not run: the {phase} phase of `kubelab up` has not run on this lab"
            " (`kubelab up --name lab-x` builds the cluster)"
        ) in text
    junit = (lab.root / "verify" / "junit.xml").read_text()
    assert 'name="kubelab-verify"' in junit and "test_cronjob_fires" in junit


def test_phase_notes_only_when_a_whole_group_waits():
    waiting = {"group": "cluster", "outcome": "skipped", "message": "not applicable before the cni phase"}
    failed = {"group": "cluster", "outcome": "failed", "message": "/readyz: [-]etcd failed"}
    assert verify.phase_notes([waiting], "lab") == [
        "cluster checks did not run: the cni phase of `kubelab up` has not run on this lab"
        " (`kubelab up --name lab` builds the cluster)"
    ]
    assert verify.phase_notes([waiting, failed], "lab") == []


# --- failover -------------------------------------------------------------------------------------


def test_longest_outage():
    assert failover.longest_outage([]) == 0
    assert failover.longest_outage([(0.0, True), (0.5, True)]) == 0
    samples = [(0.0, True), (0.5, False), (1.0, False), (3.5, True), (4.0, False), (4.5, True)]
    assert failover.longest_outage(samples) == 3.0
    assert failover.longest_outage([(0.0, True), (1.0, False), (6.0, False)]) == 5.0


def test_quorum():
    assert [failover.quorum(n) for n in (1, 3, 5, 7)] == [1, 2, 3, 4]


def test_failover_refuses_a_single_master_lab(tmp_path):
    facts = labfacts.read_lab(write_lab(tmp_path, masters=1, lb="none").root)
    with pytest.raises(failover.FailoverError, match=r"1 master.*--masters 3"):
        failover.check_lab(facts)


def test_failover_needs_a_vip(tmp_path):
    facts = labfacts.read_lab(write_lab(tmp_path, lb="none").root)
    with pytest.raises(failover.FailoverError, match="no virtual IP"):
        failover.check_lab(facts)


def test_ssh_failures_are_reported_as_unreachable_nodes():
    # The crash message testinfra 10.2 gives when ssh exits 255 (seen for a node that does not answer).
    crash = (
        "RuntimeError: CommandResult(backend=<testinfra.backend.ssh.SshBackend object at 0x7f666546a4d0>,"
        r" exit_status=255, command=b'true', _stdout=b'', _stderr=b'Connection timed out during banner exchange\r\n"
        r"Connection to 10.77.131.21 port 22 timed out\r\n')"
    )
    assert conftest.ssh_failure(crash) == (
        "cannot reach the node over SSH: Connection to 10.77.131.21 port 22 timed out"
        " (are the lab's nodes up? `kubelab status`)"
    )
    assert conftest.ssh_failure("AssertionError: containerd is inactive") is None
    remote_failure = crash.replace("exit_status=255", "exit_status=1")
    assert conftest.ssh_failure(remote_failure) is None


def test_verify_on_unreachable_nodes_names_ssh(tmp_path):
    # Real ssh to a closed port on this host: every node check errors with ssh's own message, exit code 1.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    lab = write_lab(tmp_path / "down", masters=1, lb="none")
    hosts = {"lb": {}, "masters": ["master-1"], "workers": ["worker-1"]}
    connection = {
        "all": {
            "hosts": {
                name: {"ansible_host": "127.0.0.1", "ansible_port": port, "ansible_user": "root"}
                for names in hosts.values()
                for name in names
            }
        }
    }
    lab.connection_inventory.write_text(json.dumps(connection))
    out = io.StringIO()
    assert verify.run_verify(lab, only={"nodes"}, out=out) == 1
    rows = json.loads((lab.root / "verify" / "summary.json").read_text())["results"]
    ran = [r for r in rows if r["outcome"] != "skipped"]
    assert {r["node"] for r in ran} == {"master-1", "worker-1"}
    expected = f"cannot reach the node over SSH: ssh: connect to host 127.0.0.1 port {port}: Connection refused"
    assert {r["outcome"] for r in ran} == {"failed"}
    assert {r["message"] for r in ran} == {f"{expected} (are the lab's nodes up? `kubelab status`)"}


def test_artifacts_form_says_how_the_labs_folder_packs_kubernetes(tmp_path: Path) -> None:
    def facts(folder: str | None) -> labfacts.LabFacts:
        return labfacts.LabFacts(root=tmp_path, groups={}, variables={"kubelab_artifacts_dir": folder})

    assert facts(None).artifacts_form is None
    (tmp_path / "artifacts.json").write_text(json.dumps({"form": "debs", "artifacts": []}))
    assert facts(str(tmp_path)).artifacts_form == "debs"
    (tmp_path / "artifacts.json").write_text(json.dumps({"form": "bin", "artifacts": []}))
    assert facts(str(tmp_path)).artifacts_form == "bin"


def test_kubectl_client_version_is_read_from_its_json() -> None:
    text = json.dumps({"clientVersion": {"gitVersion": "v1.36.3", "major": "1"}, "kustomizeVersion": "v5"})
    assert nodeparse.kubectl_client_version(text) == "v1.36.3"
    assert nodeparse.kubectl_client_version("error: unknown flag") == ""


def test_lab_facts_read_the_folders_artifacts_entries(tmp_path: Path) -> None:
    entry = {"path": "bin/kubeadm", "kind": "binary", "name": "kubeadm", "sha256": "ab" * 32}
    (tmp_path / "artifacts.json").write_text(json.dumps({"form": "bin", "artifacts": [entry]}))
    with_folder = labfacts.LabFacts(root=tmp_path, groups={}, variables={"kubelab_artifacts_dir": str(tmp_path)})
    assert with_folder.artifacts_dir == tmp_path and with_folder.artifacts == [entry]
    without = labfacts.LabFacts(root=tmp_path, groups={}, variables={"kubelab_artifacts_dir": ""})
    assert without.artifacts_dir is None and without.artifacts == []
