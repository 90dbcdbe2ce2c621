"""playbooks/filter_plugins reaches every role through ansible.cfg, also from a playbook outside playbooks/.

The prepare role's lookup of the private interface runs for real on this machine (connection local): 127.0.0.1
is on `lo`; an address no interface holds stops the play with the role's message.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from role_templates import PLAYBOOKS

PLAYBOOK = """
- name: The prepare role's interface lookup on this machine
  hosts: all
  connection: local
  gather_facts: true
  gather_subset: [network]
  tasks:
    - name: Find the private interface
      ansible.builtin.include_role:
        name: prepare
        tasks_from: interface.yml

    - name: Show it
      ansible.builtin.debug:
        msg: "interface={{ prepare_private_interface }}"
"""


def run_lookup(tmp: Path, address: str) -> subprocess.CompletedProcess[str]:
    playbook = tmp / "interface.yml"
    playbook.write_text(PLAYBOOK)
    values = {"kubelab_ip": address, "ansible_python_interpreter": sys.executable}
    env = {**os.environ, "ANSIBLE_CONFIG": str(PLAYBOOKS / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    env.pop("ANSIBLE_FILTER_PLUGINS", None)
    argv = [str(Path(sys.executable).with_name("ansible-playbook")), "-i", "localhost,", "-e", json.dumps(values)]
    return subprocess.run([*argv, str(playbook)], capture_output=True, text=True, env=env, check=False)


def test_prepare_finds_the_interface_of_its_address(tmp_path: Path) -> None:
    done = run_lookup(tmp_path, "127.0.0.1")
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert '"msg": "interface=lo"' in done.stdout


def test_prepare_stops_when_no_interface_holds_the_address(tmp_path: Path) -> None:
    done = run_lookup(tmp_path, "198.51.100.77")
    assert done.returncode != 0
    assert "No interface of localhost has the address 198.51.100.77" in done.stdout + done.stderr
