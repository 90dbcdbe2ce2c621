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
