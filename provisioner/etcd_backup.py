"""`kubelab etcd snapshot` and `kubelab etcd restore`: etcd backups of a lab's stacked control plane.

The snapshot is taken with etcdctl in a master's etcd pod and streamed to the host (0600). Restore checks the file
on the host first, then follows kubeadm's procedure for stacked etcd: control-plane pods stopped on every master,
each member restored from it as a new cluster (etcdutl from the etcd image), pods started, every member healthy.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TextIO

from provisioner.checks import kubectl_json
from provisioner.checks.kube import ETCDCTL_TLS
from provisioner.errors import LabError
from provisioner.lab import LabDir
from provisioner.lifecycle import load_lab, provider_for
from provisioner.plan import Node, Plan
from provisioner.progress import PhaseProgress
from provisioner.providers.base import Connection
from provisioner.remote import run_on
from provisioner.state import LabLock, load_state

KUBECTL = "kubectl --kubeconfig /etc/kubernetes/admin.conf"
STATIC_PODS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
MANIFESTS = "/etc/kubernetes/manifests"
PARKED = "/etc/kubernetes/kubelab-etcd-restore"  # where the static pod manifests wait during a restore
DATA = "/var/lib/etcd"
ON_NODE = f"{DATA}/kubelab-snapshot.db"  # inside the etcd pod's hostPath, so etcdctl and etcdutl see it
RESTORED = f"{DATA}/kubelab-restored"
BEFORE = "/var/lib/kubelab/etcd-before-restore"  # each master's data as it was, kept until the next restore
PEER_PORT = 2380
SHA256_SIZE = 32
BOLT_MAGIC = 0xED0CDAED
# The restored revision jumps ahead of anything a client saw, and older revisions count as compacted: every
# watch (kubelet, kube-proxy, the CNI, controllers) then relists instead of waiting, unaware, for revisions
# the restored cluster reaches only much later. The figure is the one etcd's and Kubernetes' docs use.
BUMP_REVISION = 1_000_000_000
STOP_TIMEOUT = 180
START_TIMEOUT = 420


def snapshot_problem(path: Path) -> str | None:
    """Why `path` is not an etcd snapshot that verifies, or None: a bolt database (pages of 512-byte multiples,
    its magic number in the first meta page) and then its sha256, checked as etcdutl does before it restores."""
    if not path.is_file():
        return f"{path} does not exist"
    size = path.stat().st_size
    with path.open("rb") as file:
        head = file.read(20)
        if size <= SHA256_SIZE or size % 512 != SHA256_SIZE or struct.unpack_from("<I", head, 16)[0] != BOLT_MAGIC:
            return f"{path} is not an etcd snapshot (take one with `kubelab etcd snapshot`)"
        digest = hashlib.sha256(head)
        remaining = size - SHA256_SIZE - len(head)
        while remaining:
            chunk = file.read(min(remaining, 1 << 20))
            digest.update(chunk)
            remaining -= len(chunk)
        if digest.digest() != file.read(SHA256_SIZE):
            return f"{path} does not verify: the sha256 stored in the snapshot does not match its data (damaged?)"
    return None


def _etcd(master: str, tool: str, kubectl: str = KUBECTL) -> str:
    tls = " ".join(ETCDCTL_TLS) if tool == "etcdctl" else ""
    return f"{kubectl} -n kube-system exec etcd-{master} -- {tool} {tls}".rstrip()


def etcdctl(master: str, kubectl: str = KUBECTL) -> str:
    """etcdctl with the client certificates, inside `master`'s etcd pod (reached with `kubectl`)."""
    return _etcd(master, "etcdctl", kubectl)


def _check(done: subprocess.CompletedProcess[str], what: str) -> str:
    if done.returncode != 0:
        detail = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        raise LabError(f"{what} failed: {detail}")
    return done.stdout


def _control_plane(lab: LabDir) -> tuple[Plan, dict[str, Connection]]:
    """The lab's plan and the connections of its running Kubernetes nodes; every master must run."""
    plan = load_lab(lab)
    if not load_state(lab).is_done("control-plane"):
        raise LabError(f"lab '{plan.spec.name}' has no control plane yet: run `kubelab up --name {plan.spec.name}`")
    connections = provider_for(plan, lab).connections()
    stopped = [m.name for m in plan.masters if m.name not in connections]
    if stopped:
        raise LabError(f"{', '.join(stopped)} not running: `kubelab resume --name {plan.spec.name}` first")
    return plan, {n.name: connections[n.name] for n in plan.nodes if n.role != "lb" and n.name in connections}


