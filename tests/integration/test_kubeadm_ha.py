"""The mission for real: a kubeadm HA cluster (3 masters with stacked etcd behind 2 haproxy/keepalived nodes
and a VIP, 1 worker, Flannel) on local nodes, from built artifacts folders: it starts on Kubernetes 1.35 and
is upgraded to 1.36, so every later test runs on an upgraded cluster.

One lab serves the whole module; the tests run in order, the disruptive ones last:
1. `kubelab up` is SIGKILLed while master-2 joins; `kubelab up` again recovers it (etcd ends with exactly three
   started members) and finishes every phase, verify included.
2. Every node is Ready on its private address; the kubeconfig talks to the VIP.
3. `kubelab upgrade --to 1.36` with a Deployment of two replicas (PodDisruptionBudget) answering a request loop
   from worker-1 throughout: cut short after master-1, then run again, it goes on with master-2 (master-1 is
   not drained twice); every node on 1.36, three etcd members, verify --workloads passing, a downgrade
   refused; the share of failed requests and the longest failure are printed.
4. kubectl on the host reaches the lab through `kubelab kubeconfig --merge`.
5. A second `kubelab up --from packages` changes nothing in any phase.
6. No secret of the run (a real bootstrap token, the admin client key, node keys) leaks into logs, state or
   console output; the files that hold them are 0600.
7. Each cluster check fails, naming what broke, when its subject is broken, and passes again once restored.
8. `kubelab test failover`: VIP holder and a master stopped, the API keeps answering through the VIP.
9. `halt` then `resume`: the cluster comes back and resume's checks pass.
10. `kubelab etcd snapshot`, a ConfigMap deleted, `kubelab etcd restore`: the ConfigMap is back, etcd has its
   three healthy members and the cluster checks pass; a damaged snapshot is refused before anything changes.
11. `kubelab node remove master-2 master-3` (one alone is refused: an even count): etcd keeps one member and
   haproxy one backend; adding three nodes is refused (the pod range holds one /24 per node, four in all);
   `kubelab node add --masters 2` adds master-4 and master-5 on the next addresses (removed numbers are not
   reused) on the /24s the removed masters freed: three members and three backends again.
The lab sits at edges the plan-time limits accept (VIP on the subnet's last host address, a pod range of
exactly one /24 per node), so the real components cross-check those rules.
The lab is destroyed at the end, also after a failure, and must leave nothing on the host.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import secretscan
from builtartifacts import CNI, KUBERNETES_MINOR, UPGRADE_FROM_MINOR, built_folder, kubernetes_version
from clusterlab import ClusterLab, destroyed_after
from hosttools import require_tools

from provisioner.failover import longest_outage
from provisioner.providers import local_network
from provisioner.providers.local import TOOLS as LOCAL_TOOLS

pytestmark = pytest.mark.integration

NAME = "it-k8sha"
SUBNET = "10.77.161.0/24"
MASTERS = {"master-1": "10.77.161.21", "master-2": "10.77.161.22", "master-3": "10.77.161.23"}
WORKER = {"worker-1": "10.77.161.31"}
# Edges the plan-time limits accept, built for real: the VIP on the subnet's last host address, and a pod
# range with exactly one /24 per Kubernetes node (3 masters + 1 worker).
VIP = "10.77.161.254"
POD_CIDR = "10.244.0.0/22"


class Lab(ClusterLab):
    target: Path  # the artifacts folder `kubelab upgrade` goes to (the lab starts on `folder`, one minor below)

    def verify(self, *groups: str, check: str | None = None) -> tuple[int, dict[str, dict[str, str]]]:
        """`kubelab verify --only GROUPS [--check CHECK]`: exit code and the rows by check name (node-less rows)."""
        only = ("--check", check) if check else ()
        done = self.cli("verify", "--name", NAME, "--only", ",".join(groups), *only, timeout=900)
        summary = json.loads((self.root / "verify" / "summary.json").read_text())
        return done.returncode, {row["check"]: row for row in summary["results"] if row["node"] == "lab"}

    def etcd_members(self) -> list[dict]:
        argv = (
            "kubectl --kubeconfig /etc/kubernetes/admin.conf -n kube-system exec etcd-master-1 -- etcdctl "
            "--endpoints=https://127.0.0.1:2379 --cacert=/etc/kubernetes/pki/etcd/ca.crt "
            "--cert=/etc/kubernetes/pki/etcd/healthcheck-client.crt "
            "--key=/etc/kubernetes/pki/etcd/healthcheck-client.key member list -w json"
        )
        done = self.ssh("master-1", argv)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)["members"]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    require_tools(*LOCAL_TOOLS)
    folder = built_folder(UPGRADE_FROM_MINOR)
    home = tmp_path_factory.mktemp("kubelab-home")
    with destroyed_after(home, NAME, SUBNET):
        lab = Lab(NAME, home, folder, kubernetes_version(folder))
        lab.target = built_folder(KUBERNETES_MINOR)
        yield lab


def up_argv(lab: Lab) -> list[str]:
    return [
        *(sys.executable, "-m", "provisioner.cli", "up", "--provider", "local", "--name", NAME),
        *("--node-subnet", SUBNET, "--masters", "3", "--workers", "1", "--lb", "haproxy", "--cni", CNI),
        *("--vip", VIP, "--pod-cidr", POD_CIDR),
        *("--artifacts", str(lab.folder), "--k8s-version", lab.version),
    ]


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(1)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def test_up_killed_while_master_2_joins_then_up_again_completes_the_lab(lab: Lab) -> None:
    # kubelab's Ansible callback writes each task start here at once; masters join one at a time (serial: 1),
    # master-2 first, so the first "Run kubeadm join" task is master-2's.
    events = lab.root / "logs" / ".control-plane.events"
    env = {**os.environ, "KUBELAB_HOME": str(lab.home)}
    with subprocess.Popen(
        up_argv(lab), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    ) as first:

        def master_2_joining() -> bool:
            text = events.read_text(errors="replace") if events.is_file() else ""
            return 'Run kubeadm join"' in text  # the role's task: "kubeadm : Run kubeadm join"

        def etcd_joining() -> bool:  # kubeadm has added master-2's etcd member and written its manifest
            return lab.ssh("master-2", "test -e /etc/kubernetes/manifests/etcd.yaml").returncode == 0

        try:
            wait_for(lambda: master_2_joining() or first.poll() is not None, 1500, "master-2's kubeadm join")
            assert first.poll() is None, f"kubelab up ended before master-2 joined:\n{first.stdout.read()[-3000:]}"  # type: ignore[union-attr]
            wait_for(etcd_joining, 300, "master-2's etcd manifest")
        finally:
            os.killpg(first.pid, signal.SIGKILL)
        # The join on the node dies too, as when the node restarts: master-2 is left half-joined.
        lab.ssh("master-2", "pkill -KILL -x kubeadm; true")
        lab.console.append(first.stdout.read())  # type: ignore[union-attr]
    again = lab.cli("up", "--name", NAME)
    assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-2000:]
    log = (lab.root / "logs" / "control-plane.log").read_text()
    undo = log.split("TASK [kubeadm : Undo the interrupted join on this node]", 1)[1].split("TASK [", 1)[0]
    assert "changed: [master-2]" in undo, f"the role did not undo master-2's half join:{undo}"
    members = lab.etcd_members()
    assert sorted(m.get("name", "") for m in members) == sorted(MASTERS), members
    assert all(m.get("clientURLs") and not m.get("isLearner") for m in members), members


def test_every_node_is_ready_on_its_private_ip_behind_the_vip(lab: Lab) -> None:
    # `up` ended with verify (every group); `verify --workloads` runs at the end of the upgrade below.
    nodes = json.loads(lab.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    addresses = {
        n["metadata"]["name"]: next(a["address"] for a in n["status"]["addresses"] if a["type"] == "InternalIP")
        for n in nodes
    }
    assert addresses == MASTERS | WORKER
    assert lab.server() == f"https://{VIP}:6443"
    for lb in ("lb-1", "lb-2"):  # the runtime and packages phases leave the load balancers alone
        found = lab.ssh(lb, "command -v containerd kubelet kubeadm; ls -d /etc/containerd 2>/dev/null; echo end")
        assert found.stdout.split() == ["end"], f"{lb}: {found.stdout} {found.stderr}"


UPGRADE_PROBE = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: upgrade-probe, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: upgrade-probe}}
  template:
    metadata: {labels: {app: upgrade-probe}}
    spec:
      tolerations: [{key: node-role.kubernetes.io/control-plane, effect: NoSchedule}]
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
            - {labelSelector: {matchLabels: {app: upgrade-probe}}, topologyKey: kubernetes.io/hostname}
      containers:
        - name: web
          image: IMAGE
          args: [netexec, --http-port=8080]
          readinessProbe: {httpGet: {path: /hostname, port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: upgrade-probe, namespace: default}
spec:
  selector: {app: upgrade-probe}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: upgrade-probe, namespace: default}
spec:
  minAvailable: 1
  selector: {matchLabels: {app: upgrade-probe}}
"""
# Bounded: at most REQUEST_LOOP_SECONDS, stopped earlier by the test; one line per request.
REQUEST_LOOP_SECONDS = 3000
REQUEST_LOOP = (
    "end=$(( $(date +%s) + {seconds} )); rm -f /tmp/upgrade-stop; "
    "while [ $(date +%s) -lt $end ] && [ ! -e /tmp/upgrade-stop ]; do "
    "if curl -s -m 2 -o /dev/null http://{address}/hostname; then r=ok; else r=fail; fi; "
    'echo "$(date +%s.%N) $r"; sleep 0.5; done'
)


