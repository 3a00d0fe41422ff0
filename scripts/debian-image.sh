#!/bin/bash
# Build a small Debian 12 cloud image from Debian packages only, for the real-guest cloud-init test:
#   <out>/disk.qcow2  whole-disk ext4 (label debian-root, no partition table): systemd, cloud-init (NoCloud),
#                     openssh-server, systemd-networkd + systemd-resolved, linux-image-cloud-amd64 (the
#                     kernel of Debian's genericcloud images: no AHCI nor sym53c8xx, so the seed is on virtio-scsi)
#   <out>/vmlinuz     that kernel, and <out>/initrd.img its initramfs-tools initrd, for direct kernel boot with
#                     the command line in <out>/cmdline
#   <out>/stamp       sha256 of this script and the mirrors (the build's inputs); a match means "up to date"
# Usage: scripts/debian-image.sh [OUT_DIR]   (default /var/lib/vmhost/images/debian-12-cloud)
# mmdebstrap builds the tree (as root: its chroot mode), `mkfs.ext4 -d` makes the filesystem from it (no loop
# mount), qemu-img converts it to qcow2. cloud-init's resize_rootfs grows the filesystem to whatever disk it
# boots on.
set -euo pipefail
umask 022

self=$(realpath "$0")
out=$(realpath -m "${1:-/var/lib/vmhost/images/debian-12-cloud}")
suite=bookworm
mirror=${VMHOST_DEBIAN_MIRROR:-http://deb.debian.org/debian}
security=${VMHOST_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
label=debian-root
cmdline="root=LABEL=$label rw console=ttyS0"
packages=systemd-sysv,udev,dbus,systemd-resolved,cloud-init,openssh-server,sudo,iproute2,netbase,initramfs-tools,linux-image-cloud-amd64
# Kernel module trees a VM on QEMU never loads (GPUs, cameras, Wi-Fi, physical NICs, sound, ...): about 210 MB.
skip_modules="drivers/gpu drivers/media drivers/net/wireless drivers/net/ethernet drivers/infiniband
              drivers/staging drivers/iio drivers/comedi drivers/isdn drivers/bluetooth sound
              net/bluetooth net/mac80211 net/wireless"
# Units a short-lived test guest does not need and TCG pays for at boot.
mask_units="apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer e2scrub_reap.service
            fstrim.timer systemd-pstore.service getty@tty1.service"

stamp=$(echo "$mirror $security" | cat "$self" - | sha256sum | cut -d' ' -f1)
mkdir -p "$out"
exec 9>"$out/.lock"
flock 9   # one build at a time: a second caller waits, then finds the image up to date
if [[ -e $out/disk.qcow2 && -e $out/vmlinuz && -e $out/initrd.img && -e $out/cmdline &&
      "$(cat "$out/stamp" 2>/dev/null)" == "$stamp" ]]; then
    echo "debian image up to date: $out"; exit 0
fi

# The stamp goes first and comes back last: a build cut short never looks up to date. Leftovers of one go too.
rm -rf "$out/stamp" "$out"/.build.*
tmp=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
root=$tmp/root
started=$SECONDS

dpkg_opts=()
for path in /usr/share/man /usr/share/doc /usr/share/info /usr/share/locale /usr/share/lintian; do
    dpkg_opts+=(--dpkgopt="path-exclude=$path/*")
done
dpkg_opts+=(--dpkgopt='path-include=/usr/share/doc/*/copyright')
for dir in $skip_modules; do
    dpkg_opts+=(--dpkgopt="path-exclude=/lib/modules/*/kernel/$dir/*"
                --dpkgopt="path-exclude=/usr/lib/modules/*/kernel/$dir/*")
done

# 1. The tree: minbase + the packages, no recommends; the hooks run inside the chroot (proc, sys, dev mounted).
mmdebstrap --quiet --variant=minbase --include="$packages" \
    --aptopt='APT::Install-Recommends "false"' "${dpkg_opts[@]}" \
    --customize-hook='chroot "$1" systemctl enable systemd-networkd.service systemd-resolved.service' \
    --customize-hook="chroot \"\$1\" systemctl mask $(echo $mask_units)" \
    "$suite" "$root" \
    "deb $mirror $suite main" "deb $mirror $suite-updates main" "deb $security $suite-security main"

# 2. Configuration: NoCloud only (no waiting on metadata services), C.UTF-8 (no locale-gen at first boot), the
# hostname in /etc/hosts (sudo and friends look it up: no DNS timeout when the nameservers do not answer), the
# root filesystem grown by resize2fs (whole disk: nothing for growpart), only the cloud-init modules that what a
# vmhost seed can say needs (each module is imported at boot, slow under TCG), resolv.conf = resolved's list of
# the uplink servers, per-instance SSH host keys and machine id, no KVM/PC-speaker modules in a TCG guest.
cat > "$root/etc/cloud/cloud.cfg.d/90-vmhost.cfg" <<'EOF'
# vmhost test image (scripts/debian-image.sh)
datasource_list: [NoCloud, None]
locale: C.UTF-8
manage_etc_hosts: true
resize_rootfs: true
growpart: {mode: "off"}
ssh_genkeytypes: [ed25519, ecdsa]
cloud_init_modules: [migrator, seed_random, bootcmd, write-files, growpart, resizefs, disk_setup, mounts,
                     set_hostname, update_hostname, update_etc_hosts, ca-certs, users-groups, ssh]
cloud_config_modules: [locale, set-passwords, apt-configure, timezone, runcmd]
cloud_final_modules: [package-update-upgrade-install, write-files-deferred, scripts-vendor, scripts-per-once,
                      scripts-per-boot, scripts-per-instance, scripts-user, ssh-authkey-fingerprints,
                      keys-to-console, final-message, power-state-change]
EOF
printf 'blacklist %s\n' kvm kvm_amd kvm_intel pcspkr > "$root/etc/modprobe.d/vmhost-tcg.conf"
echo 'LANG=C.UTF-8' > "$root/etc/default/locale"
printf 'LABEL=%s / ext4 defaults 0 0\n' "$label" > "$root/etc/fstab"
ln -sfn ../run/systemd/resolve/resolv.conf "$root/etc/resolv.conf"
echo debian > "$root/etc/hostname"
printf '127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n' > "$root/etc/hosts"
rm -f "$root"/etc/ssh/ssh_host_*_key* "$root/var/lib/dbus/machine-id"
: > "$root/etc/machine-id"
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/log/*.log "$root"/tmp/* "$root"/var/lib/cloud/*

# 3. Kernel and initrd beside the image (direct kernel boot).
kernel=$(ls "$root"/boot/vmlinuz-* | tail -n1)
cp "$kernel" "$tmp/vmlinuz"
cp "$root/boot/initrd.img-${kernel##*/vmlinuz-}" "$tmp/initrd.img"

# 4. Filesystem from the tree (no loop mount), half as much free space again, rounded up to 64 MiB; then qcow2.
used=$(du -s --block-size=1M "$root" | cut -f1)
size=$(( (used * 3 / 2 + 63) / 64 * 64 ))
mkfs.ext4 -q -F -L "$label" -d "$root" -E root_owner=0:0 "$tmp/disk.raw" "${size}M"
qemu-img convert -f raw -O qcow2 "$tmp/disk.raw" "$tmp/disk.qcow2"
echo "$cmdline" > "$tmp/cmdline"

for file in disk.qcow2 vmlinuz initrd.img cmdline; do mv "$tmp/$file" "$out/$file"; done
chmod a+rX "$out" "$out"/{disk.qcow2,vmlinuz,initrd.img,cmdline}   # libvirt's qemu runs as libvirt-qemu
echo "$stamp" > "$out/stamp"
echo "built $out/disk.qcow2 (${size} MiB virtual, $(du -h "$out/disk.qcow2" | cut -f1) on disk," \
     "kernel ${kernel##*/vmlinuz-}) in $((SECONDS - started)) s"
