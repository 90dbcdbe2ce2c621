"""`kubelab kubeconfig [--merge]` in a temporary HOME: path, merge as a context named after the lab, backup, 0600."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import yaml

LAB = "it-life-k"
LAB_CONFIG = {
    "apiVersion": "v1",
    "kind": "Config",
    "clusters": [
        {"name": "kubernetes", "cluster": {"server": "https://10.77.123.10:6443", "certificate-authority-data": "Q0E="}}
    ],
    "users": [{"name": "kubernetes-admin", "user": {"client-certificate-data": "Q0VSVA==", "client-key-data": "S0VZ"}}],
    "contexts": [
        {"name": "kubernetes-admin@kubernetes", "context": {"cluster": "kubernetes", "user": "kubernetes-admin"}}
    ],
    "current-context": "kubernetes-admin@kubernetes",
}
OTHER = {
    "apiVersion": "v1",
    "kind": "Config",
    "clusters": [{"name": "work", "cluster": {"server": "https://work.example:6443"}}],
    "users": [{"name": "work", "user": {"token": "abc"}}],
    "contexts": [{"name": "work", "context": {"cluster": "work", "user": "work"}}],
    "current-context": "work",
}


def kubelab(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(home), "KUBELAB_HOME": str(home / "kubelab")}
    return subprocess.run(
        [sys.executable, "-m", "provisioner.cli", "kubeconfig", "--name", LAB, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def lab_kubeconfig(home: Path) -> Path:
    path = home / "kubelab" / "labs" / LAB / "kubeconfig"
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump(LAB_CONFIG))
    return path


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_no_kubeconfig_before_the_control_plane_phase(tmp_path: Path) -> None:
    done = kubelab(tmp_path)
    assert done.returncode == 1
    assert f"lab '{LAB}' has no kubeconfig yet" in done.stderr and "control-plane phase" in done.stderr
    merge = kubelab(tmp_path, "--merge")
    assert merge.returncode == 1 and not (tmp_path / ".kube").exists()


def test_prints_the_path(tmp_path: Path) -> None:
    path = lab_kubeconfig(tmp_path)
    done = kubelab(tmp_path)
    assert (done.returncode, done.stdout.strip()) == (0, str(path))


def test_merge_into_a_new_file(tmp_path: Path) -> None:
    lab_kubeconfig(tmp_path)
    done = kubelab(tmp_path, "--merge")
    assert done.returncode == 0, done.stderr
    target = tmp_path / ".kube" / "config"
    assert mode(target) == 0o600
    config = yaml.safe_load(target.read_text())
    assert config["current-context"] == LAB
    assert config["contexts"] == [{"name": LAB, "context": {"cluster": LAB, "user": LAB}}]
    assert config["clusters"] == [{"name": LAB, "cluster": LAB_CONFIG["clusters"][0]["cluster"]}]
    assert config["users"] == [{"name": LAB, "user": LAB_CONFIG["users"][0]["user"]}]
    assert "previous file saved" not in done.stdout


def test_merge_keeps_other_contexts_backs_up_and_replaces_its_own(tmp_path: Path) -> None:
    lab_kubeconfig(tmp_path)
    target = tmp_path / ".kube" / "config"
    target.parent.mkdir()
    original = yaml.safe_dump(OTHER)
    target.write_text(original)
    first = kubelab(tmp_path, "--merge")
    assert first.returncode == 0, first.stderr
    backups = sorted(target.parent.glob("config.kubelab-backup-*"))
    assert len(backups) == 1 and backups[0].read_text() == original and mode(backups[0]) == 0o600
    assert str(backups[0]) in first.stdout
    config = yaml.safe_load(target.read_text())
    assert [c["name"] for c in config["contexts"]] == ["work", LAB]
    assert config["users"][0] == OTHER["users"][0]
    assert config["current-context"] == LAB
    # Merging again replaces the lab's entries instead of adding a second copy.
    assert kubelab(tmp_path, "--merge").returncode == 0
    again = yaml.safe_load(target.read_text())
    assert [c["name"] for c in again["clusters"]] == ["work", LAB]
    assert mode(target) == 0o600


def test_a_broken_user_config_is_left_alone(tmp_path: Path) -> None:
    lab_kubeconfig(tmp_path)
    target = tmp_path / ".kube" / "config"
    target.parent.mkdir()
    target.write_text("clusters: [unclosed\n")
    done = kubelab(tmp_path, "--merge")
    assert done.returncode == 1
    assert f"{target} is not valid YAML" in done.stderr
    assert target.read_text() == "clusters: [unclosed\n"
    assert not list(target.parent.glob("config.kubelab-backup-*"))