def request_outcomes(lab: Lab) -> list[tuple[float, bool]]:
    lines = lab.ssh("worker-1", "touch /tmp/upgrade-stop; sleep 1; cat /tmp/upgrade-requests.log").stdout.split("\n")
    return [(float(when), outcome == "ok") for when, outcome in (line.split() for line in lines if line.strip())]


def test_upgrade_to_the_next_minor_node_by_node_keeps_a_service_answering(lab: Lab) -> None:
    target = kubernetes_version(lab.target)
    # Refused before anything changes: the lab's own folder holds the old version.
    refused = lab.cli("upgrade", "--to", KUBERNETES_MINOR, "--name", NAME, "--yes")
    assert refused.returncode == 1 and f"holds Kubernetes {lab.version}, not {KUBERNETES_MINOR}" in refused.stderr

    agnhost = next(e["name"] for e in artifacts_entries(lab.folder) if "/agnhost:" in e["name"])
    applied = subprocess.run(
        [str(lab.folder / "bin" / "kubectl"), "--kubeconfig", str(lab.root / "kubeconfig"), "apply", "-f", "-"],
        input=UPGRADE_PROBE.replace("IMAGE", agnhost),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert applied.returncode == 0, applied.stderr
    rolled = lab.kubectl("rollout", "status", "deployment/upgrade-probe", "--timeout=180s")
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    address = lab.kubectl("get", "service", "upgrade-probe", "-o", "jsonpath={.spec.clusterIP}").stdout
    loop = REQUEST_LOOP.format(seconds=REQUEST_LOOP_SECONDS, address=address)
    started = lab.ssh("worker-1", f"nohup sh -c '{loop}' > /tmp/upgrade-requests.log 2>&1 < /dev/null &")
    assert started.returncode == 0, started.stderr

    argv = ["upgrade", "--to", KUBERNETES_MINOR, "--artifacts", str(lab.target), "--name", NAME, "--yes"]
    env = {**os.environ, "KUBELAB_HOME": str(lab.home)}
    command = [sys.executable, "-m", "provisioner.cli", *argv]
    # Cut short while master-2's turn begins (master-1 is done): the same command goes on from there.
    with subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    ) as first:
        seen: list[str] = []
        try:
            for line in first.stdout:  # type: ignore[union-attr]
                seen.append(line)
                if "upgrade" in line and "master-2" in line and line.startswith("->"):
                    break
        finally:
            os.killpg(first.pid, signal.SIGKILL)
        lab.console.append("".join(seen))
    assert any(line.startswith("✓ upgrade") and "master-1" in line for line in seen), "".join(seen)[-4000:]
    assert "kube-apiserver" in "".join(seen) and f"v{target}" in "".join(seen), "no upgrade plan was shown"

    again = lab.cli(*argv, timeout=3600)
    outcomes = request_outcomes(lab)
    assert again.returncode == 0, again.stdout[-5000:] + again.stderr[-2000:]
    assert f"master-1 runs v{target} already" in again.stdout
    assert not re.search(r"^-> upgrade\s+master-1", again.stdout, re.M), "master-1 was upgraded (drained) twice"
    # The upgrade ends with `verify --workloads`: every group, workloads included, passing.
    assert re.search(r"^workloads\s+\S+\s+\S+\s+PASS", again.stdout, re.M), again.stdout[-3000:]
    assert re.search(r"\d+ passed, 0 failed", again.stdout), again.stdout[-3000:]

    nodes = json.loads(lab.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    assert {n["metadata"]["name"]: n["status"]["nodeInfo"]["kubeletVersion"] for n in nodes} == {
        name: f"v{target}" for name in MASTERS | WORKER
    }
    members = lab.etcd_members()
    assert sorted(m.get("name", "") for m in members) == sorted(MASTERS), members
    assert json.loads((lab.root / "lab.json").read_text())["spec"]["kubernetes_version"] == target
    back = lab.cli("upgrade", "--to", UPGRADE_FROM_MINOR, "--artifacts", str(lab.folder), "--name", NAME, "--yes")
    assert back.returncode == 1 and "would be a downgrade" in back.stderr, back.stdout + back.stderr

    # A node is out of service from its drain until its system pods run again on the new kubelet.
    drains = [float(s) for s in re.findall(r"out of service (\d+) s", "".join(seen) + again.stdout)]
    failed = sum(not ok for _, ok in outcomes)
    outage = longest_outage(outcomes)
    print(f"upgrade: {failed}/{len(outcomes)} requests failed, longest failure {outage:.1f} s, nodes out {drains}")
    assert len(outcomes) > 60, "the request loop did not run through the upgrade"
    assert outage <= max(drains, default=0.0), f"requests failed for {outage:.1f} s, longer than a drain {drains}"
    lab.kubectl("delete", "deployment,service,poddisruptionbudget", "upgrade-probe")


def artifacts_entries(folder: Path) -> list[dict]:
    return json.loads((folder / "artifacts.json").read_text())["artifacts"]


def test_kubectl_on_the_host_uses_the_merged_kubeconfig(lab: Lab, tmp_path: Path) -> None:
    env = {**os.environ, "KUBELAB_HOME": str(lab.home), "HOME": str(tmp_path)}
    merge = subprocess.run(
        [sys.executable, "-m", "provisioner.cli", "kubeconfig", "--name", NAME, "--merge"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert merge.returncode == 0, merge.stderr
    config = tmp_path / ".kube" / "config"
    assert config.stat().st_mode & 0o777 == 0o600
    argv = [str(lab.target / "bin" / "kubectl"), "--context", NAME, "get", "nodes", "-o", "name"]
    nodes = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert nodes.returncode == 0, nodes.stderr
    assert sorted(nodes.stdout.split()) == sorted(f"node/{n}" for n in MASTERS | WORKER)


def test_a_second_up_from_packages_changes_nothing(lab: Lab) -> None:
    done = lab.cli("up", "--name", NAME, "--from", "packages", "--until", "cni")
    assert done.returncode == 0, done.stdout[-4000:]
    phases = re.findall(r"✓ (\S+) .*?(\d+) changed", done.stdout)
    assert {name for name, _ in phases} >= {"packages", "loadbalancer", "control-plane", "workers", "cni"}
    changed = {name: int(count) for name, count in phases if int(count)}
    assert not changed, f"a re-run changed something: {changed}\n{done.stdout[-3000:]}"


def test_no_secret_leaks_into_logs_state_or_console(lab: Lab) -> None:
    tokens = json.loads(
        lab.kubectl(
            "-n",
            "kube-system",
            "get",
            "secrets",
            "--field-selector",
            "type=bootstrap.kubernetes.io/token",
            "-o",
            "json",
        ).stdout
    )["items"]
    import base64

    real = {
        f"bootstrap token {i}": base64.b64decode(t["data"]["token-id"]).decode()
        + "."
        + base64.b64decode(t["data"]["token-secret"]).decode()
        for i, t in enumerate(tokens)
    }
    assert real, "the cluster has no bootstrap token to look for"
    admin = lab.ssh("master-1", "grep client-key-data /etc/kubernetes/admin.conf").stdout.split()[-1]
    real["admin client key (node)"] = admin
    found = secretscan.scan(lab.home, "\n".join(lab.console))
    assert not found.leaks, "\n".join(found.leaks)
    everything = [(p, p.read_bytes().decode("utf-8", "replace")) for p in secretscan.scanned_files(lab.home)]
    everything.append((Path("console output"), "\n".join(lab.console)))
    for label, value in real.items():
        for path, text in everything:
            if value in text:
                assert path in found.holders and found.holders[path] == 0o600, f"{path} holds the {label}"


Step = Callable[[], subprocess.CompletedProcess[str]]


def break_and_restore(lab: Lab, check: str, wanted: str, breaks: Step, restores: Step) -> None:
    """Break one subject; the cluster check must fail with a message naming it, then pass once restored."""
    done = breaks()
    assert done.returncode == 0, done.stderr
    try:
        rows: dict[str, dict[str, str]] = {}

        def failing() -> bool:
            nonlocal rows
            _, rows = lab.verify("cluster", check=check)
            return rows[check]["outcome"] == "failed"

        wait_for(failing, 240, f"{check} to fail")
        assert re.search(wanted, rows[check]["message"]), rows[check]["message"]
    finally:
        done = restores()
        assert done.returncode == 0, done.stderr
    wait_for(
        lambda: lab.verify("cluster", check=check)[1][check]["outcome"] == "passed",
        300,
        f"{check} to pass once restored",
    )


def on(lab: Lab, node: str, command: str) -> Step:
    return lambda: lab.ssh(node, command)


def test_cluster_checks_fail_when_the_kubelet_of_the_worker_stops(lab: Lab) -> None:
    stop, start = on(lab, "worker-1", "systemctl stop kubelet"), on(lab, "worker-1", "systemctl start kubelet")
    break_and_restore(lab, "nodes_ready_with_private_ips", r"worker-1", stop, start)


def test_cluster_checks_fail_when_a_masters_etcd_manifest_is_moved_away(lab: Lab) -> None:
    away = on(lab, "master-3", "mv /etc/kubernetes/manifests/etcd.yaml /root/etcd.yaml")
    back = on(lab, "master-3", "mv /root/etcd.yaml /etc/kubernetes/manifests/etcd.yaml")
    break_and_restore(lab, "etcd_members_healthy", r"master-3|10\.77\.161\.23", away, back)


def test_cluster_checks_fail_when_coredns_is_scaled_to_zero(lab: Lab) -> None:
    scale = "kubectl --kubeconfig /etc/kubernetes/admin.conf -n kube-system scale deployment coredns --replicas="
    zero, two = on(lab, "master-1", scale + "0"), on(lab, "master-1", scale + "2")
    break_and_restore(lab, "dns_answers_kubernetes_default", r"kubernetes\.default", zero, two)


def test_cluster_checks_fail_when_pod_traffic_between_two_nodes_is_dropped(lab: Lab) -> None:
    # The nodes carry no iptables of their own: the host's runs in worker-1's network namespace, where it drops
    # Flannel's VXLAN packets from master-2.
    require_tools("iptables")
    rule = ["INPUT", "-s", MASTERS["master-2"], "-p", "udp", "--dport", "8472", "-j", "DROP"]
    netns = ["ip", "netns", "exec", local_network.netns_name(NAME, "worker-1"), "iptables", "-w"]

    def iptables(action: str) -> Step:
        return lambda: subprocess.run([*netns, action, *rule], capture_output=True, text=True, timeout=30)

    wanted = r"master-2.*worker-1|worker-1.*master-2"
    break_and_restore(lab, "pod_to_pod_across_every_pair_of_nodes", wanted, iptables("-I"), iptables("-D"))


def test_failover_keeps_the_api_up_through_the_vip(lab: Lab) -> None:
    done = lab.cli("test", "failover", "--name", NAME, timeout=1200)
    assert done.returncode == 0, done.stdout[-5000:]
    assert re.search(r"API unreachable for \d+\.\d s", done.stdout), done.stdout[-3000:]


def test_halt_then_resume_brings_the_cluster_back(lab: Lab) -> None:
    halt = lab.cli("halt", "--name", NAME)
    assert halt.returncode == 0, halt.stderr
    resume = lab.cli("resume", "--name", NAME, timeout=1200)
    assert resume.returncode == 0, resume.stdout[-4000:] + resume.stderr[-2000:]
    assert "nodes Ready, system pods running" in resume.stdout, resume.stdout[-2000:]
    readyz = lab.kubectl("get", "--raw", "/readyz")
    assert (readyz.returncode, readyz.stdout.strip()) == (0, "ok"), readyz.stderr


def test_etcd_restore_brings_back_what_the_snapshot_held(lab: Lab, tmp_path: Path) -> None:
    probe = ("-n", "default", "configmap", "kubelab-restore-probe")
    assert lab.kubectl("create", *probe, "--from-literal=kept=yes").returncode == 0
    snap = lab.cli("etcd", "snapshot", "--name", NAME, timeout=600)
    assert snap.returncode == 0, snap.stdout + snap.stderr
    path = Path(re.search(r"from master-1: (\S+)\n", snap.stdout).group(1))  # type: ignore[union-attr]
    assert path.parent == lab.root / "etcd" and (path.stat().st_mode & 0o777) == 0o600
    assert re.search(r"mode 0600, revision \d+, hash 0x[0-9a-f]{8}, \d+ keys", snap.stdout), snap.stdout

    damaged = tmp_path / "damaged.db"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    refused = lab.cli("etcd", "restore", str(damaged), "--name", NAME, "--yes")
    assert refused.returncode == 1 and "does not verify" in refused.stderr, refused.stdout + refused.stderr

    assert lab.kubectl("delete", *probe).returncode == 0
    assert lab.kubectl("get", *probe).returncode != 0
    restore = lab.cli("etcd", "restore", str(path), "--name", NAME, "--yes", timeout=1500)
    assert restore.returncode == 0, restore.stdout[-3000:] + restore.stderr[-2000:]
    kept = lab.kubectl("get", *probe, "-o", "jsonpath={.data.kept}")
    assert (kept.returncode, kept.stdout) == (0, "yes"), kept.stderr
    members = lab.etcd_members()
    assert sorted(m.get("name", "") for m in members) == sorted(MASTERS), members
    verify = lab.cli("verify", "--name", NAME, "--only", "cluster", timeout=1200)
    assert verify.returncode == 0, verify.stdout[-5000:]


def haproxy_backends(lab: Lab) -> list[str]:
    config = lab.ssh("lb-1", "cat /etc/haproxy/haproxy.cfg")
    assert config.returncode == 0, config.stderr
    return re.findall(r"^\s*server (\S+) ", config.stdout, re.M)


def test_removing_two_masters_then_adding_two_keeps_etcd_and_haproxy_in_step(lab: Lab) -> None:
    even = lab.cli("node", "remove", "master-3", "--name", NAME, "--yes")
    assert even.returncode == 1 and "leave 2 masters, an even number" in even.stderr, even.stderr

    removed = lab.cli("node", "remove", "master-2", "master-3", "--name", NAME, "--yes")
    assert removed.returncode == 0, removed.stdout[-4000:] + removed.stderr[-2000:]
    assert "✓ verify" in removed.stdout
    assert [m.get("name") for m in lab.etcd_members()] == ["master-1"]
    assert haproxy_backends(lab) == ["master-1"]
    assert lab.kubectl("get", "node", "master-2").returncode != 0

    # Five nodes would need five /24s of the pod range: refused before a machine is made.
    full = lab.cli("node", "add", "--masters", "2", "--workers", "1", "--name", NAME)
    assert full.returncode == 1, full.stdout[-2000:] + full.stderr[-2000:]
    assert f"--pod-cidr {POD_CIDR} holds 4 per-node /24 ranges" in full.stderr, full.stderr
    assert "5 nodes" in full.stderr, full.stderr

    # The /24s of the removed masters are free again: master-4 and master-5 get them (verify checks the ranges).
    added = lab.cli("node", "add", "--masters", "2", "--name", NAME)
    assert added.returncode == 0, added.stdout[-4000:] + added.stderr[-2000:]
    assert "✓ verify" in added.stdout
    masters = {"master-1": MASTERS["master-1"], "master-4": "10.77.161.24", "master-5": "10.77.161.25"}
    members = lab.etcd_members()
    assert sorted(m.get("name", "") for m in members) == sorted(masters), members
    assert all(m.get("clientURLs") and not m.get("isLearner") for m in members), members
    assert haproxy_backends(lab) == sorted(masters)
    nodes = json.loads(lab.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    addresses = {
        n["metadata"]["name"]: next(a["address"] for a in n["status"]["addresses"] if a["type"] == "InternalIP")
        for n in nodes
    }
    assert addresses == masters | WORKER
