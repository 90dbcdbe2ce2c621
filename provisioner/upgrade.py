"""`kubelab upgrade`: kubeadm's upgrade of a finished lab, one minor (or patches) at a time, one node at a time.

kubeadm's documented order: master-1 (`kubeadm upgrade apply`), the other masters (`kubeadm upgrade node`), the
workers. On each node: the target kubeadm, its upgrade, drain, the target kubelet and kubectl, the kubelet
restarted, uncordon, Ready on the target. A node whose kubelet reports the target is skipped, so a cut-short run
goes on with the next node and never drains a finished one again.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from provisioner import phases as phases_mod
from provisioner import versions
from provisioner.errors import LabError
from provisioner.inventory import write_provider_inventory
from provisioner.lab import LabDir
from provisioner.lifecycle import provider_for, run_phase
from provisioner.node_ops import DRAIN_TIMEOUT, drain, finished_lab, first_master_kubectl, wait_system_pods
from provisioner.plan import Node, Plan, make_plan
from provisioner.progress import PhaseProgress
from provisioner.providers.base import Connection
from provisioner.remote import run_on
from provisioner.state import LabLock, load_state, save_state

STAGE_DIR = "/var/cache/kubelab/upgrade"  # kube_upgrade_stage_dir: where the target kubeadm is staged
READY_TIMEOUT = 300  # seconds a node may take to report Ready on the target kubelet (and a master's API server)
API_WAIT_SECONDS = 120  # how long master-1's API server may take to answer when an upgrade (re)starts
UNCORDON_TIMEOUT = 60  # seconds `kubectl uncordon` is tried again while the API servers restart
CLUSTER_VERSION = re.compile(r"^kubernetesVersion:\s*(\S+)", re.M)


@dataclass(frozen=True)
class ClusterVersions:
    """What the cluster runs: the control plane's version (kubeadm's ClusterConfiguration) and each kubelet's."""

    control_plane: str
    kubelets: dict[str, str]

    def at(self, target: str, node: str) -> bool:
        return _same(self.kubelets.get(node, ""), target)


def _same(version: str, target: str) -> bool:
    return versions.version_tuple(version) == versions.version_tuple(target)


def resolve_target(to: str, folder_version: str | None) -> str:
    """The exact version to upgrade to: a patch as given; a minor as the artifacts folder's patch, or else the
    newest patch kubelab knows (pkgs.k8s.io labs pin it as offline labs do)."""
    try:
        major, minor, patch = versions.parse_kubernetes_version(to)
    except ValueError as exc:
        raise LabError(f"--to {to}: {exc}") from None
    wanted = f"{major}.{minor}"
    if folder_version is not None:
        exact = folder_version.lstrip("v")
        if versions.minor_of(exact) != wanted or (patch is not None and exact != f"{wanted}.{patch}"):
            raise LabError(
                f"the artifacts folder holds Kubernetes {exact}, not {to}: build the target's folder with "
                f"`kubelab artifacts build --k8s-version {to} --cni CNI --out DIR` and pass --artifacts DIR"
            )
        return exact
    if patch is not None:
        return f"{wanted}.{patch}"
    if wanted not in versions.LATEST_PATCH:
        raise LabError(f"--to {to}: kubelab knows no patch of {wanted}; give one, e.g. --to {wanted}.0")
    return versions.LATEST_PATCH[wanted]


