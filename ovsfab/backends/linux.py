"""Linux-bridge backend: bridges, ports and tunnels through netlink (pyroute2).

The fallback for hosts without Open vSwitch.  Everything is kernel state:

* a bridge is a ``kind=bridge`` link, created with ``vlan_filtering`` on so
  ``--vlan`` works like an OVS access port (PVID + untagged egress);
* a port is a link enslaved to the bridge (``IFLA_MASTER``);
* a VXLAN tunnel is one kernel ``vxlan`` device per (bridge, key), learning
  on, with one all-zeros FDB entry per remote (head-end replication); GRE is
  a ``gretap`` device per remote, Geneve a ``geneve`` device per remote;
* ownership lives in the interface alias (``IFLA_IFALIAS``, at most 255
  bytes) of each port and of each bridge ovsfab created: ``ovsfab:`` followed
  by compact JSON holding the same facts as the OVS backend's external_ids.
  ovsfab selects its own links by that record, never by name pattern, and the
  record lives exactly as long as the link it describes.

No python-ovs import here: a host without OVS never needs it.
"""

from __future__ import annotations

import errno
import hashlib
import ipaddress
import logging
import socket
from typing import Any, Dict, List, Optional, Tuple

from ovsfab.backends.base import KEY_ROLE, Backend, OwnedPort, PortResult
from ovsfab.backends.linux_netfilter import forward_drop_note
from ovsfab.backends.linux_netlink import (BRIDGE_VLAN_INFO_PVID, BRIDGE_VLAN_INFO_RANGE_BEGIN,
                                           BRIDGE_VLAN_INFO_RANGE_END, BRIDGE_VLAN_INFO_UNTAGGED, ZERO_MAC,
                                           BridgeNetlink)
from ovsfab.backends.linux_record import (KEY_BRIDGE, ROLE_BRIDGE, UPLINK_MAC, UPLINK_NIC, decode_record,
                                          encode_record)
from ovsfab.errors import Conflict, InvalidInput, NotFound, OperationFailed, OvsfabError, from_errno
from ovsfab.model import KEY_CONTAINER_ID, KEY_IFNAME, OWNER_KEY, OWNER_VALUE, Attachment, tunnel_overhead

__all__ = ["LinuxBackend", "decode_record", "encode_record", "vxlan_device_name", "DATAPATH"]

LOG = logging.getLogger(__name__)

#: The datapath name reported for Linux bridges.
DATAPATH = "linux"

_TUNNEL_KINDS = {"vxlan": "vxlan", "gre": "gretap", "geneve": "geneve"}
_MODULES = {"gretap": "ip_gre", "ip6gretap": "ip6_gre"}
VXLAN_PORT = 4789
GENEVE_PORT = 6081
GRE_KEY = 0x2000
GRE_CSUM = 0x8000
#: linux/ip6_tunnel.h: send no Tunnel Encapsulation Limit option.
IP6_TNL_F_IGN_ENCAP_LIMIT = 0x1
#: Linux bridge VLAN IDs (0 and 4095 are reserved by 802.1Q).
MIN_VID, MAX_VID = 1, 4094
DEFAULT_UNDERLAY_MTU = 1500


def vxlan_device_name(bridge: str, key: int) -> str:
    """The one VXLAN device of (bridge, key): ``vxl`` + 12 hex digits."""
    return "vxl" + hashlib.sha256(f"{bridge}\0vxlan\0{key}".encode()).hexdigest()[:12]


def _udp_csum(csum: Optional[str], v6: bool) -> List[Tuple[str, Any]]:
    """VXLAN/Geneve data attributes for ``--csum``/``--no-csum`` (None: the kernel's default).

    IPv4 has one switch (UDP_CSUM); over IPv6 the kernel ignores it and
    checksums unless told to send zero checksums (ZERO_CSUM6_TX) -- and the
    receiver drops those unless it accepts them (ZERO_CSUM6_RX), so
    ``--no-csum`` sets both.
    """
    if csum is None:
        return []
    on = csum == "true"
    if v6:
        return [("UDP_ZERO_CSUM6_TX", 0 if on else 1), ("UDP_ZERO_CSUM6_RX", 0 if on else 1)]
    return [("UDP_CSUM", 1 if on else 0)]


