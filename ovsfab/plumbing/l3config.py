"""A link's layer-3 configuration as records, and the rtnetlink messages that put it back.

``uplink add`` moves a NIC's addresses and routes to its bridge and records
them (OVSDB external_ids, or the Linux backend's alias) so ``uplink del``
can put back exactly what was there, even from another process.  The
records are plain JSON-ready dicts; this module reads them from the
kernel's messages and builds the messages that add or remove them
(:class:`~ovsfab.plumbing.links.L3Handle` sends them).
"""

from __future__ import annotations

import socket
from typing import Any, Dict, List

from ovsfab.netlink import msg as nlmsg

#: rtnetlink constants (linux/rtnetlink.h, linux/if_addr.h).
RTPROT_KERNEL = 2
RT_TABLE_LOCAL = 255
RT_TABLE_UNSPEC = 0
RT_SCOPE_LINK = 253
RT_SCOPE_NOWHERE = 255
IFA_F_NODAD = 0x02
IFA_F_PERMANENT = 0x80
#: Address flags worth carrying over when an address moves (the others are
#: state the kernel computes: tentative, permanent, deprecated, ...).
IFA_KEEP_FLAGS = 0x02 | 0x10 | 0x100 | 0x200  # nodad, homeaddress, mngtmpaddr, noprefixroute


def family_of(text: str) -> int:
    """AF_INET6 for an IPv6 address text, else AF_INET."""
    return socket.AF_INET6 if ":" in text else socket.AF_INET


class L3Config:
    """A link's IP addresses and routes as plain JSON-ready dicts.

    Recorded in OVSDB (external_ids) by ``uplink add`` so ``uplink del`` can
    put back exactly what was there, even from another process.
    """

    def __init__(self, addresses: List[Dict[str, object]], routes: List[Dict[str, object]]) -> None:
        self.addresses = addresses
        self.routes = routes

    def default_routes(self) -> List[Dict[str, object]]:
        """The default routes among the recorded ones."""
        return [r for r in self.routes if r.get("dst_len") == 0]


def addr_record(msg) -> Dict[str, object]:  # noqa: ANN001 - pyroute2 message
    """The record of one address (an RTM_NEWADDR message)."""
    flags = msg.get_attr("IFA_FLAGS")
    if flags is None:
        flags = msg["flags"]
    rec: Dict[str, object] = {
        "family": 6 if msg["family"] == socket.AF_INET6 else 4,
        "address": msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS"),
        "prefixlen": msg["prefixlen"],
        "flags": int(flags) & IFA_KEEP_FLAGS,
    }
    brd = msg.get_attr("IFA_BROADCAST")
    if brd:
        rec["broadcast"] = brd
    return rec


def route_record(msg) -> Dict[str, object]:  # noqa: ANN001 - pyroute2 message
    """The record of one route (an RTM_NEWROUTE message)."""
    fam = 6 if msg["family"] == socket.AF_INET6 else 4
    rec: Dict[str, object] = {
        "family": fam,
        "dst": msg.get_attr("RTA_DST") or ("::" if fam == 6 else "0.0.0.0"),
        "dst_len": msg["dst_len"],
        "table": msg.get_attr("RTA_TABLE") or msg["table"],
        "proto": msg["proto"],
        "scope": msg["scope"],
        "type": msg["type"],
        "flags": msg["flags"],
    }
    for key, attr in (("gateway", "RTA_GATEWAY"), ("prefsrc", "RTA_PREFSRC"),
                      ("priority", "RTA_PRIORITY"), ("pref", "RTA_PREF")):
        value = msg.get_attr(attr)
        if value is not None:
            rec[key] = value
    return rec


def _af(rec: Dict[str, object]) -> int:
    return socket.AF_INET6 if rec["family"] == 6 else socket.AF_INET


def address_message(index: int, rec: Dict[str, object], flags: int = 0) -> Any:
    """RTM_NEWADDR / RTM_DELADDR body for a recorded address on link ``index``.

    ``flags`` (all 32 bits) go in IFA_FLAGS, which the kernel prefers over
    the 8-bit header field (noprefixroute and mngtmpaddr do not fit there).
    """
    addr = str(rec["address"])
    attrs: List[Any] = [("IFA_LOCAL", addr), ("IFA_ADDRESS", addr)] if rec["family"] == 4 else \
        [("IFA_ADDRESS", addr)]
    if rec.get("broadcast"):
        attrs.append(("IFA_BROADCAST", rec["broadcast"]))
    if flags:
        attrs.append(("IFA_FLAGS", flags))
    return nlmsg.addr(attrs, family=_af(rec), prefixlen=rec["prefixlen"], index=index, flags=flags & 0xFF)


def route_message(index: int, rec: Dict[str, object], delete: bool = False) -> Any:
    """RTM_NEWROUTE / RTM_DELROUTE body for a recorded route through link ``index``.

    A delete names the route by destination, table, link, gateway, source
    and metric only, as ``ip route del`` does (scope "nowhere", no type,
    protocol or flags): matching on those makes deletes miss for no reason.
    """
    table = int(rec["table"])  # type: ignore[call-overload]
    attrs: List[Any] = [("RTA_TABLE", table), ("RTA_OIF", index)]
    if rec["dst_len"]:
        attrs.append(("RTA_DST", rec["dst"]))
    for key, attr in (("gateway", "RTA_GATEWAY"), ("prefsrc", "RTA_PREFSRC"), ("priority", "RTA_PRIORITY")):
        if key in rec:
            attrs.append((attr, rec[key]))
    fields: Dict[str, Any] = {"family": _af(rec), "dst_len": rec["dst_len"],
                              "table": table if table < 256 else RT_TABLE_UNSPEC}
    if delete:
        fields["scope"] = RT_SCOPE_NOWHERE
    else:
        fields.update(proto=rec["proto"], scope=rec["scope"], type=rec["type"], flags=rec.get("flags", 0))
    return nlmsg.route(attrs, **fields)