def upgrade_problem(current: ClusterVersions, target: str, allow_unsupported: bool = False) -> str | None:
    """Why kubeadm's skew policy or kubelab refuses going from `current` to `target`; None when it may go on."""
    have = versions.version_tuple(current.control_plane)
    want = versions.version_tuple(target)
    newer = sorted(name for name, version in current.kubelets.items() if versions.version_tuple(version) > want)
    if want < have or newer:
        running = f"v{current.control_plane.lstrip('v')}" if want < have else f"newer kubelets on {', '.join(newer)}"
        return (
            f"v{target} would be a downgrade (the lab runs {running}): kubeadm does not downgrade a cluster; "
            "restore an etcd snapshot taken before the upgrade, or recreate the lab"
        )
    if want[:2] > (have[0], have[1] + 1):
        step = f"{have[0]}.{have[1] + 1}"
        return (
            f"v{target} skips a minor: kubeadm upgrades the control plane one minor at a time "
            f"(v{current.control_plane.lstrip('v')} -> {step}): run `kubelab upgrade --to {step}` first"
        )
    minor = versions.minor_of(target)
    if minor not in versions.SUPPORTED_MINORS and not allow_unsupported:
        return (
            f"Kubernetes {minor} is not one kubelab supports ({', '.join(versions.SUPPORTED_MINORS)}): "
            "--allow-unsupported-version tries it anyway"
        )
    return None


def cluster_versions(plan: Plan, first: Connection) -> ClusterVersions:
    """Read the versions from master-1's API server (which may be restarting, e.g. after a cut-short run)."""
    kubectl = first_master_kubectl(plan)
    deadline = time.monotonic() + API_WAIT_SECONDS
    while True:
        config = run_on(first, f"{kubectl} -n kube-system get configmap kubeadm-config -o json", timeout=60)
        nodes = run_on(first, f"{kubectl} get nodes -o json", timeout=60)
        failed = next((done for done in (config, nodes) if done.returncode != 0), None)
        if failed is None:
            break
        if time.monotonic() >= deadline:
            detail = failed.stderr.strip()[-300:]
            raise LabError(
                f"the API server on {plan.init_master.name} does not answer after {API_WAIT_SECONDS} s: {detail}"
            )
        time.sleep(3)
    match = CLUSTER_VERSION.search(json.loads(config.stdout)["data"].get("ClusterConfiguration", ""))
    if match is None:
        raise LabError("kubeadm's ClusterConfiguration names no kubernetesVersion: is this a kubeadm cluster?")
    kubelets = {
        item["metadata"]["name"]: item["status"]["nodeInfo"]["kubeletVersion"]
        for item in json.loads(nodes.stdout)["items"]
    }
    return ClusterVersions(match.group(1), kubelets)


