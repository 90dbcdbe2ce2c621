"""Render the Kubernetes-phase role templates and filters for a golden lab, with Ansible itself.

No nodes and no Kubernetes binaries: the golden lab's inventory (exactly what kubelab renders, kept
identical by test_render.py) is copied, every role's defaults are added as the lowest group_vars, and a
small playbook on the controller (`connection: local`) renders the roles' templates and runs the roles'
filters (join secrets, CNI manifests, kubeconfig) with the same expressions the role tasks use, one output
folder per inventory host. What the roles learn on the nodes at run time (the kubeadm version, the
private interface, kubeadm's printed join command) is given as stand-ins below.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provisioner import versions

REPO = Path(__file__).resolve().parents[2]
PLAYBOOKS = REPO / "playbooks"
ROLES = PLAYBOOKS / "roles"
GOLDEN = Path(__file__).parent / "golden"
FIXTURES = Path(__file__).parent / "fixtures"
ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")
GOLDEN_LABS = ("single", "ha-haproxy", "kube-vip", "five-masters")
ROLES_RENDERED = ("kube_packages", "kubeadm", "control_plane", "worker", "kube_vip", "cni", "reset")
# ANSIBLE_FILTER_PLUGINS replaces ansible.cfg's filter_plugins: the shared folder is named here too.
FILTER_DIRS = (
    PLAYBOOKS / "filter_plugins",
    *(ROLES / role / "filter_plugins" for role in ("kubeadm", "control_plane", "cni")),
)

# Stand-ins for what the roles learn on the nodes.
INTERFACE = "enp0s8"
JOIN_TOKEN = "abcdef.0123456789abcdef"
CA_HASH = "sha256:" + "ab" * 32
CERT_KEY = "c0" * 32
# What `kubeadm token create --print-join-command` and `kubeadm init phase upload-certs --upload-certs` print.
JOIN_COMMAND_OUTPUT = (
    f"kubeadm join 192.168.56.10:6443 --token {JOIN_TOKEN} --discovery-token-ca-cert-hash {CA_HASH} \n"
)
UPLOAD_CERTS_OUTPUT = (
    "I1123 10:00:00.000000   1234 version.go:261] remote version is much newer\n"
    '[upload-certs] Storing the certificates in Secret "kubeadm-certs" in the "kube-system" Namespace\n'
    f"[upload-certs] Using certificate key:\n{CERT_KEY}\n"
)

RENDER_PLAYBOOK = """
- name: Render the Kubernetes-phase templates
  hosts: k8s_cluster
  connection: local
  gather_facts: false
  vars:
    roles_dir: "{{ render_roles }}"
    is_master: "{{ inventory_hostname in groups['masters'] }}"
    is_init: "{{ inventory_hostname == kubelab_init_master }}"
    kubeadm_template: "{{ roles_dir }}/kubeadm/templates/kubeadm-config.yaml.j2"
    kube_vip_template: "{{ roles_dir }}/kube_vip/templates/kube-vip.yaml.j2"
    # The join tasks' expressions, on what kubeadm prints.
    join_secrets: "{{ render_join_output | kubeadm_join_secrets }}"
    join_vars:
      kubeadm_installed_version: "{{ render_kubeadm_version }}"
      kubeadm_mode: join
      kubeadm_join_control_plane: "{{ is_master }}"
      kubeadm_join_token: "{{ join_secrets.token }}"
      kubeadm_ca_cert_hash: "{{ join_secrets.ca_cert_hash }}"
      kubeadm_certificate_key: "{{ render_upload_output | kubeadm_certificate_key if is_master else '' }}"
  tasks:
    # No module runs: debug is evaluated on the controller, the tree callback saves each host's result.
    - name: Render the templates and filters for this host
      ansible.builtin.debug:
        msg: "{{ rendered }}"
      vars:
        rendered:
          kubeadm-init.yaml: >-
            {{ lookup('template', kubeadm_template,
                      template_vars={'kubeadm_installed_version': render_kubeadm_version}) if is_init else none }}
          kubeadm-join.yaml: >-
            {{ lookup('template', kubeadm_template, template_vars=join_vars)
               if inventory_hostname in groups['k8s_cluster'] and not is_init else none }}
          kube-vip-super-admin.yaml: >-
            {{ lookup('template', kube_vip_template, template_vars={'kube_vip_interface': render_interface,
                      'kube_vip_kubeconfig': kube_vip_kubernetes_dir ~ '/super-admin.conf'}) if is_master else none }}
          kube-vip-admin.yaml: >-
            {{ lookup('template', kube_vip_template, template_vars={'kube_vip_interface': render_interface,
                      'kube_vip_kubeconfig': kube_vip_kubernetes_dir ~ '/admin.conf'}) if is_master else none }}
          cilium-values.yaml: >-
            {{ lookup('template', roles_dir ~ '/cni/templates/cilium-values.yaml.j2') if is_init else none }}
          calico-kubelab.yaml: >-
            {{ lookup('file', render_fixtures ~ '/calico.yaml')
               | cni_calico_manifest(cni_pod_cidr, cni_node_subnet, cni_mtu) if is_init else none }}
          kube-flannel-kubelab.yml: >-
            {{ lookup('file', render_fixtures ~ '/kube-flannel.yml')
               | cni_flannel_manifest(cni_pod_cidr, cni_mtu) if is_init else none }}
          weave-kubelab.yaml: >-
            {{ lookup('file', render_fixtures ~ '/weave-daemonset-k8s-1.11.yaml')
               | cni_weave_manifest(cni_pod_cidr, cni_mtu) if is_init else none }}
          kubeconfig: >-
            {{ lookup('file', render_fixtures ~ '/admin.conf')
               | control_plane_kubeconfig(control_plane_endpoint) if is_init else none }}
          vars.json: "{{ dict(render_var_names | zip(render_var_names | map('extract', vars))) | to_json }}"
