"""Every role's molecule scenario, for real: `molecule test -s <scenario>` in playbooks/roles/<role>.

Each scenario's create and destroy playbooks (tests/molecule/) make and remove a `local` lab with kubelab itself;
the role converges twice (molecule fails the idempotence step on any changed task) and the testinfra verifier runs
kubelab's shipped checks plus the scenario's own tests. A scenario whose lab file names an artifacts folder gets
the tests' folder (builtartifacts.py), as the cluster modules do. Each run gets its own molecule folder (and with
it the lab's KUBELAB_HOME) under the test's temporary folder; afterwards nothing of the lab may be left on the host.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from builtartifacts import built_folder
from hosttools import require_tools
from locallab import fail_if_left, sweep

from provisioner.lab import REPO_ROOT
from provisioner.providers.local import TOOLS as LOCAL_TOOLS

pytestmark = pytest.mark.integration

ROLES = REPO_ROOT / "playbooks" / "roles"
SCENARIOS = sorted(path.parent for path in ROLES.glob("*/molecule/*/molecule.yml"))
OUTPUT_TAIL = 12_000


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[f"{s.parents[1].name}/{s.name}" for s in SCENARIOS])
def test_role_scenario(scenario: Path, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("local namespace nodes need root")
    require_tools(*LOCAL_TOOLS)
    lab = yaml.safe_load((scenario / "lab.yml").read_text())
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "MOLECULE_EPHEMERAL_DIRECTORY": str(tmp_path / "molecule"),
        "NO_COLOR": "1",
    }
    if "artifacts" in lab:  # the tests' folder, built (or rebuilt from the caches) once per session
        env["KUBELAB_MOLECULE_ARTIFACTS"] = str(built_folder())
    try:
        done = subprocess.run(
            [str(Path(sys.executable).parent / "molecule"), "test", "-s", scenario.name],
            cwd=scenario.parents[1],
            env=env,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        output = done.stdout + done.stderr
        print(output[-OUTPUT_TAIL:])
        assert done.returncode == 0, f"molecule test -s {scenario.name} failed:\n{output[-OUTPUT_TAIL:]}"
        # The three steps that prove the role: it converged, a second run changed nothing, the checks passed.
        for step in ("converge", "idempotence", "verify"):
            assert f"{step}: Executed: Successful" in output, step
    except BaseException:
        sweep(lab["name"])
        raise
    fail_if_left(lab["name"], lab["node_subnet"])
