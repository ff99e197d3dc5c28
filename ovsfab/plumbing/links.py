"""Links in one network namespace, through pyroute2 (never ``ip``)."""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import socket
import struct
from typing import Dict, List, Optional

from ovsfab.errors import Conflict, NotFound, OperationFailed, OvsfabError, PermissionDenied
from ovsfab.model import AddressSpec
from ovsfab.plumbing.netns import Namespace

LOG = logging.getLogger(__name__)

IFA_F_NODAD = 0x02
ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD

#: The TX checksum features a veth has; turning them off makes the kernel
#: finish checksums in software before a frame leaves the namespace.
TX_CSUM_FEATURES = ("tx-checksum-ip-generic", "tx-checksum-ipv4", "tx-checksum-ipv6", "tx-checksum-sctp")


def netlink_error(exc: Exception, what: str) -> OvsfabError:
    """Map a pyroute2 NetlinkError (or OSError) to an ovsfab error by errno."""
    code = getattr(exc, "code", None) or getattr(exc, "errno", None) or 0
    reason = os.strerror(code) if code else str(exc)
    if code == errno.EPERM:
        return PermissionDenied(f"{what}: {reason}", "run ovsfab as root")
    if code == errno.EEXIST:
        return Conflict(f"{what}: an interface of that name exists")
    if code in (errno.ENODEV, errno.ENOENT):
        return NotFound(f"{what}: {reason}")
    return OperationFailed(f"{what}: {reason}")



