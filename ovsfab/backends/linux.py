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
import json
import logging
import os
import socket
from typing import Any, Dict, List, Optional, Tuple

from ovsfab.backends.base import KEY_ROLE, Backend, OwnedPort, PortResult
from ovsfab.errors import Conflict, InvalidInput, NotFound, OperationFailed, OvsfabError, from_errno
from ovsfab.model import (KEY_ADDRESSES, KEY_CONTAINER_ID, KEY_CONTAINER_NAME, KEY_IFNAME, KEY_MAC, KEY_MTU,
                          KEY_TARGET, KEY_VLAN, OVS_DOCKER_CONTAINER_ID, OVS_DOCKER_CONTAINER_IFACE, OWNER_KEY,
                          OWNER_VALUE, Attachment, tunnel_overhead)

LOG = logging.getLogger(__name__)

IFF_LOWER_UP = 0x10000  # linux/if.h: the carrier is up

#: The alias of every link ovsfab owns starts with this.
ALIAS_PREFIX = "ovsfab:"
#: IFALIASZ is 256 including the terminating NUL.
MAX_ALIAS = 255
#: The datapath name reported for Linux bridges.
DATAPATH = "linux"
#: Role of a bridge ovsfab created (recorded in the bridge's own alias).
ROLE_BRIDGE = "bridge"
#: Key recording which bridge an attachment was plugged into (Linux only:
#: in OVS the Port row's bridge says it).
KEY_BRIDGE = "ovsfab-bridge"

# Recorded key -> short key in the alias.  The alias holds 255 bytes, so the
# long external_ids names are abbreviated; decoding gives the full names back
# so the operations read the same records from both backends.
_SHORT = {
    KEY_ROLE: "r", KEY_CONTAINER_ID: "c", KEY_CONTAINER_NAME: "n", KEY_IFNAME: "i", KEY_TARGET: "t",
    KEY_ADDRESSES: "a", KEY_MAC: "m", KEY_MTU: "u", KEY_VLAN: "v", KEY_BRIDGE: "b",
    "ovsfab-uplink-nic": "N", "ovsfab-uplink-mac": "M", "ovsfab-uplink-addresses": "A",
    "ovsfab-uplink-routes": "R", "ovsfab-uplink-offloads": "O", "ovsfab-uplink-prev-hwaddr": "P",
    "ovsfab-uplink-created-bridge": "C", "ovsfab-uplink-bridge-was-down": "D",
    "ovsfab-tunnel-remote": "tr", "ovsfab-tunnel-type": "tt", "ovsfab-tunnel-key": "tk",
    # tunnel options as the user gave them (OVS keeps them in Interface.options)
    "opt:dst_port": "op", "opt:local_ip": "ol", "opt:csum": "oc",
}
_LONG = {v: k for k, v in _SHORT.items()}
_UPLINK_ADDRS = "ovsfab-uplink-addresses"
_UPLINK_ROUTES = "ovsfab-uplink-routes"

#: Route fields and their kernel defaults; only differences are recorded.
_ROUTE_FIELDS = (("priority", "m", None), ("table", "T", 254), ("proto", "p", 3), ("scope", "s", 0),
                 ("type", "y", 1), ("flags", "f", 0), ("pref", "P", None), ("prefsrc", "S", None))

_TUNNEL_KINDS = {"vxlan": "vxlan", "gre": "gretap", "geneve": "geneve"}
_MODULES = {"gretap": "ip_gre", "ip6gretap": "ip6_gre"}
_UPLINK_NIC = "ovsfab-uplink-nic"
_UPLINK_MAC = "ovsfab-uplink-mac"
VXLAN_PORT = 4789
GENEVE_PORT = 6081
GRE_KEY = 0x2000
GRE_CSUM = 0x8000
#: Linux bridge VLAN IDs (0 and 4095 are reserved by 802.1Q).
MIN_VID, MAX_VID = 1, 4094
DEFAULT_UNDERLAY_MTU = 1500


# ---------------------------------------------------------------------------
# The alias record (pure, unit-tested)
# ---------------------------------------------------------------------------
def _pack_addrs(text: str) -> List[str]:
    out = []
    for rec in json.loads(text or "[]"):
        item = f"{rec['address']}/{rec['prefixlen']}"
        if rec.get("flags"):
            item += f" f{int(rec['flags'])}"
        if rec.get("broadcast"):
            std = ipaddress.ip_interface(item.split()[0]).network.broadcast_address
            item += " b+" if rec["broadcast"] == str(std) else f" b{rec['broadcast']}"
        out.append(item)
    return out


