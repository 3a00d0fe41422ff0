#!/usr/bin/env bash
# Build a small OCI image layout from Debian's busybox-static with umoci (no download): the image the container
# example (examples/04-container.json) runs and the registry test pushes. Idempotent: an existing layout is kept.
#   scripts/busybox-image.sh [DEST] [TAG]     default DEST /var/lib/vmhost/images/busybox-oci, TAG latest
set -euo pipefail
dest=${1:-/var/lib/vmhost/images/busybox-oci}
tag=${2:-latest}
if [[ -f "$dest/index.json" ]] && umoci stat --image "$dest:$tag" >/dev/null 2>&1; then
    exit 0
fi
work=$(mktemp -d "$(dirname "$dest")/.busybox-image.XXXXXX")
trap 'rm -rf "$work"' EXIT
umoci init --layout "$work/layout"
umoci new --image "$work/layout:$tag"
umoci unpack --image "$work/layout:$tag" "$work/bundle" >/dev/null
rootfs="$work/bundle/rootfs"
mkdir -p "$rootfs/bin" "$rootfs/tmp"
chmod 1777 "$rootfs/tmp"
install -m 0755 /bin/busybox "$rootfs/bin/busybox"
for applet in $(/bin/busybox --list); do
    [[ "$applet" == busybox ]] || ln -sf busybox "$rootfs/bin/$applet"
done
umoci repack --image "$work/layout:$tag" "$work/bundle"
umoci config --image "$work/layout:$tag" --config.env PATH=/bin --config.cmd sh --config.workingdir /tmp \
    --author vmhost --os linux --architecture amd64
umoci gc --layout "$work/layout"
rm -rf "$dest"
mv "$work/layout" "$dest"
echo "busybox-image: built $dest ($tag)"