class NetlinkHandle:
    """An rtnetlink socket (and an ethtool socket) bound to one namespace."""

    def __init__(self, ns: Optional[Namespace] = None) -> None:
        from pyroute2 import IPRoute  # noqa: PLC0415 - lazy: ~180 ms

        self.ns = ns
        if ns is None:
            self.ipr = IPRoute()
        else:
            with ns.entered():
                self.ipr = IPRoute()
        self._ethtool = None

    def close(self) -> None:
        self.ipr.close()
        if self._ethtool is not None:
            self._ethtool.close()

    # -- lookup ----------------------------------------------------------
    def index(self, name: str) -> Optional[int]:
        """ifindex of a link by name, or None."""
        found = self.ipr.link_lookup(ifname=name)
        return found[0] if found else None

    def link(self, name: str) -> Optional[Dict[str, object]]:
        """A few facts about a link, or None if there is none of that name."""
        idx = self.index(name)
        if idx is None:
            return None
        msg = self.ipr.get_links(idx)[0]
        info = msg.get_attr("IFLA_LINKINFO")
        kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
        return {
            "index": idx,
            "name": name,
            "kind": kind,
            "mac": msg.get_attr("IFLA_ADDRESS"),
            "mtu": msg.get_attr("IFLA_MTU"),
            "peer_index": msg.get_attr("IFLA_LINK"),
            "peer_netnsid": msg.get_attr("IFLA_LINK_NETNSID"),
            "up": bool(msg["flags"] & 1),
        }

    def addresses(self, index: int) -> List[str]:
        """Global addresses of a link as ADDR/PREFIX strings."""
        out = []
        for msg in self.ipr.get_addr(index=index):
            if msg["scope"] != 0:  # link-local and host scope are the kernel's own
                continue
            out.append(f"{msg.get_attr('IFA_ADDRESS')}/{msg['prefixlen']}")
        return out

    # -- changes ---------------------------------------------------------
    def create_veth(self, name: str, peer: str, peer_ns: Namespace, mtu: Optional[int],
                    mac: Optional[str]) -> None:
        """Create a veth pair with the peer end born inside ``peer_ns``.

        One netlink request: the peer never appears in this namespace, and
        it has its final name, MTU and MAC from the start.
        """
        peer_spec: Dict[str, object] = {"ifname": peer, "net_ns_fd": peer_ns.fd}
        kwargs: Dict[str, object] = {}
        if mtu is not None:
            peer_spec["mtu"] = mtu
            kwargs["mtu"] = mtu
        if mac is not None:
            peer_spec["address"] = mac
        try:
            self.ipr.link("add", ifname=name, kind="veth", peer=peer_spec, **kwargs)
        except Exception as exc:  # NetlinkError
            raise netlink_error(exc, f"cannot create veth pair {name}/{peer}") from exc

    def delete(self, name: str, if_exists: bool = True) -> bool:
        """Delete a link; deleting one veth end deletes both."""
        idx = self.index(name)
        if idx is None:
            if if_exists:
                return False
            raise NotFound(f"no interface named {name}")
        try:
            self.ipr.link("del", index=idx)
        except Exception as exc:
            if getattr(exc, "code", None) == errno.ENODEV and if_exists:
                return False
            raise netlink_error(exc, f"cannot delete {name}") from exc
        return True

    def set_up(self, index: int) -> None:
        try:
            self.ipr.link("set", index=index, state="up")
        except Exception as exc:
            raise netlink_error(exc, f"cannot bring up interface {index}") from exc

    def set_mtu(self, index: int, mtu: int) -> None:
        try:
            self.ipr.link("set", index=index, mtu=mtu)
        except Exception as exc:
            raise netlink_error(exc, f"cannot set MTU {mtu}") from exc

    def enable_ipv6(self, name: str) -> None:
        """Clear ``disable_ipv6`` on a link (Docker sets it in containers without IPv6).

        There is no netlink attribute for it; the sysctl file belongs to the
        namespace of the thread that opens it, hence ``entered()``.
        """
        path = f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6"
        try:
            if self.ns is None:
                fh = open(path, "w", encoding="ascii")
            else:
                with self.ns.entered():
                    fh = open(path, "w", encoding="ascii")
            with fh:
                fh.write("0")
        except FileNotFoundError:
            raise OperationFailed(f"IPv6 is not available on {name}", "the kernel has IPv6 disabled") from None
        except OSError as exc:
            raise netlink_error(exc, f"cannot enable IPv6 on {name}") from exc

    def add_address(self, index: int, spec: AddressSpec) -> None:
        """Add an address; IPv6 without DAD, so it is usable (and announced) at once."""
        iface = spec.interface
        kwargs: Dict[str, object] = {}
        if iface.version == 6:
            kwargs["flags"] = IFA_F_NODAD
        elif iface.network.prefixlen < 31:
            kwargs["broadcast"] = str(iface.network.broadcast_address)
        try:
            self.ipr.addr("add", index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen, **kwargs)
        except Exception as exc:
            raise netlink_error(exc, f"cannot add address {iface}") from exc

    def add_default_route(self, index: int, gateway: ipaddress._BaseAddress) -> None:
        family = socket.AF_INET6 if gateway.version == 6 else socket.AF_INET
        dst = "::/0" if gateway.version == 6 else "0.0.0.0/0"
        try:
            self.ipr.route("add", dst=dst, gateway=str(gateway), oif=index, family=family)
        except Exception as exc:
            if getattr(exc, "code", None) == errno.EEXIST:
                raise Conflict(f"the container already has an IPv{gateway.version} default route",
                               "attach without @gateway, or remove the other route") from exc
            raise netlink_error(exc, f"cannot add default route via {gateway}") from exc

    def ethtool(self):  # -> pyroute2.ethtool.ioctl.IoctlEthtool
        """The ethtool ioctl socket of this namespace (created on first use, inside it)."""
        if self._ethtool is None:
            from pyroute2.ethtool.ioctl import IoctlEthtool  # noqa: PLC0415

            if self.ns is None:
                self._ethtool = IoctlEthtool()
            else:
                with self.ns.entered():
                    self._ethtool = IoctlEthtool()
        return self._ethtool

    def disable_tx_checksum(self, name: str) -> List[str]:
        """Turn off TX checksum offload (and what depends on it, like TSO).

        Returns the features that were on and are now off.
        """
        ethtool = self.ethtool()
        try:
            ethtool.change_ifname(name)
            features = ethtool.get_features()
            changed = [f for f in TX_CSUM_FEATURES if f in features and features.is_active(f)]
            if not changed:
                return []
            for feature in changed:
                features[feature] = False
            ethtool.set_features(features)
        except OSError as exc:
            raise netlink_error(exc, f"cannot turn off TX checksum offload on {name}") from exc
        return changed

    def announce(self, ifname: str, mac: str, addresses: List[AddressSpec]) -> None:
        """Gratuitous ARP for IPv4, unsolicited neighbour advertisement for IPv6.

        Sent on a packet socket created inside this namespace.  Best effort:
        a neighbour that misses it learns the address at the next ARP/ND.
        """
        if self.ns is None:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        else:
            with self.ns.entered():
                sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
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