def _netlink_error(exc: Exception, what: str) -> OvsfabError:
    return from_errno(exc, what)


# ---------------------------------------------------------------------------
# The backend
# ---------------------------------------------------------------------------
class LinuxBackend(Backend):
    """Linux bridges in the current network namespace, through one rtnetlink socket."""

    kind = "linux"

    def __init__(self, timeout: float = 10.0) -> None:
        del timeout  # the socket's own receive deadline (netlink/rtnl.py) bounds every request
        try:
            self.nl = BridgeNetlink()
        except OSError as exc:
            raise _netlink_error(exc, "cannot open a netlink socket") from exc

    def close(self) -> None:
        self.nl.close()

    # -- reading ---------------------------------------------------------
    def _links(self) -> List[Dict[str, Any]]:
        try:
            return self.nl.links()
        except OSError as exc:
            raise _netlink_error(exc, "cannot list links") from exc

    def _by_name(self, name: str) -> Optional[Dict[str, Any]]:
        for ln in self._links():
            if ln["name"] == name:
                return ln
        return None

    def _bridge(self, name: str) -> Optional[Dict[str, Any]]:
        ln = self._by_name(name)
        return ln if ln is not None and ln["kind"] == "bridge" else None

    def _owned(self) -> List[Tuple[Dict[str, Any], Dict[str, str], Optional[str]]]:
        """(link, record, bridge name) of every link carrying an ovsfab record."""
        links = self._links()
        names = {ln["index"]: ln["name"] for ln in links}
        out = []
        for ln in links:
            ids = decode_record(ln["alias"])
            if ids is None:
                continue
            bridge = names.get(ln["master"]) if ln["master"] else ids.get(KEY_BRIDGE)
            if ids.get(KEY_ROLE) == "uplink":
                ids.setdefault(UPLINK_NIC, ln["name"])
                ids.setdefault(UPLINK_MAC, str(ln["mac"]).lower())
            out.append((ln, ids, bridge))
        return out

    def bridge_datapath(self, bridge: str) -> Optional[str]:
        return DATAPATH if self._bridge(bridge) is not None else None

    def port_exists(self, port: str) -> Optional[str]:
        # A port is a link enslaved to a bridge; a free-standing link of that
        # name is not (attach clears its own leftover veths by itself).
        links = self._links()
        names = {ln["index"]: ln for ln in links}
        for ln in links:
            if ln["name"] == port and ln["master"] and ln["master"] in names:
                return str(names[ln["master"]]["name"])
        return None

    def _attachment(self, ln: Dict[str, Any], ids: Dict[str, str], bridge: Optional[str]) -> Attachment:
        att = Attachment.from_external_ids(bridge or "", ln["name"], ids)
        # "ofport" is the ifindex while the port is plugged in: attach
        # treats a record without one as incomplete and re-creates it.
        att.ofport = ln["index"] if ln["master"] else None
        return att

    def list_attachments(self, bridge: Optional[str] = None) -> List[Attachment]:
        return [self._attachment(ln, ids, br) for ln, ids, br in self._owned()
                if KEY_CONTAINER_ID in ids and (bridge is None or br == bridge)]

    def find_attachment(self, container_key: str, ifname: str) -> Optional[Attachment]:
        for ln, ids, br in self._owned():
            if ids.get(KEY_CONTAINER_ID) == container_key and ids.get(KEY_IFNAME) == ifname:
                return self._attachment(ln, ids, br)
        return None

    # -- datapath and offloads --------------------------------------------
    def new_bridge_datapath(self, bridge: str, requested: str) -> Tuple[str, Optional[str]]:
        if requested not in ("auto", DATAPATH):
            raise InvalidInput(f"--datapath {requested} applies to OVS bridges; a Linux bridge has one datapath",
                               "leave out --datapath or use --backend ovs")
        return DATAPATH, None

    def traffic_notes(self, bridge: str) -> List[str]:
        note = forward_drop_note(bridge)
        return [note] if note else []

    def needs_tx_csum_off(self, datapath: str) -> bool:
        # The kernel bridge forwards skbs: partial checksums are finished by
        # whoever transmits them, as between any two veths.
        return False

    # -- writing -----------------------------------------------------------
    def _set(self, what: str, index: int, **change: Any) -> None:
        """One link change (see BridgeNetlink.set), its failure worded as ``what``."""
        try:
            self.nl.set(index, **change)
        except OSError as exc:
            raise _netlink_error(exc, what) from exc

    def _ensure_bridge(self, bridge: str, need_vlan: bool = False) -> Tuple[Dict[str, Any], bool]:
        """The bridge link (created, up, with vlan_filtering, if missing) and whether it was created."""
        ln = self._by_name(bridge)
        if ln is not None:
            if ln["kind"] != "bridge":
                raise Conflict(f"interface {bridge} exists and is not a Linux bridge (kind {ln['kind'] or 'none'})",
                               "choose another bridge name, or --backend ovs for an OVS bridge")
            if need_vlan and not self._vlan_filtering(ln):
                raise Conflict(f"Linux bridge {bridge} has VLAN filtering off, so --vlan cannot isolate",
                               f"enable it (ip link set {bridge} type bridge vlan_filtering 1) or attach without --vlan")
            return ln, False
        alias = encode_record({OWNER_KEY: OWNER_VALUE, KEY_ROLE: ROLE_BRIDGE})
        try:
            try:
                self.nl.add(bridge, "bridge", [("VLAN_FILTERING", 1)])
            except OSError as exc:
                if exc.errno != errno.EOPNOTSUPP or need_vlan:
                    raise
                # A kernel without CONFIG_BRIDGE_VLAN_FILTERING: fine without --vlan.
                LOG.debug("kernel bridge has no VLAN filtering; %s created without it", bridge)
                self.nl.add(bridge, "bridge")
        except OSError as exc:
            if exc.errno == errno.EOPNOTSUPP and need_vlan:
                raise OperationFailed(f"this kernel's bridge has no VLAN filtering (CONFIG_BRIDGE_VLAN_FILTERING), "
                                      f"so --vlan cannot isolate on Linux bridge {bridge}",
                                      "attach without --vlan, or use --backend ovs") from exc
            raise _netlink_error(exc, f"cannot create Linux bridge {bridge}") from exc
        created = self._by_name(bridge)
        if created is None:
            raise OperationFailed(f"Linux bridge {bridge} vanished right after creation")
        try:
            # A Linux bridge forwards only while up (an OVS bridge's datapath
            # forwards regardless of its internal port).
            # RTM_NEWLINK ignores IFLA_IFALIAS: the record is set right after.
            self._set(f"cannot bring up bridge {bridge}", created["index"], up=True, alias=alias)
        except BaseException:
            self.nl.delete(created["index"])
            raise
        return created, True

    @staticmethod
    def _vlan_filtering(ln: Dict[str, Any]) -> bool:
        data = ln.get("data")
        return bool(data is not None and data.get_attr("IFLA_BR_VLAN_FILTERING"))

    def _drop_new_bridge(self, bridge: Dict[str, Any], created: bool) -> None:
        if created:
            try:
                self.nl.delete(bridge["index"])
            except OSError as exc:  # keep the first error
                LOG.error("could not remove bridge %s again: %s", bridge["name"], exc)

    def _plug(self, bridge: Dict[str, Any], port: str, alias: str) -> int:
        ln = self._by_name(port)
        if ln is None:
            raise NotFound(f"no interface named {port} to plug into {bridge['name']}")
        if ln["master"] and ln["master"] != bridge["index"]:
            raise Conflict(f"{port} is already enslaved to another device (ifindex {ln['master']})",
                           f"release it first (ip link set {port} nomaster)")
        # Master and alias in one request: the record and the port appear together.
        self._set(f"cannot plug {port} into {bridge['name']}", ln["index"], master=bridge["index"], alias=alias)
        return int(ln["index"])

    def _vlan(self, idx: int, port: str, tag: Optional[int], trunk: bool = False) -> None:
        """Access port (PVID ``tag``, untagged egress) or trunk (every VLAN, VLAN 1 untagged)."""
        try:
            if tag is not None:
                # A new port starts as an access port of the default PVID 1.
                self.nl.vlans(idx, remove=[1], add=[(tag, BRIDGE_VLAN_INFO_PVID | BRIDGE_VLAN_INFO_UNTAGGED)])
            elif trunk:
                self.nl.vlans(idx, add=[(MIN_VID + 1, BRIDGE_VLAN_INFO_RANGE_BEGIN),
                                        (MAX_VID, BRIDGE_VLAN_INFO_RANGE_END)])
        except OSError as exc:
            raise _netlink_error(exc, f"cannot set the VLANs of {port}") from exc

    def add_port(self, bridge: str, port: str, *, external_ids: Dict[str, str],
                 tag: Optional[int] = None, datapath: str = DATAPATH,
                 may_exist: bool = False) -> PortResult:
        if tag is not None and not MIN_VID <= tag <= MAX_VID:
            raise InvalidInput(f"VLAN {tag} cannot be a Linux bridge VLAN", f"give {MIN_VID}..{MAX_VID}")
        ids = dict(external_ids)
        ids[KEY_BRIDGE] = bridge
        alias = encode_record(ids)
        br, created = self._ensure_bridge(bridge, need_vlan=tag is not None)
        if may_exist:
            ln = self._by_name(port)
            if ln is not None and ln["master"] == br["index"] and decode_record(ln["alias"]) is not None:
                return PortResult(ofport=ln["index"], created_bridge=False, datapath=DATAPATH)
        try:
            idx = self._plug(br, port, alias)
            try:
                if self._vlan_filtering(br):
                    self._vlan(idx, port, tag)
            except BaseException:
                self._unplug(idx)
                raise
        except BaseException:
            self._drop_new_bridge(br, created)
            raise
        LOG.debug("port %s on Linux bridge %s: ifindex %s, vlan %s (bridge created: %s)",
                  port, bridge, idx, tag, created)
        return PortResult(ofport=idx, created_bridge=created, datapath=DATAPATH)

    def _unplug(self, idx: int) -> None:
        self._set(f"cannot unplug interface {idx}", idx, master=0, alias="")

    def del_port(self, port: str, *, if_exists: bool = False) -> bool:
        ln = self._by_name(port)
        ids = decode_record(ln["alias"]) if ln is not None else None
        if ln is None or (not ln["master"] and ids is None):
            if if_exists:
                return False
            raise NotFound(f"no Linux bridge port named {port}")
        if ids is not None and ids.get(KEY_ROLE) == "tunnel":
            # A tunnel device exists only as a port (as in OVS): it goes.
            return self._delete(ln["index"], port)
        self._unplug(ln["index"])
        return True

    def _delete(self, idx: int, name: str) -> bool:
        try:
            self.nl.delete(idx)
        except OSError as exc:
            if exc.errno == errno.ENODEV:
                return False
            raise _netlink_error(exc, f"cannot delete {name}") from exc
        return True

    def del_br(self, bridge: str, *, if_exists: bool = False, only_if_empty: bool = True) -> bool:
        br = self._bridge(bridge)
        if br is None:
            if if_exists:
                return False
            raise NotFound(f"no Linux bridge named {bridge}")
        if only_if_empty and any(ln["master"] == br["index"] for ln in self._links()):
            return False
        return self._delete(br["index"], bridge)

    # -- uplinks -----------------------------------------------------------
    def owned_ports(self, role: str, bridge: Optional[str] = None) -> List[OwnedPort]:
        out = []
        for ln, ids, br in self._owned():
            if ids.get(KEY_ROLE) != role or br is None or (bridge is not None and br != bridge):
                continue
            if role == "tunnel":
                out.extend(self._tunnel_records(ln, ids, br))
            else:
                out.append(OwnedPort(bridge=br, port=ln["name"], datapath=DATAPATH, external_ids=ids,
                                     iface_type=ln["kind"] or "",
                                     ofport=ln["index"] if ln["master"] else None))
        return sorted(out, key=lambda r: (r.bridge, r.port, r.external_ids.get("ovsfab-tunnel-remote", "")))

    def bridge_other_config(self, bridge: str) -> Dict[str, str]:
        # The nearest thing to OVS's other_config:hwaddr: the bridge's MAC
        # now, so an uplink removed from an existing bridge can put it back.
        br = self._bridge(bridge)
        return {"hwaddr": str(br["mac"])} if br is not None and br["mac"] else {}

    def internal_ports(self) -> Dict[str, Tuple[str, str]]:
        # A Linux bridge's own device plays the part of OVS's internal port.
        return {ln["name"]: (ln["name"], DATAPATH) for ln in self._links() if ln["kind"] == "bridge"}

    def add_uplink_port(self, bridge: str, port: str, *, external_ids: Dict[str, str],
                        datapath: str, hwaddr: Optional[str]) -> PortResult:
        ids = dict(external_ids)
        ids[KEY_BRIDGE] = bridge
        alias = encode_record(ids)
        br, created = self._ensure_bridge(bridge)
        try:
            if hwaddr:
                # Same MAC as the NIC: neighbours' ARP/ND caches stay valid.
                self._set(f"cannot set the MAC of {bridge}", br["index"], address=hwaddr)
            idx = self._plug(br, port, alias)
            try:
                if self._vlan_filtering(br):
                    self._vlan(idx, port, None, trunk=True)
            except BaseException:
                self._unplug(idx)
                raise
        except BaseException:
            self._drop_new_bridge(br, created)
            raise
        return PortResult(ofport=idx, created_bridge=created, datapath=DATAPATH)

    def del_uplink_port(self, port: str, *, hwaddr: Optional[str]) -> bool:
        ln = self._by_name(port)
        if ln is None or decode_record(ln["alias"]) is None:
            return False
        master = ln["master"]
        self._unplug(ln["index"])
        if hwaddr and master:
            self._set("cannot restore the bridge's MAC", master, address=hwaddr)
        return True

    # -- tunnels -----------------------------------------------------------
    def _fdb(self, idx: int) -> Tuple[List[str], List[str]]:
        """A VXLAN device's own forwarding entries, in one dump: (remotes, ``MAC dst REMOTE`` lines).

        Remotes are the destinations of its all-zeros entries.  Entries
        without a destination are the bridge's (one per VLAN on a
        vlan_filtering bridge: thousands), not the device's: left out.
        """
        remotes, lines = set(), set()
        try:
            entries = self.nl.fdb(idx)
        except OSError as exc:
            raise _netlink_error(exc, f"cannot list the forwarding entries of interface {idx}") from exc
        for mac, dst in entries:
            if not dst:
                continue
            lines.add(f"{mac} dst {dst}")
            if mac == ZERO_MAC:
                remotes.add(dst)
        return sorted(remotes), sorted(lines)

    def _fdb_remotes(self, idx: int) -> List[str]:
        """Remotes of a VXLAN device: the destinations of its all-zeros FDB entries."""
        return self._fdb(idx)[0]

    def _tunnel_records(self, ln: Dict[str, Any], ids: Dict[str, str], br: str) -> List[OwnedPort]:
        options = {k[len("opt:"):]: v for k, v in ids.items() if k.startswith("opt:")}
        key = ids.get("ovsfab-tunnel-key", "0")
        if key != "0":
            options["key"] = key
        base = {k: v for k, v in ids.items() if not k.startswith("opt:")}
        fdb: Optional[List[str]] = None
        if ln["kind"] == "vxlan":
            remotes, fdb = self._fdb(ln["index"])
        else:
            remotes = [ids.get("ovsfab-tunnel-remote", "")]
        out = []
        for remote in remotes:
            rec_ids = dict(base)
            rec_ids["ovsfab-tunnel-remote"] = remote
            out.append(OwnedPort(bridge=br, port=ln["name"], datapath=DATAPATH, external_ids=rec_ids,
                                 iface_type=ids.get("ovsfab-tunnel-type", ""),
                                 options=dict(options, remote_ip=remote),
                                 ofport=ln["index"] if ln["master"] else None,
                                 carrier=ln["carrier"], fdb=fdb))
        return out

    def _underlay(self, remote: str) -> Tuple[int, Optional[str]]:
        """(underlay MTU, the source address the kernel would use) towards ``remote``."""
        try:
            mtu, source = self.nl.route(remote)
        except OSError as exc:
            raise _netlink_error(exc, f"cannot look up the route to {remote}") from exc
        return mtu or DEFAULT_UNDERLAY_MTU, source  # no route yet: the tunnel works once there is one

    def _underlay_mtu(self, remote: str) -> int:
        return self._underlay(remote)[0]

    def add_tunnel_port(self, bridge: str, port: str, *, iface_type: str, options: Dict[str, str],
                        external_ids: Dict[str, str], datapath: str = DATAPATH,
                        bfd: Optional[Dict[str, str]] = None) -> PortResult:
        # No CAP_BFD: the kernel's tunnel devices have no BFD (tunnel_add never asks).
        if iface_type not in _TUNNEL_KINDS:
            raise InvalidInput(f"tunnel type {iface_type!r} is unknown", "use vxlan, gre or geneve")
        remote = options["remote_ip"]
        key = int(options.get("key", "0"))
        v6 = ipaddress.ip_address(remote).version == 6
        csum = options.get("csum")
        ids = {k: v for k, v in external_ids.items()}
        for opt in ("dst_port", "local_ip", "csum"):
            if opt in options:
                ids[f"opt:{opt}"] = options[opt]
        ids[KEY_BRIDGE] = bridge
        if iface_type == "vxlan":
            return self._add_vxlan_remote(bridge, ids, remote, key, options, v6)
        ids_one = dict(ids)
        alias = encode_record(ids_one)
        underlay_mtu, source = self._underlay(remote)
        mtu = underlay_mtu - tunnel_overhead(iface_type, v6, key, csum == "true")
        local = options.get("local_ip")
        data: List[Tuple[str, Any]]
        if iface_type == "gre":
            kind = "ip6gretap" if v6 else "gretap"
            flags = (GRE_KEY if key else 0) | (GRE_CSUM if csum == "true" else 0)
            # The kernel reads GRE flags as big-endian; pyroute2 encodes IPv6 GRE's as host order.
            wire_flags = socket.htons(flags) if v6 else flags
            data = [("REMOTE", remote), ("IFLAGS", wire_flags), ("OFLAGS", wire_flags)]
            if key:
                data += [("IKEY", key), ("OKEY", key)]
            if v6:
                # An ip6gretap without a local address sends nothing (ip6_tnl_xmit_ctl
                # finds no transmit capability for "::"; found in the qemu guests):
                # it gets the source the kernel would use towards the remote now.
                local = local or source
                if not local:
                    raise OperationFailed(f"no IPv6 source address to reach {remote}: an ip6gretap device "
                                          "needs a local address",
                                          "add an IPv6 address and route towards the remote, or pass --local-ip")
                # No encapsulation-limit option (8 bytes per packet by default, which
                # tunnel_overhead does not count): what ``ip ... encaplimit none`` sets.
                data.append(("FLAGS", IP6_TNL_F_IGN_ENCAP_LIMIT))
            if local:
                data.append(("LOCAL", local))
        else:
            kind = "geneve"
            data = [("ID", key), ("REMOTE6" if v6 else "REMOTE", remote),
                    ("PORT", int(options.get("dst_port", GENEVE_PORT)))]
            data += _udp_csum(csum, v6)
        return self._add_tunnel_device(bridge, port, kind, data, mtu, alias)

    def _add_tunnel_device(self, bridge: str, port: str, kind: str, data: List[Tuple[str, Any]], mtu: int,
                           alias: str) -> PortResult:
        br, created = self._ensure_bridge(bridge)
        try:
            try:
                self.nl.add(port, kind, data, mtu=mtu)
            except OSError as exc:
                if exc.errno == errno.EOPNOTSUPP:
                    raise OperationFailed(f"this kernel cannot create {kind} devices (not built in "
                                          "or module not loaded)",
                                          f"load its module (modprobe {_MODULES.get(kind, kind)}), "
                                          "use another --type, or --backend ovs") from exc
                raise _netlink_error(exc, f"cannot create {kind} device {port}") from exc
            ln = self._by_name(port)
            if ln is None:
                raise OperationFailed(f"tunnel device {port} vanished right after creation")
            try:
                self._set(f"cannot plug {port} into {bridge}", ln["index"], master=br["index"], alias=alias)
                # Split horizon, like OVS's protected ports: frames from one
                # tunnel never leave through another (no loop in a full mesh).
                try:
                    self.nl.isolate(ln["index"])
                except OSError as exc:
                    raise _netlink_error(exc, f"cannot isolate tunnel port {port}") from exc
                if self._vlan_filtering(br):
                    self._vlan(ln["index"], port, None, trunk=True)
                self._set(f"cannot bring up {port}", ln["index"], up=True)
            except BaseException:
                self._delete(ln["index"], port)
                raise
        except BaseException:
            self._drop_new_bridge(br, created)
            raise
        return PortResult(ofport=ln["index"], created_bridge=created, datapath=DATAPATH, port=port)

    def _add_vxlan_remote(self, bridge: str, ids: Dict[str, str], remote: str, key: int,
                          options: Dict[str, str], v6: bool) -> PortResult:
        # One device per (bridge, key); each remote is an all-zeros FDB entry
        # (head-end replication of broadcast/unknown/multicast frames).
        found = None
        for ln, rec, br in self._owned():
            if (br == bridge and rec.get(KEY_ROLE) == "tunnel" and rec.get("ovsfab-tunnel-type") == "vxlan"
                    and rec.get("ovsfab-tunnel-key") == str(key)):
                found = (ln, rec)
        dev_ids = {k: v for k, v in ids.items() if k != "ovsfab-tunnel-remote"}
        if found is not None:
            ln, rec = found
            for opt in ("opt:dst_port", "opt:local_ip", "opt:csum"):
                if rec.get(opt) != dev_ids.get(opt):
                    raise Conflict(f"the VXLAN device {ln['name']} of key {key} on {bridge} has other settings "
                                   f"({opt[4:]} {rec.get(opt, 'default')})",
                                   "use the same --dstport/--local-ip/--csum for every remote of one key")
            self._fdb_append(ln["index"], ln["name"], remote)
            return PortResult(ofport=ln["index"], created_bridge=False, datapath=DATAPATH, port=ln["name"])
        name = vxlan_device_name(bridge, key)
        local = options.get("local_ip")
        data: List[Tuple[str, Any]] = [("ID", key), ("LEARNING", 1),
                                       ("PORT", int(options.get("dst_port", VXLAN_PORT)))]
        if local:
            data.append(("LOCAL6" if v6 else "LOCAL", local))
        elif v6:
            # A VXLAN device is IPv4 unless an address says otherwise: the kernel
            # refused IPv6 FDB entries (EAFNOSUPPORT, found in the qemu guests).
            # The unspecified address makes it IPv6, the source still chosen by route.
            data.append(("LOCAL6", "::"))
        data += _udp_csum(options.get("csum"), v6)
        mtu = self._underlay_mtu(remote) - tunnel_overhead("vxlan", v6, key, False)
        res = self._add_tunnel_device(bridge, name, "vxlan", data, mtu, encode_record(dev_ids))
        try:
            self._fdb_append(int(res.ofport or 0), name, remote)
        except BaseException:
            self._delete(int(res.ofport or 0), name)
            if res.created_bridge:
                self.del_br(bridge, if_exists=True)
            raise
        return res

    def _fdb_append(self, idx: int, name: str, remote: str) -> None:
        if remote in self._fdb_remotes(idx):
            return
        try:
            self.nl.fdb_append(idx, remote)
        except OSError as exc:
            if exc.errno == errno.EAFNOSUPPORT:
                fam, other = ("IPv6", "IPv4") if ipaddress.ip_address(remote).version == 6 else ("IPv4", "IPv6")
                raise Conflict(f"the VXLAN device {name} is for {other} remotes, not {fam} {remote}",
                               "use another --key for it (one device per address family)") from exc
            raise _netlink_error(exc, f"cannot add remote {remote} to {name}") from exc

    def del_tunnel_port(self, port: str, *, remote: Optional[str] = None) -> bool:
        ln = self._by_name(port)
        if ln is None:
            return False
        if ln["kind"] == "vxlan" and remote is not None:
            remotes = self._fdb_remotes(ln["index"])
            if remote in remotes and len(remotes) > 1:
                try:
                    self.nl.fdb_del(ln["index"], remote)
                except OSError as exc:
                    raise _netlink_error(exc, f"cannot remove remote {remote} from {port}") from exc
                return True
        return self.del_port(port, if_exists=True)
