"""The kubeadm role's init config on a master: the real kubeadm accepts it and derives the folder's images from it."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from provisioner.checks.labfacts import LabFacts

CONFIG = "/etc/kubernetes/kubelab/kubeadm-init.yaml"

pytestmark = pytest.mark.groups("masters")


def test_the_config_is_private_and_names_the_lab(host: Any, lab: LabFacts, node: str) -> None:
    config = host.file(CONFIG)
    assert config.mode == 0o600 and host.file("/etc/kubernetes/kubelab").mode == 0o700
    docs = {doc["kind"]: doc for doc in yaml.safe_load_all(config.content_string) if doc}
    assert docs["InitConfiguration"]["localAPIEndpoint"]["advertiseAddress"] == lab.nodes[node]
    assert docs["ClusterConfiguration"]["kubernetesVersion"] == f"v{lab.kubernetes_version}"


def test_kubeadm_validates_the_config(host: Any) -> None:
    done = host.run(f"kubeadm config validate --config {CONFIG}")
    assert done.rc == 0, done.stdout + done.stderr


def test_the_images_kubeadm_wants_for_it_are_the_folders(host: Any, lab: LabFacts) -> None:
    wanted = set(host.check_output(f"kubeadm config images list --config {CONFIG}").split())
    folder = {entry["name"] for entry in lab.artifacts if entry["kind"] == "image"}
    assert wanted and wanted <= folder, sorted(wanted - folder)