"""

# Variables dumped per host (resolved against the inventory) so tests can check the role defaults.
DUMPED_VARS = (
    "kube_packages_repo_url",
    "kube_packages_pin",
    "kube_packages_keyring",
    "kube_packages_minor",
    "kube_packages_offline",
    "kubeadm_api_version",
    "kubeadm_control_plane_schedulable",
    "kube_vip_port",
    "kube_vip_image",
    "control_plane_kubeconfig_dest",
    "cni_plugin",
    "cni_offline",
    "cni_manifest_dir",
    "cni_calico_url",
    "cni_calico_file",
    "cni_flannel_url",
    "cni_flannel_file",
    "cni_weave_url",
    "cni_weave_file",
    "cni_cilium_chart_url",
    "cni_cilium_chart_file",
    "reset_kubeconfig",
)


@dataclass
class Rendered:
    """One rendered lab: its folder and, per inventory host, the rendered files by name."""

    lab_dir: Path
    out: Path

    def _files(self, host: str) -> dict[str, str | None]:
        return json.loads((self.out / host).read_text())["msg"]

    def text(self, host: str, name: str) -> str:
        content = self._files(host)[name]
        if content is None:
            raise AssertionError(f"{name} is not rendered for {host}")
        return content

    def exists(self, host: str, name: str) -> bool:
        """Whether `name` was rendered for `host` (hosts outside k8s_cluster get nothing)."""
        return (self.out / host).is_file() and self._files(host).get(name) is not None

    def yaml_docs(self, host: str, name: str) -> list[dict[str, Any]]:
        import yaml

        return [doc for doc in yaml.safe_load_all(self.text(host, name)) if doc]

    def vars(self, host: str) -> dict[str, Any]:
        return json.loads(self.text(host, "vars.json"))

    def hosts(self) -> list[str]:
        return sorted(path.name for path in self.out.iterdir())


def kubeadm_version_for(kubernetes_version: str) -> str:
    """What `kubeadm version -o short` prints on nodes of this lab: the patch, or the minor's newest patch."""
    major, minor, patch = versions.parse_kubernetes_version(kubernetes_version)
    if patch is not None:
        return f"v{major}.{minor}.{patch}"
    return "v" + versions.LATEST_PATCH.get(f"{major}.{minor}", f"{major}.{minor}.0")


def write_lab(
    tmp: Path, case: str, kubernetes_version: str | None = None, overrides: dict[str, Any] | None = None
) -> Path:
    """The golden lab's folder with role defaults as group_vars, the version and any variables overridden."""
    lab_dir = tmp / "lab"
    shutil.copytree(GOLDEN / case, lab_dir)
    all_vars = lab_dir / "inventory" / "group_vars" / "all"
    for role in ROLES_RENDERED:
        defaults = ROLES / role / "defaults" / "main.yml"
        (all_vars / f"00-defaults-{role}.yml").write_text(defaults.read_text())
    values = dict(overrides or {})
    if kubernetes_version:
        values.update(
            kubelab_kubernetes_version=kubernetes_version,
            kubelab_kubernetes_minor=versions.minor_of(kubernetes_version),
            kubelab_kubeadm_api_version=versions.kubeadm_api_version(kubernetes_version),
        )
    # Sorted after lab.yml: these win, as provider.yml does in a real lab.
    (all_vars / "zz-overrides.yml").write_text(json.dumps(values))
    return lab_dir


def render(
    tmp: Path, case: str, kubernetes_version: str | None = None, overrides: dict[str, Any] | None = None
) -> Rendered:
    """Render every Kubernetes-phase template and filter for the golden lab `case`."""
    lab_dir = write_lab(tmp, case, kubernetes_version, overrides)
    version = kubernetes_version or json.loads((lab_dir / "lab.json").read_text())["spec"]["kubernetes_version"]
    out = tmp / "out"
    playbook = tmp / "render.yml"
    playbook.write_text(RENDER_PLAYBOOK)
    extra = {
        "render_roles": str(ROLES),
        "render_fixtures": str(FIXTURES),
        "render_interface": INTERFACE,
        "render_kubeadm_version": kubeadm_version_for(version),
        "render_join_output": JOIN_COMMAND_OUTPUT,
        "render_upload_output": UPLOAD_CERTS_OUTPUT,
        "render_var_names": list(DUMPED_VARS),
        "kubelab_lab_dir": str(lab_dir),
        "ansible_python_interpreter": sys.executable,
    }
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(PLAYBOOKS / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_CALLBACKS_ENABLED": "ansible.builtin.tree",
        "ANSIBLE_CALLBACK_TREE_DIR": str(out),
        "ANSIBLE_FILTER_PLUGINS": os.pathsep.join(str(path) for path in FILTER_DIRS),
    }
    result = subprocess.run(
        [str(ANSIBLE_PLAYBOOK), "-i", str(lab_dir / "inventory"), "-e", json.dumps(extra), str(playbook)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"rendering failed:\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}")
    return Rendered(lab_dir=lab_dir, out=out)
