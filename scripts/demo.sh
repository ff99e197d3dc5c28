#!/usr/bin/env bash
# End-to-end demo of ovsfab's main job on one machine:
#   one simulated host (a network namespace with its own ovsdb-server and
#   ovs-vswitchd, netdev datapath), two busybox containers with no network,
#   `ovsfab attach` gives each an eth1 on br0, then ping + a real TCP transfer
#   between them, `ovsfab detach`, and everything is torn down on exit.
#
# Usage (as root):  scripts/demo.sh        (OVSFAB_DEMO_SKIP_SETUP=1 skips setup.sh)
# Only ovsfab itself wires the containers; ip/ovs-vsctl/docker are used to
# build the stage and to show the result.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$REPO/.venv/bin/python"
IMAGE=ovsfab-test:busybox
TAG="ovsfab-demo-$$"
HOSTNS="$TAG"
C1="$TAG-a"
C2="$TAG-b"
RUNDIR=""
IMGDIR=""

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '+ %s\n' "$*"; "$@"; }

cleanup() {
    local rc=$?
    set +e
    say "tearing down"
    for c in "$C1" "$C2"; do   # one at a time (dockerd 20.10 deadlocks on parallel rm)
        docker rm -f "$c" >/dev/null 2>&1
    done
    if [ -n "$RUNDIR" ]; then
        for p in ovs-vswitchd ovsdb-server; do
            if [ -s "$RUNDIR/$p.pid" ]; then
                pid=$(cat "$RUNDIR/$p.pid")
                kill "$pid" 2>/dev/null
                for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
                kill -9 "$pid" 2>/dev/null
            fi
        done
    fi
    ip netns del "$HOSTNS" 2>/dev/null
    [ -n "$RUNDIR" ] && rm -rf "$RUNDIR"
    [ -n "$IMGDIR" ] && rm -rf "$IMGDIR"
    if [ "$rc" -eq 0 ]; then say "demo OK"; else say "demo FAILED (exit $rc)"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "$(id -u)" -ne 0 ]; then echo "demo: run as root" >&2; exit 1; fi

if [ "${OVSFAB_DEMO_SKIP_SETUP:-0}" != 1 ]; then
    say "setup (scripts/setup.sh)"
    "$REPO/scripts/setup.sh"
fi

ovsfab() {  # the product, run inside the simulated host
    printf '+ ovsfab %s\n' "$*"
    ip netns exec "$HOSTNS" env OVS_RUNDIR="$RUNDIR" "$PY" -m ovsfab "$@"
}
vsctl() { ovs-vsctl --db="unix:$RUNDIR/db.sock" --timeout=10 "$@"; }

say "simulated host: netns $HOSTNS with a private OVS"
RUNDIR=$(mktemp -d /tmp/ovsfab-demo-XXXXXX)
run ip netns add "$HOSTNS"
ip -n "$HOSTNS" link set lo up
ovsdb-tool create "$RUNDIR/conf.db" /usr/share/openvswitch/vswitch.ovsschema
for prog in ovsdb-server ovs-vswitchd; do
    if [ "$prog" = ovsdb-server ]; then
        args=("$RUNDIR/conf.db" "--remote=punix:$RUNDIR/db.sock")
    else
        args=("unix:$RUNDIR/db.sock")
    fi
    ip netns exec "$HOSTNS" "$prog" "${args[@]}" --pidfile="$RUNDIR/$prog.pid" \
        --unixctl="$RUNDIR/$prog.ctl" --log-file="$RUNDIR/$prog.log" --detach
    [ "$prog" = ovsdb-server ] && vsctl --no-wait init
done
echo "ovsdb-server and ovs-vswitchd running in $HOSTNS (rundir $RUNDIR)"

say "containers (busybox, --network none)"
if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
    IMGDIR=$(mktemp -d /tmp/ovsfab-img-XXXXXX)
    mkdir -p "$IMGDIR/bin" "$IMGDIR/tmp"
    cp "$(command -v busybox)" "$IMGDIR/bin/busybox"
    for a in sh sleep ip ping ping6 nc cat ifconfig ls echo dd md5sum head wc route; do
        ln -s busybox "$IMGDIR/bin/$a"
    done
    tar -C "$IMGDIR" -c . | docker import -c 'ENV PATH=/bin' - "$IMAGE" >/dev/null
fi
run docker run -d --network none --name "$C1" "$IMAGE" sleep 1000000 >/dev/null
run docker run -d --network none --name "$C2" "$IMAGE" sleep 1000000 >/dev/null
docker exec "$C1" ip -o link

say "attach"
ovsfab attach br0 "$C1" 192.168.77.10/24
ovsfab attach br0 "$C2" 192.168.77.20/24
ovsfab attach br0 "$C2" 192.168.77.20/24   # idempotent: "already attached"

say "ovs-vsctl show"
vsctl show
say "inside $C1"
docker exec "$C1" ip addr show eth1

say "ping $C1 -> $C2"
run docker exec "$C1" ping -c 3 -W 2 192.168.77.20

say "TCP: 4 MiB from $C1 to $C2 (busybox nc), checksums compared"
# the listener's stdin must not hit EOF (busybox nc quits on it): feed it a sleep
docker exec -d "$C2" sh -c 'sleep 60 | nc -l -p 5000 > /tmp/recv'
sleep 0.5
docker exec "$C1" sh -c 'dd if=/dev/urandom of=/tmp/sent bs=1024 count=4096 2>/dev/null'
timeout 30 docker exec "$C1" sh -c 'nc 192.168.77.20 5000 < /tmp/sent' || true
sent=$(docker exec "$C1" md5sum /tmp/sent | cut -d' ' -f1)
recv=""
for _ in $(seq 50); do
    recv=$(docker exec "$C2" md5sum /tmp/recv | cut -d' ' -f1)
    [ "$recv" = "$sent" ] && break
    sleep 0.2
done
size=$(docker exec "$C2" sh -c 'wc -c < /tmp/recv')
echo "sent md5 $sent, received md5 $recv ($size bytes)"
if [ "$sent" != "$recv" ]; then
    echo "demo: TCP transfer failed" >&2
    exit 1
fi

say "detach"
ovsfab detach br0 "$C1"
ovsfab detach br0 "$C2"
vsctl show
for c in "$C1" "$C2"; do
    if docker exec "$c" ip link show eth1 >/dev/null 2>&1; then
        echo "demo: eth1 still present in $c after detach" >&2
        exit 1
    fi
done
echo "eth1 gone from both containers; no ports left on br0: [$(vsctl list-ports br0 | tr '\n' ' ')]"
