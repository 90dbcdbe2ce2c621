"""The Kubernetes-phase playbooks and roles pass Ansible's syntax check on every golden lab, and ansible-lint."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from role_templates import GOLDEN, PLAYBOOKS, ROLES

BIN = Path(sys.executable).parent
KUBE_PLAYBOOKS = ("packages.yml", "control-plane.yml", "workers.yml", "cni.yml", "reset.yml")
KUBE_ROLES = ("kube_packages", "kubeadm", "control_plane", "worker", "cni", "kube_vip", "reset")
ENV = {**os.environ, "ANSIBLE_CONFIG": str(PLAYBOOKS / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1", "NO_COLOR": "1"}


# Two labs: one with a load-balancer group and workers, one with kube-vip and no workers.
@pytest.mark.parametrize("case", ["ha-haproxy", "kube-vip"])
def test_syntax_check(case: str) -> None:
    argv = [str(BIN / "ansible-playbook"), "--syntax-check", "-i", str(GOLDEN / case / "inventory")]
    argv += [str(PLAYBOOKS / name) for name in KUBE_PLAYBOOKS]
    done = subprocess.run(argv, capture_output=True, text=True, env=ENV, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("playbook: ") == len(KUBE_PLAYBOOKS)


def test_ansible_lint_production_profile() -> None:
    argv = [str(BIN / "ansible-lint"), "--offline", "--profile", "production", "--nocolor"]
    argv += [str(PLAYBOOKS / name) for name in KUBE_PLAYBOOKS] + [str(ROLES / role) for role in KUBE_ROLES]
    done = subprocess.run(argv, capture_output=True, text=True, env=ENV, cwd=PLAYBOOKS.parent, check=False)
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-5000:]
    assert "Passed" in done.stderr + done.stdout
