"""resume's checks: units still starting after boot are waited for, failed ones and nodes that are not Ready are
reported with what broke."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from provisioner.checks import after_restart


def answers(states: list[str]) -> Iterator[subprocess.CompletedProcess[str]]:
    for state in states:
        yield subprocess.CompletedProcess([], 0, stdout=state + "\n", stderr="")


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(after_restart.time, "sleep", lambda _seconds: None)


def test_a_kubelet_that_is_still_activating_after_boot_is_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    states = answers(["activating", "activating", "active"])
    monkeypatch.setattr(after_restart, "run_on", lambda _connection, _command: next(states))
    assert after_restart._unit_state(object(), "kubelet") == "active"


def test_a_failed_kubelet_is_reported_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    states = answers(["failed", "active"])
    monkeypatch.setattr(after_restart, "run_on", lambda _connection, _command: next(states))
    assert after_restart._unit_state(object(), "kubelet") == "failed"


def test_a_kubelet_that_never_settles_is_reported_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(after_restart, "UNIT_TIMEOUT", -1)
    monkeypatch.setattr(after_restart, "run_on", lambda _connection, _command: next(answers(["activating"])))
    assert after_restart._unit_state(object(), "kubelet") == "activating"


NODES_READY = "master-1 Ready control-plane 5m v1.36.3\nworker-1 Ready <none> 5m v1.36.3\n"
SINCE = "2026-12-05T08:00:00Z"


def pod(name: str, node: str, started: str, ready: bool = True, namespace: str = "kube-system") -> dict:
    state = {"running": {"startedAt": started}} if ready else {"waiting": {"reason": "CrashLoopBackOff"}}
    container = {"name": name.split("-")[0], "ready": ready, "restartCount": 0 if ready else 3, "state": state}
    return {
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"nodeName": node},
        "status": {"phase": "Running", "containerStatuses": [container]},
    }


def settle_check(
    monkeypatch: pytest.MonkeyPatch, nodes: subprocess.CompletedProcess[str], pods: list[dict] | None = None
) -> list[str]:
    """_not_settled against one answer of `kubectl get nodes` and of `get pods`, with no time to wait."""
    import json
    from types import SimpleNamespace

    def remote(_connection: object, command: str) -> subprocess.CompletedProcess[str]:
        if " get nodes " in command:
            return nodes
        return subprocess.CompletedProcess([], 0, stdout=json.dumps({"items": pods or []}), stderr="")

    monkeypatch.setattr(after_restart, "SETTLE_TIMEOUT", -1)
    monkeypatch.setattr(after_restart, "run_on", remote)
    plan = SimpleNamespace(init_master=SimpleNamespace(name="master-1"), spec=SimpleNamespace(cni="flannel"))
    return after_restart._not_settled(plan, {"master-1": object()}, {"master-1", "worker-1"}, SINCE, lambda _what: None)  # type: ignore[arg-type]


def answer(stdout: str, returncode: int = 0, stderr: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.CompletedProcess([], returncode, stdout=stdout, stderr=stderr)


def test_nodes_that_are_not_ready_are_named_with_their_status(monkeypatch: pytest.MonkeyPatch) -> None:
    nodes = "master-1   Ready      control-plane   5m   v1.36.3\nworker-2   NotReady   <none>   5m   v1.36.3\n"
    problems = settle_check(monkeypatch, answer(nodes))
    assert problems == ["after -1 s: worker-1: not registered (`kubectl describe node worker-1`)"]


def test_ready_nodes_with_running_restarted_pods_are_settled(monkeypatch: pytest.MonkeyPatch) -> None:
    pods = [pod("etcd-master-1", "master-1", "2026-12-05T08:00:30Z")]
    pods += [pod("kube-flannel-ds-a", "worker-1", "2026-12-05T08:00:41Z", namespace="kube-flannel")]
    assert settle_check(monkeypatch, answer(NODES_READY), pods) == []


def test_a_crash_looping_cni_pod_keeps_the_lab_unsettled(monkeypatch: pytest.MonkeyPatch) -> None:
    pods = [pod("kube-flannel-ds-a", "master-1", "", ready=False, namespace="kube-flannel")]
    pods += [pod("coredns-1", "worker-1", "2026-12-05T08:00:41Z"), pod("web-1", "worker-1", "", False, "default")]
    problems = settle_check(monkeypatch, answer(NODES_READY), pods)
    assert problems[0] == (
        "after -1 s: kube-flannel/kube-flannel-ds-a on master-1: Running; container kube CrashLoopBackOff (restarts 3)"
    )
    assert not any("web-1" in problem for problem in problems)  # the user's own pods are not resume's business


def test_a_pod_still_showing_its_status_from_before_the_halt_is_not_settled(monkeypatch: pytest.MonkeyPatch) -> None:
    pods = [pod("coredns-1", "worker-1", "2026-12-05T07:40:00Z")]
    problems = settle_check(monkeypatch, answer(NODES_READY), pods)
    assert problems == ["after -1 s: kube-system/coredns-1: not started again since the restart"]


def test_an_api_server_that_does_not_answer_is_reported_with_kubectls_error(monkeypatch: pytest.MonkeyPatch) -> None:
    error = "E1205 memcache.go:265] couldn't get current server API group list\n"
    error += "The connection to the server 10.0.0.10:6443 was refused"
    problems = settle_check(monkeypatch, answer("", 1, error))
    assert len(problems) == 1
    assert "master-1" in problems[0] and "10.0.0.10:6443 was refused" in problems[0]
    assert "memcache" not in problems[0]


def test_a_failed_haproxy_on_a_load_balancer_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    def remote(connection: str, command: str) -> subprocess.CompletedProcess[str]:
        calls.append((connection, command))
        answer = "failed" if (connection, command) == ("lb-1", "systemctl is-active haproxy") else "active"
        return subprocess.CompletedProcess([], 0, stdout="" if command.startswith("swapon") else answer, stderr="")

    calls: list[tuple[str, str]] = []
    monkeypatch.setattr(after_restart, "run_on", remote)
    nodes = [SimpleNamespace(name=name, role=role) for name, role in (("lb-1", "lb"), ("master-1", "master"))]
    plan = SimpleNamespace(nodes=nodes, masters=nodes[1:], workers=[])
    done = {"prepare", "loadbalancer", "control-plane"}
    state = SimpleNamespace(is_done=lambda phase: phase in done)
    connections = {"lb-1": "lb-1", "master-1": "master-1"}
    problems = after_restart.after_restart_problems(plan, state, connections, SINCE)  # type: ignore[arg-type]
    assert problems == ["lb-1: haproxy is failed (`journalctl -u haproxy`)"]
    assert ("lb-1", "systemctl is-active keepalived") in calls
    assert ("master-1", "systemctl is-active kubelet") in calls
    assert not any(node == "lb-1" and command.startswith("swapon") for node, command in calls)
