#!/usr/bin/env bash
# A multi-host test bed on this one machine: N "hosts", each a network namespace (veth on one bridge of the root
# namespace), a persistent mount and UTS namespace (its own /run/libvirt, /var/lib/libvirt, /etc/libvirt,
# /var/cache/libvirt, /var/log/libvirt, /etc/hosts and hostname), its own virtlogd and libvirtd (host_uuid of its
# own, listening on TCP without auth on its test address only: the bed is private), and its own `vmhost serve`
# (HTTPS with a certificate of the bed's CA, migration over plain TCP to the other hosts).
#
#   root namespace: bridge ${prefix}br0 = SUBNET.1/24 ── veth ${prefix}v<i> ══ eth0 = SUBNET.(10+i) in netns ${prefix}-host<i>
#
# Everything lives under VMHOST_TESTBED_ROOT (default /srv/vmhost-testbed); ROOT/shared is the shared storage, at
# the same path on every host (a bindfs mount of type fuse.glusterfs, which libvirt counts as shared). QEMU runs
# without cgroups on these hosts. `down` removes all of it, also after a failed test or a half `up` (a failed `up`
# removes what it made itself).
#
# A fleet bed (`up N --fleet`) also runs one etcd in the root namespace, clients on http://SUBNET.1:2379 (plain
# HTTP: the bridge is private), peers on SUBNET.1:2380, data in ROOT/etcd (no automatic compaction: tests compact
# explicitly); each agent's config.toml then has agent_url and, last, a [fleet] table naming that etcd, host_name
# hostI, labels {bed = PREFIX, index = "I"} and lease_ttl (VMHOST_TESTBED_LEASE_TTL, default 10). The bed keeps
# its mode (ROOT/fleet) for status, start-agent and start-etcd.
#
# Usage: scripts/test-hosts.sh up N [--fleet] | down | status | kill-agent HOST | start-agent HOST [ENV=VALUE...]
#        | pause-agent HOST | resume-agent HOST | kill-libvirtd HOST | start-libvirtd HOST | kill-etcd | start-etcd
#        | exec HOST -- ARGV... | leftovers | self-test
# (pause-agent/resume-agent: SIGSTOP/SIGCONT of the agent, a hung host; kill-etcd: SIGKILL, as a crash; start-etcd:
# again on the same data, waiting until it is healthy; leftovers: what of the bed exists, one line each, empty after
# `down`; self-test: up/status/down of a second bed, then the same and etcd's commands on a fleet bed.)
# `up` and `status` print the bed as one JSON document (a list of hosts) on stdout; progress goes to stderr. Each
# host's "fleet" and "etcd_endpoint" (null without --fleet) give the mode; status adds which daemons run.
# A second bed next to the first: other VMHOST_TESTBED_ROOT, VMHOST_TESTBED_PREFIX (at most 6 characters) and
# VMHOST_TESTBED_SUBNET (three octets).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
root=${VMHOST_TESTBED_ROOT:-/srv/vmhost-testbed}
prefix=${VMHOST_TESTBED_PREFIX:-vmtb}
subnet=${VMHOST_TESTBED_SUBNET:-10.231.0}
vmhost=${VMHOST_TESTBED_VMHOST:-$repo/.venv/bin/vmhost}
images=/var/lib/vmhost/images
bridge=${prefix}br0
shared=$root/shared
bed_file=$root/bed.json
agent_port=7443
guest_bridge=vmhbr0
etcd_dir=$root/etcd
etcd_url=http://$subnet.1:2379
etcd_peer_url=http://$subnet.1:2380
lease_ttl=${VMHOST_TESTBED_LEASE_TTL:-10}
# The directories each host has of its own (bind mounts inside its mount namespace), and their name under its dir.
private_dirs=(/run/libvirt:run /var/lib/libvirt:lib /etc/libvirt:etc /var/cache/libvirt:cache /var/log/libvirt:log
    /etc/pki:pki)

# up, down, kill-* and start-* of one bed run one at a time (status waits for them): two test sessions may start
# at once and find no bed. Daemons must not inherit the lock (8>&- on each).
lock_file=/run/lock/vmhost-testbed-$prefix.lock
lock() { mkdir -p "${lock_file%/*}"; exec 8>>"$lock_file"; flock "${1:--x}" 8; }

log() { echo "test-hosts: $*" >&2; }
die() { log "$*"; exit 1; }

host_dir() { echo "$root/hosts/$1"; }
address_of() { echo "$subnet.$((10 + ${1#host}))"; }
netns_of() { echo "$prefix-$1"; }
known_host() { [[ "$1" =~ ^host[0-9]+$ && -d "$(host_dir "$1")" ]] || die "no test host $1 (see: $0 status)"; }
fleet_bed() { [[ -e "$root/fleet" ]]; }
known_fleet() { fleet_bed || die "no fleet bed in $root (up N --fleet makes one)"; }

