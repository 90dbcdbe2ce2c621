"""`kubelab verify`: run the testinfra checks in provisioner/checks/ against a lab and report per node and check.

pytest runs in a subprocess (its plugins and module cache stay out of kubelab's process) with testinfra's
Ansible backend on the lab's inventory. Results: a table on stdout, `verify/junit.xml`, `verify/summary.json`
and the full pytest output in `verify/pytest.log`, all in the lab folder.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TextIO

from provisioner import artifacts
from provisioner.checks.manifests import AGNHOST_ENV
from provisioner.errors import KubelabError
from provisioner.lab import REPO_ROOT, LabDir

CHECKS_DIR = Path(__file__).resolve().parent / "checks"
GROUPS: tuple[str, ...] = ("nodes", "lb", "cluster", "addons", "workloads")
DEFAULT_GROUPS = frozenset({"nodes", "lb", "cluster", "addons"})
LABELS = {"passed": "PASS", "failed": "FAIL", "error": "ERROR", "skipped": "N/A"}
PYTEST_USAGE_ERRORS = (2, 3, 4)
NOT_YET = "not applicable before the "  # how conftest.py words a check skipped for a missing phase
# testinfra gives ssh no ControlPath unless ansible.cfg sets one, so every check would open a new connection.
# The path is new for every run: a lab rebuilt on the same addresses must never reach a previous run's connection.
SSH_CONFIG = """# Written by kubelab verify: one shared SSH connection per node for all checks.
Host *
  ControlMaster auto
  ControlPersist 60s
  ControlPath {control_path}
