"""resume's kubelet check waits for a kubelet that is still starting after boot, and reports one that fails."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from provisioner import lifecycle


def answers(states: list[str]) -> Iterator[subprocess.CompletedProcess[str]]:
    for state in states:
        yield subprocess.CompletedProcess([], 0, stdout=state + "\n", stderr="")


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lifecycle.time, "sleep", lambda _seconds: None)


def test_a_kubelet_that_is_still_activating_after_boot_is_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    states = answers(["activating", "activating", "active"])
    monkeypatch.setattr(lifecycle, "_remote", lambda _connection, _command: next(states))
    assert lifecycle._kubelet_state(object()) == "active"


def test_a_failed_kubelet_is_reported_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    states = answers(["failed", "active"])
    monkeypatch.setattr(lifecycle, "_remote", lambda _connection, _command: next(states))
    assert lifecycle._kubelet_state(object()) == "failed"


def test_a_kubelet_that_never_settles_is_reported_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lifecycle, "KUBELET_TIMEOUT", -1)
    monkeypatch.setattr(lifecycle, "_remote", lambda _connection, _command: next(answers(["activating"])))
    assert lifecycle._kubelet_state(object()) == "activating"


def ready_check(monkeypatch: pytest.MonkeyPatch, answer: subprocess.CompletedProcess[str]) -> list[str]:
    """_not_ready against one kubectl answer, with no time to wait."""
    from types import SimpleNamespace

    monkeypatch.setattr(lifecycle, "READY_TIMEOUT", -1)
    monkeypatch.setattr(lifecycle, "_remote", lambda _connection, _command: answer)
    plan = SimpleNamespace(init_master=SimpleNamespace(name="master-1"))
    return lifecycle._not_ready(plan, {"master-1": object()}, {"master-1", "worker-1"})  # type: ignore[arg-type]


def test_nodes_that_are_not_ready_are_named_with_their_status(monkeypatch: pytest.MonkeyPatch) -> None:
    nodes = "master-1   Ready      control-plane   5m   v1.36.3\nworker-2   NotReady   <none>   5m   v1.36.3\n"
    problems = ready_check(monkeypatch, subprocess.CompletedProcess([], 0, stdout=nodes, stderr=""))
    assert problems == ["worker-1: not registered after -1 s (`kubectl describe node worker-1`)"]


def test_all_ready_is_no_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    nodes = "master-1 Ready control-plane 5m v1.36.3\nworker-1 Ready <none> 5m v1.36.3\n"
    assert ready_check(monkeypatch, subprocess.CompletedProcess([], 0, stdout=nodes, stderr="")) == []


def test_an_api_server_that_does_not_answer_is_reported_with_kubectls_error(monkeypatch: pytest.MonkeyPatch) -> None:
    error = "E1205 memcache.go:265] couldn't get current server API group list\n"
    error += "The connection to the server 10.0.0.10:6443 was refused"
    problems = ready_check(monkeypatch, subprocess.CompletedProcess([], 1, stdout="", stderr=error))
    assert len(problems) == 1
    assert "master-1" in problems[0] and "10.0.0.10:6443 was refused" in problems[0]
    assert "memcache" not in problems[0]
