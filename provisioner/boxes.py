"""Which Vagrant box (or local root file system) provides each supported node OS."""

from __future__ import annotations

# OS name -> provider -> box. bento boxes carry amd64 and arm64 variants under one name
# (Vagrant >= 2.4 picks the host's architecture); the libvirt boxes are amd64 only.
BOXES: dict[str, dict[str, str]] = {
    "ubuntu-24.04": {
        "virtualbox": "bento/ubuntu-24.04",
        "vmware_desktop": "bento/ubuntu-24.04",
        "parallels": "bento/ubuntu-24.04",
        "libvirt": "cloud-image/ubuntu-24.04",
    },
    "ubuntu-22.04": {
        "virtualbox": "bento/ubuntu-22.04",
        "vmware_desktop": "bento/ubuntu-22.04",
        "parallels": "bento/ubuntu-22.04",
        "libvirt": "cloud-image/ubuntu-22.04",
    },
    "debian-12": {
        "virtualbox": "bento/debian-12",
        "vmware_desktop": "bento/debian-12",
        "parallels": "bento/debian-12",
        "libvirt": "debian/bookworm64",
    },
    "debian-13": {
        "virtualbox": "bento/debian-13",
        "vmware_desktop": "bento/debian-13",
        "parallels": "bento/debian-13",
        "libvirt": "debian/trixie64",
    },
}
# The `local` provider builds Debian root file systems with debootstrap (suite per OS).
LOCAL_SUITES: dict[str, str] = {"debian-12": "bookworm", "debian-13": "trixie"}
ARM64_UNSUPPORTED: frozenset[str] = frozenset({"libvirt"})
OSES: tuple[str, ...] = tuple(BOXES)
VAGRANT_PROVIDERS: tuple[str, ...] = ("virtualbox", "libvirt", "vmware_desktop", "parallels")
PROVIDERS: tuple[str, ...] = (*VAGRANT_PROVIDERS, "hosts", "local")
