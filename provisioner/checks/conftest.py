"""pytest/testinfra wiring of the kubelab checks: lab facts, node selection by group and phase, results file.

Run by `kubelab verify`, or by hand:
    pytest --hosts='ansible://all' --ansible-inventory=LAB/inventory --kubelab-lab=LAB CHECKS_DIR
Markers: `groups(...)` limits a per-node check to nodes of those inventory groups (others are deselected:
the check does not apply to them); `phase(name)` or `phase(masters=..., workers=...)` skips a check,
with a reason, until the lab's state says that phase of `kubelab up` is done.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import pytest

from provisioner.checks import kube
from provisioner.checks.labfacts import PHASES, LabFacts, phase_reached, phases_done, read_lab


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("kubelab")
    group.addoption("--kubelab-lab", metavar="DIR", help="the lab folder (holds inventory/, kubeconfig)")
    group.addoption(
        "--kubelab-phases",
        metavar="LIST",
        help="comma-separated phases that are done, `all` or `none` (default: from the lab's state file; none"
        " recorded = all)",
    )
    group.addoption("--kubelab-json", metavar="FILE", help="write one result per node and check as JSON")
    group.addoption("--kubelab-kubectl", choices=("auto", "host", "master"), default="auto", help="where kubectl runs")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "groups(*names): only for nodes in these inventory groups")
    config.addinivalue_line("markers", "phase(name, **per_group): needs this phase of `kubelab up` to be done")
    target = config.getoption("--kubelab-json")
    if target:
        config.pluginmanager.register(ResultsFile(Path(target)), "kubelab-results")


def _lab(config: pytest.Config) -> LabFacts:
    root = config.getoption("--kubelab-lab")
    if not root:
        raise pytest.UsageError("--kubelab-lab=DIR is required: the lab folder to verify")
    return read_lab(Path(root).expanduser().resolve())


def _done(config: pytest.Config, lab: LabFacts) -> set[str] | None:
    given = config.getoption("--kubelab-phases")
    if given is None:
        return phases_done(lab.root)
    names = {p.strip() for p in given.split(",") if p.strip()}
    unknown = names - set(PHASES) - {"all", "none"}
    if unknown:
        raise pytest.UsageError(f"--kubelab-phases: unknown phase(s) {sorted(unknown)}; known: {', '.join(PHASES)}")
    return None if "all" in names else names - {"none"}


def item_node(item: pytest.Item) -> str | None:
    """The inventory name of the node a per-node check runs on (None for lab-wide checks)."""
    callspec = getattr(item, "callspec", None)
    host = callspec.params.get("_testinfra_host") if callspec else None
    return getattr(host.backend, "host", None) if host is not None else None


def needed_phase(item: pytest.Item, lab: LabFacts, node: str | None) -> str | None:
    marker = item.get_closest_marker("phase")
    if marker is None:
        return None
    if marker.args:
        return str(marker.args[0])
    groups = lab.group_of(node) if node else set()
    return next((str(p) for g, p in marker.kwargs.items() if g in groups), None)


def check_name(item: pytest.Item) -> str:
    name = getattr(item, "originalname", item.name).removeprefix("test_")
    params = getattr(getattr(item, "callspec", None), "params", {})
    extra = [str(v) for k, v in params.items() if k != "_testinfra_host"]
    return name + (f"[{','.join(extra)}]" if extra else "")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    lab = _lab(config)
    done = _done(config, lab)
    keep, dropped = [], []
    for item in items:
        node = item_node(item)
        groups = item.get_closest_marker("groups")
        if node is not None and groups is not None and not lab.group_of(node) & set(groups.args):
            dropped.append(item)
            continue
        phase = needed_phase(item, lab, node)
        if phase and not phase_reached(done, phase):
            item.add_marker(pytest.mark.skip(reason=f"not applicable before the {phase} phase"))
        item.user_properties += [("node", node or "lab"), ("check", check_name(item))]
        keep.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


# testinfra raises RuntimeError(CommandResult(...)) when ssh itself fails (exit 255): keep only what ssh said.
SSH_FAILURE = re.compile(r"RuntimeError: CommandResult\(.*exit_status=255, .*_stderr=b(?P<stderr>'.*'|\".*\")\)", re.S)


def ssh_failure(text: str) -> str | None:
    """'cannot reach the node over SSH: <ssh's message>' for testinfra's ssh errors, else None."""
    match = SSH_FAILURE.search(text)
    if match is None:
        return None
    try:
        stderr = ast.literal_eval("b" + match["stderr"]).decode(errors="replace")
    except (ValueError, SyntaxError):
        stderr = match["stderr"][1:-1].replace("\\r", "").replace("\\n", "\n")
    said = next((line.strip() for line in reversed(stderr.splitlines()) if line.strip()), "no message")
    return f"cannot reach the node over SSH: {said} (are the lab's nodes up? `kubelab status`)"


def _message(report: pytest.TestReport) -> str:
    if report.skipped and isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    crash = getattr(report.longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(report.longrepr or "")
    unreachable = ssh_failure(text)
    if unreachable:
        return unreachable
    first = text.strip().splitlines()[0] if text.strip() else ""
    for prefix in ("AssertionError: ", "Failed: ", "provisioner.checks.kube.KubectlError: "):
        first = first.removeprefix(prefix)
    return first


class ResultsFile:
    """Collects one row per check (group, node, check, outcome, message) and writes them as JSON."""

    def __init__(self, target: Path) -> None:
        self.target = target
        self.rows: dict[str, dict[str, str]] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        props = dict(report.user_properties)
        if "check" not in props:
            return
        row = self.rows.setdefault(
            report.nodeid,
            {
                "group": Path(report.location[0]).stem.removeprefix("test_"),
                "node": str(props["node"]),
                "check": str(props["check"]),
                "outcome": "passed",
                "message": "",
            },
        )
        if report.failed:
            row["outcome"] = "failed" if report.when == "call" else "error"
            row["message"] = row["message"] or _message(report)
        elif report.skipped and row["outcome"] == "passed":
            row["outcome"] = "skipped"
            row["message"] = _message(report)

    def pytest_sessionfinish(self) -> None:
        self.target.write_text(json.dumps({"results": list(self.rows.values())}, indent=2) + "\n")


# ----------------------------------------------------------------------------------------------
# Fixtures
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def lab(pytestconfig: pytest.Config) -> LabFacts:
    return _lab(pytestconfig)


@pytest.fixture(scope="session")
def done_phases(pytestconfig: pytest.Config, lab: LabFacts) -> set[str] | None:
    return _done(pytestconfig, lab)


@pytest.fixture(scope="session")
def require_phase(done_phases: set[str] | None):
    """require_phase(name): skip the calling check until that phase is done."""

    def require(phase: str) -> None:
        if not phase_reached(done_phases, phase):
            pytest.skip(f"not applicable before the {phase} phase")

    return require


@pytest.fixture(scope="module")
def node(host: Any) -> str:
    """The inventory name of the node `host` is."""
    return str(host.backend.host)


@pytest.fixture(scope="session")
def node_hosts(pytestconfig: pytest.Config, lab: LabFacts) -> dict[str, Any]:
    """Every node of the lab as a testinfra host, reached with the lab's Ansible inventory (and --ssh-config)."""
    import testinfra

    inventory = str(lab.root / "inventory")
    ssh_config = pytestconfig.getoption("ssh_config", None)
    return {
        name: testinfra.get_host(f"ansible://{name}", ansible_inventory=inventory, ssh_config=ssh_config)
        for name in lab.nodes
    }


@pytest.fixture(scope="session")
def kubectl(pytestconfig: pytest.Config, lab: LabFacts, node_hosts: dict[str, Any]) -> kube.Kubectl:
    mode = pytestconfig.getoption("--kubelab-kubectl")
    master = node_hosts[lab.init_master]
    kubectl = kube.choose(mode, lab.kubeconfig, master, lab.init_master, lab.kubernetes_minor)
    if kubectl.master is not None and not master.file(kube.ADMIN_CONF).exists:
        pytest.fail(
            f"no lab kubeconfig ({lab.kubeconfig}, or no kubectl on this host) and no {kube.ADMIN_CONF} on"
            f" {lab.init_master}: has the control-plane phase run?"
        )
    return kubectl