def _unpack_addrs(items: List[str]) -> str:
    recs = []
    for item in items:
        head, *opts = item.split()
        addr, plen = head.rsplit("/", 1)
        rec: Dict[str, object] = {"family": 6 if ":" in addr else 4, "address": addr, "prefixlen": int(plen),
                                  "flags": 0}
        for opt in opts:
            if opt[0] == "f":
                rec["flags"] = int(opt[1:])
            elif opt[0] == "b":
                rec["broadcast"] = (str(ipaddress.ip_interface(head).network.broadcast_address)
                                    if opt == "b+" else opt[1:])
        recs.append(rec)
    return json.dumps(recs, sort_keys=True)


def _pack_routes(text: str) -> List[str]:
    out = []
    for r in json.loads(text or "[]"):
        parts = [f"{r['dst']}/{r['dst_len']}"]
        if r.get("gateway"):
            parts.append(f"g{r['gateway']}")
        for key, short, default in _ROUTE_FIELDS:
            if key in r and r[key] != default:
                parts.append(f"{short}{r[key]}")
        out.append(" ".join(parts))
    return out


def _unpack_routes(items: List[str]) -> str:
    recs = []
    for item in items:
        head, *opts = item.split()
        dst, dst_len = head.rsplit("/", 1)
        rec: Dict[str, object] = {"family": 6 if ":" in dst else 4, "dst": dst, "dst_len": int(dst_len)}
        for key, _short, default in _ROUTE_FIELDS:
            if default is not None:
                rec[key] = default
        by_short = {short: key for key, short, _d in _ROUTE_FIELDS}
        for opt in opts:
            if opt[0] == "g":
                rec["gateway"] = opt[1:]
            elif opt[0] == "S":
                rec["prefsrc"] = opt[1:]
            elif opt[0] in by_short:
                rec[by_short[opt[0]]] = int(opt[1:])
        recs.append(rec)
    return json.dumps(recs, sort_keys=True)


def encode_record(ids: Dict[str, str]) -> str:
    """The alias text recording ``ids`` (external_ids vocabulary); raises if it does not fit."""
    rec: Dict[str, Any] = {}
    for key, value in ids.items():
        if key in (OWNER_KEY, OVS_DOCKER_CONTAINER_ID, OVS_DOCKER_CONTAINER_IFACE) or value in ("", None):
            continue  # implied by the prefix / rebuilt on decoding
        if key in (_UPLINK_NIC, _UPLINK_MAC):
            continue  # the NIC's own name and MAC: read back from the link (see LinuxBackend._owned)
        if key == KEY_TARGET and value == ids.get(KEY_CONTAINER_ID):
            continue  # Docker targets record their ID twice in OVS
        if key == _UPLINK_ADDRS:
            rec[_SHORT[key]] = _pack_addrs(value)
        elif key == _UPLINK_ROUTES:
            rec[_SHORT[key]] = _pack_routes(value)
        else:
            rec[_SHORT.get(key, key)] = value
    text = ALIAS_PREFIX + json.dumps(rec, separators=(",", ":"), sort_keys=True)
    if len(text.encode()) > MAX_ALIAS:
        raise InvalidInput(f"ovsfab's ownership record ({len(text.encode())} bytes) does not fit the "
                           f"{MAX_ALIAS}-byte interface alias the Linux backend keeps it in",
                           "use a shorter container name, fewer addresses/routes, or the OVS backend")
    return text


def decode_record(alias: Optional[str]) -> Optional[Dict[str, str]]:
    """external_ids from an alias written by :func:`encode_record`; None if not ovsfab's."""
    if not alias or not alias.startswith(ALIAS_PREFIX):
        return None
    try:
        rec = json.loads(alias[len(ALIAS_PREFIX):])
    except ValueError:
        return None
    if not isinstance(rec, dict):
        return None
    ids: Dict[str, str] = {OWNER_KEY: OWNER_VALUE}
    for short, value in rec.items():
        key = _LONG.get(short, short)
        if key == _UPLINK_ADDRS:
            ids[key] = _unpack_addrs(value)
        elif key == _UPLINK_ROUTES:
            ids[key] = _unpack_routes(value)
        else:
            ids[key] = str(value)
    if KEY_CONTAINER_ID in ids:
        ids.setdefault(KEY_TARGET, ids[KEY_CONTAINER_ID])
        ids[OVS_DOCKER_CONTAINER_ID] = ids[KEY_CONTAINER_ID]
        ids[OVS_DOCKER_CONTAINER_IFACE] = ids.get(KEY_IFNAME, "")
    return ids


