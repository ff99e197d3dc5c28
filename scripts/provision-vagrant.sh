#!/usr/bin/env bash
# Provision a walkthrough host (Vagrant VM, or any Debian 12 / Ubuntu 22.04+
# machine): Open vSwitch, Docker and ovsfab from a source folder.
#
#   OVSFAB_SRC          the ovsfab source folder (default: this script's repo)
#   OVSFAB_PREFIX       where the venv goes (default /opt/ovsfab)
#   OVSFAB_UNDERLAY_IP  the host's address on the private network; its NIC is
#                       named eth1 as in the walkthrough (optional)
#   OVSFAB_NO_SERVICES  1: install only, start no services (used by CI)
set -euo pipefail

SRC="${OVSFAB_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
PREFIX="${OVSFAB_PREFIX:-/opt/ovsfab}"
log() { printf 'provision: %s\n' "$*" >&2; }

[ "$(id -u)" -eq 0 ] || { log "must run as root"; exit 1; }

export DEBIAN_FRONTEND=noninteractive
need=()
for p in openvswitch-switch docker.io python3-venv busybox-static iputils-ping iproute2; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ "${#need[@]}" -gt 0 ]; then
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${need[@]}"
fi

# ovsfab in its own venv, with a command on PATH.
if [ ! -x "$PREFIX/bin/python" ]; then
    python3 -m venv "$PREFIX"
fi
"$PREFIX/bin/python" -m pip install -q --upgrade "$SRC"
ln -sf "$PREFIX/bin/ovsfab" /usr/local/bin/ovsfab
log "ovsfab $("$PREFIX/bin/ovsfab" --version) installed in $PREFIX"

# The walkthrough calls the private NIC eth1; with predictable interface names
# it is enp0s8 or similar.  Rename it once, persistently (udev .link by MAC).
if [ -n "${OVSFAB_UNDERLAY_IP:-}" ]; then
    nic=$(ip -o -4 addr show | awk -v ip="$OVSFAB_UNDERLAY_IP" '$4 ~ "^"ip"/" {print $2; exit}')
    if [ -n "$nic" ] && [ "$nic" != "eth1" ]; then
        mac=$(cat "/sys/class/net/$nic/address")
        cidr=$(ip -o -4 addr show dev "$nic" | awk '{print $4; exit}')
        printf '[Match]\nMACAddress=%s\n\n[Link]\nName=eth1\n' "$mac" > /etc/systemd/network/10-ovsfab-eth1.link
        if [ -f /etc/network/interfaces ]; then
            sed -i "s/\b$nic\b/eth1/g" /etc/network/interfaces
        fi
        ip link set dev "$nic" down
        ip link set dev "$nic" name eth1
        ip link set dev eth1 up
        ip addr replace "$cidr" dev eth1
        log "renamed $nic to eth1 ($cidr)"
    fi
    ip link set dev eth1 promisc on 2>/dev/null || true
fi

if [ "${OVSFAB_NO_SERVICES:-0}" != "1" ] && [ -d /run/systemd/system ]; then
    systemctl enable --now openvswitch-switch docker
    # The socket unit first: with it, systemd holds the agent's control socket
    # and starts the agent at the first command that connects (LISTEN_FDS).
    if [ -f "$SRC/contrib/systemd/ovsfab-agent.service" ]; then
        install -m 0644 "$SRC/contrib/systemd/ovsfab-agent.socket" /etc/systemd/system/ovsfab-agent.socket
        install -m 0644 "$SRC/contrib/systemd/ovsfab-agent.service" /etc/systemd/system/ovsfab-agent.service
        systemctl daemon-reload
        systemctl enable --now ovsfab-agent.socket ovsfab-agent.service
    fi
fi
log "done"