def snapshot(lab: LabDir, out_file: Path | None = None, out: TextIO | None = None) -> Path:
    """Save a snapshot of the lab's etcd (from the first master) to `out_file`, by default
    LAB/etcd/snapshot-<time>.db; prints its revision, hash and size."""
    out = out or sys.stdout
    plan, nodes = _control_plane(lab)
    master = plan.init_master.name
    dest = out_file or lab.root / "etcd" / f"snapshot-{time.strftime('%Y%m%d-%H%M%S')}.db"
    if dest.exists():
        raise LabError(f"{dest} already exists: choose another --out")
    dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    connection = nodes[master]
    with LabLock(lab, "etcd snapshot"):
        try:
            _check(run_on(connection, f"{_etcd(master, 'etcdctl')} snapshot save {ON_NODE}"), "etcdctl snapshot save")
            status = json.loads(
                _check(run_on(connection, f"{_etcd(master, 'etcdutl')} snapshot status {ON_NODE} -w json"), "status")
            )
            partial = dest.with_name(dest.name + ".part")
            partial.unlink(missing_ok=True)  # a left-over of an interrupted copy, whatever its mode
            with os.fdopen(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as file:
                _check(
                    run_on(connection, f"cat {ON_NODE}", timeout=600, stdout=file),
                    f"copying the snapshot from {master}",
                )
        finally:
            run_on(connection, f"rm -f {ON_NODE}")
    problem = snapshot_problem(partial)
    if problem:
        partial.unlink()
        raise LabError(f"the snapshot copied from {master} is damaged: {problem}")
    partial.rename(dest)
    print(
        f"etcd snapshot of lab '{plan.spec.name}' from {master}: {dest}\n"
        f"  {dest.stat().st_size / 2**20:.1f} MiB, mode 0600, revision {status['revision']}, "
        f"hash {status['hash']:#010x}, {status['totalKey']} keys",
        file=out,
    )
    return dest


def restore(lab: LabDir, file: Path, out: TextIO | None = None) -> None:
    """Restore the lab's etcd from `file` on every master (kubeadm's stacked-etcd procedure)."""
    out = out or sys.stdout
    problem = snapshot_problem(file)
    if problem:
        raise LabError(problem)
    plan, nodes = _control_plane(lab)
    masters = {m.name: nodes[m.name] for m in plan.masters}
    init = masters[plan.init_master.name]
    # From the manifest, or from where an interrupted restore left it.
    manifests = f"{MANIFESTS}/etcd.yaml {PARKED}/etcd.yaml"
    image = run_on(init, f"cat {manifests} 2>/dev/null | sed -n 's/^ *image: *//p' | head -n 1").stdout.strip()
    if not image:
        raise LabError(f"{plan.init_master.name} has no {MANIFESTS}/etcd.yaml: is this a kubeadm control plane?")
    cluster = ",".join(f"{m.name}=https://{m.ip}:{PEER_PORT}" for m in plan.masters)
    token = f"kubelab-restore-{int(time.time())}"

    def each(step: str, command: Callable[[Node], str]) -> None:
        with ThreadPoolExecutor(max_workers=len(plan.masters)) as pool:
            results = list(pool.map(lambda m: (m.name, run_on(masters[m.name], command(m), timeout=600)), plan.masters))
        failed = [f"{name}: {(r.stderr.strip().splitlines() or ['?'])[-1]}" for name, r in results if r.returncode]
        if failed:
            raise LabError(f"etcd restore stopped while {step}: {'; '.join(failed)}. {_where_things_are()}")

    with LabLock(lab, "etcd restore"), PhaseProgress("etcd", "restore", stream=out) as bar:
        bar.update("copying the snapshot to the masters")
        for name, connection in masters.items():
            with file.open("rb") as data:
                copy = f"sh -c 'umask 077 && cat > {ON_NODE}'"
                _check(run_on(connection, copy, timeout=600, stdin=data), f"copying {file} to {name}")
        bar.update("stopping the control-plane static pods on every master")
        each("stopping the control plane", lambda _m: _park_manifests())
        each("waiting for the control plane to stop", lambda _m: _wait_stopped())
        bar.update("restoring each member's data")
        each("restoring the data", lambda m: _restore_member(image, m.name, m.ip, cluster, token))
        bar.update("starting the control plane")
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 5))
        each("starting the control plane", lambda _m: f"mv {PARKED}/*.yaml {MANIFESTS}/ && rm -rf {PARKED}")
        problems = _wait_healthy(init, plan, since, bar.update)
        if not problems:  # as kubeadm advises: no kubelet goes on with state cached from before the restore
            bar.update("restarting the kubelets")
            with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
                list(pool.map(lambda c: run_on(c, "systemctl restart kubelet"), nodes.values()))
            problems = _wait_healthy(init, plan, since, bar.update)
        bar.finish(not problems, "; ".join(problems) or f"{len(masters)} healthy member(s)")
    if problems:
        raise LabError(f"etcd was restored but the cluster is not healthy: {'; '.join(problems)}")
    print(f"lab '{plan.spec.name}' restored from {file}; previous etcd data kept in {BEFORE} on each master", file=out)


