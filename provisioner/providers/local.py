"""The `local` provider: each node is a Debian root fs running systemd as PID 1 in its own Linux namespaces,
on a per-lab bridge, reached over SSH like a VM. Needs root. See local_image/_network/_node/_host/_state."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from provisioner import boxes, node_image
from provisioner.lab import LabDir
from provisioner.node_image import NodeImage
from provisioner.plan import Node, Plan
from provisioner.providers import local_host, local_image, local_network, local_node, local_remnants
from provisioner.providers.base import Connection, NodeStatus, Progress, Provider, ProviderError
from provisioner.providers.local_state import LocalState, file_lock
from provisioner.providers.local_vars import PROVIDER_VARS, SHARED_ARTIFACTS

BOOT_TIMEOUT = 180.0  # seconds for every node to reach `running`, all booting at once on a small host
HALT_TIMEOUT = 30.0
NAME_LOCKS = Path("/run/kubelab/lab-names")
TOOLS = {
    "unshare": "util-linux",
    "nsenter": "util-linux",
    "setsid": "util-linux",
    "pivot_root": "util-linux",
    "ip": "iproute2",
    "iptables": "iptables",
    "debootstrap": "debootstrap",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
}


class LocalProvider(Provider):
    name = "local"

    def __init__(self, plan: Plan, lab: LabDir) -> None:
        super().__init__(plan, lab)
        self.lab_name = plan.spec.name
        self.state_dir = lab.root / "local"
        self.key_file = lab.root / "id_ed25519"
        self.known_hosts = lab.root / "known_hosts"
        self.bridge = local_network.bridge_name(self.lab_name)
        self.last_ready_seconds: float | None = None

    # --- names and paths ---------------------------------------------------------------------------------

    def node_files(self, node: str) -> local_node.NodeFiles:
        """Where the node's layers and seed files live on the host."""
        return local_node.NodeFiles(self.state_dir / "nodes" / node)

    def _recorded_files(self, state: LocalState, node: str) -> local_node.NodeFiles:
        """The node's files as its start recorded them, else their default place."""
        record = state.node(node)
        return local_node.NodeFiles(Path(record["dir"])) if "dir" in record else self.node_files(node)

    def _leaf(self, node: str) -> str:
        return f"kubelab-{self.lab_name}-{node}"

    def _netns(self, node: str) -> str:
        return local_network.netns_name(self.lab_name, node)

    def _veth(self, node: str) -> str:
        return local_network.veth_name(self.lab_name, node)

    def _artifacts(self) -> Path | None:
        """The lab's artifacts folder, which every node sees read-only (the phases install from it in place)."""
        folder = self.plan.spec.artifacts
        return Path(folder).expanduser().resolve() if folder else None

    def _state(self) -> LocalState:
        return LocalState(self.state_dir / "state.json")

    @contextmanager
    def _lock(self) -> Iterator[None]:
        """This lab folder's lock, then the host-wide lock of the lab's name (its bridge, netns and cgroups are
        named after it, so two KUBELAB_HOMEs must not create or remove a lab of the same name at once)."""
        with file_lock(self.lab.root / ".local.lock"), file_lock(NAME_LOCKS / f"{self.lab_name}.lock"):
            yield

    # --- Provider interface ------------------------------------------------------------------------------

    def check(self) -> None:
        if os.geteuid() != 0:
            raise ProviderError("the local provider needs root (namespaces, mounts, bridges): run kubelab with sudo")
        search = os.environ.get("PATH", "") + ":/usr/sbin:/sbin:/usr/bin:/bin"
        missing = sorted({pkg for tool, pkg in TOOLS.items() if shutil.which(tool, path=search) is None})
        if missing:
            tools = ", ".join(t for t, p in TOOLS.items() if p in missing and shutil.which(t, path=search) is None)
            raise ProviderError(f"the local provider needs {tools}: apt-get install {' '.join(missing)}")
        if "overlay" not in Path("/proc/filesystems").read_text():
            raise ProviderError("the kernel has no overlayfs (needed for node root file systems): modprobe overlay")
        if not local_host.cgroup_mounts():
            raise ProviderError("no cgroup hierarchy is mounted under /sys/fs/cgroup: systemd nodes need cgroups")
        if self.plan.spec.os not in boxes.LOCAL_SUITES:
            raise ProviderError(f"the local provider builds Debian nodes: use --os {' or '.join(boxes.LOCAL_SUITES)}")

    def up(self, progress: Progress) -> None:
        self.check()
        suite = boxes.LOCAL_SUITES[self.plan.spec.os]
        with self._lock():
            base = local_image.ensure_image(suite, lambda msg: progress(self.lab_name, msg))
            started = time.monotonic()
            state = self._state()
            image = self._use_image()
            self._claim_names(state, progress)
            self._ensure_network(state)
            self._ensure_key()
            host_keys = {node.name: self._prepare_node(node) for node in self.plan.nodes}
            self._write_known_hosts(host_keys)
            with ThreadPoolExecutor(max_workers=len(self.plan.nodes)) as pool:
                list(pool.map(lambda n: self._start_node(state, n, base, image, progress), self.plan.nodes))
                list(pool.map(lambda n: self._wait_ready(state, n, started, progress), self.plan.nodes))
            self.last_ready_seconds = time.monotonic() - started
            progress(self.lab_name, f"all {len(self.plan.nodes)} nodes ready in {self.last_ready_seconds:.1f} s")

    def node_image(self) -> NodeImage | None:
        """The image for this `up`'s new Kubernetes nodes (the spec's); None when there is none to create. Nodes
        that exist keep the layers they were created on."""
        state = self._state()
        if all(self._created(state, node.name) for node in self.plan.nodes if node.role != "lb"):
            return None
        return node_image.for_spec(self.plan.spec, self.plan.arch)

    def _created(self, state: LocalState, name: str) -> bool:
        upper = self.node_files(name).upper
        return bool(state.node(name).get("lowers")) or (upper.is_dir() and any(upper.iterdir()))

    def _use_image(self) -> NodeImage | None:
        image = self.node_image()
        if image is not None and not image.built:
            raise ProviderError(
                f"node image {image.path} is not built: `kubelab up` builds it, or `kubelab image build`; "
                "`--no-image` boots from the Debian base"
            )
        if image is not None:
            image.add_user(self.state_dir)
        return image

    def ansible_vars(self) -> dict[str, object]:
        shared = {"artifacts_shared_dir": SHARED_ARTIFACTS} if self._artifacts() else {}
        return {**PROVIDER_VARS, **shared}

    def status(self) -> list[NodeStatus]:
        result = []
        for node in self.plan.nodes:
            files = self.node_files(node.name)
            if local_node.read_pid(files, self._leaf(node.name)):
                state = "running"
            elif files.upper.is_dir():
                state = "stopped"
            else:
                state = "not created"
            result.append(NodeStatus(node.name, state, node.ip if state != "not created" else None))
        return result

    def connections(self) -> dict[str, Connection]:
        options = (
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            f"UserKnownHostsFile={self.known_hosts}",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "PasswordAuthentication=no",
        )
        return {n.name: Connection(n.ip, 22, "root", str(self.key_file), options) for n in self.plan.nodes}

    def halt(self) -> None:
        with self._lock():
            state = self._state()
            if not state.exists() or self._foreign_owner():
                return  # nothing of this lab folder runs (a lab of the same name elsewhere is not ours)
            with ThreadPoolExecutor(max_workers=max(1, len(self.plan.nodes))) as pool:
                list(pool.map(lambda n: self._stop_node(state, n.name, HALT_TIMEOUT), self.plan.nodes))

    def destroy(self) -> bool:
        with self._lock():
            state = self._state()
            if not state.exists() or self._foreign_owner():
                # This lab folder holds nothing on the host: only dead remnants under the lab's names (a
                # crashed run from a folder that is gone) are removed, never a lab alive elsewhere.
                found = self._remove_dead_remnants(None)
                if state.data.get("sysctls_held"):
                    local_host.release_host_sysctls(str(state.path))
                self._remove_files()
                return found
            found = True
            names = sorted({*state.data["nodes"], *(n.name for n in self.plan.nodes)})
            with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
                found = any(list(pool.map(lambda name: self._stop_node(state, name, 0.0), names))) or found
            subnet = state.data.get("subnet", self.plan.spec.node_subnet)
            rules = state.data["rules"] + local_network.nat_rules(self.lab_name, self.bridge, subnet)
            for rule in rules:
                found = local_network.delete_rule(rule) or found
            found = local_network.delete_link(state.data.get("bridge", self.bridge)) or found
            if state.data.get("sysctls_held"):
                local_host.release_host_sysctls(str(state.path))
            self._remove_files()
            return found

    def remove(self, names: list[str]) -> None:
        with self._lock():
            state = self._state()
            if not state.exists() or self._foreign_owner():
                return
            for name in names:
                self._stop_node(state, name, 0.0)  # drained and reset already
                files = self._recorded_files(state, name)
                if files.dir.exists():
                    local_image.remove_tree(files.dir)
                state.forget_node(name)
            gone = {node.ip for node in self.plan.nodes if node.name in names}
            if self.known_hosts.is_file():
                kept = [line for line in self.known_hosts.read_text().splitlines() if line.split()[0] not in gone]
                self.known_hosts.write_text("".join(f"{line}\n" for line in kept))

    def _remove_files(self) -> None:
        for image in node_image.all_images():
            image.remove_user(self.state_dir)
        for path in (self.known_hosts, self.key_file, self.key_file.with_suffix(".pub")):
            path.unlink(missing_ok=True)
        self.lab.connection_inventory.unlink(missing_ok=True)
        self.lab.provider_vars.unlink(missing_ok=True)
        if self.state_dir.exists():
            local_image.remove_tree(self.state_dir)

    # --- steps -------------------------------------------------------------------------------------------

    def _foreign_owner(self) -> str | None:
        """The other lab folder whose lab of the same name owns the bridge, if any."""
        owner = local_network.bridge_owner(self.bridge)
        return owner if owner is not None and owner != str(self.state_dir) else None

    def _claim_names(self, state: LocalState, progress: Progress) -> None:
        """Make sure the host objects named after this lab are this lab folder's own, or none: a running lab of that
        name from another KUBELAB_HOME is refused, dead remnants (a crashed run, a halted lab's network) removed."""
        owner = local_network.bridge_owner(self.bridge)
        if owner == str(self.state_dir) or (owner is None and state.data.get("bridge") == self.bridge):
            return  # ours (a bridge made before owners were recorded counts as ours if our state names it)
        found = local_remnants.find(self.lab_name)
        if not found:
            return
        where = f"lab folder {Path(owner).parent}" if owner else "another KUBELAB_HOME"
        if found.alive():
            raise ProviderError(
                f"a lab named '{self.lab_name}' is running on this host from {where} ({found.describe()}), "
                f"so lab '{self.lab_name}' in {self.lab.root} cannot use its names: destroy it there first "
                "(KUBELAB_HOME=... kubelab destroy), or pick another --name"
            )
        self._remove_dead_remnants(progress)

    def _remove_dead_remnants(self, progress: Progress | None) -> bool:
        """Remove host objects named after this lab when none of their processes is alive. True if any."""
        found = local_remnants.find(self.lab_name)
        if not found or found.alive():
            return False
        if progress:
            owner = local_network.bridge_owner(self.bridge)
            where = f"lab folder {Path(owner).parent}" if owner else "a lab folder that is not known"
            progress(
                self.lab_name,
                f"removing dead remnants of an earlier run of lab '{self.lab_name}' from {where}, whose processes "
                f"are gone (crashed, killed or halted): {found.describe()}",
            )
        local_remnants.remove(found)
        return True

    def _ensure_network(self, state: LocalState) -> None:
        subnet = self.plan.spec.node_subnet
        local_network.check_subnet_free(subnet, self.bridge)
        state.record("lab", self.lab_name)
        state.record("subnet", subnet)
        state.record("bridge", self.bridge)
        state.record("sysctls_held", True)
        local_host.hold_host_sysctls(str(state.path))
        local_network.ensure_bridge(self.bridge, subnet, self.plan.spec.mtu, str(self.state_dir))
        for rule in local_network.nat_rules(self.lab_name, self.bridge, subnet):
            state.record_rule(rule)
            local_network.ensure_rule(rule)

    def _ensure_key(self) -> None:
        if not self.key_file.is_file():
            self.key_file.with_suffix(".pub").unlink(missing_ok=True)
            local_host.run(
                [
                    "ssh-keygen",
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-C",
                    f"kubelab-{self.lab_name}",
                    "-f",
                    str(self.key_file),
                ]
            )
        self.key_file.chmod(0o600)

    def _prepare_node(self, node: Node) -> str:
        hosts = {n.name: n.ip for n in self.plan.nodes}
        public_key = self.key_file.with_suffix(".pub").read_text()
        return local_node.prepare(self.node_files(node.name), node.name, node.ip, public_key, hosts)

    def _write_known_hosts(self, host_keys: dict[str, str]) -> None:
        ips = {n.name: n.ip for n in self.plan.nodes}
        lines = [f"{ips[name]} {key}" for name, key in sorted(host_keys.items())]
        self.known_hosts.write_text("\n".join(lines) + "\n")
        self.known_hosts.chmod(0o644)

    def _cgroups(self, state: LocalState, name: str) -> list[Path]:
        """The node's cgroup directories: recorded ones, this process's view, and any found by name (a node
        started by another process may sit below a different cgroup of that process)."""
        leaf = self._leaf(name)
        found = [Path(p) for p in state.node(name).get("cgroups", [])]
        found += local_host.node_cgroup_dirs(leaf)
        found += local_host.find_cgroup_dirs(re.compile(re.escape(leaf)))
        return list(dict.fromkeys(found))

    def _start_node(
        self, state: LocalState, node: Node, base: Path, image: NodeImage | None, progress: Progress
    ) -> None:
        files, leaf, netns, veth = (
            self.node_files(node.name),
            self._leaf(node.name),
            self._netns(node.name),
            self._veth(node.name),
        )
        if local_node.read_pid(files, leaf) and local_network.netns_exists(netns):
            progress(node.name, "already running")
            return
        if not state.node(node.name) and local_remnants.netns_pids([netns]):
            raise ProviderError(
                f"network namespace {netns} has processes but lab '{self.lab_name}' in {self.lab.root} did not "
                "start them: is a lab with the same name running from another KUBELAB_HOME? Destroy it there first"
            )
        self._stop_node(state, node.name, 0.0)  # dead remnants of a crashed or halted run
        lowers = self._lowers(state, node, base, image)
        cgroups = local_host.node_cgroup_dirs(leaf)
        state.record_node(
            node.name, netns=netns, veth=veth, cgroups=[str(c) for c in cgroups], dir=str(files.dir), lowers=lowers
        )
        progress(node.name, f"starting ({node.ip})")
        local_network.add_netns(netns)
        local_network.plug_node(netns, veth, self.bridge, node.ip, self.plan.spec.node_subnet, self.plan.spec.mtu)
        local_node.start(files, netns, cgroups, [Path(p) for p in lowers], node.name, self._artifacts())

    def _lowers(self, state: LocalState, node: Node, base: Path, image: NodeImage | None) -> list[str]:
        """The node's read-only layers, top first: those it was created on (the base alone for a node from before
        node images), else for a new Kubernetes node the image's over the base, with the image's containerd data."""
        recorded = state.node(node.name).get("lowers")
        if recorded:
            missing = [p for p in recorded if not Path(p).is_dir()]
            if missing:
                raise ProviderError(
                    f"node {node.name} was created on {', '.join(missing)}, which is gone: "
                    f"`kubelab destroy --name {self.lab_name}` and create the lab again"
                )
            return list(recorded)
        if image is None or node.role == "lb" or self._created(state, node.name):
            return [str(base)]
        node_image.seed_containerd(image, self.node_files(node.name).host_dir("containerd"))
        return [str(image.layer), str(base)]

    def _stop_node(self, state: LocalState, name: str, graceful: float) -> bool:
        record = state.node(name)
        files = self._recorded_files(state, name)
        found = local_node.stop(files, self._leaf(name), self._cgroups(state, name), graceful)
        found = local_network.delete_link(record.get("veth", self._veth(name))) or found
        found = local_network.delete_netns(record.get("netns", self._netns(name))) or found
        return found

    def _wait_ready(self, state: LocalState, node: Node, started: float, progress: Progress) -> None:
        files, leaf = self.node_files(node.name), self._leaf(node.name)
        deadline = started + BOOT_TIMEOUT
        conn = self.connections()[node.name]
        pid = None
        while True:
            pid = local_node.read_pid(files, leaf) or pid
            if (pid and not local_host.pid_alive(pid)) or (not pid and time.monotonic() > started + 20):
                raise ProviderError(f"node {node.name} stopped while booting:\n{self._boot_log_tail(files)}")
            if pid and "pid" not in state.node(node.name):
                state.record_node(node.name, pid=pid)
            if time.monotonic() > deadline:
                raise ProviderError(
                    f"node {node.name} did not reach systemd 'running' within {BOOT_TIMEOUT:.0f} s; "
                    f"failed units:\n{self._failed_units(pid)}\nboot log:\n{self._boot_log_tail(files)}"
                )
            if _port_open(node.ip, 22):
                result = self._ssh_state(conn, max(1.0, deadline - time.monotonic()))
                if result == "running":
                    break
                if result == "degraded":
                    raise ProviderError(
                        f"node {node.name} booted with failed units (systemd 'degraded'):\n{self._failed_units(pid)}"
                    )
            time.sleep(0.3)
        progress(node.name, f"ready (systemd running, ssh answers) after {time.monotonic() - started:.1f} s")

    def _ssh_state(self, conn: Connection, timeout: float) -> str | None:
        argv = conn.ssh_argv(["systemctl", "is-system-running", "--wait"])
        argv[1:1] = ["-o", "BatchMode=yes", "-o", "ConnectTimeout=5"]
        try:
            result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return None
        if result.returncode == 255:  # ssh itself failed: sshd not ready yet
            return None
        return result.stdout.strip().splitlines()[-1] if result.stdout.strip() else None

    @staticmethod
    def _failed_units(pid: int | None) -> str:
        if not pid:
            return "(node not running)"
        argv = ["nsenter", "-t", str(pid), "-m", "-u", "-i", "-n", "-p", "systemctl", "--failed", "--no-legend"]
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        return (result.stdout or result.stderr).strip() or "(none reported)"

    @staticmethod
    def _boot_log_tail(files: local_node.NodeFiles) -> str:
        try:
            return "\n".join(files.log.read_text(errors="replace").splitlines()[-20:])
        except OSError:
            return "(no boot log)"


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False
