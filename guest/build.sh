#!/bin/bash
# Build the tiny vmhost test guest from Debian packages only:
#   <out>/vmlinuz     Debian's linux-image-amd64 kernel
#   <out>/initrd.img  gzip'd cpio (newc) busybox initramfs running guest/init,
#                     with the kernel modules it needs (and their deps).
# Usage: guest/build.sh [OUT_DIR]   (default: build/guest in the repo root)
# Idempotent: downloads once into OUT_DIR/cache, rebuilds only what is stale.
set -euo pipefail
umask 022

here=$(cd "$(dirname "$0")" && pwd)
out=$(realpath -m "${1:-$here/../build/guest}")
cache=$out/cache
busybox=/bin/busybox   # from busybox-static
# Modules the guest loads; dependencies are added automatically, in load order.
MODULES="virtio_pci virtio_blk virtio_scsi virtio_net virtio_console virtio_balloon
         ata_piix ahci sd_mod sr_mod isofs sym53c8xx button evdev"

# fresh TARGET DEPS...: TARGET exists and is newer than every DEP.
fresh() { local t=$1 d; shift; [[ -e $t ]] || return 1
          for d; do [[ $t -nt $d ]] || return 1; done; }

# fetch PKG[=VER]: apt-get download into the cache; a partial download never lands.
fetch() { rm -rf .dl && mkdir .dl &&
          (cd .dl && apt-get download -q -o APT::Sandbox::User="$(id -un)" "$1") &&
          mv .dl/*.deb . && rmdir .dl; }

# 1. Download (once) linux-image-amd64 and the versioned image it depends on.
mkdir -p "$cache"
cd "$cache"
ls linux-image-amd64_*.deb >/dev/null 2>&1 || fetch linux-image-amd64
meta=$(ls linux-image-amd64_*.deb | tail -n1)
# Depends: "linux-image-6.1.0-56-amd64 (= 6.1.192-2)"
read -r name ver < <(dpkg-deb -f "$meta" Depends |
                     sed -E 's/^(linux-image-[^ ,]+) \(= ([^)]+)\).*/\1 \2/')
deb=${name}_${ver}_amd64.deb
[[ -e $deb ]] || fetch "$name=$ver"

deps=("$deb" "$here/init" "$here/facts" "$here/build.sh" "$busybox")
if fresh "$out/vmlinuz" "$deb" && fresh "$out/initrd.img" "${deps[@]}"; then
    echo "guest up to date: $out"; exit 0
fi

# 2. Extract the kernel package (never installed on the host).
tmp=$(mktemp -d "$cache/tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
dpkg-deb -x "$deb" "$tmp/pkg"
kver=${name#linux-image-}
cp "$tmp/pkg/boot/vmlinuz-$kver" "$out/vmlinuz.tmp" && mv "$out/vmlinuz.tmp" "$out/vmlinuz"

# 3. Initramfs tree: busybox + applet symlinks, /init, modules + load order.
root=$tmp/root
mkdir -p "$root"/{bin,dev,proc,sys,tmp,etc,lib/modules}
cp "$busybox" "$root/bin/busybox"
for a in $("$busybox" --list); do [[ $a == busybox ]] || ln -s busybox "$root/bin/$a"; done
install -m 755 "$here/init" "$root/init"
install -m 755 "$here/facts" "$root/bin/vmhost-facts"

declare -A ko=() seen=()   # module name -> .ko path; names already added
while read -r f; do m=${f##*/}; m=${m%%.ko*}; ko[${m//-/_}]=$f
done < <(find "$tmp/pkg" -name '*.ko*')
add() {  # add module $1 after its dependencies (decompressing .ko.xz)
    local m=${1//-/_} d
    [[ -z ${seen[$m]:-} ]] || return 0
    seen[$m]=1
    [[ -n ${ko[$m]:-} ]] || { echo "module $m not found in $deb" >&2; exit 1; }
    xz -dcf "${ko[$m]}" > "$root/lib/modules/$m.ko"
    for d in $(tr '\0' '\n' < "$root/lib/modules/$m.ko" | sed -n 's/^depends=//p' | tr , ' '); do
        add "$d"
    done
    echo "$m" >> "$root/lib/modules/load.order"
}
for m in $MODULES; do add "$m"; done

# 4. Pack: cpio newc, everything owned by root, gzip.
(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | gzip -9n > "$out/initrd.img.tmp"
mv "$out/initrd.img.tmp" "$out/initrd.img"
chmod a+rX "$out" "$out/vmlinuz" "$out/initrd.img"   # libvirt's qemu runs as libvirt-qemu
echo "built $out/vmlinuz ($kver) and $out/initrd.img ($(du -h "$out/initrd.img" | cut -f1)," \
     "modules: $(paste -sd' ' "$root/lib/modules/load.order"))"