# The argv prefix that runs a command inside HOST's network, mount and UTS namespaces (in `enter`; a plain
# command, so that `"${enter[@]}" daemon &` makes $! the daemon's pid: nsenter and setsid exec, they do not fork).
enter_host() {
    local dir
    dir=$(host_dir "$1")
    enter=(nsenter "--net=/run/netns/$(netns_of "$1")" "--mount=$dir/ns/mnt" "--uts=$dir/ns/uts" --)
}

alive() { # pid file: its process exists and is not a zombie
    local state
    [[ -s "$1" ]] || return 1
    state=$(ps -o stat= -p "$(cat "$1")" 2>/dev/null) || return 1
    [[ "$state" != Z* ]]
}

wait_gone() { # pid...: until none of them runs (a zombie has let go of everything; PID 1 reaps it within 2 s)
    local pid state
    for _ in $(seq 100); do
        for pid in "$@"; do
            state=$(ps -o stat= -p "$pid" 2>/dev/null) && [[ "$state" != Z* ]] && break
            pid=
        done
        [[ -z "${pid:-}" ]] && return 0
        sleep 0.1
    done
    return 1
}

# --- certificates, configuration ---

make_ca() {
    local tls=$root/tls
    mkdir -p "$tls"
    openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -days 7 \
        -subj "/CN=vmhost test bed CA $prefix" -keyout "$tls/ca.key" -out "$tls/ca.pem" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
}

make_cert() { # host address
    local dir tls=$root/tls
    dir=$(host_dir "$1")
    # One certificate per host for every TLS it speaks, as server and as client: the agent's HTTPS, libvirtd's
    # TLS listener and its peer-to-peer client, QEMU's migration stream. libvirt wants keyEncipherment too.
    openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -subj "/CN=$2" \
        -keyout "$dir/tls/key.pem" -out "$dir/tls/req.pem" 2>/dev/null
    openssl x509 -req -in "$dir/tls/req.pem" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial -days 7 \
        -out "$dir/tls/cert.pem" -extfile <(printf '%s\n' "subjectAltName=IP:$2" "basicConstraints=critical,CA:FALSE" \
            "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth,clientAuth" \
            "subjectKeyIdentifier=hash" "authorityKeyIdentifier=keyid") 2>/dev/null
    chmod 600 "$dir/tls/key.pem"
    # libvirtd as a TLS client (a peer-to-peer migration opens qemu+tls to the destination) reads /etc/pki, which
    # is this directory inside the host's mount namespace.
    mkdir -p "$dir/pki/CA" "$dir/pki/libvirt/private"
    cp "$tls/ca.pem" "$dir/pki/CA/cacert.pem"
    cp "$dir/tls/cert.pem" "$dir/pki/libvirt/clientcert.pem"
    install -m 600 "$dir/tls/key.pem" "$dir/pki/libvirt/private/clientkey.pem"
    # QEMU (user libvirt-qemu) encrypts the migration stream with these, as server and as client.
    install -d -m 750 -g libvirt-qemu "$dir/tls/qemu"
    cp "$tls/ca.pem" "$dir/tls/qemu/ca-cert.pem"
    local role
    for role in server client; do
        cp "$dir/tls/cert.pem" "$dir/tls/qemu/$role-cert.pem"
        install -m 640 -g libvirt-qemu "$dir/tls/key.pem" "$dir/tls/qemu/$role-key.pem"
    done
}

