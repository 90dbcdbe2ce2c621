"""Reliability matrix on real `local` nodes: a SIGKILLed `kubelab up` resumes to a lab that verifies, a load
balancer lost during its phase is named with the reason, and no secret leaks into logs, state or console.

One lab (1 master + 2 haproxy/keepalived LB nodes) is shared by the module and built with the `kubelab` command
itself, as a user would; it is destroyed at the end, also when a test fails, and nothing may be left on the host.
Only the phases that run on this machine are used: the packages phase needs pkgs.k8s.io, so after `runtime`
the load-balancer phase is run on its own (`--from loadbalancer --until loadbalancer`).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import secretscan
from locallab import fail_if_left

from provisioner.providers import local_host, local_node

NAME = "it-rel"
SUBNET = "10.77.151.0/24"
LAB_FLAGS = [
    "--name", NAME, "--provider", "local", "--node-subnet", SUBNET, "--masters", "1", "--workers", "0",
    "--lb", "haproxy", "--lb-nodes", "2", "--containerd-source", "distro", "--no-image",
]  # fmt: skip
KUBELAB = str(Path(sys.executable).parent / "kubelab")


@dataclass
class Lab:
    """The module's lab: its KUBELAB_HOME, and the console output of every kubelab command run on it."""

    home: Path
    console: list[str] = field(default_factory=list)

    @property
    def root(self) -> Path:
        return self.home / "labs" / NAME

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "KUBELAB_HOME": str(self.home)}

    def kubelab(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [KUBELAB, *args], env=self.env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
        self.console.append(result.stdout + result.stderr)
        return result

    def start(self, *args: str) -> subprocess.Popen[str]:
        """`kubelab ARGS` in its own process group (so the whole command can be killed like a closed terminal)."""
        return subprocess.Popen(
            [KUBELAB, *args],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )

    def finish(self, process: subprocess.Popen[str], timeout: float = 600) -> str:
        output, _ = process.communicate(timeout=timeout)
        self.console.append(output)
        return output

    def phases_done(self) -> list[str]:
        return list(json.loads((self.root / "state.json").read_text())["phases"])

    def events(self, phase: str) -> list[dict]:
        """Events of the phase's running playbook (the file exists only while it runs)."""
        try:
            lines = (self.root / "logs" / f".{phase}.events").read_text().splitlines()
        except OSError:
            return []
        return [json.loads(line) for line in lines if line.startswith("{") and line.endswith("}")]


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(0.2)


def output_of(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n{result.stdout[-4000:]}\n{result.stderr[-2000:]}"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    if os.geteuid() != 0:
        pytest.skip("local namespace nodes need root")
    lab = Lab(tmp_path_factory.mktemp("kubelab-home"))
    try:
        yield lab
    finally:
        lab.kubelab("destroy", "--name", NAME, "--yes", timeout=300)
        fail_if_left(NAME, SUBNET)
        assert not lab.root.exists(), f"{lab.root} is still there after destroy"


@pytest.fixture(scope="module")
def interrupted(lab: Lab) -> str:
    """Nodes up, then `kubelab up` SIGKILLed (with its Ansible) in the middle of the prepare phase."""
    result = lab.kubelab("up", *LAB_FLAGS, "--until", "nodes", timeout=600)
    assert result.returncode == 0, output_of(result)
    process = lab.start("up", "--name", NAME, "--until", "runtime")
    try:
        tasks = lambda: sum(e.get("event") == "task" for e in lab.events("prepare"))  # noqa: E731
        wait_for(lambda: tasks() >= 4 or process.poll() is not None, 300, "the prepare phase's 4th task")
        assert process.poll() is None, "`kubelab up` ended before it could be killed:\n" + lab.finish(process)
        os.killpg(process.pid, signal.SIGKILL)
    finally:
        output = lab.finish(process, timeout=60)
    assert process.returncode == -signal.SIGKILL
    return output


@pytest.mark.integration
def test_sigkill_during_a_phase_then_up_completes_and_verifies(lab: Lab, interrupted: str) -> None:
    assert "prepare" in interrupted
    assert lab.phases_done() == ["nodes"], "a killed phase must not be recorded as done"

    resumed = lab.kubelab("up", "--name", NAME, "--until", "runtime", timeout=900)
    assert resumed.returncode == 0, output_of(resumed)
    assert "prepare, runtime" in resumed.stdout, "the next `up` must resume at the killed phase"
    lb = lab.kubelab("up", "--name", NAME, "--from", "loadbalancer", "--until", "loadbalancer", timeout=600)
    assert lb.returncode == 0, output_of(lb)
    assert lab.phases_done() == ["nodes", "prepare", "runtime", "loadbalancer"]

    verify = lab.kubelab("verify", "--name", NAME, "--only", "nodes,lb", timeout=600)
    assert verify.returncode == 0, output_of(verify)
    for check in ("swap_off", "containerd_active", "haproxy_listening", "keepalived_active", "vip_on_exactly_one_node"):
        assert re.search(rf"\s{check}\s+PASS", verify.stdout), f"{check} did not pass:\n{verify.stdout}"


@pytest.mark.integration
def test_no_secret_in_logs_state_or_console_and_holders_are_0600(lab: Lab, interrupted: str) -> None:
    if "loadbalancer" not in lab.phases_done():
        pytest.fail("the lab did not reach the loadbalancer phase (see the interruption test)")
    found = secretscan.scan(lab.home, "\n".join(lab.console))
    labels = " ".join(found.secrets)
    assert "keepalived secret" in labels, f"no keepalived secret found to look for: {sorted(found.secrets)}"
    assert "private key of id_ed25519" in labels, f"the lab's SSH key was not found: {sorted(found.secrets)}"
    assert lab.root / "id_ed25519" in found.holders
    assert not found.leaks, "\n".join(found.leaks)


@pytest.mark.integration
def test_lb_node_lost_during_its_phase_is_named_with_the_reason(lab: Lab, interrupted: str) -> None:
    node = "lb-2"
    files = local_node.NodeFiles(lab.root / "local" / "nodes" / node)
    pid = local_node.read_pid(files, f"kubelab-{NAME}-{node}")
    assert pid, f"{node} is not running before the test"
    process = lab.start("up", "--name", NAME, "--from", "loadbalancer", "--until", "loadbalancer")
    try:
        wait_for(lambda: (lab.root / "logs" / ".loadbalancer.events").exists(), 120, "the loadbalancer phase")
        local_host.kill_pids([pid])  # the node's systemd: the whole machine goes away, like a power cut
        assert local_host.wait_gone([pid], 10.0), f"{node} survived SIGKILL"
    finally:
        output = lab.finish(process, timeout=600)
    assert process.returncode != 0, output
    report = re.search(rf"{node} (unreachable|failed) in task '([^']+)':\s*\n\s+(\S.*)", output)
    assert report, f"no line names {node} and why:\n{output}"
    assert "lb-1 unreachable" not in output and "lb-1 failed" not in output, output
    assert "resumes at loadbalancer" in output, output
    assert "loadbalancer" not in lab.phases_done()


def test_secret_scan_finds_planted_leaks(tmp_path: Path) -> None:
    """The scanner itself: every kind of leak it must catch is caught, a clean folder is clean."""
    lab = tmp_path / "labs" / "x"
    (lab / "secrets").mkdir(parents=True)
    (lab / "logs").mkdir()
    secret = lab / "secrets" / "keepalived-auth"
    secret.write_text("Zq8rT2kP\n")
    secret.chmod(0o600)
    key = lab / "id_ed25519"
    body = "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW"
    key.write_text(f"-----BEGIN OPENSSH PRIVATE KEY-----\n{body}\n-----END OPENSSH PRIVATE KEY-----\n")
    key.chmod(0o600)
    (lab / "logs" / "prepare.log").write_text("ok: [lb-1]\n")
    disk = lab / "local" / "nodes" / "lb-1" / "upper" / "etc" / "keepalived"
    disk.mkdir(parents=True)
    (disk / "keepalived.conf").write_text("auth_pass Zq8rT2kP\n")  # the node's own disk: not a leak
    clean = secretscan.scan(tmp_path, "lab 'x' is up")
    assert clean.leaks == [] and set(clean.holders) == {secret, key}

    (lab / "logs" / "lb.log").write_text("auth_pass Zq8rT2kP\n")
    (lab / "state.json").write_text(json.dumps({"key": body}))
    key.chmod(0o644)
    console = "kubeadm join 10.0.0.10:6443 --token abcdef.0123456789abcdef --certificate-key " + "a1" * 32
    leaks = "\n".join(secretscan.scan(tmp_path, console).leaks)
    assert "lb.log: contains the keepalived secret" in leaks
    assert "state.json: contains the private key of id_ed25519" in leaks
    assert "id_ed25519: holds a secret but has mode 0644" in leaks
    assert "console output: contains a join token abcdef.****" in leaks
    assert "console output: contains a kubeadm certificate key" in leaks
