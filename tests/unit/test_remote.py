"""run_on: a node that does not answer in time gives a failed result the caller can report, not a traceback."""

from __future__ import annotations

from pathlib import Path

from provisioner import remote


class SilentNode:
    """A connection whose 'ssh' is a local script: it prints what it was asked, or sleeps when told to."""

    user = "root"

    def __init__(self, script: Path) -> None:
        self.script = script

    def ssh_argv(self, command: list[str]) -> list[str]:
        return [str(self.script), *command]


def node(tmp_path: Path) -> SilentNode:
    script = tmp_path / "ssh"
    script.write_text('#!/bin/sh\nfor last; do :; done\ncase "$last" in sleep*) sleep 5;; *) echo "$last";; esac\n')
    script.chmod(0o755)
    return SilentNode(script)


def test_an_answer_in_time_is_returned(tmp_path: Path) -> None:
    done = remote.run_on(node(tmp_path), "hostname", timeout=5)
    assert (done.returncode, done.stdout) == (0, "hostname\n")


def test_a_command_past_its_timeout_fails_with_exit_124_and_says_so(tmp_path: Path) -> None:
    done = remote.run_on(node(tmp_path), "sleep 5", timeout=0.5)
    assert done.returncode == remote.TIMED_OUT == 124
    assert done.stderr == "no answer within 0.5 s: sleep 5"