# The libvirt configuration of one host: a copy of the machine's /etc/libvirt without its domains, networks'
# autostart links, storage pools and secrets, and libvirtd.conf / qemu.conf of its own.
make_libvirt_config() { # host address uuid
    local dir etc
    dir=$(host_dir "$1")
    etc=$dir/etc
    cp -a /etc/libvirt/. "$etc/"
    find "$etc/qemu" -maxdepth 1 -name '*.xml' -delete
    rm -rf "$etc/qemu/autostart" "$etc/storage" "$etc/qemu/networks/autostart"/* "$etc/secrets"/*
    cat >"$etc/libvirtd.conf" <<EOF
# test bed host $1: TLS (the bed's CA, client certificates checked) for migrations, as on real hosts, and TCP
# without authentication for the tests' own connections, on the test address only (a private bridge)
listen_tls = 1
listen_tcp = 1
listen_addr = "$2"
ca_file = "$root/tls/ca.pem"
cert_file = "$(host_dir "$1")/tls/cert.pem"
key_file = "$(host_dir "$1")/tls/key.pem"
auth_tcp = "none"
auth_unix_rw = "none"
unix_sock_rw_perms = "0700"
host_uuid = "$3"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
EOF
    cat >"$etc/qemu.conf" <<EOF
# test bed host $1
migration_address = "$2"
migration_host = "$2"
migrate_tls_x509_cert_dir = "$(host_dir "$1")/tls/qemu"
migrate_tls_x509_verify = 1
# Several libvirtds on one machine would share (and collide in) the same cgroup tree: a migrating VM has the
# same machine name on both hosts.
cgroup_controllers = [ ]
EOF
}

make_agent_config() { # host address hosts...
    local host=$1 address=$2 dir peers="" other
    shift 2
    dir=$(host_dir "$host")
    for other in "$@"; do
        [[ "$other" == "$host" ]] && continue
        peers+="\"https://$(address_of "$other"):$agent_port\" = \"$(host_dir "$other")/data/api-token\", "
    done
    cat >"$dir/config.toml" <<EOF
# vmhost agent of test bed host $host
libvirt_uri = "qemu:///system"
data_dir = "$dir/data"
accel = "tcg"
stop_timeout = 30
listen_host = "$address"
listen_port = $agent_port
tls_cert = "$dir/tls/cert.pem"
tls_key = "$dir/tls/key.pem"
migration_address = "$address"
migration_transport = "tls"
peer_token_files = { ${peers%, } }
peer_ca_file = "$root/tls/ca.pem"
allowed_paths = ["$shared", "$images", "$dir/data"]
EOF
    fleet_bed || return 0
    # [fleet] last: a TOML table runs to the next one, so every top-level setting comes before it.
    cat >>"$dir/config.toml" <<EOF
agent_url = "https://$address:$agent_port"

# the fleet of test bed $prefix: its etcd on the bridge of the root namespace
[fleet]
etcd_endpoints = ["$etcd_url"]
host_name = "$host"
labels = { bed = "$prefix", index = "${host#host}" }
lease_ttl = $lease_ttl
# every host of the bed is this one machine (a few cores): let each take many small guests' vCPUs
cpu_overcommit = 16
EOF
}

host_json() { # host extra-fields
    local host=$1 dir address fleet='"fleet": false, "etcd_endpoint": null'
    dir=$(host_dir "$host")
    address=$(address_of "$host")
    fleet_bed && fleet="\"fleet\": true, \"etcd_endpoint\": \"$etcd_url\", \"etcd_pid_file\": \"$etcd_dir/etcd.pid\",
   \"etcd_log\": \"$etcd_dir/etcd.log\", \"etcd_data_dir\": \"$etcd_dir/data\""
    cat <<EOF
  {"name": "$host", "hostname": "$prefix-$host", "address": "$address",
   "agent_url": "https://$address:$agent_port", "agent_token": "$(cat "$dir/data/api-token")",
   "token_file": "$dir/data/api-token",
   "libvirt_uri": "qemu+tcp://$address/system", "migration_uri": "tcp://$address",
   "host_uuid": "$(cat "$dir/host-uuid")",
   "dir": "$dir", "data_dir": "$dir/data", "config_file": "$dir/config.toml",
   "ca_file": "$root/tls/ca.pem", "cert_file": "$dir/tls/cert.pem", "key_file": "$dir/tls/key.pem",
   "shared_dir": "$shared", "images_dir": "$images",
   "netns": "$(netns_of "$host")", "mount_ns": "$dir/ns/mnt", "uts_ns": "$dir/ns/uts",
   "agent_pid_file": "$dir/agent.pid", "agent_log": "$dir/agent.log",
   "libvirtd_pid_file": "$dir/libvirtd.pid", "libvirtd_log": "$dir/libvirtd.log",
   "libvirtd_debug_log": "$dir/log/libvirtd.log", "qemu_log_dir": "$dir/log/qemu",
   "virtlogd_pid_file": "$dir/virtlogd.pid", "guest_bridge": "$guest_bridge", "vmhost": "$vmhost",
   $fleet$2}
EOF
}

bed_json() { # extra-field-function (optional)
    local host first=1
    echo "["
    for host in $(cat "$root/hosts.list"); do
        ((first)) || echo ","
        first=0
        host_json "$host" "$(${1:-true} "$host")"
    done
    echo "]"
}

# --- daemons ---

start_virtlogd() {
    local dir
    dir=$(host_dir "$1")
    alive "$dir/virtlogd.pid" && return 0
    enter_host "$1"
    "${enter[@]}" virtlogd -d -p "$dir/virtlogd.pid" </dev/null >>"$dir/virtlogd.log" 2>&1 8>&-
}

launch_libvirtd() { # host: start it (under a reaping supervisor, as scripts/libvirtd.sh says why), do not wait
    local dir
    dir=$(host_dir "$1")
    alive "$dir/libvirtd.pid" && return 0
    start_virtlogd "$1"
    enter_host "$1"
    "${enter[@]}" setsid tini -s -- libvirtd --listen --pid-file "$dir/libvirtd.pid" \
        </dev/null >>"$dir/libvirtd.log" 2>&1 8>&- &
    echo $! >"$dir/tini.pid"
    disown  # no "Killed" job notice from this shell when a later command kills it
}

wait_libvirtd() {
    local dir
    dir=$(host_dir "$1")
    for _ in $(seq 300); do
        alive "$dir/libvirtd.pid" && virsh -q -c "qemu+tcp://$(address_of "$1")/system" version >/dev/null 2>&1 &&
            return 0
        alive "$dir/tini.pid" || break
        sleep 0.1
    done
    tail -n 20 "$dir/libvirtd.log" "$dir/log/libvirtd.log" >&2 2>/dev/null || true
    die "libvirtd of $1 did not come up (logs: $dir/libvirtd.log, $dir/log/libvirtd.log)"
}

kill_libvirtd() { # SIGKILL, as a crash; its QEMUs keep running
    local dir pid
    dir=$(host_dir "$1")
    alive "$dir/libvirtd.pid" || return 0
    pid=$(cat "$dir/libvirtd.pid")
    kill -KILL "$pid"
    wait_gone "$pid" || die "libvirtd $pid of $1 did not go away"
}

launch_agent() { # host [ENV=VALUE...]
    local host=$1 dir setting
    shift
    dir=$(host_dir "$host")
    alive "$dir/agent.pid" && die "the agent of $host runs already (pid $(cat "$dir/agent.pid"))"
    for setting in "$@"; do [[ "$setting" == [A-Za-z_]*=* ]] || die "not ENV=VALUE: $setting"; done
    echo "--- $(date -u +%FT%TZ) start-agent $*" >>"$dir/agent.log"
    if (($#)); then printf '%s\n' "$@" >"$dir/agent.env"; else : >"$dir/agent.env"; fi
    enter_host "$host"
    "${enter[@]}" setsid env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
        LANG=C.UTF-8 PYTHONUNBUFFERED=1 VMHOST_CONFIG="$dir/config.toml" "$@" "$vmhost" serve \
        </dev/null >>"$dir/agent.log" 2>&1 8>&- &
    echo $! >"$dir/agent.pid"
    disown  # no "Killed" job notice from this shell when a later command kills it
}

wait_agent() {
    local dir address
    dir=$(host_dir "$1")
    address=$(address_of "$1")
    for _ in $(seq 600); do
        alive "$dir/agent.pid" || break
        curl -sf -o /dev/null --max-time 2 --cacert "$root/tls/ca.pem" \
            -H "Authorization: Bearer $(cat "$dir/data/api-token")" "https://$address:$agent_port/healthz" && return 0
        sleep 0.1
    done
    tail -n 30 "$dir/agent.log" >&2 || true
    die "the agent of $1 did not come up (log: $dir/agent.log)"
}

kill_agent() { # SIGKILL, as a crash (a paused agent too); its VMs keep running
    local dir pid
    dir=$(host_dir "$1")
    alive "$dir/agent.pid" || return 0
    pid=$(cat "$dir/agent.pid")
    kill -KILL "$pid"
    wait_gone "$pid" || die "agent $pid of $1 did not go away"
}

paused() { # pid file: its process is stopped (SIGSTOP)
    local state
    [[ -s "$1" ]] || return 1
    state=$(ps -o stat= -p "$(cat "$1")" 2>/dev/null) || return 1
    [[ "$state" == T* ]]
}

signal_agent() { # host STOP|CONT: a hung agent (stopped: it answers nothing, renews no lease), and on again
    local dir pid
    dir=$(host_dir "$1")
    alive "$dir/agent.pid" || die "the agent of $1 does not run"
    pid=$(cat "$dir/agent.pid")
    kill "-$2" "$pid"
    for _ in $(seq 50); do
        if [[ "$2" == STOP ]]; then paused "$dir/agent.pid" && return 0; else paused "$dir/agent.pid" || return 0; fi
        sleep 0.1
    done
    die "agent $pid of $1 did not take SIG$2"
}

# The fleet bed's one etcd, in the root namespace on the bridge's address: every host reaches it over its veth, and
# a second bed (another subnet) binds its own address with the same ports. Started again on the same data dir.
launch_etcd() {
    alive "$etcd_dir/etcd.pid" && return 0
    mkdir -p "$etcd_dir"
    echo "--- $(date -u +%FT%TZ) start-etcd" >>"$etcd_dir/etcd.log"
    # etcd_pids finds it by " --data-dir DIR " too: keep that argument between two others.
    setsid env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin /usr/bin/etcd \
        --name "$prefix-etcd" --data-dir "$etcd_dir/data" --logger zap \
        --listen-client-urls "$etcd_url" --advertise-client-urls "$etcd_url" \
        --listen-peer-urls "$etcd_peer_url" --initial-advertise-peer-urls "$etcd_peer_url" \
        --initial-cluster "$prefix-etcd=$etcd_peer_url" --initial-cluster-state new \
        --initial-cluster-token "$prefix-etcd" --auto-compaction-retention=0 \
        --heartbeat-interval 100 --election-timeout 1000 \
        </dev/null >>"$etcd_dir/etcd.log" 2>&1 8>&- &
    echo $! >"$etcd_dir/etcd.pid"
    disown  # no "Killed" job notice from this shell when a later command kills it
}

etcd_healthy() { [[ "$(curl -s --max-time 2 "$etcd_url/health" 2>/dev/null)" == *'"health":"true"'* ]]; }

wait_etcd() {
    for _ in $(seq 300); do
        alive "$etcd_dir/etcd.pid" || break
        etcd_healthy && return 0
        sleep 0.1
    done
    tail -n 20 "$etcd_dir/etcd.log" >&2 || true
    die "etcd did not come up on $etcd_url (log: $etcd_dir/etcd.log)"
}

etcd_pids() { # by its pid file, and by its data dir (a pid file lost, or not written yet)
    alive "$etcd_dir/etcd.pid" && cat "$etcd_dir/etcd.pid"
    pgrep -f -- " --data-dir $etcd_dir/data " || true
}

kill_etcd() { # SIGKILL, as a crash; its data stays
    local pids
    pids=$(etcd_pids | sort -un | tr '\n' ' ')
    [[ -n "${pids// /}" ]] || return 0
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    # shellcheck disable=SC2086
    wait_gone $pids || die "etcd ($pids) did not go away"
}

# --- up / down ---

make_host() { # host uuid hosts...
    local host=$1 uuid=$2 dir address ns entry
    shift 2
    dir=$(host_dir "$host")
    address=$(address_of "$host")
    ns=$(netns_of "$host")
    mkdir -p "$dir"/{ns,tls,data,run,lib,etc,cache,log}
    chmod 755 "$dir"
    chmod 711 "$dir/data"
    echo "$uuid" >"$dir/host-uuid"
    # /var/lib/libvirt and /var/log/libvirt: the machine's directory tree (owners, modes), not its files; the QEMU
    # capability cache is copied (a probe takes a while, and the binary is the same).
    (cd /var/lib/libvirt && find . -mindepth 1 -type d -print0 | cpio -0 -pdm --quiet "$dir/lib")
    (cd /var/log/libvirt && find . -mindepth 1 -type d -print0 | cpio -0 -pdm --quiet "$dir/log")
    cp -a /var/cache/libvirt/. "$dir/cache/"
    chmod --reference=/var/lib/libvirt "$dir/lib"
    chmod --reference=/var/cache/libvirt "$dir/cache"
    make_libvirt_config "$host" "$address" "$uuid"
    { cat /etc/hosts; for entry in "$@"; do echo "$(address_of "$entry") $prefix-$entry"; done; } >"$dir/hosts"
    make_cert "$host" "$address"
    (umask 077 && openssl rand -base64 33 | tr '+/' '-_' >"$dir/data/api-token")
    make_agent_config "$host" "$address" "$@"

    ip netns add "$ns"
    ip link add "${prefix}v${host#host}" type veth peer name eth0 netns "$ns"
    echo 1 >"/proc/sys/net/ipv6/conf/${prefix}v${host#host}/disable_ipv6"
    ip link set "${prefix}v${host#host}" master "$bridge" up
    ip -n "$ns" link set lo up
    nsenter --net="/run/netns/$ns" sh -c 'echo 1 >/proc/sys/net/ipv6/conf/eth0/disable_ipv6'
    ip -n "$ns" addr add "$address/24" dev eth0
    ip -n "$ns" link set eth0 up

    # A bridge for the guests' NICs, the same name on every host (a migrating NIC needs it on both ends).
    ip -n "$ns" link add "$guest_bridge" type bridge
    ip -n "$ns" link set "$guest_bridge" up

    touch "$dir/ns/mnt" "$dir/ns/uts"
    mkdir "$dir/cgroup"
    local binds="set -e; hostname $prefix-$host; mount --bind $dir/hosts /etc/hosts"
    for entry in "${private_dirs[@]}"; do binds+="; mount --bind $dir/${entry#*:} ${entry%%:*}"; done
    # A sysfs of the host's network namespace (/sys/class/net: its links and bridges, as vmhost and libvirt read
    # them), with the machine's cgroup tree moved over to it.
    binds+="; mount --rbind /sys/fs/cgroup $dir/cgroup; mount -t sysfs sysfs /sys; mount --move $dir/cgroup /sys/fs/cgroup"
    nsenter --net="/run/netns/$ns" -- unshare --mount="$dir/ns/mnt" --uts="$dir/ns/uts" --propagation private \
        -- sh -c "$binds"
}

up() { # count fleet (0 or 1)
    local count=$1 fleet=$2 started host hosts=() i
    [[ "$count" =~ ^[1-9][0-9]?$ ]] || die "usage: $0 up N [--fleet] (1 to 99 hosts)"
    if ((fleet)); then
        [[ "$lease_ttl" =~ ^[1-9][0-9]*$ ]] || die "VMHOST_TESTBED_LEASE_TTL is seconds (a positive integer): $lease_ttl"
        [[ -x /usr/bin/etcd ]] || die "no /usr/bin/etcd (run scripts/setup.sh)"
    fi
    [[ -e "$root" ]] && die "$root exists: a bed is up (or left over); run $0 down first"
    [[ -x "$vmhost" ]] || die "no vmhost at $vmhost (run scripts/setup.sh)"
    if [[ -n "$(leftovers)" ]]; then # an earlier bed of this prefix died without its directory: clear it first
        log "clearing what an earlier bed left: $(leftovers | tr '\n' ';')"
        down
    fi
    started=$(date +%s.%N)
    # A failed step (set -e, or die) ends the script: the EXIT trap removes what this `up` made.
    trap 'if (($? != 0)); then log "up failed; removing what it made"; down >&2 || true; fi' EXIT
    for i in $(seq "$count"); do hosts+=("host$i"); done
    mkdir -p "$root" "$shared" "$root/shared-backing"
    mkdir -p /etc/pki  # where each host's own pki directory is mounted (an empty directory of the machine)
    chmod 755 "$root" "$shared" "$root/shared-backing"
    # The shared storage: a FUSE mount of type fuse.glusterfs, which libvirt counts as a shared file system (a
    # plain directory is not: a live migration with a disk there is refused as unsafe, and the source would give
    # the disk back to root after a migration). Made before the hosts' mount namespaces, which copy it.
    # bindfs runs in the foreground under a shell that logs how it ended: a FUSE daemon that dies leaves nothing
    # but "Transport endpoint is not connected" behind (the multi-host fixture shows this log when it happens).
    setsid sh -c 'bindfs -f -o subtype=glusterfs "$1" "$2"; echo "$(date -u +%FT%TZ) bindfs ended with status $?"' \
        bindfs-watch "$root/shared-backing" "$shared" </dev/null >>"$root/bindfs.log" 2>&1 8>&- &
    echo $! >"$root/bindfs-watch.pid"
    disown
    for _ in $(seq 100); do mountpoint -q "$shared" && break; sleep 0.05; done
    mountpoint -q "$shared" || die "bindfs did not mount $shared (log: $root/bindfs.log)"
    pgrep -nf -- "^bindfs -f -o subtype=glusterfs $root/shared-backing $shared\$" >"$root/bindfs.pid"
    printf '%s\n' "${hosts[@]}" >"$root/hosts.list"
    if ((fleet)); then echo "$etcd_url" >"$root/fleet"; fi
    make_ca

    ip link add "$bridge" type bridge
    echo 1 >"/proc/sys/net/ipv6/conf/$bridge/disable_ipv6"
    ip addr add "$subnet.1/24" dev "$bridge"
    ip link set "$bridge" up
    # etcd boots while the hosts are made (it binds the bridge's address: after the bridge).
    if ((fleet)); then launch_etcd; fi

    elapsed() { awk "BEGIN {printf \"%.1f\", $(date +%s.%N) - $started}"; }
    for host in "${hosts[@]}"; do make_host "$host" "$(cat /proc/sys/kernel/random/uuid)" "${hosts[@]}"; done
    local made=$(elapsed)
    for host in "${hosts[@]}"; do launch_libvirtd "$host"; done
    for host in "${hosts[@]}"; do wait_libvirtd "$host"; done
    local libvirtds=$(elapsed)
    if ((fleet)); then wait_etcd; fi
    for host in "${hosts[@]}"; do launch_agent "$host"; done
    for host in "${hosts[@]}"; do wait_agent "$host"; done
    bed_json >"$bed_file"
    trap - EXIT
    local what="$count hosts"
    if ((fleet)); then what+=" and etcd at $etcd_url"; fi
    log "up: $what in $(elapsed) s (namespaces and files $made s, libvirtds up at $libvirtds s)"
    cat "$bed_file"
}

# The pids running in one host's namespaces: its daemons, the agent, QEMU (in a mount namespace of its own, but
# in the host's network and UTS namespaces) and whatever `exec` left.
host_pids() {
    local host=$1 dir ns pid uts=""
    dir=$(host_dir "$host")
    ns=$(netns_of "$host")
    [[ -e "/run/netns/$ns" ]] && ip netns pids "$ns" 2>/dev/null
    if mountpoint -q "$dir/ns/uts" 2>/dev/null; then
        uts=$(stat -L -c 'uts:[%i]' "$dir/ns/uts")
        for pid in /proc/[0-9]*; do
            [[ "$(readlink "$pid/ns/uts" 2>/dev/null)" == "$uts" ]] && echo "${pid#/proc/}"
        done
    fi
    for pid in agent tini libvirtd virtlogd; do [[ -s "$dir/$pid.pid" ]] && cat "$dir/$pid.pid"; done
    return 0
}

down() {
    local dir pids="" ns link
    if [[ -d "$root/hosts" ]]; then
        for dir in "$root"/hosts/host*; do
            [[ -d "$dir" ]] && pids+=" $(host_pids "${dir##*/}" | tr '\n' ' ')"
        done
        pids=$(for pid in $pids; do [[ ! -e /proc/$pid ]] || echo "$pid"; done | sort -un | tr '\n' ' ')
        if [[ -n "${pids// /}" ]]; then
            # shellcheck disable=SC2086
            kill -KILL $pids 2>/dev/null || true
            # shellcheck disable=SC2086
            wait_gone $pids || log "processes of the bed still there: $pids"
        fi
        for dir in "$root"/hosts/host*; do
            for ns in "$dir/ns/mnt" "$dir/ns/uts"; do mountpoint -q "$ns" 2>/dev/null && umount "$ns"; done
        done
    fi
    kill_etcd
    # The veths first: the kernel destroys those of a deleted namespace only once nothing holds it any more.
    for link in $(ip -o link show | awk -F': ' -v p="${prefix}v" 'index($2, p) == 1 {sub(/@.*/, "", $2); print $2}'); do
        ip link del "$link" 2>/dev/null || true
    done
    for ns in $(ip netns list | awk -v p="$prefix-host" 'index($1, p) == 1 {print $1}'); do ip netns del "$ns"; done
    ip link show "$bridge" >/dev/null 2>&1 && ip link del "$bridge"
    if mountpoint -q "$shared" 2>/dev/null; then
        umount "$shared" 2>/dev/null || { log "$shared is busy: detaching it"; umount -l "$shared"; }
    fi
    if [[ -s "$root/bindfs.pid" ]] && alive "$root/bindfs.pid"; then
        kill "$(cat "$root/bindfs.pid")" 2>/dev/null || true
    fi
    [[ -s "$root/bindfs.pid" ]] && { wait_gone "$(cat "$root/bindfs.pid")" || log "bindfs still there"; }
    [[ -s "$root/bindfs-watch.pid" ]] && { wait_gone "$(cat "$root/bindfs-watch.pid")" || log "bindfs's watcher still there"; }
    if [[ -e "$root" ]]; then
        # Nothing may still be mounted below: rm would cross into it.
        if findmnt -rno TARGET | grep -q "^$root/"; then die "still mounted under $root: $(findmnt -rno TARGET | grep "^$root/")"; fi
        rm -rf "$root"
    fi
    log "down: nothing left of the bed in $root"
}

