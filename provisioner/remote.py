"""One command on a lab node over the lab's own SSH connection (non-interactive, as root)."""

from __future__ import annotations

import subprocess
from typing import IO

from provisioner.providers.base import Connection

TIMED_OUT = 124


def run_on(
    connection: Connection,
    command: str,
    timeout: float = 120,
    stdin: IO[bytes] | None = None,
    stdout: IO[bytes] | None = None,
) -> subprocess.CompletedProcess[str]:
    """`command` through the node's shell as root (sudo when the login is not root); `stdin` and `stdout` stream
    binary data, else output is text. Stopped after `timeout` seconds, reported as exit code 124 (as timeout(1))."""
    prefix = "" if connection.user == "root" else "sudo -n "
    argv = connection.ssh_argv([prefix + command])
    argv[1:1] = ["-oBatchMode=yes", "-oConnectTimeout=15"]
    try:
        if stdin is None and stdout is None:
            return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        done = subprocess.run(
            argv,
            stdin=stdin or subprocess.DEVNULL,
            stdout=stdout or subprocess.PIPE,
            stderr=subprocess.PIPE,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(argv, TIMED_OUT, "", f"no answer within {timeout:g} s: {command}")
    text = done.stdout.decode(errors="replace") if stdout is None else ""
    return subprocess.CompletedProcess(argv, done.returncode, text, done.stderr.decode(errors="replace"))
