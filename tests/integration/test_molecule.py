"""Every role's molecule scenario, for real: `molecule test -s <scenario>` in playbooks/roles/<role>.

Each scenario's create and destroy playbooks (tests/molecule/) make and remove a `local` lab with kubelab itself;
the role converges twice (molecule fails the idempotence step on any changed task) and the testinfra verifier runs
kubelab's shipped checks plus the scenario's own tests. A scenario whose lab file names an artifacts folder gets
the tests' folder (builtartifacts.py), as the cluster modules do. Each run gets its own molecule folder (and with
it the lab's KUBELAB_HOME) under a temporary folder; afterwards nothing of the lab may be left on the host.

The scenarios with timed expectations (a VIP that must move within seconds, the API's downtime in a failover) run
alone; the others run two at a time, each on its own subnet.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml
from builtartifacts import FOLDERS, KUBERNETES_MINOR, built_folder
from hosttools import require_tools
from locallab import fail_if_left, sweep

from provisioner.lab import REPO_ROOT
from provisioner.providers.local import TOOLS as LOCAL_TOOLS

pytestmark = pytest.mark.integration

ROLES = REPO_ROOT / "playbooks" / "roles"
ALONE = ("keepalived", "kube_vip")
SCENARIOS = sorted(
    (path.parent for path in ROLES.glob("*/molecule/*/molecule.yml")), key=lambda s: (s.name not in ALONE, s.name)
)
PARALLEL = 2
OUTPUT_TAIL = 12_000


def lab_file(scenario: Path) -> dict[str, Any]:
    return yaml.safe_load((scenario / "lab.yml").read_text())


def folder_env(lab: dict[str, Any]) -> dict[str, str]:
    """The tests' artifacts folder of the minor a lab file's folder holds (built, or rebuilt from the caches,
    once per run); a lab below the tests' minor gets the tests' folder as its upgrade target (kube_upgrade)."""
    if "artifacts" not in lab:
        return {}
    named = Path(lab["artifacts"]).expanduser()
    minor = next((m for m, folder in FOLDERS.items() if folder == named), KUBERNETES_MINOR)
    env = {"KUBELAB_MOLECULE_ARTIFACTS": str(built_folder(minor))}
    if minor != KUBERNETES_MINOR:
        env["KUBELAB_MOLECULE_UPGRADE_ARTIFACTS"] = str(built_folder())
    return env


def run_scenario(scenario: Path, work: Path) -> subprocess.CompletedProcess[str]:
    """`molecule test -s NAME` in the role's folder; the lab swept from the host when molecule did not finish."""
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "MOLECULE_EPHEMERAL_DIRECTORY": str(work / "molecule"),
        "NO_COLOR": "1",
        **folder_env(lab_file(scenario)),
    }
    try:
        return subprocess.run(
            [str(Path(sys.executable).parent / "molecule"), "test", "-s", scenario.name],
            cwd=scenario.parents[1],
            env=env,
            capture_output=True,
            text=True,
            timeout=1800,
        )
    except BaseException:
        sweep(lab_file(scenario)["name"])
        raise


@pytest.fixture(scope="module")
def host_ready() -> None:
    if os.geteuid() != 0:
        pytest.skip("local namespace nodes need root")
    require_tools(*LOCAL_TOOLS)


@pytest.fixture(scope="module")
def side_by_side(host_ready: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[Path, Future[Any]]]:
    """The scenarios that may share the host, started together on PARALLEL workers."""
    for scenario in SCENARIOS:
        folder_env(lab_file(scenario))  # the folder built before the workers start
    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        runs = {
            scenario: pool.submit(run_scenario, scenario, tmp_path_factory.mktemp(scenario.name))
            for scenario in SCENARIOS
            if scenario.name not in ALONE
        }
        try:
            yield runs
        finally:
            for run in runs.values():
                run.cancel()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[f"{s.parents[1].name}/{s.name}" for s in SCENARIOS])
def test_role_scenario(scenario: Path, host_ready: None, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    if scenario.name in ALONE:
        done = run_scenario(scenario, tmp_path)
    else:
        done = request.getfixturevalue("side_by_side")[scenario].result()
    lab = lab_file(scenario)
    output = done.stdout + done.stderr
    print(output[-OUTPUT_TAIL:])
    if done.returncode != 0:
        sweep(lab["name"])
    assert done.returncode == 0, f"molecule test -s {scenario.name} failed:\n{output[-OUTPUT_TAIL:]}"
    # The three steps that prove the role: it converged, a second run changed nothing, the checks passed.
    for step in ("converge", "idempotence", "verify"):
        assert f"{step}: Executed: Successful" in output, step
    fail_if_left(lab["name"], lab["node_subnet"])
