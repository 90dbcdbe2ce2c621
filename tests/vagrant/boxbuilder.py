"""Build (once) a small Debian 12 libvirt Vagrant box from a debootstrap root fs, for the smoke test.

The box has no partition table and no bootloader: the kernel and initrd are kept next to the box so
vagrant-libvirt boots them directly (``kernel``/``initrd``/``cmd_line``), which works on QEMU without KVM.
At first boot it makes only an ed25519 SSH host key (RSA key generation takes minutes in a TCG guest on a
busy host, past Vagrant's boot timeout).
Results are cached under ``$XDG_CACHE_HOME/kubelab/boxes/<recipe hash>/``; run this file to build it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

MIRROR = "http://deb.debian.org/debian"
SUITE = "bookworm"
PACKAGES = (
    "systemd,systemd-sysv,dbus,openssh-server,python3,iproute2,ca-certificates,sudo,procps,"
    "ifupdown,linux-image-cloud-amd64,initramfs-tools,apt-transport-https,gnupg"
)
IMAGE_SIZE = "3G"
# Predictable names off: the first NIC (Vagrant's management network) is always eth0.
CMD_LINE = "root=/dev/vda rw console=ttyS0 net.ifnames=0 biosdevname=0"
INSECURE_KEY = Path("/usr/share/rubygems-integration/all/gems/vagrant-2.3.4/keys/vagrant.pub")

CONFIGURE = r"""
set -eu
useradd -m -s /bin/bash vagrant
echo 'vagrant ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/vagrant
chmod 0440 /etc/sudoers.d/vagrant
install -d -m 0700 -o vagrant -g vagrant /home/vagrant/.ssh
install -m 0600 -o vagrant -g vagrant /tmp/vagrant.pub /home/vagrant/.ssh/authorized_keys
printf '[Match]\nName=eth0\n\n[Network]\nDHCP=ipv4\n' > /etc/systemd/network/10-mgmt.network
systemctl enable systemd-networkd ssh
echo '/dev/vda / ext4 defaults 0 1' > /etc/fstab
echo kubelab-box > /etc/hostname
printf 'UseDNS no\nHostKey /etc/ssh/ssh_host_ed25519_key\n' > /etc/ssh/sshd_config.d/vagrant.conf
rm -f /etc/ssh/ssh_host_*
cat > /etc/systemd/system/ssh-hostkeys.service <<'UNIT'
[Unit]
Description=SSH host keys
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key

[Install]
WantedBy=multi-user.target
UNIT
systemctl enable ssh-hostkeys.service
: > /etc/machine-id
apt-get clean
rm -rf /var/lib/apt/lists/*
"""


@dataclass(frozen=True)
class Box:
    """A built box: the file to `vagrant box add` and the kernel/initrd for direct kernel boot."""

    box_file: Path
    kernel: Path
    initrd: Path
    cmd_line: str = CMD_LINE


def recipe_hash() -> str:
    recipe = json.dumps([MIRROR, SUITE, PACKAGES, IMAGE_SIZE, CMD_LINE, CONFIGURE], sort_keys=True)
    return hashlib.sha256(recipe.encode()).hexdigest()[:16]


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "kubelab" / "boxes" / f"debian12-{recipe_hash()}"


def cached_box() -> Box | None:
    folder = cache_dir()
    box = Box(folder / "debian12.box", folder / "vmlinuz", folder / "initrd.img")
    return box if all(p.is_file() for p in (box.box_file, box.kernel, box.initrd)) else None


def build_box(log=print) -> Box:
    """Return the cached box, building it first when the recipe changed (needs root and debootstrap)."""
    if box := cached_box():
        return box
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kubelab-box-", dir=folder.parent) as tmp:
        work = Path(tmp)
        rootfs = work / "rootfs"
        log(f"debootstrap {SUITE} into {rootfs}")
        _run(["debootstrap", "--variant=minbase", f"--include={PACKAGES}", SUITE, str(rootfs), MIRROR])
        shutil.copy(INSECURE_KEY, rootfs / "tmp" / "vagrant.pub")
        _run(["chroot", str(rootfs), "/bin/sh", "-c", CONFIGURE])
        (rootfs / "tmp" / "vagrant.pub").unlink()
        kernel = max((rootfs / "boot").glob("vmlinuz-*"))
        initrd = max((rootfs / "boot").glob("initrd.img-*"))
        shutil.copy(kernel, work / "vmlinuz")
        shutil.copy(initrd, work / "initrd.img")
        log("making the ext4 image and the box")
        raw = work / "root.ext4"
        _run(["mkfs.ext4", "-q", "-F", "-L", "root", "-d", str(rootfs), str(raw), IMAGE_SIZE])
        _run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(work / "box.img")])
        metadata = {"provider": "libvirt", "format": "qcow2", "virtual_size": int(IMAGE_SIZE.rstrip("G"))}
        (work / "metadata.json").write_text(json.dumps(metadata))
        _run(["tar", "-C", str(work), "-cf", str(work / "debian12.box"), "metadata.json", "box.img"])
        for name in ("vmlinuz", "initrd.img", "debian12.box"):
            (work / name).replace(folder / name)
    box = cached_box()
    assert box is not None
    return box


def _run(argv: list[str]) -> None:
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)


if __name__ == "__main__":
    built = build_box(log=lambda message: print(message, file=sys.stderr))
    print(built.box_file)