status() {
    local host dir
    [[ -s "$bed_file" ]] || { log "no test bed is up in $root"; exit 1; }
    for host in $(cat "$root/hosts.list"); do
        [[ -e "/run/netns/$(netns_of "$host")" ]] || { log "$host has no network namespace"; exit 1; }
    done
    running() {
        dir=$(host_dir "$1")
        printf ', "agent_running": %s, "agent_paused": %s, "libvirtd_running": %s, "etcd_running": %s, "agent_env": [%s]' \
            "$(alive "$dir/agent.pid" && echo true || echo false)" \
            "$(paused "$dir/agent.pid" && echo true || echo false)" \
            "$(alive "$dir/libvirtd.pid" && echo true || echo false)" \
            "$(alive "$etcd_dir/etcd.pid" && echo true || echo false)" \
            "$(sed 's/["\\]/\\&/g; s/.*/"&"/' "$dir/agent.env" 2>/dev/null | paste -sd,)"
    }
    bed_json running
}

# What a `down` must leave: nothing of this bed's names, processes, mounts or directories.
leftovers() {
    ip netns list | awk -v p="$prefix-host" 'index($1, p) == 1 {print "netns " $1}'
    ip -o link show | awk -F': ' -v p="$prefix" 'index($2, p) == 1 {print "link " $2}'
    findmnt -rno TARGET | grep -E "^$root(/|\$)" | sed 's/^/mount /' || true
    [[ -e "$root" ]] && echo "directory $root"
    pgrep -af -- "$root/" | sed 's/^/process /' || true
    # anything still listening on the bed's address, e.g. its etcd (the address goes with the bridge, a socket not)
    ss -ltnH 2>/dev/null | awk -v a="$subnet.1:" 'index($4, a) == 1 {print "listener " $4}' || true
}