Include ~/.ssh/config
Include /etc/ssh/ssh_config
"""


class VerifyError(KubelabError):
    """verify cannot run (no lab, unknown group, pytest could not start); the message says what to do."""

    exit_code = 2


def parse_groups(text: str | None) -> set[str] | None:
    """`--only nodes,lb` -> {"nodes", "lb"}; unknown names are an error naming the known ones."""
    if not text:
        return None
    names = {part.strip() for part in text.split(",") if part.strip()}
    unknown = names - set(GROUPS)
    if unknown:
        raise VerifyError(f"unknown check group(s) {', '.join(sorted(unknown))}; choose from {', '.join(GROUPS)}")
    return names


def parse_checks(text: str | None) -> set[str] | None:
    """`--check etcd_members_healthy,...` -> the names; unknown names are an error naming the known ones."""
    if not text:
        return None
    names = {part.strip() for part in text.split(",") if part.strip()}
    known = {
        name for path in CHECKS_DIR.glob("test_*.py") for name in re.findall(r"^def test_(\w+)", path.read_text(), re.M)
    }
    unknown = names - known
    if unknown:
        raise VerifyError(f"unknown check(s) {', '.join(sorted(unknown))}; the checks: {', '.join(sorted(known))}")
    return names


def results_dir(lab: LabDir) -> Path:
    return lab.root / "verify"


@contextmanager
def shared_ssh(lab: LabDir) -> Iterator[Path]:
    """Write the SSH client config the checks use (one connection per node, the user's own config included);
    the connections are closed when the block ends."""
    sockets = Path.home() / ".ansible" / "cp"
    sockets.mkdir(mode=0o700, parents=True, exist_ok=True)
    prefix = f"kubelab-{secrets.token_hex(4)}-"
    path = results_dir(lab) / "ssh_config"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(SSH_CONFIG.format(control_path=sockets / f"{prefix}%C"))
    try:
        yield path
    finally:
        for socket in sockets.glob(f"{prefix}*"):
            with suppress(subprocess.TimeoutExpired):
                subprocess.run(
                    ["ssh", "-o", f"ControlPath={socket}", "-O", "exit", "node"], capture_output=True, timeout=15
                )


def pytest_argv(
    lab: LabDir, groups: set[str], phases: set[str] | None = None, kubectl: str = "auto", checks: set[str] | None = None
) -> list[str]:
    out = results_dir(lab)
    argv = [
        sys.executable,
        "-m",
        "pytest",
        *(str(CHECKS_DIR / f"test_{group}.py") for group in GROUPS if group in groups),
        "-c",
        os.devnull,
        "--rootdir",
        str(CHECKS_DIR),
        "-p",
        "no:cacheprovider",
        "-q",
        "-rfE",
        "--hosts=ansible://all",
        f"--ansible-inventory={lab.inventory_dir}",
        f"--ssh-config={out / 'ssh_config'}",
        f"--kubelab-lab={lab.root}",
        f"--kubelab-json={out / 'results.json'}",
        f"--kubelab-kubectl={kubectl}",
        f"--junitxml={out / 'junit.xml'}",
        "-o",
        "junit_family=xunit2",
        "-o",
        "junit_suite_name=kubelab-verify",
    ]
    if phases is not None:
        argv.append("--kubelab-phases=" + (",".join(sorted(phases)) or "none"))
    if checks:
        argv += ["-k", " or ".join(f"test_{name}" for name in sorted(checks))]
    return argv


def checks_environment(artifacts_dir: str | None = None) -> dict[str, str]:
    """ansible-inventory from this interpreter's bin dir; the project's ansible.cfg unless the user set one;
    the agnhost image of the lab's artifacts folder when it has one."""
    env = dict(os.environ)
    agnhost = artifacts.agnhost_image(artifacts_dir)
    if agnhost:
        env[AGNHOST_ENV] = agnhost
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    config = REPO_ROOT / "playbooks" / "ansible.cfg"
    if "ANSIBLE_CONFIG" not in env and config.is_file():
        env["ANSIBLE_CONFIG"] = str(config)
    return env


def lab_artifacts_dir(lab: LabDir) -> str | None:
    """The lab's artifacts folder (``artifacts`` of the spec in its lab.json), if any."""
    try:
        spec = json.loads(lab.spec_file.read_text()).get("spec")
    except (OSError, ValueError, AttributeError):
        return None
    return str(spec["artifacts"]) if isinstance(spec, dict) and spec.get("artifacts") else None


def format_table(rows: list[dict[str, str]]) -> str:
    """One line per group/node/check: the result, and the observed value when a check fails or does not apply."""
    header = ("GROUP", "NODE", "CHECK", "RESULT")
    lines = [(r["group"], r["node"], r["check"], LABELS.get(r["outcome"], r["outcome"].upper())) for r in rows]
    widths = [max(len(x[i]) for x in [header, *lines]) for i in range(4)]
    out = []
    for (group, node, check, result), row in zip([header, *lines], [None, *rows], strict=True):
        text = "  ".join(value.ljust(width) for value, width in zip((group, node, check, result), widths, strict=True))
        if row and row["message"]:
            text += "  " + row["message"]
        out.append(text.rstrip())
    return "\n".join(out)


def phase_notes(rows: list[dict[str, str]], lab_name: str) -> list[str]:
    """A sentence for each group none of whose checks could run because a phase of `kubelab up` is missing."""
    from provisioner.checks.labfacts import PHASES

    notes = []
    for group in GROUPS:
        mine = [r for r in rows if r["group"] == group]
        waiting = {
            r["message"].removeprefix(NOT_YET).removesuffix(" phase")
            for r in mine
            if r["outcome"] == "skipped" and r["message"].startswith(NOT_YET)
        }
        if mine and all(r["outcome"] == "skipped" for r in mine) and waiting:
            phase = min(waiting, key=lambda name: PHASES.index(name) if name in PHASES else len(PHASES))
            notes.append(
                f"{group} checks did not run: the {phase} phase of `kubelab up` has not run on this lab"
                f" (`kubelab up --name {lab_name}` builds the cluster)"
            )
    return notes


def summarise(rows: list[dict[str, str]]) -> dict[str, int]:
    totals = {outcome: 0 for outcome in LABELS}
    for row in rows:
        totals[row["outcome"]] = totals.get(row["outcome"], 0) + 1
    return totals


def run_verify(
    lab: LabDir,
    only: set[str] | None = None,
    workloads: bool = False,
    phases: set[str] | None = None,
    kubectl: str = "auto",
    out: TextIO | None = None,
    checks: set[str] | None = None,
) -> int:
    """Run the selected check groups against the lab, print the table; 0 when nothing failed. `phases` overrides
    the lab state's finished phases (None: read them, or treat all as done); `checks` runs only the checks named."""
    out = out or sys.stdout
    if not lab.hosts_inventory.is_file():
        raise VerifyError(f"{lab.root} has no inventory: create the lab first (`kubelab up`)")
    if not lab.connection_inventory.is_file():
        raise VerifyError(f"{lab.connection_inventory} is missing: the lab's nodes are not up (`kubelab up`)")
    groups = set(only or DEFAULT_GROUPS) | ({"workloads"} if workloads else set())
    folder = results_dir(lab)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").unlink(missing_ok=True)
    log = folder / "pytest.log"
    with log.open("w") as stream, shared_ssh(lab):
        done = subprocess.run(
            pytest_argv(lab, groups, phases, kubectl, checks),
            stdout=stream,
            stderr=subprocess.STDOUT,
            env=checks_environment(lab_artifacts_dir(lab)),
        )
    if done.returncode in PYTEST_USAGE_ERRORS or not (folder / "results.json").is_file():
        tail = "\n".join(log.read_text().splitlines()[-15:])
        raise VerifyError(f"the checks could not run (pytest exit {done.returncode}); see {log}:\n{tail}")
    rows = json.loads((folder / "results.json").read_text())["results"]
    totals = summarise(rows)
    summary = {"lab": str(lab.root), "groups": sorted(groups), "totals": totals, "results": rows}
    (folder / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(format_table(rows), file=out)
    failed = totals["failed"] + totals["error"]
    print(
        f"\n{totals['passed']} passed, {failed} failed, {totals['skipped']} not applicable"
        f" - {folder / 'summary.json'}, {folder / 'junit.xml'}",
        file=out,
    )
    for note in phase_notes(rows, lab.root.name):
        print(note, file=out)
    return 1 if failed or done.returncode not in (0, 5) else 0
