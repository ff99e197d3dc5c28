"""Links in one network namespace, on ovsfab's netlink socket (never ``ip``).

:class:`NetlinkHandle`: veths (created with the peer born in the container),
lookups, up/MTU/MAC, addresses and default routes (one send), TX checksum
offloads (ethtool ioctls).  :class:`L3Handle`: the same socket, plus moving a
link's addresses and routes and route lookups (uplink, tunnel); the records
and their messages are in l3config.py, gratuitous ARP / NA in announce.py.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import socket
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ovsfab.errors import Conflict, NotFound, OperationFailed, OvsfabError, from_errno
from ovsfab.model import AddressSpec
from ovsfab.plumbing import sysctl
from ovsfab.plumbing.announce import announce_in
from ovsfab.plumbing.ethtool import Ethtool
from ovsfab.plumbing.l3config import (IFA_F_NODAD, RT_SCOPE_LINK, RT_TABLE_LOCAL, RTPROT_KERNEL, L3Config,
                                      addr_record, address_message, family_of, route_message, route_record)
from ovsfab.plumbing.netns import Namespace
from ovsfab.netlink import msg as nlmsg
from ovsfab.netlink.rtnl import (NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST, RTEXT_FILTER_SKIP_STATS, RTM_DELADDR,
                                 RTM_DELLINK, RTM_DELROUTE, RTM_GETADDR, RTM_GETLINK, RTM_GETROUTE, RTM_NEWADDR,
                                 RTM_NEWLINK, RTM_NEWROUTE, RTM_SETLINK, Rtnl)
from ovsfab.netlink.rtnl import get_link, link_kind
from ovsfab.netlink.rtnl import netnsid as _netnsid

LOG = logging.getLogger(__name__)

#: The TX checksum features a veth has; turning them off makes the kernel
#: finish checksums in software before a frame leaves the namespace.
TX_CSUM_FEATURES = ("tx-checksum-ip-generic", "tx-checksum-ipv4", "tx-checksum-ipv6", "tx-checksum-sctp")


def netlink_error(exc: Exception, what: str) -> OvsfabError:
    """Map a pyroute2 NetlinkError (or OSError) to an ovsfab error by errno."""
    return from_errno(exc, what)


IFF_UP = 0x1  # linux/if.h
RT_TABLE_MAIN = 254
RTPROT_BOOT = 3  # what pyroute2's route("add") (and `ip route add`) record
RTN_UNICAST = 1


def _addr_msg(index: int, spec: AddressSpec) -> Any:
    """RTM_NEWADDR as ``ip addr add`` (and pyroute2's addr("add")) builds it."""
    iface = spec.interface
    attrs: List[Tuple[str, object]] = [("IFA_LOCAL", str(iface.ip)), ("IFA_ADDRESS", str(iface.ip))]
    if iface.version == 4 and iface.network.prefixlen < 31:
        attrs.append(("IFA_BROADCAST", str(iface.network.broadcast_address)))
    return nlmsg.addr(attrs, family=socket.AF_INET6 if iface.version == 6 else socket.AF_INET,
                      prefixlen=iface.network.prefixlen, index=index,
                      flags=IFA_F_NODAD if iface.version == 6 else 0)  # IPv6: usable (and announced) at once


def _default_route_msg(index: int, gateway: ipaddress._BaseAddress) -> Any:
    return nlmsg.route([("RTA_TABLE", RT_TABLE_MAIN), ("RTA_GATEWAY", str(gateway)), ("RTA_OIF", index)],
                       family=socket.AF_INET6 if gateway.version == 6 else socket.AF_INET,
                       table=RT_TABLE_MAIN, proto=RTPROT_BOOT, type=RTN_UNICAST)


class NetlinkHandle:
    """An rtnetlink socket (and an ethtool socket) bound to one namespace.

    Every request of this class (link lookup, dumps, veth creation,
    addresses, routes, up, delete) goes through :class:`~ovsfab.netlink.rtnl.Rtnl`,
    the socket inspect/show use too.  ``ipr`` (a pyroute2 IPRoute, created on
    first use, inside the namespace) is left for the lab's wiring only.
    """

    def __init__(self, ns: Optional[Namespace] = None) -> None:
        self.ns = ns
        self._ipr: Any = None
        if ns is None:
            self._rt = Rtnl()
            self._ioctl = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        else:
            # Both sockets in one visit: each setns() round trip costs.
            with ns.entered():
                self._rt = Rtnl()
                self._ioctl = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        # ethtool ioctls act in the namespace of the socket they are made on.
        self.ethtool = Ethtool(self._ioctl)

    @property
    def ipr(self) -> Any:  # -> pyroute2.IPRoute
        """A pyroute2 IPRoute in this namespace (lazy: ~180 ms import, ~4 ms each)."""
        if self._ipr is None:
            from pyroute2 import IPRoute  # noqa: PLC0415

            if self.ns is None:
                self._ipr = IPRoute()
            else:
                with self.ns.entered():
                    self._ipr = IPRoute()
        return self._ipr

    def close(self) -> None:
        self._rt.close()
        self._ioctl.close()
        if self._ipr is not None:
            self._ipr.close()

    # -- lookup ----------------------------------------------------------
    def _get(self, name: str) -> Optional[Any]:
        """The RTM_NEWLINK message of one link, by name, in one request (no dump)."""
        try:
            return get_link(self._rt, name)
        except OSError as exc:
            raise netlink_error(exc, f"cannot look up interface {name}") from exc

    def index(self, name: str) -> Optional[int]:
        """ifindex of a link by name, or None."""
        msg = self._get(name)
        return int(msg["index"]) if msg is not None else None

    def link(self, name: str) -> Optional[Dict[str, object]]:
        """A few facts about a link, or None if there is none of that name."""
        msg = self._get(name)
        if msg is None:
            return None
        return {
            "index": int(msg["index"]),
            "name": name,
            "kind": link_kind(msg),
            "mac": msg.get_attr("IFLA_ADDRESS"),
            "mtu": msg.get_attr("IFLA_MTU"),
            "peer_index": msg.get_attr("IFLA_LINK"),
            "peer_netnsid": msg.get_attr("IFLA_LINK_NETNSID"),
            "up": bool(msg["flags"] & IFF_UP),
            "master": msg.get_attr("IFLA_MASTER"),
        }

    def addresses(self, index: int) -> List[str]:
        """Global addresses of a link as ADDR/PREFIX strings (one address dump)."""
        from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg  # noqa: PLC0415

        try:
            msgs = self._rt.dump(ifaddrmsg(), RTM_GETADDR)
        except OSError as exc:
            raise netlink_error(exc, f"cannot list the addresses of interface {index}") from exc
        out = []
        for msg in msgs:
            # The kernel filters a dump by link only with strict checking: filtered here.
            # Link-local and host scope are the kernel's own.
            if msg["index"] != index or msg["scope"] != 0:
                continue
            out.append(f"{msg.get_attr('IFA_ADDRESS')}/{msg['prefixlen']}")
        return out

    def link_table(self) -> Dict[str, Dict[str, object]]:
        """{name: {"index", "peer_netnsid", "up", "group", "kind"}} of every link, from one dump.

        Statistics are left out of the dump (RTEXT_FILTER_SKIP_STATS): they
        are most of each message, and nobody here reads them.
        """
        try:
            msgs = self._rt.dump(nlmsg.link(attrs=[("IFLA_EXT_MASK", RTEXT_FILTER_SKIP_STATS)]), RTM_GETLINK)
        except OSError as exc:
            raise netlink_error(exc, "cannot list links") from exc
        out: Dict[str, Dict[str, object]] = {}
        for msg in msgs:
            name = msg.get_attr("IFLA_IFNAME")
            if name:
                info = msg.get_attr("IFLA_LINKINFO")
                out[name] = {"index": int(msg["index"]), "peer_netnsid": msg.get_attr("IFLA_LINK_NETNSID"),
                             "up": bool(msg["flags"] & IFF_UP), "group": msg.get_attr("IFLA_GROUP") or 0,
                             "kind": info.get_attr("IFLA_INFO_KIND") if info is not None else None}
        return out

    def netnsid(self, pid: Optional[int] = None, fd: Optional[int] = None) -> Optional[int]:
        """The id this namespace gives the namespace of ``pid`` (or of the open file ``fd``).

        None when it has none (or the process is gone); ids are what
        IFLA_LINK_NETNSID of a veth refers to.
        """
        return _netnsid(self._rt, pid=pid, fd=fd)

    # -- changes ---------------------------------------------------------
    def delete_many(self, names: Sequence[str], kind: str = "veth") -> List[str]:
        """Delete several links of one ``kind`` (veths: both ends) in ONE unregister batch.

        Deleting a link waits for RCU grace periods (tens of ms on a busy
        host), once per request; a group delete waits once for all of them.
        The links are put in a group of their own first (one send), then
        the group is deleted.  Links of another kind are left alone, as are
        links that vanished meanwhile.  Returns the names deleted.
        """
        table = self.link_table()
        names = [n for n in names if n in table and table[n]["kind"] == kind]
        if len(names) <= 1:
            return [n for n in names if self.delete(n, if_exists=True)]
        taken = {int(facts["group"]) for facts in table.values()}  # type: ignore[call-overload]
        group = 0
        while group in taken or group == 0:
            group = int.from_bytes(os.urandom(4), "little") | 0x80000000
        self._rt.many([(nlmsg.link(attrs=[("IFLA_IFNAME", name), ("IFLA_GROUP", group)]), RTM_SETLINK,
                        NLM_F_REQUEST) for name in names])
        try:
            self._rt.one(nlmsg.link(attrs=[("IFLA_GROUP", group)]), RTM_DELLINK)
        except OSError as exc:
            if exc.errno != errno.ENODEV:  # none left to delete
                raise netlink_error(exc, f"cannot delete {', '.join(names[:3])}...") from exc
        return names

    def create_veth(self, name: str, peer: str, peer_ns: Namespace, mtu: Optional[int],
                    mac: Optional[str], up: bool = False) -> None:
        """Create a veth pair with the peer end born inside ``peer_ns``.

        One netlink request: the peer never appears in this namespace, and
        it has its final name, MTU and MAC from the start.  ``up``: this end
        is born up too (the peer cannot be: veth refuses to open a device
        whose peer is not linked yet, ENOTCONN).
        """
        peer_attrs: List[Tuple[str, object]] = [("IFLA_IFNAME", peer), ("IFLA_NET_NS_FD", peer_ns.fd)]
        attrs: List[Tuple[str, object]] = [("IFLA_IFNAME", name)]
        if mtu is not None:
            peer_attrs.append(("IFLA_MTU", mtu))
            attrs.append(("IFLA_MTU", mtu))
        if mac is not None:
            peer_attrs.append(("IFLA_ADDRESS", mac))
        attrs.append(("IFLA_LINKINFO", {"attrs": [
            ("IFLA_INFO_KIND", "veth"),
            ("IFLA_INFO_DATA", {"attrs": [("VETH_INFO_PEER", {"attrs": peer_attrs})]}),
        ]}))
        flags = IFF_UP if up else 0
        try:
            self._rt.one(nlmsg.link(flags=flags, change=flags, attrs=attrs), RTM_NEWLINK,
                         NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL)
        except OSError as exc:
            raise netlink_error(exc, f"cannot create veth pair {name}/{peer}") from exc

    def delete(self, name: str, if_exists: bool = True) -> bool:
        """Delete a link; deleting one veth end deletes both."""
        try:
            self._rt.one(nlmsg.link(attrs=[("IFLA_IFNAME", name)]), RTM_DELLINK)
        except OSError as exc:
            if exc.errno in (errno.ENODEV, errno.ENOENT, errno.EINVAL):
                if if_exists:
                    return False
                raise NotFound(f"no interface named {name}") from None
            raise netlink_error(exc, f"cannot delete {name}") from exc
        return True

    def set_up(self, index: int) -> None:
        try:
            self._rt.one(nlmsg.link(index=index, flags=IFF_UP, change=IFF_UP), RTM_SETLINK)
        except OSError as exc:
            raise netlink_error(exc, f"cannot bring up interface {index}") from exc

    def set_down(self, index: int) -> None:
        """Take a link down (it stops forwarding; its configuration stays)."""
        try:
            self._rt.one(nlmsg.link(index=index, flags=0, change=IFF_UP), RTM_SETLINK)
        except OSError as exc:
            raise netlink_error(exc, f"cannot set interface {index} down") from exc

    def set_mtu(self, index: int, mtu: int) -> None:
        try:
            self._rt.one(nlmsg.link(index=index, attrs=[("IFLA_MTU", mtu)]), RTM_SETLINK)
        except OSError as exc:
            raise netlink_error(exc, f"cannot set MTU {mtu}") from exc

    def set_mac(self, index: int, mac: str) -> None:
        """Set a link's MAC; a driver that refuses a live change gets it while down."""
        msg = lambda: nlmsg.link(index=index, attrs=[("IFLA_ADDRESS", mac)])  # noqa: E731
        try:
            self._rt.one(msg(), RTM_SETLINK)
            return
        except OSError as exc:
            if (getattr(exc, "code", None) or exc.errno) != errno.EBUSY:
                raise netlink_error(exc, f"cannot set MAC {mac}") from exc
        try:
            found = self._rt.one(nlmsg.link(index=index, attrs=[("IFLA_EXT_MASK", RTEXT_FILTER_SKIP_STATS)]),
                                 RTM_GETLINK)
        except OSError as exc:
            raise netlink_error(exc, f"cannot set MAC {mac}") from exc
        was_up = bool(found and found[0]["flags"] & IFF_UP)
        try:
            self._rt.one(nlmsg.link(index=index, flags=0, change=IFF_UP), RTM_SETLINK)
            self._rt.one(msg(), RTM_SETLINK)
        except OSError as exc:
            raise netlink_error(exc, f"cannot set MAC {mac}") from exc
        finally:
            if was_up:
                self.set_up(index)

    def enable_ipv6(self, name: str) -> None:
        """Clear ``disable_ipv6`` on a link (Docker sets it in containers without IPv6)."""
        if not self._ipv6_sysctl(name, "0"):
            raise OperationFailed(f"IPv6 is not available on {name}", "the kernel has IPv6 disabled")

    def disable_ipv6(self, name: str) -> None:
        """Set ``disable_ipv6`` on a link: no link-local address, no IPv6 routes, no RS/MLD/DAD.

        A kernel without IPv6 has nothing to disable: not an error.
        """
        self._ipv6_sysctl(name, "1")

    def _ipv6_sysctl(self, name: str, value: str) -> bool:
        """Write ``net.ipv6.conf.NAME.disable_ipv6``; False when the kernel has no IPv6."""
        return sysctl.write(name, "ipv6/disable_ipv6", value, self.ns)

    def set_up_by_name(self, name: str) -> None:
        """Bring a link up by name (no index lookup first)."""
        try:
            self._rt.one(nlmsg.link(flags=IFF_UP, change=IFF_UP, attrs=[("IFLA_IFNAME", name)]), RTM_SETLINK)
        except OSError as exc:
            raise netlink_error(exc, f"cannot bring up {name}") from exc

    def add_address(self, index: int, spec: AddressSpec) -> None:
        """Add an address; IPv6 without DAD, so it is usable (and announced) at once."""
        try:
            self._rt.one(_addr_msg(index, spec), RTM_NEWADDR, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL)
        except OSError as exc:
            raise netlink_error(exc, f"cannot add address {spec.interface}") from exc

    def add_default_route(self, index: int, gateway: ipaddress._BaseAddress) -> None:
        try:
            self._rt.one(_default_route_msg(index, gateway), RTM_NEWROUTE,
                         NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL)
        except OSError as exc:
            raise _route_error(exc, gateway) from exc

    def configure(self, index: int, addresses: Sequence[AddressSpec], up: bool = True) -> None:
        """Addresses, link up and default routes of one link, in ONE send.

        The kernel handles the requests in order (routes after the link is
        up and has its addresses) and acknowledges each; the first refusal
        is raised, as the one-by-one methods would raise it.
        """
        reqs: List[Tuple[Any, int, int]] = []
        whats: List[Callable[[OSError], OvsfabError]] = []
        create = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL
        for spec in addresses:
            reqs.append((_addr_msg(index, spec), RTM_NEWADDR, create))
            whats.append(lambda exc, s=spec: netlink_error(exc, f"cannot add address {s.interface}"))
        if up:
            reqs.append((nlmsg.link(index=index, flags=IFF_UP, change=IFF_UP), RTM_SETLINK, NLM_F_REQUEST))
            whats.append(lambda exc: netlink_error(exc, f"cannot bring up interface {index}"))
        for spec in addresses:
            if spec.gateway is not None:
                reqs.append((_default_route_msg(index, spec.gateway), RTM_NEWROUTE, create))
                whats.append(lambda exc, g=spec.gateway: _route_error(exc, g))
        if not reqs:
            return
        for (code, _), what in zip(self._rt.many(reqs), whats):
            if code:
                exc = OSError(code, os.strerror(code))
                raise what(exc) from exc

    def disable_tx_checksum(self, name: str) -> List[str]:
        """Turn off TX checksum offload (and what depends on it, like TSO).

        Returns the features that were on and are now off.  Two ioctls (get,
        set); the feature names are read once per process (plumbing/ethtool.py).
        """
        try:
            current = self.ethtool.features(name)
            changed = [f for f in TX_CSUM_FEATURES if current.get(f)]
            if changed:
                self.ethtool.set_features(name, dict.fromkeys(changed, False))
        except OSError as exc:
            raise netlink_error(exc, f"cannot turn off TX checksum offload on {name}") from exc
        return changed

    def enable_features(self, name: str, features: List[str]) -> None:
        """Turn offload features back on (undo of ``disable_tx_checksum``)."""
        if not features:
            return
        try:
            self.ethtool.set_features(name, dict.fromkeys(features, True))
        except OSError as exc:
            raise netlink_error(exc, f"cannot turn offloads back on for {name}") from exc

    def announce(self, ifname: str, mac: str, addresses: List[AddressSpec]) -> None:
        """Gratuitous ARP for IPv4, unsolicited neighbour advertisement for IPv6.

        Sent on a packet socket created inside this namespace.  Best effort:
        a neighbour that misses it learns the address at the next ARP/ND.
        """
        announce_in(self.ns, ifname, mac, addresses)


def _route_error(exc: OSError, gateway: ipaddress._BaseAddress) -> OvsfabError:
    if exc.errno == errno.EEXIST:
        return Conflict(f"the container already has an IPv{gateway.version} default route",
                        "attach without @gateway, or remove the other route")
    return netlink_error(exc, f"cannot add default route via {gateway}")


class L3Handle(NetlinkHandle):
    """A NetlinkHandle that can also move a link's addresses and routes and
    look up routes (used by uplink and tunnel), on the same socket."""

    def _dump(self, msg: Any, mtype: int, what: str) -> List[Any]:
        try:
            return self._rt.dump(msg, mtype)
        except OSError as exc:
            raise netlink_error(exc, what) from exc

    def l3_config(self, index: int) -> L3Config:
        """Global addresses and the non-kernel routes that leave through a link.

        Link-local addresses and kernel-made routes (prefix routes, local
        table) are left out: the kernel recreates them with the addresses.
        """
        addrs = [addr_record(m) for m in self._dump(nlmsg.addr(), RTM_GETADDR, f"cannot list addresses of {index}")
                 if m["index"] == index and m["scope"] != RT_SCOPE_LINK]
        routes = []
        for fam in (socket.AF_INET, socket.AF_INET6):
            # All tables: a dump that is not strictly checked is not filtered by the kernel.
            for msg in self._dump(nlmsg.route(family=fam), RTM_GETROUTE, "cannot list routes"):
                if msg.get_attr("RTA_OIF") != index:
                    continue
                rec = route_record(msg)
                if rec["proto"] == RTPROT_KERNEL or rec["table"] == RT_TABLE_LOCAL:
                    continue
                routes.append(rec)
        # Link-scope routes first: a gateway route needs its gateway reachable.
        routes.sort(key=lambda r: -int(r["scope"]))  # type: ignore[arg-type]
        return L3Config(addrs, routes)

    def multipath_routes_via(self, index: int) -> List[str]:
        """Multipath routes with a next hop through a link (ovsfab does not move those)."""
        out = []
        for fam in (socket.AF_INET, socket.AF_INET6):
            for msg in self._dump(nlmsg.route(family=fam), RTM_GETROUTE, "cannot list routes"):
                hops = msg.get_attr("RTA_MULTIPATH") or []
                if any(h["oif"] == index for h in hops):
                    dst = msg.get_attr("RTA_DST") or "default"
                    out.append(f"{dst}/{msg['dst_len']}")
        return out

    def _change(self, msg: Any, mtype: int, flags: int, benign: Tuple[int, ...], what: str) -> bool:
        """One change; False when the kernel refused it with a ``benign`` errno (already so)."""
        try:
            self._rt.one(msg, mtype, flags)
        except OSError as exc:
            if exc.errno in benign:
                return False
            raise netlink_error(exc, what) from exc
        return True

    def put_address(self, index: int, rec: Dict[str, object], extra_flags: int = 0) -> bool:
        """Add a recorded address; False if it is there already."""
        flags = int(rec.get("flags", 0)) | extra_flags  # type: ignore[call-overload]
        return self._change(address_message(index, rec, flags), RTM_NEWADDR,
                            NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL, (errno.EEXIST,),
                            f"cannot add address {rec['address']}/{rec['prefixlen']}")

    def drop_address(self, index: int, rec: Dict[str, object]) -> bool:
        """Remove a recorded address; False if it was not there."""
        return self._change(address_message(index, rec), RTM_DELADDR, NLM_F_REQUEST,
                            (errno.EADDRNOTAVAIL, errno.ENOENT, errno.ESRCH, errno.ENODEV),
                            f"cannot remove address {rec['address']}/{rec['prefixlen']}")

    def put_route(self, index: int, rec: Dict[str, object]) -> bool:
        """Add a recorded route through a link; False if it is there already."""
        return self._change(route_message(index, rec), RTM_NEWROUTE, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL,
                            (errno.EEXIST,), f"cannot add route {rec['dst']}/{rec['dst_len']}")

    def drop_route(self, index: int, rec: Dict[str, object]) -> bool:
        """Remove a recorded route through a link; False if it was not there."""
        return self._change(route_message(index, rec, delete=True), RTM_DELROUTE, NLM_F_REQUEST,
                            (errno.ESRCH, errno.ENOENT, errno.ENODEV, errno.EADDRNOTAVAIL),
                            f"cannot remove route {rec['dst']}/{rec['dst_len']}")

    def move_l3(self, src: int, dst: int, cfg: L3Config) -> None:
        """Move addresses and routes from link ``src`` to link ``dst`` as one step.

        Idempotent (what is already in place is skipped), and on failure it
        puts everything back on ``src`` before raising, so a caller never
        sees a half-moved host.  IPv6 addresses skip DAD on ``dst``: the
        address was already in use and verified on ``src``.
        """
        try:
            self._place_l3(src, dst, cfg, extra_flags=IFA_F_NODAD)
        except BaseException:
            try:
                self._place_l3(dst, src, cfg, extra_flags=0)
            except Exception as exc:  # keep the first error: it says what went wrong
                LOG.error("could not put addresses and routes back on link %s: %s", src, exc)
            raise

    def _place_l3(self, src: int, dst: int, cfg: L3Config, extra_flags: int) -> None:
        # Routes first: deleting the last IPv4 address would drop them
        # anyway, but IPv6 gateway routes survive and would be duplicated.
        for rec in reversed(cfg.routes):
            self.drop_route(src, rec)
        for rec in cfg.addresses:
            self.drop_address(src, rec)
        for rec in cfg.addresses:
            self.put_address(dst, rec, extra_flags if rec["family"] == 6 else 0)
        for rec in cfg.routes:
            self.put_route(dst, rec)

    def wait_link(self, name: str, deadline: float, mac: Optional[str] = None) -> int:
        """Wait until link ``name`` exists (and has ``mac``); returns its index."""
        import time  # noqa: PLC0415

        while True:
            info = self.link(name)
            if info is not None and (mac is None or str(info["mac"]).lower() == mac.lower()):
                return int(info["index"])
            if time.monotonic() >= deadline:
                state = "does not exist" if info is None else f"has MAC {info['mac']}, not {mac}"
                raise OperationFailed(f"interface {name} {state} after ovs-vswitchd applied the change",
                                      "check ovs-vswitchd.log")
            time.sleep(0.02)

    def route_to(self, dst: str) -> Optional[Dict[str, object]]:
        """The kernel's route to ``dst``: {"oif", "ifname", "prefsrc", "mtu"}, or None."""
        fam = family_of(dst)
        query = nlmsg.route([("RTA_DST", dst)], family=fam, dst_len=128 if fam == socket.AF_INET6 else 32)
        try:
            msgs = self._rt.one(query, RTM_GETROUTE)
        except OSError as exc:
            if exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ESRCH):
                return None
            raise netlink_error(exc, f"cannot look up the route to {dst}") from exc
        if not msgs:
            return None
        msg = msgs[0]
        if msg["type"] != RTN_UNICAST:  # local/unreachable/... are not a way out
            return {"oif": msg.get_attr("RTA_OIF"), "ifname": None, "prefsrc": None, "mtu": None,
                    "type": msg["type"]}
        oif = msg.get_attr("RTA_OIF")
        ifname = mtu = None
        if oif is not None:
            try:
                links = self._rt.one(nlmsg.link(index=oif, attrs=[("IFLA_EXT_MASK", RTEXT_FILTER_SKIP_STATS)]),
                                     RTM_GETLINK)
            except OSError as exc:
                if exc.errno not in (errno.ENODEV, errno.ENOENT):  # gone meanwhile: no name, no MTU
                    raise netlink_error(exc, f"cannot look up interface {oif}") from exc
                links = []
            if links:
                ifname = links[0].get_attr("IFLA_IFNAME")
                mtu = links[0].get_attr("IFLA_MTU")
        return {"oif": oif, "ifname": ifname, "prefsrc": msg.get_attr("RTA_PREFSRC"), "mtu": mtu,
                "type": msg["type"]}

    def address_owners(self) -> Dict[str, str]:
        """Every address of this namespace (link-local too) -> the link holding it."""
        names = {int(facts["index"]): name for name, facts in self.link_table().items()}  # type: ignore[call-overload]
        out = {}
        for msg in self._dump(nlmsg.addr(), RTM_GETADDR, "cannot list addresses"):
            addr = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")
            if addr:
                out[str(ipaddress.ip_address(addr))] = names.get(msg["index"], "")
        return out