self_test() {
    # A bed of its own (other root, prefix, subnet): a bed others use stays as it is.
    export VMHOST_TESTBED_ROOT=/srv/vmhost-testbed-selftest VMHOST_TESTBED_PREFIX=vmst VMHOST_TESTBED_SUBNET=10.231.9
    local sroot=$VMHOST_TESTBED_ROOT url=http://$VMHOST_TESTBED_SUBNET.1:2379 left bed host config
    "$0" down >/dev/null 2>&1 || true
    "$0" up 2 >/dev/null
    "$0" status >/dev/null
    "$0" down
    left=$("$0" leftovers)
    [[ -z "$left" ]] || die "down left: $left"

    # The same as a fleet bed: its etcd, reached from inside each host, survives a kill with its data; an agent
    # pauses and resumes. A failed check takes the bed down.
    trap 'if (($? != 0)); then "$0" down >/dev/null 2>&1 || true; fi' EXIT
    bed=$("$0" up 2 --fleet)
    [[ "$bed" == *"\"fleet\": true, \"etcd_endpoint\": \"$url\""* ]] || die "a fleet bed without its etcd_endpoint: $bed"
    for host in host1 host2; do
        [[ "$("$0" exec "$host" -- curl -s --max-time 5 "$url/health")" == *'"health":"true"'* ]] ||
            die "$host does not reach a healthy etcd at $url"
        config=$sroot/hosts/$host/config.toml
        [[ "$(grep '^\[' "$config" | tail -n 1)" == "[fleet]" ]] || die "$config: [fleet] is not its last table"
        grep -qx "host_name = \"$host\"" "$config" || die "$config: no host_name = \"$host\""
    done
    ETCDCTL_API=3 etcdctl --endpoints "$url" put /test-hosts/self-test kept >/dev/null
    "$0" kill-etcd
    if curl -s --max-time 2 "$url/health" >/dev/null; then die "etcd still answers after kill-etcd"; fi
    [[ "$("$0" status)" == *'"etcd_running": false'* ]] || die "status: etcd_running after kill-etcd"
    "$0" start-etcd
    [[ "$(ETCDCTL_API=3 etcdctl --endpoints "$url" get --print-value-only /test-hosts/self-test)" == kept ]] ||
        die "etcd lost its data across kill-etcd, start-etcd"
    healthz() { curl -sf -o /dev/null --max-time 2 --cacert "$sroot/tls/ca.pem" "https://$VMHOST_TESTBED_SUBNET.11:$agent_port/healthz"; }
    "$0" pause-agent host1
    [[ "$("$0" status)" == *'"agent_paused": true'* ]] || die "status: the agent of host1 is not paused after pause-agent"
    if healthz; then die "a paused agent answered"; fi
    "$0" resume-agent host1
    healthz || die "the agent of host1 does not answer after resume-agent"
    "$0" down
    trap - EXIT
    left=$("$0" leftovers)
    [[ -z "$left" ]] || die "down of the fleet bed left: $left"
    log "self-test passed"
}

