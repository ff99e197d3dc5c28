"""Offload features of a link through the ethtool ioctl (linux/ethtool.h): the one ethtool implementation.

Kernel ABI only, on a socket the caller made in the link's namespace (an
ioctl acts in the namespace of the socket it is made on).  Feature names
are the kernel's ETH_SS_FEATURES strings (``tx-checksum-ipv4``, ...), the
names ``ethtool -k`` prints; they are the same for every device, so they are
read once per process.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import socket
import struct
from typing import Dict, List, Mapping, Optional

SIOCETHTOOL = 0x8946  # linux/sockios.h
ETHTOOL_GSTRINGS = 0x1B
ETHTOOL_GSSET_INFO = 0x37
ETHTOOL_GFEATURES = 0x3A
ETHTOOL_SFEATURES = 0x3B
ETH_SS_FEATURES = 4
ETH_GSTRING_LEN = 32
IFNAMSIZ = 16

_IFREQ = struct.Struct("16sP")  # ifr_name, ifr_data (a pointer to the ethtool command)
_IFREQ_SIZE = 40  # sizeof(struct ifreq) on LP64
_GET_BLOCK = struct.Struct("=IIII")  # available, requested, active, never_changed
_SET_BLOCK = struct.Struct("=II")  # valid, requested

#: The kernel's feature names, in bit order (read once per process).
_NAMES: Optional[List[str]] = None


class Ethtool:
    """ethtool ioctls on ``sock`` (an AF_INET datagram socket the caller owns and closes)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def _call(self, ifname: str, command: ctypes.Array) -> int:
        raw = ifname.encode()
        if not raw or len(raw) >= IFNAMSIZ:
            raise OSError(errno.ENODEV, os.strerror(errno.ENODEV))
        ifreq = bytearray(_IFREQ_SIZE)
        _IFREQ.pack_into(ifreq, 0, raw, ctypes.addressof(command))
        # A positive result (ETHTOOL_F_WISH & co from SFEATURES) is not an error.
        return fcntl.ioctl(self.sock, SIOCETHTOOL, ifreq)

    def feature_names(self, ifname: str) -> List[str]:
        """The kernel's feature names in bit order (two ioctls, the first time in a process)."""
        global _NAMES  # noqa: PLW0603 - the kernel's table, the same for every device
        if _NAMES is None:
            info = ctypes.create_string_buffer(struct.pack("=IIQI", ETHTOOL_GSSET_INFO, 0, 1 << ETH_SS_FEATURES, 0))
            self._call(ifname, info)
            count = struct.unpack_from("=I", info, 16)[0]
            strings = ctypes.create_string_buffer(12 + count * ETH_GSTRING_LEN)
            struct.pack_into("=III", strings, 0, ETHTOOL_GSTRINGS, ETH_SS_FEATURES, count)
            self._call(ifname, strings)
            raw = strings.raw[12:]
            _NAMES = [raw[i * ETH_GSTRING_LEN:(i + 1) * ETH_GSTRING_LEN].split(b"\0", 1)[0].decode()
                      for i in range(count)]
        return _NAMES

    def features(self, ifname: str) -> Dict[str, bool]:
        """{feature name: active} of a link (one ioctl once the names are known)."""
        names = self.feature_names(ifname)
        words = (len(names) + 31) // 32
        buf = ctypes.create_string_buffer(8 + words * _GET_BLOCK.size)
        struct.pack_into("=II", buf, 0, ETHTOOL_GFEATURES, words)
        self._call(ifname, buf)
        active = [_GET_BLOCK.unpack_from(buf, 8 + w * _GET_BLOCK.size)[2] for w in range(words)]
        return {name: bool(active[bit // 32] >> (bit % 32) & 1) for bit, name in enumerate(names)}

    def set_features(self, ifname: str, wanted: Mapping[str, bool]) -> None:
        """Ask for each named feature on or off (one ioctl); unknown names are ignored.

        The kernel may adjust dependent features too (turning TX checksums
        off turns TSO off).
        """
        names = self.feature_names(ifname)
        words = (len(names) + 31) // 32
        valid, requested = [0] * words, [0] * words
        for bit, name in enumerate(names):
            if name in wanted:
                valid[bit // 32] |= 1 << (bit % 32)
                if wanted[name]:
                    requested[bit // 32] |= 1 << (bit % 32)
        if not any(valid):
            return
        buf = ctypes.create_string_buffer(8 + words * _SET_BLOCK.size)
        struct.pack_into("=II", buf, 0, ETHTOOL_SFEATURES, words)
        for w in range(words):
            _SET_BLOCK.pack_into(buf, 8 + w * _SET_BLOCK.size, valid[w], requested[w])
        self._call(ifname, buf)
