#!/usr/bin/env bash
# The main job: install everything, then create and boot the first example VM, show what its
# console said and the `vmhost list` table. The VM is left running; see the README for next steps.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
"$repo/scripts/setup.sh"

# This project's build machines cannot run nested KVM guests, so the demo defaults to TCG.
# On a real KVM host: VMHOST_ACCEL=kvm scripts/demo.sh
mkdir -p "$repo/build/demo"
export VMHOST_CONFIG="$repo/build/demo/config.toml"
cat >"$VMHOST_CONFIG" <<TOML
libvirt_uri = "qemu:///system"
data_dir = "/var/lib/vmhost"
accel = "${VMHOST_ACCEL:-tcg}"
stop_timeout = 30
TOML

vmhost="$repo/.venv/bin/vmhost"
example=$(find "$repo/examples" -maxdepth 1 -name '*.json' | sort | head -n 1)
name=$("$repo/.venv/bin/python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["name"])' "$example")

if "$vmhost" get "$name" >/dev/null 2>&1; then
    echo "== removing $name left by an earlier run"
    "$vmhost" delete "$name"
fi
echo "== vmhost create -f ${example#"$repo"/} --start"
"$vmhost" create -f "$example" --start
echo "== waiting for the guest to boot (TCG takes a few seconds)"
for _ in $(seq 120); do
    "$vmhost" console "$name" --log | grep -q VMHOST-GUEST-READY && break
    sleep 0.5
done
echo "== vmhost console $name --log"
"$vmhost" console "$name" --log
echo
echo "== vmhost list"
"$vmhost" list
echo
echo "The VM keeps running. Try: VMHOST_CONFIG=$VMHOST_CONFIG $vmhost console $name   (Ctrl-] leaves)"
echo "Then: $vmhost stop $name; $vmhost delete $name   (with the same VMHOST_CONFIG)"
