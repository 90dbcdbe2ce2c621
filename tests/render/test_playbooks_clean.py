"""The phase playbooks stay clean: `ansible-playbook --syntax-check` and ansible-lint's production profile.

Both run offline (no Galaxy): the roles may use ansible.builtin modules only, the collection ansible-core ships.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from provisioner.lab import REPO_ROOT
from provisioner.phases import PHASES, PlaybookPhase

PLAYBOOKS_DIR = REPO_ROOT / "playbooks"
BIN = Path(sys.executable).parent
INVENTORY = REPO_ROOT / "tests" / "render" / "golden" / "ha-haproxy" / "inventory"


def _env() -> dict[str, str]:
    return {**os.environ, "ANSIBLE_CONFIG": str(PLAYBOOKS_DIR / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}


def test_site_reset_and_upgrade_pass_syntax_check() -> None:
    """site.yml imports every phase playbook, so this checks all of them (ansible-lint re-checks each alone)."""
    done = subprocess.run(
        [str(BIN / "ansible-playbook"), "--syntax-check", "-i", str(INVENTORY)]
        + [str(PLAYBOOKS_DIR / name) for name in ("site.yml", "reset.yml", "upgrade.yml")],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_site_imports_the_phase_playbooks_in_kubelab_up_order() -> None:
    imported = re.findall(r"import_playbook: (\S+)", (PLAYBOOKS_DIR / "site.yml").read_text())
    assert imported == [phase.playbook for phase in PHASES if isinstance(phase, PlaybookPhase)]
    assert all((PLAYBOOKS_DIR / name).is_file() for name in imported)


def test_ansible_lint_production_profile_passes() -> None:
    done = subprocess.run(
        [str(BIN / "ansible-lint"), "--offline", "--profile", "production", "--nocolor", "playbooks", "tests/molecule"],
        env=_env(),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]


def _playbook_files(*patterns: str) -> list[Path]:
    return sorted(path for pattern in patterns for path in PLAYBOOKS_DIR.rglob(pattern))


def test_versions_come_from_the_lab_not_from_literal_defaults() -> None:
    """Every version reaches the roles through the lab's group_vars (provisioner/versions.py), never a made-up
    fallback like default('1.36') that would silently disagree with it."""
    literal = re.compile(r"""default\(\s*['"]v?\d+\.\d+(\.\d+)?['"]|default\(\s*['"]kubeadm\.k8s\.io/""")
    found = [
        f"{path.relative_to(PLAYBOOKS_DIR)}:{number}: {line.strip()}"
        for path in _playbook_files("*.yml", "*.j2")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if literal.search(line)
    ]
    assert not found, "\n".join(found)


def test_role_templates_read_their_own_role_variables() -> None:
    """A template reads its role's variables only (documented in defaults/main.yml): the lab's kubelab_* settings,
    groups and other hosts' hostvars are turned into role variables there, never read in the template."""
    jinja = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.DOTALL)
    outside = re.compile(r"\b(kubelab_\w+|hostvars|groups)\b")
    found = [
        f"{path.relative_to(PLAYBOOKS_DIR)}: {name}"
        for path in _playbook_files("roles/*/templates/*.j2")
        for block in jinja.findall(path.read_text())
        for name in outside.findall(block)
    ]
    assert not found, "\n".join(found)