command=${1:-}
shift || true
case "$command" in
    up | down | kill-agent | start-agent | pause-agent | resume-agent | kill-libvirtd | start-libvirtd | kill-etcd \
        | start-etcd) lock -x ;;
    status) lock -s ;;
esac
case "$command" in
    up) # up N [--fleet], also up --fleet N
        count="" fleet=0
        for arg in "$@"; do
            if [[ "$arg" == --fleet ]]; then fleet=1
            elif [[ -z "$count" ]]; then count=$arg
            else die "usage: $0 up N [--fleet]"; fi
        done
        up "${count:-2}" "$fleet"
        ;;
    down) down ;;
    status) status ;;
    leftovers) leftovers ;;
    self-test) self_test ;;
    kill-agent) known_host "${1:-}" && kill_agent "$1" ;;
    start-agent) known_host "${1:-}" && { launch_agent "$@"; wait_agent "$1"; } ;;
    pause-agent) known_host "${1:-}" && signal_agent "$1" STOP ;;
    resume-agent) known_host "${1:-}" && signal_agent "$1" CONT ;;
    kill-libvirtd) known_host "${1:-}" && kill_libvirtd "$1" ;;
    start-libvirtd) known_host "${1:-}" && { launch_libvirtd "$1"; wait_libvirtd "$1"; } ;;
    kill-etcd) known_fleet && kill_etcd ;;
    start-etcd) known_fleet && { launch_etcd; wait_etcd; } ;;
    exec)
        known_host "${1:-}"
        host=$1
        shift
        [[ "${1:-}" == -- ]] && shift
        (($#)) || die "usage: $0 exec HOST -- ARGV..."
        enter_host "$host"
        exec "${enter[@]}" "$@"
        ;;
    *) die "usage: $0 up N [--fleet] | down | status | kill-agent HOST | start-agent HOST [ENV=VALUE...] |
       pause-agent HOST | resume-agent HOST | kill-libvirtd HOST | start-libvirtd HOST | kill-etcd | start-etcd |
       exec HOST -- ARGV... | leftovers | self-test" ;;
esac
