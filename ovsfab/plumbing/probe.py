"""ICMP echo from inside a namespace (the lab's "ping across"), via raw sockets."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import select
import socket
import struct
import time
from typing import Iterator, List, Optional

from ovsfab.plumbing.announce import inet_checksum
from ovsfab.plumbing.netns import Namespace


def ping(ns: Optional[Namespace], address: str, count: int = 3, timeout: float = 1.0) -> Optional[float]:
    """Send ICMP echo requests from ``ns`` (None: this thread's namespace); return
    the first round-trip time in seconds, or None if no reply came back."""
    dst = ipaddress.ip_address(address)
    v6 = dst.version == 6
    with (ns.entered() if ns is not None else _nothing()):
        if v6:
            sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        else:
            sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    ident = os.getpid() & 0xFFFF
    try:
        for seq in range(1, count + 1):
            payload = struct.pack("!d", time.monotonic()) + b"ovsfab-lab"
            kind = 128 if v6 else 8
            header = struct.pack("!BBHHH", kind, 0, 0, ident, seq)
            # The kernel fills in the ICMPv6 checksum (it needs the pseudo-header).
            csum = 0 if v6 else inet_checksum(header + payload)
            packet = struct.pack("!BBHHH", kind, 0, csum, ident, seq) + payload
            sent = time.monotonic()
            try:
                sock.sendto(packet, (str(dst), 0))
            except OSError:
                time.sleep(timeout)
                continue
            deadline = sent + timeout
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([sock], [], [], left)[0]:
                    break
                data = sock.recv(2048)
                icmp = data if v6 else data[(data[0] & 0x0F) * 4:]
                if len(icmp) < 8:
                    continue
                rtype, _, _, rid, rseq = struct.unpack("!BBHHH", icmp[:8])
                if rtype == (129 if v6 else 0) and rid == ident and rseq == seq:
                    return time.monotonic() - sent
        return None
    finally:
        sock.close()


def arp_answers(ns: Optional[Namespace], ifname: str, src_mac: str, src_ip: str, target: str,
                timeout: float = 0.5) -> List[str]:
    """Every MAC that answers one broadcast ARP request for ``target`` sent on ``ifname``.

    More than one MAC means two devices answer for the same address: a peer
    may cache either, and only one of them terminates tunnels.
    """
    ETH_P_ARP = 0x0806
    with (ns.entered() if ns is not None else _nothing()):
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
    try:
        sock.bind((ifname, ETH_P_ARP))
        sha = bytes.fromhex(src_mac.replace(":", ""))
        spa, tpa = ipaddress.IPv4Address(src_ip).packed, ipaddress.IPv4Address(target).packed
        arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, sha, spa, b"\0" * 6, tpa)
        sock.send(b"\xff" * 6 + sha + struct.pack("!H", ETH_P_ARP) + arp)
        deadline = time.monotonic() + timeout
        macs: List[str] = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([sock], [], [], left)[0]:
                return macs
            frame = sock.recv(2048)
            if len(frame) < 42:
                continue
            op, rsha, rspa = struct.unpack("!H6s4s", frame[20:32])
            if op == 2 and rspa == tpa:
                mac = ":".join(f"{b:02x}" for b in rsha)
                if mac not in macs:
                    macs.append(mac)
    finally:
        sock.close()


@contextlib.contextmanager
def _nothing() -> Iterator[None]:
    yield
