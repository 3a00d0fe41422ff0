#!/usr/bin/env bash
# Start virtlogd and libvirtd by hand where no init system runs them, and wait until libvirtd answers.
# libvirtd runs in the foreground under `tini -s` (a child subreaper): libvirt only reports a dead QEMU as shut off
# once the process is reaped, and QEMU's processes are orphans that a real init reaps at once. Without a reaping
# supervisor they wait for this machine's PID 1, which reaps only every 1.5-2 s.
# Idempotent: a running daemon is left as it is. Usage: scripts/libvirtd.sh [--restart-unsupervised]
set -euo pipefail
log_dir=/var/log/vmhost-dev
mkdir -p "$log_dir"

supervised() {
    local pid parent
    for pid in $(pgrep -x libvirtd); do
        parent=$(ps -o comm= -p "$(ps -o ppid= -p "$pid" | tr -d ' ')" 2>/dev/null || true)
        [[ "$parent" == tini ]] && return 0
    done
    return 1
}

# A libvirtd left from an earlier setup without the supervisor is replaced (its VMs keep running: QEMU does
# not depend on libvirtd).
if [[ "${1:-}" == --restart-unsupervised ]] && pgrep -x libvirtd >/dev/null && ! supervised; then
    pkill -x libvirtd
    for _ in $(seq 100); do pgrep -x libvirtd >/dev/null || break; sleep 0.1; done
fi

pgrep -x virtlogd >/dev/null || virtlogd -d
if ! pgrep -x libvirtd >/dev/null; then
    setsid tini -s -- libvirtd </dev/null >>"$log_dir/libvirtd.log" 2>&1 &
fi
for _ in $(seq 100); do virsh -c qemu:///system version >/dev/null 2>&1 && exit 0; sleep 0.1; done
virsh -c qemu:///system version >/dev/null
