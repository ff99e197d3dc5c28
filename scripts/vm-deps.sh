#!/usr/bin/env bash
# Idempotent: what the kernel-datapath VM tests (tests/vm/) need on the host.
#
#   * qemu-system-x86 (the emulator; run with -accel tcg, never KVM);
#   * Debian's current cloud kernel (linux-image-<abi>-cloud-amd64), which
#     ships openvswitch.ko: downloaded with `apt-get download`, unpacked with
#     `dpkg-deb -x` into the cache directory, never installed.
#
# Cache: $OVSFAB_VM_CACHE, default ~/.cache/ovsfab-vm.  It survives between
# runs; a second run only checks that the unpacked kernel is the current one.
# Prints nothing on stdout except, with --print-kernel, the path of the
# unpacked kernel tree (…/kernel/<version>, with vmlinuz and lib/modules/).
set -euo pipefail

CACHE="${OVSFAB_VM_CACHE:-$HOME/.cache/ovsfab-vm}"
log() { printf 'vm-deps: %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
    log "must run as root (apt-get)"; exit 1
fi
export DEBIAN_FRONTEND=noninteractive

# --- qemu ---------------------------------------------------------------------
if ! command -v qemu-system-x86_64 >/dev/null 2>&1; then
    log "installing qemu-system-x86"
    apt-get install -y --no-install-recommends qemu-system-x86 >&2 \
        || { apt-get update >&2 && apt-get install -y --no-install-recommends qemu-system-x86 >&2; }
fi

# --- the current cloud kernel package -----------------------------------------
# The meta-package linux-image-cloud-amd64 depends on the current ABI
# (linux-image-6.1.0-<n>-cloud-amd64); if apt has no lists yet, update once.
current_pkg() {
    apt-cache depends linux-image-cloud-amd64 2>/dev/null \
        | sed -n 's/^ *Depends: \(linux-image-[^ ]*-cloud-amd64\)$/\1/p' | head -1
}
pkg="$(current_pkg)"
if [ -z "$pkg" ]; then
    log "apt lists lack linux-image-cloud-amd64: apt-get update"
    apt-get update >&2
    pkg="$(current_pkg)"
fi
if [ -z "$pkg" ]; then   # no meta-package: the highest 6.1.0-<n> image
    pkg="$(apt-cache search --names-only '^linux-image-[0-9.]+-[0-9]+-cloud-amd64$' \
           | awk '{print $1}' | sort -V | tail -1)"
fi
[ -n "$pkg" ] || { log "no linux-image-*-cloud-amd64 package known to apt"; exit 1; }
version="${pkg#linux-image-}"
tree="$CACHE/kernel/$version"

if [ -r "$tree/vmlinuz" ] && [ -d "$tree/lib/modules/$version/kernel/net/openvswitch" ]; then
    log "kernel $version cached in $tree"
else
    log "fetching $pkg"
    mkdir -p "$CACHE"
    tmp="$(mktemp -d "$CACHE/tmp.XXXXXX")"
    trap 'rm -rf "$tmp"' EXIT
    chmod 755 "$tmp"   # apt's _apt user may write here; it falls back to root otherwise
    (cd "$tmp" && apt-get download "$pkg" >&2 2>/dev/null) \
        || { apt-get update >&2 && (cd "$tmp" && apt-get download "$pkg" >&2); }
    mkdir -p "$tmp/x"
    dpkg-deb -x "$tmp"/"$pkg"_*.deb "$tmp/x"
    mkdir -p "$tmp/tree/lib/modules"
    cp "$tmp/x/boot/vmlinuz-$version" "$tmp/tree/vmlinuz"
    cp "$tmp/x/boot/config-$version" "$tmp/tree/config"
    mv "$tmp/x/lib/modules/$version" "$tmp/tree/lib/modules/"
    # modules.dep for `modprobe -d TREE --show-depends` (the guest's insmod order)
    depmod -b "$tmp/tree" "$version"
    mkdir -p "$CACHE/kernel"
    rm -rf "$tree"
    mv "$tmp/tree" "$tree"
    log "kernel $version unpacked into $tree"
fi
ln -sfn "$version" "$CACHE/kernel/current"

if [ "${1:-}" = "--print-kernel" ]; then
    echo "$tree"
fi
