"""Programs the tests run on the host, each with the Debian package that provides it.

A test (or fixture) that runs a host program calls `require_tool(NAME)` first. When the program is missing,
the test fails at once naming the package to install, instead of `sh: nft: not found` halfway through a
lab. `make test` installs every package listed here through scripts/install-host-deps.sh;
tests/unit/test_host_deps.py checks that the script's list covers TOOLS, the tool lists of the local provider
and of `kubelab artifacts build`, and every program the tests and providers start with a literal argv.
"""

from __future__ import annotations

import os
import shutil

import pytest

# Program -> Debian (bookworm) package. Programs from packages every Debian system has (coreutils, dpkg,
# apt, util-linux) are listed too: the cross-check then also covers them.
TOOLS: dict[str, str] = {
    # networking: the local provider's bridges, netns and NAT; the reset role's rules; traffic counters
    "ip": "iproute2",
    "iptables": "iptables",
    "nft": "nftables",
    # the local provider (provisioner/providers/local.py TOOLS) and its base image
    "unshare": "util-linux",
    "nsenter": "util-linux",
    "setsid": "util-linux",
    "pivot_root": "util-linux",
    "mount": "mount",
    "umount": "mount",
    "debootstrap": "debootstrap",
    "chroot": "coreutils",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    # Debian packages on the host: stand-in .debs for offline labs, debpkgs
    "apt-get": "apt",
    "apt-cache": "apt",
    "dpkg-deb": "dpkg",
    # `kubelab cache`
    "apt-cacher-ng": "apt-cacher-ng",
    # offline labs: image export and the busybox test image (a static binary: it runs in any image)
    "skopeo": "skopeo",
    "busybox": "busybox-static",
    # Vagrant: `vagrant validate`, the libvirt smoke test and its locally built box
    "vagrant": "vagrant",
    "virsh": "libvirt-clients",
    "libvirtd": "libvirt-daemon",
    "virtlogd": "libvirt-daemon",
    "qemu-system-x86_64": "qemu-system-x86",
    "qemu-img": "qemu-utils",
    "mkfs.ext4": "e2fsprogs",
    "tar": "tar",
    # the shell lines local nodes run at boot (tests/unit/test_local_node_sysctl.py runs them)
    "sh": "dash",
    # `kubelab artifacts build`: runc's cgo build (libseccomp through pkg-config) and the static pause binary
    "gcc": "gcc",
    "strip": "binutils",
    "pkg-config": "pkg-config",  # transitional to pkgconf, which provides the program
    # ansible-lint lists the repository's files with git
    "git": "git",
}
SBIN = ("/usr/sbin", "/sbin")  # root's tools, also when PATH lacks them (sudo, su without -)


def which(tool: str) -> str | None:
    return shutil.which(tool, path=os.pathsep.join([os.environ.get("PATH", ""), *SBIN]))


def require_tool(tool: str) -> str:
    """The path of a host program; fails the calling test, naming the Debian package, when it is missing."""
    if tool not in TOOLS:
        raise KeyError(f"declare `{tool}` and its Debian package in tests/hosttools.py TOOLS")
    path = which(tool)
    if path is None:
        pytest.fail(
            f"`{tool}` is not installed on this host: `apt-get install {TOOLS[tool]}` "
            "(scripts/install-host-deps.sh, which `make test` runs, installs every package the tests need)",
            pytrace=False,
        )
    return path


def require_tools(*tools: str) -> None:
    """require_tool for each, failing on the first missing one."""
    for tool in tools:
        require_tool(tool)
