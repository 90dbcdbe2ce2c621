"""Host sysctls of local labs: the first lab saves them and raises the minimums, the last one restores them,
except forwarding, which another NAT on the host (a libvirt network, Docker) may have come to need meanwhile."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioner.providers import local_host

START = {
    "net.ipv4.ip_forward": "0",
    "fs.inotify.max_user_instances": "128",
    "fs.inotify.max_user_watches": "8192",
    "kernel.panic": "0",
    "kernel.panic_on_oops": "0",
    "vm.overcommit_memory": "0",
}


@pytest.fixture
def proc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "proc-sys"
    for key, value in START.items():
        path = root / key.replace(".", "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(value + "\n")
    monkeypatch.setattr(local_host, "_sysctl_file", lambda key: root / key.replace(".", "/"))
    monkeypatch.setattr(local_host, "SYSCTL_REGISTRY", tmp_path / "run" / "host-sysctls.json")
    return root


def value(root: Path, key: str) -> str:
    return (root / key.replace(".", "/")).read_text().strip()


def test_the_last_lab_restores_what_the_first_saved_but_leaves_forwarding_on(proc: Path, tmp_path: Path) -> None:
    labs = [tmp_path / "lab-a", tmp_path / "lab-b"]
    for lab in labs:
        lab.mkdir()
        local_host.hold_host_sysctls(str(lab))
    assert value(proc, "net.ipv4.ip_forward") == "1"
    assert value(proc, "fs.inotify.max_user_instances") == "8192"
    (proc / "kernel/panic").write_text("10\n")  # what kubelet sets from inside a node

    assert local_host.release_host_sysctls(str(labs[0])) is False  # lab-b still lives
    assert value(proc, "kernel.panic") == "10"
    assert local_host.release_host_sysctls(str(labs[1])) is True
    assert value(proc, "kernel.panic") == "0"
    assert value(proc, "fs.inotify.max_user_instances") == "128"
    assert value(proc, "net.ipv4.ip_forward") == "1"  # a libvirt VM's NAT may depend on it by now
    assert not local_host.SYSCTL_REGISTRY.exists()


def test_a_value_already_above_its_minimum_is_left_alone(proc: Path, tmp_path: Path) -> None:
    (proc / "fs/inotify/max_user_watches").write_text("1048576\n")
    local_host.hold_host_sysctls(str(tmp_path))
    assert value(proc, "fs.inotify.max_user_watches") == "1048576"
    assert local_host.release_host_sysctls(str(tmp_path)) is True
    assert value(proc, "fs.inotify.max_user_watches") == "1048576"