def upgrade(
    lab: LabDir,
    to: str,
    artifacts: Path | None = None,
    confirm: Callable[[str], bool] = lambda question: True,
    allow_unsupported: bool = False,
    drain_timeout: int = DRAIN_TIMEOUT,
    out: TextIO | None = None,
) -> bool:
    """Upgrade the lab to `to`; False when the user declined or a step failed (the same command goes on)."""
    from provisioner import spec as spec_mod
    from provisioner.artifacts import check_artifacts, load_manifest
    from provisioner.render import write_lab
    from provisioner.verify import run_verify

    out = out or sys.stdout
    plan = finished_lab(lab, "upgrade it", upgrade=True)
    folder = (
        artifacts.expanduser().resolve() if artifacts else (Path(plan.spec.artifacts) if plan.spec.artifacts else None)
    )
    target = resolve_target(to, str(load_manifest(folder).get("kubernetes_version", "")) if folder else None)
    spec = plan.spec.replace(kubernetes_version=target, artifacts=str(folder) if folder else None)
    try:
        spec_mod.validate(spec, spec_mod.HostInfo.detect())
    except spec_mod.SpecError as exc:
        raise LabError(f"cannot upgrade to v{target}: {exc}") from exc
    if folder:
        check_artifacts(folder, spec, arch=plan.arch)
    upgraded = make_plan(spec, arch=plan.arch)
    with LabLock(lab, "upgrade"):
        provider = provider_for(plan, lab)
        provider.check()
        write_provider_inventory(lab, plan, provider)
        connections = provider.connections()
        first = connections[plan.init_master.name]
        current = cluster_versions(plan, first)
        problem = upgrade_problem(current, target, allow_unsupported)
        if problem:
            raise LabError(f"nothing was upgraded: {problem}")
        nodes = [*plan.masters, *plan.workers]
        if _same(current.control_plane, target) and all(current.at(target, n.name) for n in nodes):
            write_lab(upgraded, lab)
            print(f"lab '{plan.spec.name}' runs Kubernetes v{target} on every node: nothing to upgrade", file=out)
            return True
        under_way = load_state(lab).upgrading == target
        if under_way:  # checked before it started; half-way, a node may be restarting: finishing is the way out
            print(f"lab '{plan.spec.name}': the upgrade to v{target} is under way; going on with it", file=out)
        else:
            print(f"lab '{plan.spec.name}': checking the cluster before the upgrade", file=out)
        if not under_way and run_verify(lab, only={"cluster"}, out=out) != 0:
            raise LabError(
                f"nothing was upgraded: the lab does not verify (the table above says what failed); fix that "
                f"first, `kubelab verify --name {plan.spec.name}` checks again"
            )
        steps = _Steps(lab, target, folder, out)
        steps.run("stage", [node.name for node in nodes])
        shown = run_on(first, f"{STAGE_DIR}/kubeadm upgrade plan v{target}", timeout=300)
        if shown.returncode != 0:
            detail = (shown.stdout + shown.stderr).strip()[-1500:]
            raise LabError(f"nothing was upgraded: `kubeadm upgrade plan v{target}` refuses it:\n{detail}")
        print(shown.stdout.rstrip(), file=out)
        question = f"upgrade lab '{plan.spec.name}' from v{current.control_plane.lstrip('v')} to v{target}?"
        if not confirm(question):
            print("nothing upgraded", file=out)
            return False
        write_lab(upgraded, lab)  # from here on the lab is on its way to the target
        state = load_state(lab)
        state.upgrading = target  # `up` and `node add|remove` wait until the upgrade has finished
        save_state(lab, state)
        for node in nodes:
            first_node = node.name == plan.init_master.name
            if current.at(target, node.name) and not (first_node and not _same(current.control_plane, target)):
                print(f"✓ {node.name} runs v{target} already", file=out)
                continue
            kubeadm = "node" if not first_node else "none" if _same(current.control_plane, target) else "apply"
            _upgrade_node(plan, node, first, steps, kubeadm, target, drain_timeout, out)
        print(f"lab '{plan.spec.name}' upgraded to Kubernetes v{target}", file=out)
        # kubeadm renewed each master's admin.conf, and master-1's init config names the old version: the
        # control-plane phase brings root's and the host's kubeconfig and that file up to date.
        state = load_state(lab)
        if not run_phase(lab, upgraded, provider_for(upgraded, lab), phases_mod.BY_NAME["control-plane"], state, out):
            return False
        state.upgrading = None
        save_state(lab, state)
    # An upgrade replaces what workloads stand on (kubelet, kube-proxy, CoreDNS): verify runs them too.
    return run_verify(lab, workloads=True, out=out) == 0


class _Steps:
    """The kube_upgrade role's steps (playbooks/upgrade.yml), each on one node, with the target's variables."""

    def __init__(self, lab: LabDir, target: str, folder: Path | None, out: TextIO) -> None:
        self.lab, self.out = lab, out
        self.variables = json.dumps(
            {
                "kubelab_kubernetes_version": target,
                "kubelab_artifacts_dir": str(folder or ""),
                # the lab's group_vars say offline only once write_lab() has run, after the stage step
                "kubelab_offline": folder is not None,
            }
        )

    def run(self, step: str, nodes: list[str], bar: PhaseProgress | None = None, **variables: str) -> None:
        from provisioner.ansible import run_playbook

        where = nodes[0] if len(nodes) == 1 else "every node"
        extra = ["--limit", ",".join(nodes), "-e", self.variables]
        extra += ["-e", json.dumps({"kube_upgrade_step": step, **variables})]
        log = f"upgrade-{step}" + (f"-{nodes[0]}" if len(nodes) == 1 else "")
        if bar is None:
            with PhaseProgress("upgrade", f"{step} on {where}", stream=self.out) as own:
                result = run_playbook(self.lab, log, phases_mod.PLAYBOOKS_DIR / "upgrade.yml", own, extra)
                own.finish(result.ok, result.summary())
        else:
            result = run_playbook(self.lab, log, phases_mod.PLAYBOOKS_DIR / "upgrade.yml", bar, extra)
        if not result.ok:
            print(result.failure_report(), file=self.out)
            raise LabError(f"the upgrade's {step} step failed on {where}: fix the cause and run the same command again")


