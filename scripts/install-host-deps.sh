#!/usr/bin/env bash
# Debian packages kubelab's tests (and the local/libvirt providers) need. Installs only what is missing.
set -euo pipefail
packages=(
  debootstrap iptables iproute2 openssh-client rsync
  vagrant vagrant-libvirt
  qemu-system-x86 qemu-utils libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients dnsmasq-base
  apt-cacher-ng skopeo busybox-static
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
