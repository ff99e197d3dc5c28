"""The kernel requests of the Linux-bridge backend, on ovsfab's one netlink socket.

Bridges, ports (``IFLA_MASTER``), aliases, VLAN filters, port isolation,
tunnel devices and their forwarding entries: each a message built from
pyroute2's public classes (:mod:`ovsfab.netlink.msg`) and sent on an
:class:`~ovsfab.netlink.rtnl.Rtnl` (receive deadline, ENOBUFS handled), the
socket attach, inspect and the uplink/tunnel plumbing use too.  Failures
come back as OSError with the kernel's errno; the backend words them.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ovsfab.netlink import msg as nlmsg
from ovsfab.netlink.rtnl import (NLM_F_APPEND, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST, RTEXT_FILTER_SKIP_STATS,
                                 RTM_DELLINK, RTM_DELNEIGH, RTM_GETLINK, RTM_GETNEIGH, RTM_GETROUTE, RTM_NEWLINK,
                                 RTM_NEWNEIGH, RTM_SETLINK, Rtnl, link_kind)

IFF_UP = 0x1
IFF_LOWER_UP = 0x10000  # linux/if.h: the carrier is up
#: linux/if_bridge.h: bridge_vlan_info flags.
BRIDGE_VLAN_INFO_PVID = 0x2
BRIDGE_VLAN_INFO_UNTAGGED = 0x4
BRIDGE_VLAN_INFO_RANGE_BEGIN = 0x8
BRIDGE_VLAN_INFO_RANGE_END = 0x10
#: linux/neighbour.h: a static forwarding entry of the device itself (``bridge fdb append ... self``).
NUD_NOARP, NUD_PERMANENT, NTF_SELF = 0x40, 0x80, 0x02
ZERO_MAC = "00:00:00:00:00:00"

#: IFLA_INFO_DATA attribute prefix of each tunnel kind (pyroute2's names).
_DATA_PREFIX = {"vxlan": "IFLA_VXLAN_", "gretap": "IFLA_GRE_", "ip6gretap": "IFLA_IP6GRE_",
                "geneve": "IFLA_GENEVE_", "bridge": "IFLA_BR_"}


def _link_facts(msg: Any) -> Dict[str, Any]:
    info = msg.get_attr("IFLA_LINKINFO")
    return {"index": int(msg["index"]), "name": msg.get_attr("IFLA_IFNAME"), "kind": link_kind(msg),
            "master": msg.get_attr("IFLA_MASTER"), "alias": msg.get_attr("IFLA_IFALIAS"),
            "mac": msg.get_attr("IFLA_ADDRESS"), "mtu": msg.get_attr("IFLA_MTU"),
            "up": bool(msg["flags"] & IFF_UP), "carrier": bool(msg["flags"] & IFF_LOWER_UP),
            "data": info.get_attr("IFLA_INFO_DATA") if info is not None else None}


class BridgeNetlink:
    """One rtnetlink socket in the current namespace and the requests the Linux backend makes on it."""

    def __init__(self) -> None:
        self.rt = Rtnl()

    def close(self) -> None:
        """Close the socket."""
        self.rt.close()

    # -- links -------------------------------------------------------------
    def links(self) -> List[Dict[str, Any]]:
        """Every link: index, name, kind, master, alias, mac, mtu, up, carrier, data (IFLA_INFO_DATA)."""
        query = nlmsg.link([("IFLA_EXT_MASK", RTEXT_FILTER_SKIP_STATS)])
        return [_link_facts(m) for m in self.rt.dump(query, RTM_GETLINK)]

    def link(self, index: int) -> Optional[Dict[str, Any]]:
        """One link by index, or None."""
        try:
            found = self.rt.one(nlmsg.link([("IFLA_EXT_MASK", RTEXT_FILTER_SKIP_STATS)], index=index), RTM_GETLINK)
        except OSError as exc:
            if exc.errno in (errno.ENODEV, errno.ENOENT):
                return None
            raise
        return _link_facts(found[0]) if found else None

    def add(self, name: str, kind: str, data: Sequence[Tuple[str, Any]] = (), mtu: Optional[int] = None) -> None:
        """Create a link of ``kind`` with IFLA_INFO_DATA ``data`` (``(short name, value)``: ``ID``, ``PORT``, ...).

        RTM_NEWLINK does not take IFLA_IFALIAS at creation: set it after.
        """
        prefix = _DATA_PREFIX.get(kind, "IFLA_")
        info: List[Tuple[str, Any]] = [("IFLA_INFO_KIND", kind)]
        if data:
            info.append(("IFLA_INFO_DATA", {"attrs": [(prefix + key, value) for key, value in data]}))
        attrs: List[Tuple[str, Any]] = [("IFLA_IFNAME", name), ("IFLA_LINKINFO", {"attrs": info})]
        if mtu is not None:
            attrs.append(("IFLA_MTU", mtu))
        self.rt.one(nlmsg.link(attrs), RTM_NEWLINK, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL)

    def set(self, index: int, *, up: Optional[bool] = None, master: Optional[int] = None,
            alias: Optional[str] = None, address: Optional[str] = None) -> None:
        """Change a link in one request: up/down, master (0: none), alias ("" clears it), MAC."""
        attrs: List[Tuple[str, Any]] = []
        if master is not None:
            attrs.append(("IFLA_MASTER", master))
        if alias is not None:
            attrs.append(("IFLA_IFALIAS", alias))
        if address is not None:
            attrs.append(("IFLA_ADDRESS", address))
        fields: Dict[str, Any] = {"index": index}
        if up is not None:
            fields.update(flags=IFF_UP if up else 0, change=IFF_UP)
        self.rt.one(nlmsg.link(attrs, **fields), RTM_SETLINK)

    def delete(self, index: int) -> None:
        """Delete a link."""
        self.rt.one(nlmsg.link(index=index), RTM_DELLINK)

    # -- bridge ports ----------------------------------------------------------
    def vlans(self, index: int, *, add: Sequence[Tuple[int, int]] = (), remove: Sequence[int] = ()) -> None:
        """Bridge-port VLANs (``bridge vlan``): remove ``remove``, then add ``add`` as (vid or range end, flags).

        An access port is ``add=[(tag, PVID|UNTAGGED)]``; a range is two
        entries with RANGE_BEGIN and RANGE_END.
        """
        def body(entries: Sequence[Tuple[int, int]]) -> Any:
            return nlmsg.link([("IFLA_AF_SPEC", {"attrs": [("IFLA_BRIDGE_VLAN_INFO", {"vid": vid, "flags": flags})
                                                            for vid, flags in entries]})],
                              family=socket.AF_BRIDGE, index=index)

        if remove:
            self.rt.one(body([(vid, 0) for vid in remove]), RTM_DELLINK)
        if add:
            self.rt.one(body(add), RTM_SETLINK)

    def isolate(self, index: int) -> None:
        """Make a bridge port isolated: frames from it never leave through another isolated port."""
        info = [("IFLA_INFO_SLAVE_KIND", "bridge"),
                ("IFLA_INFO_SLAVE_DATA", {"attrs": [("IFLA_BRPORT_ISOLATED", 1)]})]
        self.rt.one(nlmsg.link([("IFLA_LINKINFO", {"attrs": info})], index=index), RTM_NEWLINK)

    # -- forwarding entries of a tunnel device -----------------------------------
    def fdb(self, index: int) -> List[Tuple[str, Optional[str]]]:
        """(MAC, destination) of every forwarding entry of device ``index`` (one dump of all)."""
        out = []
        for m in self.rt.dump(nlmsg.neigh(family=socket.AF_BRIDGE), RTM_GETNEIGH):
            if m["ifindex"] == index:
                dst = m.get_attr("NDA_DST")
                out.append((m.get_attr("NDA_LLADDR"), str(ipaddress.ip_address(dst)) if dst else None))
        return out

    def _fdb_entry(self, index: int, remote: str) -> Any:
        return nlmsg.neigh([("NDA_LLADDR", ZERO_MAC), ("NDA_DST", remote)], family=socket.AF_BRIDGE,
                           ifindex=index, state=NUD_NOARP | NUD_PERMANENT, flags=NTF_SELF)

    def fdb_append(self, index: int, remote: str) -> None:
        """Add an all-zeros entry to ``remote`` (head-end replication: ``bridge fdb append``)."""
        self.rt.one(self._fdb_entry(index, remote), RTM_NEWNEIGH, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_APPEND)

    def fdb_del(self, index: int, remote: str) -> None:
        """Remove the all-zeros entry to ``remote``."""
        self.rt.one(self._fdb_entry(index, remote), RTM_DELNEIGH)

    # -- routes --------------------------------------------------------------
    def route(self, remote: str) -> Tuple[Optional[int], Optional[str]]:
        """(MTU of the link, source address) the kernel would send to ``remote`` with; (None, None) without a route.

        One RTM_GETROUTE: the reply names the outgoing link (RTA_OIF) and the
        source the kernel would pick (RTA_PREFSRC), which an IPv6 tunnel
        device needs as its own local address (see ``add_tunnel_port``).
        """
        v6 = ipaddress.ip_address(remote).version == 6
        query = nlmsg.route([("RTA_DST", remote)], family=socket.AF_INET6 if v6 else socket.AF_INET,
                            dst_len=128 if v6 else 32)
        try:
            found = self.rt.one(query, RTM_GETROUTE)
        except OSError:
            return None, None  # no route yet
        if not found:
            return None, None
        oif = found[0].get_attr("RTA_OIF")
        src = found[0].get_attr("RTA_PREFSRC")
        ln = self.link(oif) if oif else None
        mtu = int(ln["mtu"]) if ln is not None and ln["mtu"] else None
        return mtu, (str(ipaddress.ip_address(src)) if src else None)

    def route_mtu(self, remote: str) -> Optional[int]:
        """The MTU of the link the kernel would send to ``remote`` through; None without a route."""
        return self.route(remote)[0]