def _upgrade_node(
    plan: Plan, node: Node, first: Connection, steps: _Steps, kubeadm: str, target: str, drain_timeout: int, out: TextIO
) -> None:
    """kubeadm's steps for one node: target kubeadm and `kubeadm upgrade <kubeadm>`, drain, kubelet, uncordon."""
    kubectl = first_master_kubectl(plan)
    with PhaseProgress("upgrade", node.name, stream=out) as bar:
        steps.run("kubeadm", [node.name], bar, kube_upgrade_kubeadm=kubeadm)
        bar.update("draining")
        started = time.monotonic()
        drain(first, kubectl, node.name, drain_timeout)
        drained = time.monotonic() - started
        steps.run("kubelet", [node.name], bar)
        bar.update("uncordon")
        _uncordon(first, kubectl, node.name)
        bar.update(f"waiting for Ready on v{target}")
        _wait_ready(plan, first, node.name, target)
        if node.role == "master":  # the new kubelet restarts the static pods: the next node needs this API server
            bar.update("waiting for its API server")
            _wait_api(plan, first, node)
        bar.update("waiting for its system pods")
        wait_system_pods(plan, first, node.name, READY_TIMEOUT)
        away = time.monotonic() - started
        bar.finish(True, f"{node.name} on v{target}, drained in {drained:.0f} s, out of service {away:.0f} s")


def _uncordon(first: Connection, kubectl: str, name: str) -> None:
    """`kubectl uncordon`, tried again for a while: the API servers restart around the new kubelet."""
    deadline = time.monotonic() + UNCORDON_TIMEOUT
    while True:
        done = run_on(first, f"{kubectl} uncordon {name}", timeout=60)
        if done.returncode == 0:
            return
        if time.monotonic() >= deadline:
            raise LabError(f"`kubectl uncordon {name}` failed for {UNCORDON_TIMEOUT} s: {done.stderr.strip()[-300:]}")
        time.sleep(3)


def _wait_ready(plan: Plan, first: Connection, name: str, target: str) -> None:
    query = "{.status.nodeInfo.kubeletVersion} {.status.conditions[?(@.type=='Ready')].status}"
    command = f'{first_master_kubectl(plan)} get node {name} -o jsonpath="{query}"'
    deadline = time.monotonic() + READY_TIMEOUT
    seen = ""
    while time.monotonic() < deadline:
        seen = run_on(first, command, timeout=30).stdout.strip()
        version, _, ready = seen.partition(" ")
        if _same(version, target) and ready == "True":
            return
        time.sleep(3)
    raise LabError(f"{name} is not Ready on v{target} after {READY_TIMEOUT} s (it reports: {seen or 'nothing'})")


def _wait_api(plan: Plan, first: Connection, master: Node) -> None:
    """Until `master`'s own API server answers /readyz."""
    server = f"https://{master.ip}:{plan.apiserver_port}"
    command = f"kubectl --kubeconfig /etc/kubernetes/admin.conf --server {server} get --raw /readyz"
    deadline = time.monotonic() + READY_TIMEOUT
    answer = None
    while time.monotonic() < deadline:
        answer = run_on(first, command, timeout=30)
        if answer.returncode == 0:
            return
        time.sleep(3)
    detail = answer.stderr.strip()[-300:] if answer else ""
    raise LabError(f"the API server on {master.name} is not ready {READY_TIMEOUT} s after its upgrade: {detail}")
