#!/usr/bin/env bash
# A throwaway OCI registry on loopback (Debian's docker-registry), to try `vmhost image pull` without the network
# and for the registry test. Plain HTTP on 127.0.0.1 only; its storage lives in DIR.
#   scripts/registry.sh up DIR [PORT]   start it (default port 5000), wait until it answers, print 127.0.0.1:PORT
#   scripts/registry.sh down DIR        stop the registry started in DIR (idempotent)
# e.g.  scripts/registry.sh up /tmp/registry 5000
#       skopeo copy --dest-tls-verify=false oci:/var/lib/vmhost/images/busybox-oci:latest \
#           docker://127.0.0.1:5000/library/busybox:latest
#       vmhost image pull 127.0.0.1:5000/library/busybox:latest
set -euo pipefail
action=${1:?usage: registry.sh up DIR [PORT] | down DIR}
dir=${2:?usage: registry.sh up DIR [PORT] | down DIR}
case "$action" in
up)
    port=${3:-5000}
    mkdir -p "$dir/data"
    cat >"$dir/config.yml" <<YAML
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $dir/data
http:
  addr: 127.0.0.1:$port
YAML
    setsid /usr/bin/docker-registry serve "$dir/config.yml" >"$dir/registry.log" 2>&1 </dev/null &
    echo $! >"$dir/pid"
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "127.0.0.1:$port"
            exit 0
        fi
        kill -0 "$(cat "$dir/pid")" 2>/dev/null || break
        sleep 0.1
    done
    echo "registry.sh: the registry did not start; see $dir/registry.log" >&2
    "$0" down "$dir"
    exit 1
    ;;
down)
    if [[ -f "$dir/pid" ]]; then
        kill "$(cat "$dir/pid")" 2>/dev/null || true
        rm -f "$dir/pid"
    fi
    ;;
*)
    echo "usage: registry.sh up DIR [PORT] | down DIR" >&2
    exit 2
    ;;
esac