def vxlan_device_name(bridge: str, key: int) -> str:
    """The one VXLAN device of (bridge, key): ``vxl`` + 12 hex digits."""
    return "vxl" + hashlib.sha256(f"{bridge}\0vxlan\0{key}".encode()).hexdigest()[:12]


def br_netfilter_loaded() -> bool:
    """True when br_netfilter is loaded: its sysctls exist."""
    return os.path.isdir("/proc/sys/net/bridge")


def bridged_traffic_hits_iptables() -> bool:
    """True when bridged IPv4 frames in this namespace traverse iptables FORWARD.

    The per-namespace switch ``bridge-nf-call-iptables`` is OR-ed with each
    bridge's own ``nf_call_iptables`` by the kernel, so a bridge cannot opt
    out by itself once the namespace-wide switch is on.
    """
    try:
        with open("/proc/sys/net/bridge/bridge-nf-call-iptables", encoding="ascii") as fh:
            return fh.read().strip() == "1"
    except OSError:
        return False


def iptables_forward_policy() -> Tuple[Optional[str], bool]:
    """(policy of the iptables FORWARD chain, whether a DOCKER-USER chain exists), read over nfnetlink.

    Policy is "drop", "accept", or None when it cannot be read (iptables-legacy,
    no nf_tables, no filter table).
    """
    try:
        from pyroute2.nftables.main import NFTables  # noqa: PLC0415

        nft = NFTables(nfgen_family=socket.AF_INET)
        try:
            chains = [(c.get_attr("NFTA_CHAIN_TABLE"), c.get_attr("NFTA_CHAIN_NAME"),
                       c.get_attr("NFTA_CHAIN_POLICY")) for c in nft.get_chains()]
        finally:
            nft.close()
    except Exception as exc:  # best effort: a warning must never fail an operation
        LOG.debug("cannot read nf_tables chains: %s", exc)
        return None, False
    policy = None
    for table, name, pol in chains:
        if table == "filter" and name == "FORWARD" and pol is not None:
            policy = "drop" if int(pol) == 0 else "accept"
    docker_user = any(table == "filter" and name == "DOCKER-USER" for table, name, _p in chains)
    return policy, docker_user


def forward_drop_note(bridge: str) -> Optional[str]:
    """A one-line warning with the exact remedy when bridged traffic on ``bridge`` would be dropped.

    With br_netfilter loaded and ``bridge-nf-call-iptables`` on (its default),
    frames bridged between two ports of a Linux bridge traverse iptables
    FORWARD; Docker sets that chain's policy to DROP.  A bridge cannot opt
    out by itself (the kernel ORs its nf_call_iptables with the namespace
    switch), and ovsfab runs no iptables, so it says what to run.
    """
    if not br_netfilter_loaded() or not bridged_traffic_hits_iptables():
        return None
    policy, docker_user = iptables_forward_policy()
    if policy != "drop":
        return None
    chain = "DOCKER-USER" if docker_user else "FORWARD"
    return (f"br_netfilter passes bridged traffic on {bridge} through iptables FORWARD, whose policy is DROP "
            f"(Docker sets it), so it is dropped; allow it with: iptables -I {chain} -i {bridge} -o {bridge} "
            f"-j ACCEPT (and remove it with -D when {bridge} goes)")


def _netlink_error(exc: Exception, what: str) -> OvsfabError:
    return from_errno(exc, what)


