"""The plan-time network limits (provisioner/limits.py) cross-checked against the real kubeadm.

For each kubeadm-derived rule, the last value the rule accepts and the first it refuses go through the built
kubeadm's own validation (`kubeadm config validate`) with a configuration of the shape kubelab renders:
kubeadm must accept what the rule accepts and refuse what it refuses, so the rules neither let a lab fail
minutes later nor turn down a lab kubeadm would build. No cluster is needed; the binary is the one the
cluster tests run.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from builtartifacts import built_folder

from provisioner import limits
from provisioner.spec import build_spec

pytestmark = pytest.mark.integration

CONFIG = """\
apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
localAPIEndpoint:
  advertiseAddress: 192.168.56.11
  bindPort: 6443
nodeRegistration:
  name: master-1
  criSocket: unix:///run/containerd/containerd.sock
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
controlPlaneEndpoint: 192.168.56.10:6443
networking:
  podSubnet: {pod}
  serviceSubnet: {service}
"""

KUBEADM_FIELD = {"service_cidr": "networking.serviceSubnet", "pod_cidr": "networking.podSubnet"}
# (flag, last value the rule accepts, first value it refuses); the other network stays at the default.
BOUNDARIES = [
    ("service_cidr", "10.96.0.0/12", "10.96.0.0/11"),  # at most 20 host bits
    ("service_cidr", "10.96.0.0/28", "10.96.0.0/29"),  # room for the API (1st) and DNS (10th) addresses
    ("pod_cidr", "10.0.0.0/8", "10.0.0.0/7"),  # at most 16 bits between the pod range and the node /24
    ("pod_cidr", "10.244.0.0/24", "10.244.0.0/25"),  # at least one node /24
]


def kubeadm_accepts(kubeadm: Path, tmp_path: Path, pod: str, service: str) -> tuple[bool, str]:
    config = tmp_path / f"kubeadm-{pod.replace('/', '_')}-{service.replace('/', '_')}.yaml"
    config.write_text(CONFIG.format(pod=pod, service=service))
    done = subprocess.run(
        [str(kubeadm), "config", "validate", "--config", str(config)], capture_output=True, text=True, timeout=60
    )
    return done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(("field", "accepted", "refused"), BOUNDARIES)
def test_kubeadm_draws_the_line_where_the_rule_does(tmp_path: Path, field: str, accepted: str, refused: str) -> None:
    kubeadm = built_folder() / "bin" / "kubeadm"
    # A single-master lab: the per-node-range rule (one /24 per node) stays out of the way of the pod boundary.
    for value, wanted in ((accepted, True), (refused, False)):
        spec = build_spec({}, {field: value, "masters": 1, "workers": 0})
        assert (limits.problems(spec) == []) is wanted, (value, limits.problems(spec))
        ok, output = kubeadm_accepts(kubeadm, tmp_path, spec.pod_cidr, spec.service_cidr)
        assert ok is wanted, f"kubeadm {'refused' if wanted else 'accepted'} {field} {value}:\n{output}"
        if not wanted:  # refused for this value, not for something else in the configuration
            assert f'{KUBEADM_FIELD[field]}: Invalid value: "{value}"' in output, output
