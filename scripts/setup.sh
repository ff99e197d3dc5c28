#!/usr/bin/env bash
# Idempotent set-up of a fresh Debian 12 / Ubuntu 22.04+ machine (as root)
# for developing and testing ovsfab.  Safe to run again at any time.
#
# It does NOT start the machine-wide Open vSwitch: the tests and the demo run
# private ovsdb-server/ovs-vswitchd instances inside network namespaces.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/.venv"
PKGS=(openvswitch-switch docker.io busybox-static iputils-ping iproute2 iperf3
      python3-venv ethtool util-linux tar procps   # procps: sysctl(8), an oracle in tests/test_uplink.py
      ruby shellcheck    # ruby -c Vagrantfile and shellcheck run in tests/test_packaging.py
      ovn-central ovn-host    # ovsfab ovn, tests/test_ovn.py (daemons started privately, see below)
      podman containernetworking-plugins)   # ovsfab-cni: tests/test_cni*.py, bench/bench_cni.py

log() { printf 'setup: %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
    log "must run as root (network namespaces, OVS, docker)"; exit 1
fi

# --- packages ---------------------------------------------------------------
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    # policy-rc.d-free: on systems without systemd, the postinst scripts may
    # fail to start services; that is fine, dockerd is handled below.
    apt-get install -y --no-install-recommends "${missing[@]}"
else
    log "packages already installed"
fi

# --- OVN: nothing machine-wide -----------------------------------------------
# On a systemd machine the ovn-central/ovn-host packages start ovn-northd, the
# NB/SB databases and ovn-controller (which would take over the machine-wide
# OVS's br-int).  ovsfab starts its own, privately; keep Debian's off.
if [ "$(cat /proc/1/comm 2>/dev/null)" = "systemd" ]; then
    for unit in ovn-host ovn-controller ovn-central ovn-northd ovn-ovsdb-server-nb ovn-ovsdb-server-sb; do
        if systemctl is-enabled --quiet "$unit" 2>/dev/null || systemctl is-active --quiet "$unit" 2>/dev/null; then
            log "stopping and disabling $unit (ovsfab runs OVN daemons itself)"
            systemctl disable --now "$unit" >/dev/null 2>&1 || true
        fi
    done
fi

# --- python venv ------------------------------------------------------------
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV"
    "$PY" -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c 'import ovsfab, pytest, hypothesis, jsonschema' 2>/dev/null \
   || [ "$REPO/pyproject.toml" -nt "$VENV/.ovsfab-installed" ]; then
    log "installing ovsfab (editable) with test extras"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    # "compat" editable mode puts the repository on sys.path with a plain .pth
    # line; the default mode installs an import hook whose own imports
    # (pathlib, importlib.util) cost ~15 ms at every `ovsfab` start.  The mode
    # is transitional in setuptools: fall back to the default where it is gone.
    "$VENV/bin/python" -m pip install --quiet -e "${REPO}[test]" --config-settings editable_mode=compat 2>/dev/null \
        || "$VENV/bin/python" -m pip install --quiet -e "${REPO}[test]"
    touch "$VENV/.ovsfab-installed"
else
    log "venv up to date"
fi

# --- ovsfab-cni in the CNI bin directory ---------------------------------------
# A wrapper named "ovsfab" (the conflist's "type") that runs the venv's
# console entry; Debian's runtimes look in /usr/lib/cni (docs/cni.md).
CNI_BIN="${OVSFAB_CNI_BIN:-/usr/lib/cni}"
mkdir -p "$CNI_BIN"
wrapper="#!/bin/sh
# ovsfab CNI plugin, installed by scripts/setup.sh (docs/cni.md)
exec \"$VENV/bin/ovsfab-cni\" \"\$@\""
if [ "$(cat "$CNI_BIN/ovsfab" 2>/dev/null)" != "$wrapper" ]; then
    log "installing the ovsfab CNI plugin as $CNI_BIN/ovsfab"
    printf '%s\n' "$wrapper" >"$CNI_BIN/ovsfab.tmp"
    chmod 755 "$CNI_BIN/ovsfab.tmp"
    mv "$CNI_BIN/ovsfab.tmp" "$CNI_BIN/ovsfab"
fi

# --- dockerd ----------------------------------------------------------------
docker_ok() { timeout 10 docker ps -q >/dev/null 2>&1; }
if docker_ok; then
    log "dockerd answers"
else
    if [ "$(cat /proc/1/comm 2>/dev/null)" = "systemd" ]; then
        log "starting docker via systemd"
        systemctl start docker || true
    fi
    if ! docker_ok; then
        if pgrep -x dockerd >/dev/null 2>&1; then
            log "dockerd is running but not answering yet; waiting"
        else
            log "starting dockerd (log: /var/log/ovsfab-dockerd.log)"
            nohup dockerd >/var/log/ovsfab-dockerd.log 2>&1 &
        fi
    fi
    deadline=$((SECONDS + 60))
    until docker_ok; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            log "dockerd did not answer 'docker ps' within 60s; see /var/log/ovsfab-dockerd.log"
            exit 1
        fi
        sleep 1
    done
    log "dockerd answers"
fi

# --- kernel-datapath VM tests (tests/vm) -------------------------------------
# qemu-system-x86 and Debian's current cloud kernel (openvswitch.ko), unpacked
# into ~/.cache/ovsfab-vm; idempotent (a cached kernel is only re-checked).
# OVSFAB_SKIP_VM_DEPS=1 leaves them out (the VM tests then skip, or fail in CI).
if [ "${OVSFAB_SKIP_VM_DEPS:-0}" != "1" ]; then
    "$REPO/scripts/vm-deps.sh"
fi
# --- end of kernel-datapath VM tests -----------------------------------------

# --- sanity -----------------------------------------------------------------
for tool in ovsdb-server ovs-vswitchd ovs-vsctl ovsdb-tool ip nsenter unshare ethtool busybox \
            ovn-northd ovn-controller ovn-nbctl podman; do
    command -v "$tool" >/dev/null || { log "missing tool after install: $tool"; exit 1; }
done
[ -r /usr/share/openvswitch/vswitch.ovsschema ] || { log "OVS schema missing"; exit 1; }
log "ok"