def _park_manifests() -> str:
    moves = " ".join(f"{MANIFESTS}/{pod}.yaml" for pod in STATIC_PODS)
    return f"mkdir -p {PARKED} && for f in {moves}; do if [ -f $f ]; then mv $f {PARKED}/; fi; done"


def _wait_stopped() -> str:
    names = "|".join(STATIC_PODS)
    return (
        f"for i in $(seq {STOP_TIMEOUT // 2}); do "
        f"[ -z \"$(crictl ps --quiet --name '^({names})$')\" ] && exit 0; sleep 2; done; "
        f"echo 'control-plane containers still running after {STOP_TIMEOUT} s' >&2; exit 1"
    )


def _restore_member(image: str, name: str, ip: str, cluster: str, token: str) -> str:
    """The member's data out of the way (saved once per restore, marked in PARKED, so a run that goes on
    after an interruption never replaces the saved data with half-restored data), then restored."""
    restore = [
        "ctr", "-n", "k8s.io", "run", "--rm",
        "--mount", f"type=bind,src={DATA},dst={DATA},options=rbind:rw",
        image, f"kubelab-etcd-restore-{int(time.time())}",
        "etcdutl", "snapshot", "restore", ON_NODE, "--name", name, "--initial-cluster", cluster,
        "--initial-cluster-token", token, "--initial-advertise-peer-urls", f"https://{ip}:{PEER_PORT}",
        "--data-dir", RESTORED, "--bump-revision", str(BUMP_REVISION), "--mark-compacted",
    ]  # fmt: skip
    saved = f"{PARKED}/.data-saved"
    return " && ".join(
        [
            f"if [ ! -e {saved} ]; then rm -rf {BEFORE} && mkdir -p {Path(BEFORE).parent}"
            f" && {{ [ ! -d {DATA}/member ] || mv {DATA}/member {BEFORE}; }} && touch {saved};"
            f" else rm -rf {DATA}/member; fi",
            f"rm -rf {RESTORED}",
            shlex.join(restore),
            f"mv {RESTORED}/member {DATA}/member && rmdir {RESTORED} && rm -f {ON_NODE}",
        ]
    )


def _wait_healthy(connection: Connection, plan: Plan, since: str, report: Callable[[str], None]) -> list[str]:
    """Within START_TIMEOUT: the API answers, every etcd member is healthy and every kube-system and CNI pod runs,
    control-plane pods started after `since` (the restored data still holds their statuses from the snapshot)."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        problems = _control_plane_problems(connection, plan, since)
        if not problems or time.monotonic() > deadline:
            return problems
        report(f"waiting: {problems[0]}")
        time.sleep(5)


def _control_plane_problems(connection: Connection, plan: Plan, since: str) -> list[str]:
    if run_on(connection, f"{KUBECTL} get --raw /readyz").returncode != 0:
        return ["the API server does not answer yet"]
    health = run_on(connection, f"{_etcd(plan.init_master.name, 'etcdctl')} endpoint health --cluster -w json")
    try:
        problems = kubectl_json.etcd_health_problems(health.stdout, len(plan.masters))
    except json.JSONDecodeError:
        return [f"etcdctl endpoint health: {health.stderr.strip()[-200:]}"]
    pods = run_on(connection, f"{KUBECTL} get pods --all-namespaces -o json")
    if problems or pods.returncode != 0:
        return problems or [f"kubectl get pods: {pods.stderr.strip()[-200:]}"]
    namespaces = ("kube-system", *kubectl_json.CNI_NAMESPACES.get(plan.spec.cni, ()))
    static = {f"kube-system/{pod}-{m.name}" for pod in STATIC_PODS for m in plan.masters}
    stale = [
        pod
        for m in plan.masters
        for pod in kubectl_json.stale_pods(pods.stdout, m.name, since, ("kube-system",))
        if pod in static
    ]
    return kubectl_json.pod_problems(pods.stdout, namespaces) + [f"{pod}: not started again yet" for pod in stale]


def _where_things_are() -> str:
    return (
        f"On each master the static pod manifests wait in {PARKED} and the previous etcd data is in {DATA}/member "
        f"(or {BEFORE} once replaced); run the same `kubelab etcd restore` again to go on"
    )