# ---------------------------------------------------------------------------
# The backend
# ---------------------------------------------------------------------------
class LinuxBackend(Backend):
    """Linux bridges in the current network namespace, through one rtnetlink socket."""

    kind = "linux"

    def __init__(self, timeout: float = 10.0) -> None:
        from pyroute2 import IPRoute  # noqa: PLC0415 - lazy: ~180 ms

        del timeout  # netlink answers at once or fails; nothing to wait for
        try:
            self.ipr = IPRoute()
        except OSError as exc:
            raise _netlink_error(exc, "cannot open a netlink socket") from exc

    def close(self) -> None:
        self.ipr.close()

    # -- reading ---------------------------------------------------------
    def _links(self) -> List[Dict[str, Any]]:
        out = []
        for msg in self.ipr.get_links():
            info = msg.get_attr("IFLA_LINKINFO")
            kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
            data = info.get_attr("IFLA_INFO_DATA") if info is not None else None
            out.append({"index": int(msg["index"]), "name": msg.get_attr("IFLA_IFNAME"), "kind": kind,
                        "master": msg.get_attr("IFLA_MASTER"), "alias": msg.get_attr("IFLA_IFALIAS"),
                        "mac": msg.get_attr("IFLA_ADDRESS"), "mtu": msg.get_attr("IFLA_MTU"),
                        "up": bool(msg["flags"] & 1), "carrier": bool(msg["flags"] & IFF_LOWER_UP),
                        "data": data})
        return out

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
                ids.setdefault(_UPLINK_NIC, ln["name"])
                ids.setdefault(_UPLINK_MAC, str(ln["mac"]).lower())
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
    def _set(self, what: str, **kwargs: Any) -> None:
        try:
            self.ipr.link("set", **kwargs)
        except Exception as exc:  # NetlinkError
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
                self.ipr.link("add", ifname=bridge, kind="bridge", br_vlan_filtering=1)
            except Exception as exc:
                if getattr(exc, "code", None) != errno.EOPNOTSUPP or need_vlan:
                    raise
                # A kernel without CONFIG_BRIDGE_VLAN_FILTERING: fine without --vlan.
                LOG.debug("kernel bridge has no VLAN filtering; %s created without it", bridge)
                self.ipr.link("add", ifname=bridge, kind="bridge")
        except Exception as exc:
            if getattr(exc, "code", None) == errno.EOPNOTSUPP and need_vlan:
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
            self._set(f"cannot bring up bridge {bridge}", index=created["index"], state="up", ifalias=alias)
        except BaseException:
            self.ipr.link("del", index=created["index"])
            raise
        return created, True

    @staticmethod
    def _vlan_filtering(ln: Dict[str, Any]) -> bool:
        data = ln.get("data")
        return bool(data is not None and data.get_attr("IFLA_BR_VLAN_FILTERING"))

    def _drop_new_bridge(self, bridge: Dict[str, Any], created: bool) -> None:
        if created:
            try:
                self.ipr.link("del", index=bridge["index"])
            except Exception as exc:  # keep the first error
                LOG.error("could not remove bridge %s again: %s", bridge["name"], exc)

    def _plug(self, bridge: Dict[str, Any], port: str, alias: str) -> int:
        ln = self._by_name(port)
        if ln is None:
            raise NotFound(f"no interface named {port} to plug into {bridge['name']}")
        if ln["master"] and ln["master"] != bridge["index"]:
            raise Conflict(f"{port} is already enslaved to another device (ifindex {ln['master']})",
                           f"release it first (ip link set {port} nomaster)")
        # Master and alias in one request: the record and the port appear together.
        self._set(f"cannot plug {port} into {bridge['name']}", index=ln["index"], master=bridge["index"],
                  ifalias=alias)
        return int(ln["index"])

    def _vlan(self, idx: int, port: str, tag: Optional[int], trunk: bool = False) -> None:
        """Access port (PVID ``tag``, untagged egress) or trunk (every VLAN, VLAN 1 untagged)."""
        try:
            if tag is not None:
                # A new port starts as an access port of the default PVID 1.
                self.ipr.vlan_filter("del", index=idx, vlan_info={"vid": 1})
                self.ipr.vlan_filter("add", index=idx, vlan_info={"vid": tag, "pvid": True})
            elif trunk:
                self.ipr.vlan_filter("add", index=idx, vlan_info={"vid": f"{MIN_VID + 1}-{MAX_VID}"})
        except Exception as exc:
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
        self._set(f"cannot unplug interface {idx}", index=idx, master=0, ifalias="")

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
            self.ipr.link("del", index=idx)
        except Exception as exc:
            if getattr(exc, "code", None) == errno.ENODEV:
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
                self._set(f"cannot set the MAC of {bridge}", index=br["index"], address=hwaddr)
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
            self._set("cannot restore the bridge's MAC", index=master, address=hwaddr)
        return True

    # -- tunnels -----------------------------------------------------------
    def _fdb(self, idx: int) -> Tuple[List[str], List[str]]:
        """A VXLAN device's own forwarding entries, in one dump: (remotes, ``MAC dst REMOTE`` lines).

        Remotes are the destinations of its all-zeros entries.  Entries
        without a destination are the bridge's (one per VLAN on a
        vlan_filtering bridge: thousands), not the device's: left out.
        """
        remotes, lines = set(), set()
        for msg in self.ipr.get_neighbours(family=socket.AF_BRIDGE, ifindex=idx):
            dst = msg.get_attr("NDA_DST")
            if msg["ifindex"] != idx or not dst:
                continue
            dst = str(ipaddress.ip_address(dst))
            mac = msg.get_attr("NDA_LLADDR")
            lines.add(f"{mac} dst {dst}")
            if mac == "00:00:00:00:00:00":
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

    def _underlay_mtu(self, remote: str) -> int:
        try:
            msgs = self.ipr.route("get", dst=remote)
            oif = msgs[0].get_attr("RTA_OIF") if msgs else None
            if oif:
                return int(self.ipr.get_links(oif)[0].get_attr("IFLA_MTU"))
        except Exception:  # no route yet: the tunnel works once there is one
            pass
        return DEFAULT_UNDERLAY_MTU

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
        mtu = self._underlay_mtu(remote) - tunnel_overhead(iface_type, v6, key, csum == "true")
        spec: Dict[str, Any] = {"ifname": port, "kind": _TUNNEL_KINDS[iface_type], "mtu": mtu, "ifalias": alias}
        local = options.get("local_ip")
        if iface_type == "gre":
            flags = (GRE_KEY if key else 0) | (GRE_CSUM if csum == "true" else 0)
            spec.update({("gre_remote6" if v6 else "gre_remote"): remote, "gre_iflags": flags, "gre_oflags": flags})
            if v6:
                spec["kind"] = "ip6gretap"
            if key:
                spec.update({"gre_ikey": key, "gre_okey": key})
            if local:
                spec["gre_local6" if v6 else "gre_local"] = local
        else:
            spec.update({"geneve_id": key, ("geneve_remote6" if v6 else "geneve_remote"): remote,
                         "geneve_port": int(options.get("dst_port", GENEVE_PORT))})
            if csum is not None and not v6:
                spec["geneve_udp_csum"] = 1 if csum == "true" else 0
        return self._add_tunnel_device(bridge, port, spec)

    def _add_tunnel_device(self, bridge: str, port: str, spec: Dict[str, Any]) -> PortResult:
        br, created = self._ensure_bridge(bridge)
        try:
            try:
                self.ipr.link("add", **{k: v for k, v in spec.items() if k != "ifalias"})
            except Exception as exc:
                if getattr(exc, "code", None) == errno.EOPNOTSUPP:
                    raise OperationFailed(f"this kernel cannot create {spec['kind']} devices (not built in "
                                          "or module not loaded)",
                                          f"load its module (modprobe {_MODULES.get(spec['kind'], spec['kind'])}), "
                                          "use another --type, or --backend ovs") from exc
                raise _netlink_error(exc, f"cannot create {spec['kind']} device {port}") from exc
            ln = self._by_name(port)
            if ln is None:
                raise OperationFailed(f"tunnel device {port} vanished right after creation")
            try:
                self._set(f"cannot plug {port} into {bridge}", index=ln["index"], master=br["index"],
                          ifalias=spec["ifalias"])
                # Split horizon, like OVS's protected ports: frames from one
                # tunnel never leave through another (no loop in a full mesh).
                try:
                    self.ipr.brport("set", index=ln["index"], isolated=1)
                except Exception as exc:
                    raise _netlink_error(exc, f"cannot isolate tunnel port {port}") from exc
                if self._vlan_filtering(br):
                    self._vlan(ln["index"], port, None, trunk=True)
                self._set(f"cannot bring up {port}", index=ln["index"], state="up")
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
        spec: Dict[str, Any] = {"ifname": name, "kind": "vxlan", "vxlan_id": key, "vxlan_learning": 1,
                                "vxlan_port": int(options.get("dst_port", VXLAN_PORT)),
                                "mtu": self._underlay_mtu(remote) - tunnel_overhead("vxlan", v6, key, False),
                                "ifalias": encode_record(dev_ids)}
        if local:
            spec["vxlan_local6" if v6 else "vxlan_local"] = local
        if "csum" in options:
            spec["vxlan_udp_csum"] = 1 if options["csum"] == "true" else 0
        res = self._add_tunnel_device(bridge, name, spec)
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
            self.ipr.fdb("append", ifindex=idx, lladdr="00:00:00:00:00:00", dst=remote)
        except Exception as exc:
            raise _netlink_error(exc, f"cannot add remote {remote} to {name}") from exc

    def del_tunnel_port(self, port: str, *, remote: Optional[str] = None) -> bool:
        ln = self._by_name(port)
        if ln is None:
            return False
        if ln["kind"] == "vxlan" and remote is not None:
            remotes = self._fdb_remotes(ln["index"])
            if remote in remotes and len(remotes) > 1:
                try:
                    self.ipr.fdb("del", ifindex=ln["index"], lladdr="00:00:00:00:00:00", dst=remote)
                except Exception as exc:
                    raise _netlink_error(exc, f"cannot remove remote {remote} from {port}") from exc
                return True
        return self.del_port(port, if_exists=True)