# ---------------------------------------------------------------------------
# Helpers for `ovsfab uplink` / `ovsfab tunnel` (moving a NIC's layer-3
# configuration, route lookups).  Additions only: nothing above depends on them.
# ---------------------------------------------------------------------------

#: rtnetlink constants (linux/rtnetlink.h, linux/if_addr.h).
RTPROT_KERNEL = 2
RT_TABLE_LOCAL = 255
RT_SCOPE_LINK = 253
IFA_F_PERMANENT = 0x80
#: Address flags worth carrying over when an address moves (the others are
#: state the kernel computes: tentative, permanent, deprecated, ...).
IFA_KEEP_FLAGS = 0x02 | 0x10 | 0x100 | 0x200  # nodad, homeaddress, mngtmpaddr, noprefixroute


def _family_of(text: str) -> int:
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


def _addr_record(msg) -> Dict[str, object]:  # noqa: ANN001 - pyroute2 message
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


def _route_record(msg) -> Dict[str, object]:  # noqa: ANN001 - pyroute2 message
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


class L3Handle(NetlinkHandle):
    """A NetlinkHandle that can also move a link's addresses and routes,
    look up routes and restore offloads (used by uplink and tunnel)."""

    def l3_config(self, index: int) -> L3Config:
        """Global addresses and the non-kernel routes that leave through a link.

        Link-local addresses and kernel-made routes (prefix routes, local
        table) are left out: the kernel recreates them with the addresses.
        """
        addrs = [_addr_record(m) for m in self.ipr.get_addr(index=index) if m["scope"] != RT_SCOPE_LINK]
        routes = []
        for fam in (socket.AF_INET, socket.AF_INET6):
            for msg in self.ipr.get_routes(family=fam, oif=index):
                if msg.get_attr("RTA_OIF") != index:  # older kernels ignore the filter
                    continue
                rec = _route_record(msg)
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
            for msg in self.ipr.get_routes(family=fam):
                hops = msg.get_attr("RTA_MULTIPATH") or []
                if any(h["oif"] == index for h in hops):
                    dst = msg.get_attr("RTA_DST") or "default"
                    out.append(f"{dst}/{msg['dst_len']}")
        return out

    def _addr_kwargs(self, rec: Dict[str, object]) -> Dict[str, object]:
        kwargs: Dict[str, object] = {"address": rec["address"], "prefixlen": rec["prefixlen"]}
        if rec.get("broadcast"):
            kwargs["broadcast"] = rec["broadcast"]
        return kwargs

    def put_address(self, index: int, rec: Dict[str, object], extra_flags: int = 0) -> bool:
        """Add a recorded address; False if it is there already."""
        kwargs = self._addr_kwargs(rec)
        flags = int(rec.get("flags", 0)) | extra_flags  # type: ignore[arg-type]
        if flags:
            kwargs["flags"] = flags
        try:
            self.ipr.addr("add", index=index, **kwargs)
        except Exception as exc:
            if getattr(exc, "code", None) == errno.EEXIST:
                return False
            raise netlink_error(exc, f"cannot add address {rec['address']}/{rec['prefixlen']}") from exc
        return True

    def drop_address(self, index: int, rec: Dict[str, object]) -> bool:
        """Remove a recorded address; False if it was not there."""
        try:
            self.ipr.addr("del", index=index, address=rec["address"], prefixlen=rec["prefixlen"])
        except Exception as exc:
            if getattr(exc, "code", None) in (errno.EADDRNOTAVAIL, errno.ENOENT, errno.ESRCH, errno.ENODEV):
                return False
            raise netlink_error(exc, f"cannot remove address {rec['address']}/{rec['prefixlen']}") from exc
        return True

    def _route_kwargs(self, index: int, rec: Dict[str, object]) -> Dict[str, object]:
        fam = socket.AF_INET6 if rec["family"] == 6 else socket.AF_INET
        kwargs: Dict[str, object] = {
            "family": fam, "dst": f"{rec['dst']}/{rec['dst_len']}", "oif": index,
            "table": rec["table"], "proto": rec["proto"], "scope": rec["scope"],
            "type": rec["type"], "flags": rec.get("flags", 0),
        }
        for key in ("gateway", "prefsrc", "priority"):
            if key in rec:
                kwargs[key] = rec[key]
        return kwargs

    def put_route(self, index: int, rec: Dict[str, object]) -> bool:
        """Add a recorded route through a link; False if it is there already."""
        kwargs = self._route_kwargs(index, rec)
        try:
            self.ipr.route("add", **kwargs)
        except Exception as exc:
            if getattr(exc, "code", None) == errno.EEXIST:
                return False
            raise netlink_error(exc, f"cannot add route {rec['dst']}/{rec['dst_len']}") from exc
        return True

    def drop_route(self, index: int, rec: Dict[str, object]) -> bool:
        """Remove a recorded route through a link; False if it was not there."""
        kwargs = self._route_kwargs(index, rec)
        # Matching on scope/type/flags makes deletes miss for no good reason.
        for key in ("scope", "type", "flags", "proto"):
            kwargs.pop(key, None)
        try:
            self.ipr.route("del", **kwargs)
        except Exception as exc:
            if getattr(exc, "code", None) in (errno.ESRCH, errno.ENOENT, errno.ENODEV, errno.EADDRNOTAVAIL):
                return False
            raise netlink_error(exc, f"cannot remove route {rec['dst']}/{rec['dst_len']}") from exc
        return True

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

    def enable_features(self, name: str, features: List[str]) -> None:
        """Turn offload features back on (undo of ``disable_tx_checksum``)."""
        if not features:
            return
        ethtool = self.ethtool()
        try:
            ethtool.change_ifname(name)
            current = ethtool.get_features()
            for feature in features:
                if feature in current:
                    current[feature] = True
            ethtool.set_features(current)
        except OSError as exc:
            raise netlink_error(exc, f"cannot turn offloads back on for {name}") from exc

    def route_to(self, dst: str) -> Optional[Dict[str, object]]:
        """The kernel's route to ``dst``: {"oif", "ifname", "prefsrc", "mtu"}, or None."""
        try:
            msgs = self.ipr.route("get", dst=dst, family=_family_of(dst))
        except Exception as exc:
            if getattr(exc, "code", None) in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ESRCH):
                return None
            raise netlink_error(exc, f"cannot look up the route to {dst}") from exc
        if not msgs:
            return None
        msg = msgs[0]
        if msg["type"] != 1:  # RTN_UNICAST; local/unreachable/... are not a way out
            return {"oif": msg.get_attr("RTA_OIF"), "ifname": None, "prefsrc": None, "mtu": None,
                    "type": msg["type"]}
        oif = msg.get_attr("RTA_OIF")
        ifname = mtu = None
        if oif is not None:
            links = self.ipr.get_links(oif)
            if links:
                ifname = links[0].get_attr("IFLA_IFNAME")
                mtu = links[0].get_attr("IFLA_MTU")
        return {"oif": oif, "ifname": ifname, "prefsrc": msg.get_attr("RTA_PREFSRC"), "mtu": mtu,
                "type": msg["type"]}

    def address_owners(self) -> Dict[str, str]:
        """Every address of this namespace (link-local too) -> the link holding it."""
        names = {m["index"]: m.get_attr("IFLA_IFNAME") for m in self.ipr.get_links()}
        out = {}
        for msg in self.ipr.get_addr():
            addr = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")
            if addr:
                out[str(ipaddress.ip_address(addr))] = names.get(msg["index"], "")
        return out

