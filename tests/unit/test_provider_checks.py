"""What `kubelab up` says when Vagrant, a provider plugin, libvirtd or host RAM is missing: a specific error
naming the install command, exit 1 or 2, and no lab folder created. Tools are faked on a PATH of their own."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from provisioner.providers import detect
from provisioner.providers.base import ProviderError

LIBVIRT_PLUGIN = "1,,plugin-name,vagrant-libvirt\n1,vagrant-libvirt,plugin-version,0.11.2%!(VAGRANT_COMMA) system\n"


def _tool(folder: Path, name: str, script: str) -> None:
    path = folder / name
    path.write_text("#!/bin/sh\n" + script + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def fake_bin(tmp_path: Path) -> Path:
    """An empty folder that becomes the whole PATH: only the tools a test puts there exist."""
    folder = tmp_path / "bin"
    folder.mkdir()
    return folder


def _vagrant(folder: Path, plugins: str) -> None:
    """A `vagrant` that answers `plugin list --machine-readable` with `plugins` and fails at anything else."""
    (folder / "plugins.txt").write_text(plugins)
    _tool(folder, "vagrant", f"[ \"$1 $2\" = 'plugin list' ] && exec /bin/cat {folder / 'plugins.txt'}\nexit 1")


def _kubelab(tmp_path: Path, fake_bin: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": str(fake_bin), "KUBELAB_HOME": str(tmp_path / "home"), "HOME": str(tmp_path)}
    return subprocess.run(
        [sys.executable, "-m", "provisioner.cli", "up", "--name", "it-life-u", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _assert_nothing_created(tmp_path: Path) -> None:
    assert not (tmp_path / "home" / "labs" / "it-life-u").exists()


def test_up_without_vagrant_names_the_install_command(tmp_path: Path, fake_bin: Path) -> None:
    done = _kubelab(tmp_path, fake_bin, "--provider", "libvirt")
    assert done.returncode == 1, done.stderr
    assert "Vagrant is not installed (no `vagrant` on PATH)" in done.stderr
    assert "sudo apt-get install vagrant" in done.stderr
    _assert_nothing_created(tmp_path)


def test_auto_provider_without_vagrant_lists_what_to_install(tmp_path: Path, fake_bin: Path) -> None:
    done = _kubelab(tmp_path, fake_bin)
    assert done.returncode == 1, done.stderr
    assert "no provider found: Vagrant is not installed" in done.stderr
    assert "vagrant-libvirt" in done.stderr and "VirtualBox" in done.stderr
    assert "--provider local" in done.stderr and "--provider hosts" in done.stderr
    _assert_nothing_created(tmp_path)


def test_up_without_the_libvirt_plugin_names_it(tmp_path: Path, fake_bin: Path) -> None:
    _vagrant(fake_bin, "")
    done = _kubelab(tmp_path, fake_bin, "--provider", "libvirt")
    assert done.returncode == 1, done.stderr
    assert "cannot use the libvirt provider: the Vagrant plugin vagrant-libvirt is not installed" in done.stderr
    assert "vagrant plugin install vagrant-libvirt" in done.stderr
    _assert_nothing_created(tmp_path)


def test_up_with_libvirtd_down_says_how_to_start_it(tmp_path: Path, fake_bin: Path) -> None:
    _vagrant(fake_bin, LIBVIRT_PLUGIN)
    _tool(fake_bin, "virsh", "echo \"error: Failed to connect socket to '/var/run/libvirt/libvirt-sock'\" >&2; exit 1")
    done = _kubelab(tmp_path, fake_bin, "--provider", "libvirt")
    assert done.returncode == 1, done.stderr
    assert "libvirtd does not answer on qemu:///system (error: Failed to connect socket" in done.stderr
    assert "libvirtd -d" in done.stderr
    _assert_nothing_created(tmp_path)


def test_virtualbox_without_vboxmanage(tmp_path: Path, fake_bin: Path) -> None:
    _vagrant(fake_bin, "")
    done = _kubelab(tmp_path, fake_bin, "--provider", "virtualbox")
    assert done.returncode == 1, done.stderr
    assert "`VBoxManage` is not on PATH: install VirtualBox" in done.stderr
    _assert_nothing_created(tmp_path)


def test_too_little_host_ram_is_refused_before_anything_exists(tmp_path: Path, fake_bin: Path) -> None:
    from provisioner.spec import HostInfo

    host_mb = HostInfo.detect().memory_mb
    if host_mb is None:
        pytest.skip("host memory is unknown here")
    per_master = host_mb // 2  # three of them cannot fit
    done = _kubelab(tmp_path, fake_bin, "--provider", "libvirt", "--masters", "3", "--master-memory", str(per_master))
    assert done.returncode == 1, done.stderr
    assert "this lab's VMs need" in done.stderr and f"MB of RAM but the host has {host_mb} MB" in done.stderr
    assert "Vagrant is not installed" not in done.stderr  # the size is refused before any tool is looked for
    _assert_nothing_created(tmp_path)


def test_detect_prefers_libvirt_then_virtualbox(fake_bin: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(fake_bin))
    _vagrant(fake_bin, LIBVIRT_PLUGIN)
    _tool(fake_bin, "virsh", "echo qemu:///system")
    _tool(fake_bin, "VBoxManage", "exit 0")
    assert detect.detect_provider() == "libvirt"
    _tool(fake_bin, "virsh", "echo 'error: no daemon' >&2; exit 1")
    assert detect.detect_provider() == "virtualbox"
    (fake_bin / "VBoxManage").unlink()
    with pytest.raises(ProviderError) as error:
        detect.detect_provider()
    message = str(error.value)
    assert "libvirt: libvirtd does not answer on qemu:///system (error: no daemon)" in message
    assert "virtualbox: `VBoxManage` is not on PATH" in message
