"""Announcing a container's new addresses: gratuitous ARP, unsolicited neighbour advertisement.

Raw frames on a packet socket created inside the container's namespace,
right after its addresses are set, so neighbours (and the bridge's MAC
table) learn the new address at once instead of at their next ARP/ND.
Best effort: a neighbour that misses it learns the address later anyway.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import struct
from typing import Optional, Sequence

from ovsfab.model import AddressSpec
from ovsfab.plumbing.netns import Namespace

LOG = logging.getLogger(__name__)

ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD


def announce_in(ns: Optional[Namespace], ifname: str, mac: str, addresses: Sequence[AddressSpec]) -> None:
    """Announce ``addresses`` on ``ifname``: only a packet socket in ``ns``."""
    try:
        if ns is None:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        else:
            with ns.entered():
                sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    except OSError as exc:
        LOG.warning("could not announce addresses on %s: %s", ifname, exc.strerror)
        return
    try:
        sock.bind((ifname, 0))
        src = bytes.fromhex(mac.replace(":", ""))
        for spec in addresses:
            if spec.version == 4:
                sock.send(_garp(src, spec.interface.ip.packed))
            else:
                sock.send(_unsolicited_na(src, spec.interface.ip.packed))
    except OSError as exc:
        LOG.warning("could not announce addresses on %s: %s", ifname, exc.strerror)
    finally:
        _close_in_background(sock)


def _close_in_background(sock: socket.socket) -> None:
    """Close a packet socket without waiting for it.

    The kernel's packet_release() waits for an RCU grace period
    (synchronize_net): 5-50 ms per attach, a third of the agent's time for
    one, with nothing depending on it.  The frames are already sent.
    """
    import threading  # noqa: PLC0415

    threading.Thread(target=sock.close, name="ovsfab-close", daemon=True).start()


def _garp(mac: bytes, ip: bytes) -> bytes:
    eth = b"\xff" * 6 + mac + struct.pack("!H", ETH_P_ARP)
    # Request form (opcode 1): sender and target IP are both ours.
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + mac + ip + b"\x00" * 6 + ip
    return eth + arp


def inet_checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``."""
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _unsolicited_na(mac: bytes, ip6: bytes) -> bytes:
    all_nodes = ipaddress.IPv6Address("ff02::1").packed
    # Type 136, code 0, checksum, flags (Override), target, option: target LL address.
    body = struct.pack("!BBHI", 136, 0, 0, 0x20000000) + ip6 + struct.pack("!BB", 2, 1) + mac
    pseudo = ip6 + all_nodes + struct.pack("!I", len(body)) + b"\x00\x00\x00\x3a"
    csum = inet_checksum(pseudo + body)
    body = body[:2] + struct.pack("!H", csum) + body[4:]
    ip_hdr = struct.pack("!IHBB", 6 << 28, len(body), 58, 255) + ip6 + all_nodes
    eth = b"\x33\x33\x00\x00\x00\x01" + mac + struct.pack("!H", ETH_P_IPV6)
    return eth + ip_hdr + body
