"""Everything the artifacts role installs from the folder, on a node from the Debian base."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from provisioner.checks.labfacts import LabFacts
from provisioner.checks.test_nodes import (  # noqa: F401 (collected here)
    test_containerd_active,
    test_crictl_talks_to_containerd,
    test_kubernetes_packages_pinned_and_held,
)

pytestmark = pytest.mark.groups("k8s_cluster")


def test_every_binary_is_the_folders(host: Any, lab: LabFacts) -> None:
    for entry in (e for e in lab.artifacts if e["kind"] == "binary"):
        installed = host.file(f"/usr/bin/{Path(entry['path']).name}")
        assert installed.mode == 0o755 and installed.sha256sum == entry["sha256"], entry["path"]
    assert host.file("/usr/local/sbin/runc").mode == 0o755
    assert host.file("/usr/local/bin/containerd").exists and host.file("/opt/cni/bin/bridge").exists


def test_containerd_holds_every_image_of_the_folder_by_its_exact_reference(host: Any, lab: LabFacts) -> None:
    wanted = {e["name"] for e in lab.artifacts if e["kind"] == "image"}
    listed = set(host.check_output("ctr --namespace k8s.io images list --quiet").split())
    assert wanted and not wanted - listed, f"containerd lacks {sorted(wanted - listed)}"


def test_containers_run_from_the_folders_etcd_and_pause_images(host: Any, lab: LabFacts) -> None:
    images = {e["name"].split("/")[-1].split(":")[0]: e["name"] for e in lab.artifacts if e["kind"] == "image"}
    etcd = host.run(f"ctr -n k8s.io run --rm {images['etcd']} kubelab-test-etcd etcd --version")
    assert etcd.rc == 0 and "etcd Version: 3." in etcd.stdout, etcd.stdout + etcd.stderr
    pause = host.run(
        f"ctr -n k8s.io run -d {images['pause']} kubelab-test-pause && sleep 1 && "
        "ctr -n k8s.io task list | grep kubelab-test-pause; "
        "ctr -n k8s.io task kill -s KILL kubelab-test-pause; sleep 1; ctr -n k8s.io container rm kubelab-test-pause"
    )
    assert "RUNNING" in pause.stdout, pause.stdout + pause.stderr


def test_the_folder_is_shared_read_only_and_nothing_was_copied(host: Any) -> None:
    mount = host.check_output("findmnt --noheadings --output OPTIONS /var/lib/kubelab/host-artifacts")
    assert mount.split(",")[0] == "ro", mount
    assert not host.file("/var/cache/kubelab/artifacts").exists
