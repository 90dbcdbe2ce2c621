"""Run kubectl for the cluster checks: the host's kubectl with the lab kubeconfig, or kubectl on the first master.

Either way the API is reached through the lab's control-plane endpoint (the VIP): the lab kubeconfig and the
masters' /etc/kubernetes/admin.conf both point there.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ADMIN_CONF = "/etc/kubernetes/admin.conf"


class KubectlError(Exception):
    """kubectl exited non-zero; the message holds the command and what it printed."""


@dataclass(frozen=True)
class Result:
    rc: int
    stdout: str
    stderr: str


class Kubectl:
    """`kubectl ARGS` on the host (lab kubeconfig) or on a master (admin.conf, through a testinfra host)."""

    def __init__(self, kubeconfig: Path | None = None, master: Any = None, master_name: str = "") -> None:
        if (kubeconfig is None) == (master is None):
            raise ValueError("give either a kubeconfig (host kubectl) or a master host")
        self.kubeconfig = kubeconfig
        self.master = master
        self.where = f"kubectl on {master_name}" if master is not None else f"kubectl --kubeconfig {kubeconfig}"

    def run(self, *args: str, stdin: str | None = None, check: bool = True, timeout: int = 120) -> Result:
        if self.master is not None:
            command = " ".join(shlex.quote(a) for a in ("kubectl", "--kubeconfig", ADMIN_CONF, *args))
            if stdin is not None:
                command = f"printf %s {shlex.quote(stdin)} | {command}"
            out = self.master.run(f"timeout {timeout} {command}")
            result = Result(out.rc, out.stdout, out.stderr)
        else:
            try:
                done = subprocess.run(
                    ["kubectl", "--kubeconfig", str(self.kubeconfig), *args],
                    input=stdin,
                    capture_output=True,
                    text=True,
                    timeout=timeout,
                )
            except subprocess.TimeoutExpired:
                raise KubectlError(f"kubectl {' '.join(args)}: no answer within {timeout} s") from None
            result = Result(done.returncode, done.stdout, done.stderr)
        if check and result.rc != 0:
            raise KubectlError(f"kubectl {' '.join(args)} failed (exit {result.rc}): {result.stderr.strip()[:400]}")
        return result

    def json(self, *args: str, check: bool = True) -> Any:
        return json.loads(self.run(*args, "-o", "json", check=check).stdout)

    def apply(self, manifest: dict[str, Any]) -> None:
        self.run("apply", "-f", "-", stdin=json.dumps(manifest))


def client_minor(version_json: str) -> int | None:
    """`kubectl version --client -o json` -> the client's minor version ("32+" -> 32); None when unreadable."""
    try:
        minor = re.match(r"\d+", str(json.loads(version_json)["clientVersion"]["minor"]))
    except (ValueError, KeyError, TypeError):
        return None
    return int(minor[0]) if minor else None


def host_kubectl_fits(cluster_minor: int | None) -> bool:
    """The host's kubectl is within kubectl's supported skew (one minor version) of the lab's Kubernetes."""
    if cluster_minor is None:
        return True
    done = subprocess.run(["kubectl", "version", "--client", "-o", "json"], capture_output=True, text=True, timeout=30)
    minor = client_minor(done.stdout)
    return minor is not None and abs(minor - cluster_minor) <= 1


def choose(mode: str, kubeconfig: Path, master: Any, master_name: str, cluster_minor: int | None = None) -> Kubectl:
    """mode auto: the host's kubectl when it and the lab kubeconfig exist and it is within one minor version of
    the cluster, else kubectl on the first master (installed at the cluster's version)."""
    host_ok = shutil.which("kubectl") is not None and kubeconfig.is_file()
    if mode == "host" and not host_ok:
        raise KubectlError(f"--kubectl host needs kubectl on PATH and {kubeconfig}")
    if mode == "host" or (mode == "auto" and host_ok and host_kubectl_fits(cluster_minor)):
        return Kubectl(kubeconfig=kubeconfig)
    return Kubectl(master=master, master_name=master_name)


# How often etcdctl is asked when the API gives no answer from it, and the pause between tries: long enough
# for the load balancer's health checks to take an API server without etcd out of service.
ETCDCTL_ATTEMPTS, ETCDCTL_RETRY_SECONDS = 3, 5
ETCDCTL_TLS = (
    "--endpoints=https://127.0.0.1:2379",
    "--cacert=/etc/kubernetes/pki/etcd/ca.crt",
    "--cert=/etc/kubernetes/pki/etcd/server.crt",
    "--key=/etc/kubernetes/pki/etcd/server.key",
)


def etcdctl(kubectl: Kubectl, master: str, *args: str) -> Result:
    """`etcdctl ARGS` inside the etcd static pod of a master (kubeadm names it etcd-<node>); never raises on exit.
    etcdctl exits non-zero when an endpoint is unhealthy but still prints its JSON, which the caller parses."""
    argv = ("-n", "kube-system", "exec", f"etcd-{master}", "--", "etcdctl", *ETCDCTL_TLS, *args)
    result = kubectl.run(*argv, check=False)
    for _ in range(ETCDCTL_ATTEMPTS - 1):
        # No output at all: the exec did not reach etcdctl (e.g. the load balancer still sent the request to an
        # API server whose own etcd has just gone, and it timed out); ask again through a healthy one.
        if result.rc == 0 or result.stdout.strip():
            break
        time.sleep(ETCDCTL_RETRY_SECONDS)
        result = kubectl.run(*argv, check=False)
    return result
