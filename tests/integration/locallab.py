"""Real `local` labs for integration tests: `running_local_lab` (context manager), `LocalLab`, `kubelab_cli`,
`leftovers`, `crash` (kill a lab's processes the way an ended host session does), `sweep` (teardown of last
resort) and `fail_if_left` (after a teardown)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from provisioner import plan as plan_mod
from provisioner import render, spec
from provisioner.inventory import write_provider_inventory
from provisioner.lab import REPO_ROOT, LabDir
from provisioner.plan import Plan
from provisioner.providers import local_host, local_network, local_remnants
from provisioner.providers.base import Connection
from provisioner.providers.local import LocalProvider


@dataclass
class LocalLab:
    """A running local lab: its plan, folder, provider and a way to run commands on its nodes."""

    plan: Plan
    lab: LabDir
    provider: LocalProvider
    home: Path

    @property
    def inventory(self) -> Path:
        """The inventory directory to pass to ansible-playbook -i."""
        return self.lab.inventory_dir

    @property
    def env(self) -> dict[str, str]:
        """Environment for running `kubelab` or `ansible-playbook` against this lab in a subprocess."""
        return {**os.environ, "KUBELAB_HOME": str(self.home)}

    def connection(self, node: str) -> Connection:
        return self.provider.connections()[node]

    def ssh(
        self, node: str, cmd: str | list[str], check: bool = False, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """Run a command on a node as root over the lab's strict SSH; `cmd` is a shell string or an argv."""
        command = cmd if isinstance(cmd, str) else shlex.join(cmd)
        argv = self.connection(node).ssh_argv([command])
        argv[1:1] = ["-o", "BatchMode=yes", "-o", "ConnectTimeout=10"]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=check)

    def put(self, node: str, source: Path, destination: str) -> None:
        """Copy a host file to a node (through the lab's SSH, as root)."""
        with source.open("rb") as data:
            argv = self.connection(node).ssh_argv([f"cat > {shlex.quote(destination)}"])
            argv[1:1] = ["-o", "BatchMode=yes"]
            subprocess.run(argv, stdin=data, capture_output=True, timeout=300, check=True)

    def playbook(self, *playbooks: str | Path, extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
        """Run playbooks against this lab the way `kubelab up` runs its phases: a name like "prepare.yml" is a
        phase playbook; a path is any playbook using kubelab's roles."""
        argv = [
            str(Path(sys.executable).with_name("ansible-playbook")),
            "-i",
            str(self.inventory),
            "-e",
            f"kubelab_lab_dir={self.lab.root}",
            *extra,
            *(str(REPO_ROOT / "playbooks" / name) for name in playbooks),
        ]
        env = {
            **self.env,
            "ANSIBLE_CONFIG": str(REPO_ROOT / "playbooks" / "ansible.cfg"),
            "ANSIBLE_ROLES_PATH": str(REPO_ROOT / "playbooks" / "roles"),
            "ANSIBLE_NOCOLOR": "1",
        }
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900, cwd=self.lab.root)


def kubelab_cli(home: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """`kubelab ARGS` in a subprocess with KUBELAB_HOME=home; output captured."""
    return subprocess.run(
        [sys.executable, "-m", "provisioner.cli", *args],
        env={**os.environ, "KUBELAB_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def _progress(node: str, message: str) -> None:
    print(f"[local lab] {node}: {message}", flush=True)


@contextmanager
def running_local_lab(
    home: Path,
    name: str,
    node_subnet: str,
    masters: int = 1,
    workers: int = 0,
    lb: str = "none",
    lb_nodes: int = 2,
    os: str = "debian-12",
    no_image: bool = True,
    **spec_overrides: Any,
) -> Iterator[LocalLab]:
    """Render a lab into `home` and bring its nodes up (from the Debian base unless no_image=False: these labs
    test the roles on fresh nodes); destroy everything on exit, also after errors."""
    flags = dict(
        name=name,
        provider="local",
        node_subnet=node_subnet,
        masters=masters,
        workers=workers,
        lb=lb,
        lb_nodes=lb_nodes,
        os=os,
        no_image=no_image,
        **spec_overrides,
    )
    lab_spec = spec.build_spec(flag_values=flags)
    spec.validate(lab_spec, spec.HostInfo(memory_mb=None, arch="amd64"))
    lab_plan = plan_mod.make_plan(lab_spec)
    lab = LabDir(home / "labs" / name)
    render.write_lab(lab_plan, lab)
    provider = LocalProvider(lab_plan, lab)
    try:
        provider.up(_progress)
        write_provider_inventory(lab, lab_plan, provider)
        yield LocalLab(plan=lab_plan, lab=lab, provider=provider, home=home)
    finally:
        provider.destroy()


def leftovers(lab_name: str, subnet: str) -> list[str]:
    """Every trace a lab could leave on the host: netns, links, iptables rules, cgroups, processes, mounts."""
    found = []
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    found += [f"netns {line.split()[0]}" for line in netns.splitlines() if f"kubelab-{lab_name}-" in line]
    bridge = local_network.bridge_name(lab_name)
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    found += [f"link {line.split(':')[1].strip()}" for line in links.splitlines() if bridge in line]
    found += [f"link of {bridge}" for line in links.splitlines() if f"master {bridge}" in line]
    for table in ("nat", "filter"):
        rules = subprocess.run(["iptables", "-w", "-t", table, "-S"], capture_output=True, text=True).stdout
        found += [f"rule {r}" for r in rules.splitlines() if f"kubelab:{lab_name}" in r or subnet in r]
    for current, dirs, _files in os.walk("/sys/fs/cgroup"):
        found += [f"cgroup {current}/{d}" for d in dirs if d.startswith(f"kubelab-{lab_name}-")]
        dirs[:] = [d for d in dirs if not d.startswith("kubelab-")]
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cgroups = Path(f"/proc/{pid}/cgroup").read_text()
            zombie = "\nState:\tZ" in Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        # A killed node process the host's init has not reaped yet holds nothing but its PID: not left by kubelab.
        if f"/kubelab-{lab_name}-" in cgroups and not zombie:
            found.append(f"process {pid}")
    mounts = Path("/proc/self/mountinfo").read_text()
    found += [f"mount {line.split()[4]}" for line in mounts.splitlines() if f"kubelab-{lab_name}-" in line]
    return found


def crash(lab_name: str) -> list[int]:
    """SIGKILL every process of a lab (found by its names) and wait until they are reaped, leaving its netns,
    links, rules and cgroups behind like a killed host session does. Returns the PIDs killed."""
    pids = local_remnants.find(lab_name).alive()
    local_host.kill_pids(pids)
    assert local_host.wait_gone(pids, 10.0, reaped=True), f"processes of {lab_name} survived SIGKILL: {pids}"
    return pids


def sweep(lab_name: str) -> None:
    """Remove whatever a test lab left on the host, alive or not (only for the tests' own lab names)."""
    crash(lab_name)
    local_remnants.remove(local_remnants.find(lab_name))


def fail_if_left(lab_name: str, subnet: str) -> None:
    """After a lab's `kubelab destroy`: when it left anything on the host, sweep that and fail naming it."""
    left = leftovers(lab_name, subnet)
    if left:
        sweep(lab_name)
        pytest.fail(f"`kubelab destroy` left these behind: {left}")
