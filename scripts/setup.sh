#!/usr/bin/env bash
# Install everything vmhost needs on a fresh Debian 12 machine (as root) and start the daemons
# when no init system does it. Idempotent: safe to run again.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
guest_dir=${VMHOST_GUEST_DIR:-/var/lib/vmhost/images/tiny-guest}

# runc: the container driver. libxenmisc4.17 + libxen-dev: Xen's real xl.cfg parser (libxlutil), which the
# Xen renderer's tests load; no Xen hypervisor is installed or needed. ethtool: the nic-tuning example plugin.
# tini: reaps QEMU's orphans at once when no init system runs libvirtd (scripts/libvirtd.sh).
# skopeo: `vmhost image pull` (OCI images from registries); umoci: builds the container example's busybox image;
# docker-registry: the loopback registry of the registry test.
# genisoimage: the NoCloud seed ISO vmhost builds for cloud_init (vmhost/storage/seed.py), and the CD-ROM media tests.
# mmdebstrap: builds the Debian cloud image (scripts/debian-image.sh); cloud-image-utils: cloud-localds, the
# by-hand baseline of bench/from_image.py; openssh-client: the cloud guest test logs in over SSH.
# dnsmasq-base: DHCP of libvirt networks (its `default` network, and the guest-address test's isolated one).
# bindfs, openssl, curl: the multi-host test bed (scripts/test-hosts.sh: its shared storage, its CA, its health checks).
# etcd-server, etcd-client: the fleet's source of truth (vmhost/fleet/); the test bed's fleet mode starts etcd by hand
# (`scripts/test-hosts.sh up N --fleet`), its postinst starts nothing without systemd.
# chromium, chromium-driver: the dashboard's browser tests (headless, through WebDriver); not needed at run time.
packages=(libvirt-daemon-system libvirt-clients libvirt-dev pkg-config qemu-system-x86 qemu-utils
          ovmf busybox-static cpio xz-utils iproute2 python3-venv gcc runc libxenmisc4.17 libxen-dev ethtool tini
          skopeo umoci docker-registry
          genisoimage
          mmdebstrap cloud-image-utils openssh-client
          dnsmasq-base
          bindfs openssl curl
          etcd-server etcd-client
          chromium chromium-driver)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
# guest/build.sh downloads Debian's kernel package, so the package lists must exist even when nothing is missing.
if ((${#missing[@]})) || [[ -z "$(apt-cache policy linux-image-amd64 | grep -m1 Candidate: | grep -v none)" ]]; then
    apt-get update -q >/dev/null
fi
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

# No udev here: give /dev/kvm the group and mode Debian's udev rule would. Otherwise libvirt's QEMU
# capability cache never validates (KVM usable for root, not for the qemu user) and every define re-probes
# QEMU for a minute or more.
if [[ -c /dev/kvm ]] && getent group kvm >/dev/null; then
    chgrp kvm /dev/kvm
    chmod 660 /dev/kvm
fi

# Debian's postinst starts nothing without systemd: start the daemons by hand when they are not up, libvirtd
# under a reaping supervisor as a real init would (scripts/libvirtd.sh says why).
"$repo/scripts/libvirtd.sh" --restart-unsupervised

if [[ ! -x "$repo/.venv/bin/vmhost" ]]; then
    python3 -m venv "$repo/.venv"
    "$repo/.venv/bin/pip" install -q --upgrade pip
fi
"$repo/.venv/bin/pip" install -q -e "$repo[test]"

# A second environment with the example plugins installed: the core suite runs in .venv (no plugins), the
# plugins' suites here.
if [[ ! -x "$repo/.venv-plugins/bin/pytest" ]]; then
    python3 -m venv "$repo/.venv-plugins"
    "$repo/.venv-plugins/bin/pip" install -q --upgrade pip
fi
plugin_packages=()
for plugin in "$repo"/plugins/*/pyproject.toml; do plugin_packages+=(-e "$(dirname "$plugin")"); done
"$repo/.venv-plugins/bin/pip" install -q -e "$repo[test]" "${plugin_packages[@]}"

"$repo/guest/build.sh" "$guest_dir"
# The Debian 12 cloud image of the cloud-init SSH test (built once per machine, a few minutes).
"$repo/scripts/debian-image.sh" /var/lib/vmhost/images/debian-12-cloud
# The container example's image (examples/04-container.json), from busybox-static.
"$repo/scripts/busybox-image.sh" /var/lib/vmhost/images/busybox-oci
