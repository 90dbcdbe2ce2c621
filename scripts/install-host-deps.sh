#!/usr/bin/env bash
# Debian packages kubelab's tests, the local/libvirt providers and `kubelab artifacts build` need on the host.
# Installs only what is missing. Every program a test runs is declared with its package in tests/hosttools.py;
# tests/unit/test_host_deps.py checks that this list covers them.
set -euo pipefail
packages=(
  # the local provider (namespace nodes) and the integration tests on them
  debootstrap iptables nftables iproute2 util-linux mount openssh-client rsync git
  # Vagrant: `vagrant validate`, the libvirt smoke test on QEMU and its locally built box
  vagrant vagrant-libvirt
  qemu-system-x86 qemu-utils libvirt-daemon libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients
  dnsmasq-base e2fsprogs tar
  # `kubelab cache`, offline labs (image export, the busybox test image)
  apt-cacher-ng skopeo busybox-static
  # `kubelab artifacts build`: runc's cgo build (libseccomp through pkg-config), the static pause binary
  gcc binutils libc6-dev libseccomp-dev pkg-config
  # on every Debian system already; listed because tests run their programs (chroot, apt-get, dpkg-deb, sh)
  coreutils apt dpkg dash
)
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Go does not come from Debian (bookworm's golang is too old to build Kubernetes): `kubelab artifacts build`
# and its tests need Go 1.26 or newer on PATH. Checked, not installed.
if ! command -v go >/dev/null 2>&1; then
  if [ -x /usr/local/go/bin/go ]; then
    echo "note: Go is in /usr/local/go/bin but not on PATH: export PATH=\$PATH:/usr/local/go/bin" >&2
  else
    echo "note: no \`go\` found: \`kubelab artifacts build\` and its tests need Go 1.26 or newer from" \
      "https://go.dev/dl/ (unpacked to /usr/local/go, /usr/local/go/bin on PATH); Debian's golang is too old" >&2
  fi
fi
