"""`kubelab test failover`: take down the VIP holder and one master, prove the API and etcd survive, restore.

Nodes go down by stopping services over SSH, the same on every provider: keepalived on the LB holding the VIP
(kube-vip: that master is the one taken down), and on the master the kubelet and every pod sandbox (crictl).
Restoring starts them again, the kubelet brings its static pods back, and the normal checks run again.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from provisioner.checks import kube, kubectl_json, probes
from provisioner.checks.labfacts import LabFacts, read_lab
from provisioner.errors import KubelabError
from provisioner.lab import LabDir

MIN_MASTERS = 3
POLL_SECONDS = 0.5
MOVE_TIMEOUT = 60
RECOVER_TIMEOUT = 240
ETCD_ANSWER_TIMEOUT = 30.0  # seconds to get an answer from etcd on the surviving master
STOP_MASTER = "systemctl stop kubelet; crictl stopp $(crictl pods -q) >/dev/null"
# A master that goes down takes its addresses with it; a stopped kube-vip pod leaves the VIP on the interface
# (seen with kube-vip v1.0.0), so the holder's copy is removed as a power-off would remove it.
DROP_ADDRESS = (
    "ip -o -4 addr show | awk '$4 ~ \"^{ip}/\" {{print $2, $4}}' "
    "| while read dev cidr; do ip addr del $cidr dev $dev; done"
)


class FailoverError(KubelabError):
    """The lab cannot take a failover test (e.g. a single master); the message says why and what to do."""

    exit_code = 2


def quorum(members: int) -> int:
    return members // 2 + 1


def longest_outage(samples: list[tuple[float, bool]]) -> float:
    """Seconds from the first failed probe of the longest failing run to the next good probe (or the last probe)."""
    worst, started = 0.0, None
    for at, ok in samples:
        if not ok and started is None:
            started = at
        elif ok and started is not None:
            worst, started = max(worst, at - started), None
    if started is not None and samples:
        worst = max(worst, samples[-1][0] - started)
    return worst


def check_lab(lab: LabFacts) -> None:
    if len(lab.masters) < MIN_MASTERS:
        raise FailoverError(
            f"the lab has {len(lab.masters)} master(s): a failover test needs at least {MIN_MASTERS} so etcd keeps"
            " quorum with one down; create a lab with `--masters 3`"
        )
    if lab.lb_kind not in ("haproxy", "kube-vip"):
        raise FailoverError(f"the lab has no virtual IP to fail over (lb: {lab.lb_kind}); use --lb haproxy or kube-vip")


@dataclass
class Poller:
    """Probes /readyz through the VIP in the background and records (seconds since start, answered)."""

    probe: Callable[[], bool]
    samples: list[tuple[float, bool]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._start = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            ok = self.probe()
            self.samples.append((time.monotonic() - self._start, ok))
            self._stop.wait(POLL_SECONDS)

    def __enter__(self) -> Poller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _wait(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(1)
    return False


class Failover:
    """One failover run: pick victims, take them down, assert, restore."""

    def __init__(self, lab: LabFacts, hosts: dict[str, Any], out: TextIO, kubectl: kube.Kubectl | None = None) -> None:
        self.lab, self.hosts, self.out, self.kubectl = lab, hosts, out, kubectl
        self.results: list[tuple[str, bool, str]] = []
        self.holder_hosts = {name: hosts[name] for name in lab.vip_holders}

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def record(self, check: str, ok: bool, detail: str) -> None:
        self.results.append((check, ok, detail))
        self.say(f"  {'PASS' if ok else 'FAIL'}  {check}: {detail}")

    def holders(self) -> list[str]:
        return [name for name, _ in probes.vip_holders(str(self.lab.vip), self.holder_hosts)]

    def choose(self, vip_holder: str) -> tuple[str, str]:
        """(master to stop, master that stays up to run kubectl and etcdctl)."""
        victim = vip_holder if self.lab.lb_kind == "kube-vip" else list(self.lab.masters)[-1]
        survivor = next(name for name in self.lab.masters if name != victim)
        return victim, survivor

    def run(self) -> bool:
        lab = self.lab
        before = self.holders()
        if len(before) != 1:
            raise FailoverError(f"VIP {lab.vip} is on {len(before)} nodes ({before}); run `kubelab verify` first")
        holder = before[0]
        victim, survivor = self.choose(holder)
        kubectl = self.kubectl or kube.choose(
            "auto", lab.kubeconfig, self.hosts[survivor], survivor, lab.kubernetes_minor
        )
        if kubectl.run("get", "--raw=/readyz", check=False).rc != 0:
            raise FailoverError("the API does not answer through the VIP before the test; run `kubelab verify`")

        def api_ok() -> bool:
            return kubectl.run("get", "--raw=/readyz", "--request-timeout=2s", check=False, timeout=5).rc == 0

        stopped_lb = holder if lab.lb_kind == "haproxy" else None
        self.say(f"taking down: VIP holder {holder}" + (f" (keepalived), master {victim}" if stopped_lb else ""))
        try:
            with Poller(api_ok) as poller:
                if stopped_lb:
                    self.hosts[stopped_lb].run("systemctl stop keepalived")
                self.hosts[victim].run(STOP_MASTER)
                if lab.lb_kind == "kube-vip":
                    self.hosts[victim].run(DROP_ADDRESS.format(ip=lab.vip))
                moved = _wait(lambda: len(h := self.holders()) == 1 and h[0] != holder, MOVE_TIMEOUT)
                now = self.holders()
                self.record("VIP moved", moved, f"{holder} -> {', '.join(now) or 'nobody'}")
                answered = _wait(api_ok, MOVE_TIMEOUT)
                self.record("API answers through the VIP", answered, f"https://{lab.vip}:{lab.api_port}/readyz")
                self.check_etcd(kubectl, survivor, victim)
                self.check_write(kubectl)
            outage = longest_outage(poller.samples)
            failed_probes = sum(1 for _, ok in poller.samples if not ok)
            self.say(f"  API unreachable for {outage:.1f} s ({failed_probes} of {len(poller.samples)} probes failed)")
        finally:
            self.restore(stopped_lb, victim, kubectl)
        return all(ok for _, ok, _ in self.results)

    def check_etcd(self, kubectl: kube.Kubectl, survivor: str, victim: str) -> None:
        # Right after a master went down, a stream through the VIP can still reach it until haproxy marks it
        # down (`kubectl exec` then ends with EOF): ask again for a while before calling etcd silent.
        entries, error = None, ""
        deadline = time.monotonic() + ETCD_ANSWER_TIMEOUT
        while entries is None and time.monotonic() < deadline:
            health = kube.etcdctl(kubectl, survivor, "endpoint", "health", "--cluster", "-w", "json")
            try:
                entries = json.loads(health.stdout)
            except ValueError:
                error = health.stderr.strip()[:200]
                time.sleep(2)
        if entries is None:
            self.record("etcd keeps quorum", False, f"no answer from etcd: {error}")
            return
        healthy = sum(1 for e in entries if e.get("health"))
        need = quorum(len(self.lab.masters))
        self.record("etcd keeps quorum", healthy >= need, f"{healthy} of {len(self.lab.masters)} healthy, need {need}")

    def check_write(self, kubectl: kube.Kubectl) -> None:
        name = f"kubelab-failover-{int(time.time())}"
        done = kubectl.run("-n", "default", "create", "configmap", name, "--from-literal=test=failover", check=False)
        self.record(
            "a write succeeds", done.rc == 0, f"configmap {name}" + (f": {done.stderr.strip()}" if done.rc else "")
        )
        kubectl.run("-n", "default", "delete", "configmap", name, "--ignore-not-found", check=False)

    def restore(self, stopped_lb: str | None, victim: str, kubectl: kube.Kubectl) -> None:
        self.say(f"restoring {', '.join(n for n in (stopped_lb, victim) if n)}")
        if stopped_lb:
            self.hosts[stopped_lb].run("systemctl start keepalived")
        restarted = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.hosts[victim].run("systemctl start kubelet")

        def healthy() -> bool:
            nodes = kubectl.run("get", "nodes", "-o", "json", check=False)
            if nodes.rc != 0 or kubectl_json.node_problems(nodes.stdout, self.lab.k8s_nodes):
                return False
            pods = kubectl.run("get", "pods", "--all-namespaces", "-o", "json", check=False)
            namespaces = ("kube-system", *kubectl_json.CNI_NAMESPACES.get(self.lab.cni, ()))
            if pods.rc != 0 or kubectl_json.pod_problems(pods.stdout, namespaces):
                return False
            if kubectl_json.stale_pods(pods.stdout, victim, restarted, namespaces):
                return False
            health = kube.etcdctl(kubectl, victim, "endpoint", "health", "--cluster", "-w", "json")
            return health.rc == 0

        recovered = _wait(healthy, RECOVER_TIMEOUT)
        self.record("lab recovered", recovered, "all nodes Ready and every etcd member healthy")


def run_failover(lab_dir: LabDir, out: TextIO | None = None) -> int:
    """Run the failover test, then `kubelab verify`; 0 when everything held."""
    import testinfra

    from provisioner.verify import checks_environment, lab_artifacts_dir, run_verify, shared_ssh

    out = out or sys.stdout
    if not lab_dir.hosts_inventory.is_file():
        raise FailoverError(f"{lab_dir.root} has no inventory: create the lab first (`kubelab up`)")
    lab = read_lab(lab_dir.root)
    check_lab(lab)
    os.environ.update(checks_environment(lab_artifacts_dir(lab_dir)))
    with shared_ssh(lab_dir) as config:
        hosts = {
            name: testinfra.get_host(
                f"ansible://{name}", ansible_inventory=str(lab_dir.inventory_dir), ssh_config=str(config)
            )
            for name in lab.nodes
        }
        passed = Failover(lab, hosts, out).run()
    print("re-verifying the lab", file=out, flush=True)
    verified = run_verify(lab_dir, only={"lb", "cluster"}, out=out) == 0
    return 0 if passed and verified else 1
