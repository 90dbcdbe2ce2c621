"""keepalived.conf as the keepalived role renders it for the golden haproxy lab: multicast by default,
unicast peers when the lab sets `vrrp_unicast` (rendered with Ansible itself on the controller)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "playbooks" / "roles" / "keepalived"
INVENTORY = Path(__file__).parent / "golden" / "ha-haproxy" / "inventory"
ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")

PLAYBOOK = """
- name: Render keepalived.conf for every LB node
  hosts: lb
  connection: local
  gather_facts: false
  vars_files:
    - "{{ role_dir }}/defaults/main.yml"
  vars:
    keepalived_interface: eth1
    keepalived_auth_secret: s3cr3tpw
  tasks:
    - name: Render
      ansible.builtin.template:
        src: "{{ role_dir }}/templates/keepalived.conf.j2"
        dest: "{{ out_dir }}/{{ inventory_hostname }}.conf"
        mode: "0600"
      delegate_to: localhost
"""


def render(tmp_path: Path, extra: dict[str, object]) -> dict[str, str]:
    playbook = tmp_path / "render.yml"
    playbook.write_text(PLAYBOOK)
    out = tmp_path / "out"
    out.mkdir()
    variables = {"role_dir": str(ROLE), "out_dir": str(out), "kubelab_lab_dir": str(tmp_path), **extra}
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "playbooks" / "ansible.cfg")}
    result = subprocess.run(
        [str(ANSIBLE_PLAYBOOK), "-i", str(INVENTORY), "-e", json.dumps(variables), str(playbook)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return {path.stem: path.read_text() for path in sorted(out.glob("*.conf"))}


def vrrp_block(config: str) -> str:
    return config[config.index("vrrp_instance") :]


def test_multicast_by_default(tmp_path: Path) -> None:
    configs = render(tmp_path, {})
    assert set(configs) == {"lb-1", "lb-2"}
    for config in configs.values():
        assert "unicast_peer" not in config
        assert "unicast_src_ip" not in config
    assert "state MASTER" in vrrp_block(configs["lb-1"])
    assert "state BACKUP" in vrrp_block(configs["lb-2"])


@pytest.mark.parametrize(
    ("node", "own_ip", "peer_ip"),
    [("lb-1", "192.168.56.11", "192.168.56.12"), ("lb-2", "192.168.56.12", "192.168.56.11")],
)
def test_vrrp_unicast_names_the_other_lb_as_peer(tmp_path: Path, node: str, own_ip: str, peer_ip: str) -> None:
    config = vrrp_block(render(tmp_path, {"kubelab_vrrp_unicast": True})[node])
    assert f"unicast_src_ip {own_ip}" in config
    peers = config[config.index("unicast_peer {") : config.index("}", config.index("unicast_peer {"))]
    assert peer_ip in peers
    assert own_ip not in peers
