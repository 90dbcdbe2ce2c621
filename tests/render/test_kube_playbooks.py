"""The Kubernetes-phase playbooks pass Ansible's syntax check on the labs test_playbooks_clean.py does not use.

(test_playbooks_clean.py checks site.yml on ha-haproxy and runs ansible-lint over all of playbooks/.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from role_templates import GOLDEN, PLAYBOOKS

BIN = Path(sys.executable).parent
KUBE_PLAYBOOKS = ("packages.yml", "control-plane.yml", "workers.yml", "cni.yml", "reset.yml")
ENV = {**os.environ, "ANSIBLE_CONFIG": str(PLAYBOOKS / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1", "NO_COLOR": "1"}


# kube-vip: no lb nodes and no workers; single: no load balancer at all.
@pytest.mark.parametrize("case", ["kube-vip", "single"])
def test_syntax_check(case: str) -> None:
    argv = [str(BIN / "ansible-playbook"), "--syntax-check", "-i", str(GOLDEN / case / "inventory")]
    argv += [str(PLAYBOOKS / name) for name in KUBE_PLAYBOOKS]
    done = subprocess.run(argv, capture_output=True, text=True, env=ENV, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("playbook: ") == len(KUBE_PLAYBOOKS)
