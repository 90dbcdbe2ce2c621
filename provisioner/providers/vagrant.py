"""VirtualBox, libvirt, VMware and Parallels machines through Vagrant and the lab's rendered Vagrantfile.

python-vagrant runs status, ssh-config, halt and destroy; `vagrant up` runs through the CLI directly
because python-vagrant has no `--parallel` and no machine-readable stream for per-node progress.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from provisioner.children import die_with_parent
from provisioner.providers.base import Connection, NodeStatus, Progress, Provider, ProviderError
from provisioner.state import logs_dir

if TYPE_CHECKING:
    import vagrant

# Providers whose Vagrant plugin declares parallel support; the others boot one machine at a time.
PARALLEL = frozenset({"libvirt", "parallels"})
PLUGINS = {"libvirt": "vagrant-libvirt", "vmware_desktop": "vagrant-vmware-desktop", "parallels": "vagrant-parallels"}
INSTALL_HINTS = {
    "vagrant": "install Vagrant: `sudo apt-get install vagrant` (Debian/Ubuntu) or the package from "
    "https://developer.hashicorp.com/vagrant/install",
    "libvirt": "install the libvirt plugin: `sudo apt-get install vagrant-libvirt libvirt-daemon-system "
    "qemu-system-x86` (Debian/Ubuntu) or `vagrant plugin install vagrant-libvirt`",
    "virtualbox": "install VirtualBox from https://www.virtualbox.org/wiki/Downloads (VBoxManage must be on PATH)",
    "vmware_desktop": "install VMware Workstation/Fusion, the Vagrant VMware Utility and "
    "`vagrant plugin install vagrant-vmware-desktop`",
    "parallels": "install Parallels Desktop (Pro or Business) and `vagrant plugin install vagrant-parallels`",
}
# Each provider's own tool, which must be on PATH for Vagrant to drive it.
TOOLS = {"virtualbox": "VBoxManage", "parallels": "prlctl", "libvirt": "virsh"}
SSH_OPTIONS = (
    "-oStrictHostKeyChecking=no",
    "-oUserKnownHostsFile=/dev/null",
    "-oIdentitiesOnly=yes",
    "-oLogLevel=ERROR",
)
ENCODED_COMMA = "%!(VAGRANT_COMMA)"


def vagrant_missing_error() -> ProviderError:
    return ProviderError(f"Vagrant is not installed (no `vagrant` on PATH): {INSTALL_HINTS['vagrant']}")


def installed_plugins() -> set[str]:
    """Names of the Vagrant plugins installed for this user or the system."""
    import vagrant

    try:
        return {plugin.name for plugin in vagrant.Vagrant(quiet_stderr=True).plugin_list()}
    except (subprocess.CalledProcessError, OSError) as exc:
        raise ProviderError(
            f"`vagrant plugin list` failed ({exc}): check that Vagrant runs (`vagrant --version`)"
        ) from None


def libvirt_problem() -> str | None:
    """Why the system libvirt daemon cannot be used, or None when it answers."""
    if not shutil.which("virsh"):
        return "`virsh` is missing: `sudo apt-get install libvirt-clients libvirt-daemon-system`"
    try:
        subprocess.run(["virsh", "-c", "qemu:///system", "uri"], check=True, capture_output=True, text=True, timeout=20)
    except subprocess.CalledProcessError as exc:
        reason = (exc.stderr or "").strip().splitlines()
        return (
            f"libvirtd does not answer on qemu:///system ({reason[-1] if reason else 'no reason given'}): start it "
            "(`sudo systemctl start libvirtd`, or `virtlogd -d && libvirtd -d` without systemd) and make sure "
            "your user is in the `libvirt` group"
        )
    except subprocess.TimeoutExpired:
        return "libvirtd did not answer within 20 s on qemu:///system: restart it"
    return None


def provider_problem(provider: str, plugins: set[str]) -> str | None:
    """What is missing for one Vagrant provider, or None when it looks usable."""
    plugin = PLUGINS.get(provider)
    if plugin and plugin not in plugins:
        return f"the Vagrant plugin {plugin} is not installed: {INSTALL_HINTS[provider]}"
    tool = TOOLS.get(provider)
    if provider == "libvirt":
        return libvirt_problem()
    if tool and not shutil.which(tool):
        return f"`{tool}` is not on PATH: {INSTALL_HINTS[provider]}"
    return None


def parse_ssh_config(text: str) -> dict[str, dict[str, str]]:
    """`vagrant ssh-config` output (one or more Host blocks) -> host -> {option: value}."""
    hosts: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        value = value.strip().strip('"')
        if key == "Host":
            current = hosts.setdefault(value, {})
        elif current is not None:
            current[key] = value
    return hosts


def connection_from_ssh_config(options: dict[str, str]) -> Connection:
    return Connection(
        host=options["HostName"],
        port=int(options.get("Port", "22")),
        user=options.get("User", "vagrant"),
        key_file=options["IdentityFile"],
        extra_ssh_args=SSH_OPTIONS,
    )


def parse_machine_readable(line: str) -> tuple[str, str, list[str]] | None:
    """One `--machine-readable` line -> (target, kind, data fields), or None for other lines."""
    parts = line.rstrip("\n").split(",")
    if len(parts) < 3 or not parts[0].isdigit():
        return None
    fields = [part.replace(ENCODED_COMMA, ",").replace("\\n", "\n") for part in parts[3:]]
    return parts[1], parts[2], fields


class VagrantProvider(Provider):
    """The lab's machines as Vagrant machines of one provider (virtualbox, libvirt, ...)."""

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.plan.spec.provider

    def _env(self) -> dict[str, str]:
        return {**os.environ, "VAGRANT_DEFAULT_PROVIDER": self.name, "VAGRANT_CWD": str(self.lab.root)}

    def _vagrant(self) -> vagrant.Vagrant:
        import vagrant

        return vagrant.Vagrant(root=str(self.lab.root), env=self._env(), quiet_stderr=True)

    def check(self) -> None:
        if not shutil.which("vagrant"):
            raise vagrant_missing_error()
        problem = provider_problem(self.name, installed_plugins())
        if problem:
            raise ProviderError(f"cannot use the {self.name} provider: {problem}")

    def up(self, progress: Progress) -> None:
        node_names = [node.name for node in self.plan.nodes]
        log_path = logs_dir(self.lab) / "nodes.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "a") as log:
            if self.name in PARALLEL:
                self._run_up(["--parallel", *node_names], progress, log, log_path)
            else:
                for name in node_names:
                    self._run_up([name], progress, log, log_path)

    def _run_up(self, targets: list[str], progress: Progress, log: TextIO, log_path: Path) -> None:
        command = ["vagrant", "up", "--provider", self.name, "--no-provision", "--machine-readable", *targets]
        log.write("$ " + " ".join(command) + "\n")
        log.flush()
        nodes = {node.name for node in self.plan.nodes}
        errors: list[str] = []
        with subprocess.Popen(
            command,
            cwd=self.lab.root,
            env=self._env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            preexec_fn=die_with_parent,
        ) as process:
            assert process.stdout is not None
            for line in process.stdout:
                log.write(line)
                parsed = parse_machine_readable(line)
                if parsed is None:
                    if "Error" in line and not line.lstrip().startswith("from "):
                        errors.append(line.strip())  # a Ruby exception from Vagrant or a plugin
                    continue
                target, kind, fields = parsed
                if kind == "ui" and target in nodes and len(fields) >= 2:
                    message = fields[-1].strip().splitlines()[0] if fields[-1].strip() else ""
                    if message:
                        progress(target, message.removeprefix(f"{target}: "))
                elif kind == "error-exit" and fields:
                    errors.append(fields[-1].strip())
            log.flush()
        if process.returncode != 0:
            detail = errors[-1] if errors else "see the log"
            raise ProviderError(f"`vagrant up` failed: {detail}\n  full log: {log_path}")

    def status(self) -> list[NodeStatus]:
        states: dict[str, str] = {}
        if (self.lab.root / ".vagrant").is_dir() and shutil.which("vagrant"):
            for status in self._vagrant().status():
                states[status.name] = (status.state or "unknown").replace("_", " ")
        return [NodeStatus(node.name, states.get(node.name, "not created"), node.ip) for node in self.plan.nodes]

    def connections(self) -> dict[str, Connection]:
        running = [node.name for node in self.status() if node.state == "running"]
        if not running:
            return {}
        vagrant = self._vagrant()
        try:
            hosts = parse_ssh_config(vagrant.ssh_config())
        except subprocess.CalledProcessError:
            hosts = {}
            for name in running:  # one machine not ready makes the all-machines form fail
                hosts.update(parse_ssh_config(vagrant.ssh_config(vm_name=name)))
        return {name: connection_from_ssh_config(hosts[name]) for name in running if name in hosts}

    def halt(self) -> None:
        self._vagrant().halt()

    def created(self) -> bool:
        """True while any machine of the lab exists (running or stopped)."""
        return any(node.state != "not created" for node in self.status())

    def remove(self, names: list[str]) -> None:
        """`vagrant destroy` of these machines; the Vagrantfile must still define them."""
        if not (self.lab.root / ".vagrant").is_dir():
            return
        if not shutil.which("vagrant"):
            raise vagrant_missing_error()
        vagrant = self._vagrant()
        for name in names:
            vagrant.destroy(vm_name=name)

    def destroy(self) -> bool:
        if not (self.lab.root / ".vagrant").is_dir():
            return False
        if not shutil.which("vagrant"):
            raise vagrant_missing_error()
        existed = self.created()
        self._vagrant().destroy()
        return existed
