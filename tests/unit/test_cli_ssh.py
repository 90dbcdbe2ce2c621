"""`kubelab ssh`: options may come after NODE, and everything after `--` is the remote command."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioner import cli, lifecycle


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[tuple[Path, str, list[str]]]:
    monkeypatch.setenv("KUBELAB_HOME", str(tmp_path))
    seen: list[tuple[Path, str, list[str]]] = []
    monkeypatch.setattr(lifecycle, "ssh", lambda lab, node, command: seen.append((lab.root, node, command)) or 0)
    return seen


@pytest.mark.parametrize(
    "argv",
    [
        ["ssh", "--name", "demo", "master-1", "--", "ls", "-la", "/etc"],
        ["ssh", "master-1", "--name", "demo", "--", "ls", "-la", "/etc"],
    ],
)
def test_name_before_or_after_the_node(calls, tmp_path: Path, argv: list[str]) -> None:
    assert cli.main(argv) == 0
    assert calls == [(tmp_path / "labs" / "demo", "master-1", ["ls", "-la", "/etc"])]


def test_a_double_dash_inside_the_remote_command_is_kept(calls) -> None:
    assert cli.main(["ssh", "worker-1", "--", "grep", "--", "-x", "file"]) == 0
    assert calls[0][1:] == ("worker-1", ["grep", "--", "-x", "file"])


def test_no_command_opens_a_shell(calls) -> None:
    assert cli.main(["ssh", "lb-1"]) == 0
    assert calls[0][1:] == ("lb-1", [])
