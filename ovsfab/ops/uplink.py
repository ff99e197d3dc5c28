"""``ovsfab uplink``: make a host NIC a port of a bridge, and back.

``uplink add BRIDGE NIC`` (each step undone in reverse if a later one fails):

1. connect        to OVSDB; read the NIC's addresses and routes (nothing changes yet)
2. offloads       on netdev, TX checksum offload off on the NIC (OVS reads it
                  with AF_PACKET and forwards partial checksums as they are)
3. plug           one OVSDB transaction: bridge (if missing) + port, the
                  bridge's MAC pinned to the NIC's, and everything needed
                  to restore the host recorded in the port's external_ids
4. internal_port  wait (with a deadline) for the bridge's internal port to
                  exist with that MAC; bring it up
5. move           addresses and routes (default route included) from the NIC
                  to the internal port: one step, undone as one step
6. silence        netdev only: the NIC stays a kernel interface there, so it
                  must stop answering for the moved addresses (IPv6 off,
                  arp_ignore=8, arp_announce=2) and give its MAC to the
                  bridge alone (it takes a derived one): see QUIET_SYSCTLS

``uplink del`` reverses it from the record alone (any process can run it).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Dict, List, Optional

from ovsfab.backends.base import KEY_ROLE, Backend, OwnedPort
from ovsfab.errors import Conflict, InvalidInput, NotFound
from ovsfab.model import OWNER_KEY, OWNER_VALUE, parse_name
from ovsfab.ops.plan import Plan

if TYPE_CHECKING:
    from ovsfab.plumbing.links import L3Handle

LOG = logging.getLogger(__name__)

UPLINK_ADD_STEPS = ("connect", "offloads", "plug", "internal_port", "move", "silence")
UPLINK_DEL_STEPS = ("find", "unsilence", "move_back", "unplug", "offloads")
#: Steps that only run where the NIC stays a kernel interface (OVS netdev).
NETDEV_ONLY_STEPS = ("silence", "unsilence")

ROLE_UPLINK = "uplink"
KEY_NIC = "ovsfab-uplink-nic"
KEY_NIC_MAC = "ovsfab-uplink-mac"
KEY_ADDRS = "ovsfab-uplink-addresses"
KEY_ROUTES = "ovsfab-uplink-routes"
KEY_OFFLOADS = "ovsfab-uplink-offloads"
KEY_PREV_HWADDR = "ovsfab-uplink-prev-hwaddr"
KEY_CREATED_BRIDGE = "ovsfab-uplink-created-bridge"
KEY_BRIDGE_WAS_DOWN = "ovsfab-uplink-bridge-was-down"
#: netdev only: the NIC's sysctls before ``silence`` (JSON), and the MAC it took.
KEY_NIC_SYSCTLS = "ovsfab-uplink-nic-sysctls"
KEY_NIC_QUIET_MAC = "ovsfab-uplink-nic-quiet-mac"

#: What ``silence`` sets on a netdev uplink NIC.  With the default
#: ``arp_ignore=0`` the kernel answers an ARP request for the moved address
#: on the NIC too, and a peer's tunnel neighbour cache (``ovs-appctl
#: tnl/arp/show``) may keep that answer: its VXLAN frames then miss
#: ``tnl_pop`` and die in the host's stack.  8 = answer for no local address;
#: ``arp_announce=2`` = never source ARP from an address of another link;
#: IPv6 off = no link-local, no ND, no DAD on the NIC.
QUIET_SYSCTLS = {"ipv6/disable_ipv6": "1", "ipv4/arp_ignore": "8", "ipv4/arp_announce": "2"}

#: How long the bridge's internal port may take to appear (netdev: a tap
#: that vswitchd creates after applying the transaction).
INTERNAL_PORT_TIMEOUT = 10.0

BackendFactory = Callable[[], Backend]


def nic_hwaddr(nic_mac: str) -> str:
    """The MAC a NIC takes while it is a netdev bridge's uplink (its own goes to the bridge).

    A locally administered unicast MAC derived from the NIC's (one bit
    flipped), so the record alone says what to put back.
    """
    octets = [int(x, 16) for x in nic_mac.split(":")]
    octets[0] = ((octets[0] ^ 0x04) | 0x02) & 0xFE  # differ, locally administered, unicast
    return ":".join(f"{x:02x}" for x in octets)


def nic_stays_in_kernel(datapath: str) -> bool:
    """True where an uplink NIC remains a kernel interface beside its bridge.

    On the userspace (netdev) datapath OVS reads the NIC through an AF_PACKET
    socket and the NIC stays in the kernel's IP stack.  On the kernel
    datapath (and a Linux bridge) the NIC is enslaved: the bridge takes its
    frames before the IP stack sees them.
    """
    return datapath == "netdev"


def _family(values: Dict[str, str], family: str) -> Dict[str, str]:
    """The sysctls of one family (``"ipv4"``, ``"ipv6"``) among ``values``."""
    return {k: v for k, v in values.items() if k.startswith(family + "/")}


def silence_nic(nl: "L3Handle", nic: str, idx: int, quiet_mac: str, mac: str, prev: Dict[str, str]) -> None:
    """Make the bridge the NIC's only answerer (netdev): see :data:`QUIET_SYSCTLS`.

    IPv6 goes off first (the NIC's link-local with it), then the NIC takes
    ``quiet_mac`` (the bridge now has the NIC's own MAC, so neighbours'
    caches stay valid and frames to it are "other host" for the NIC's
    kernel stack: no double delivery, no DUP! replies), then ARP is told to
    answer nothing on it.  One step: on failure it puts the NIC back to
    ``mac`` and ``prev`` (its sysctls as recorded).
    """
    from ovsfab.plumbing import sysctl  # noqa: PLC0415

    done: List[Callable[[], None]] = []
    try:
        sysctl.write_many(nic, _family(QUIET_SYSCTLS, "ipv6"), nl.ns)
        done.append(lambda: sysctl.write_many(nic, _family(prev, "ipv6"), nl.ns))
        nl.set_mac(idx, quiet_mac)
        done.append(lambda: nl.set_mac(idx, mac))
        sysctl.write_many(nic, _family(QUIET_SYSCTLS, "ipv4"), nl.ns)
    except BaseException:
        for undo in reversed(done):
            try:
                undo()
            except Exception as exc:  # keep the first error
                LOG.error("could not put %s back: %s", nic, exc)
        raise


def unsilence_nic(nl: "L3Handle", nic: str, idx: int, mac: str, prev: Dict[str, str]) -> None:
    """Undo :func:`silence_nic` from the record: MAC first, then the sysctls.

    The MAC goes back before IPv6 comes on, so the NIC's link-local address
    is derived from its own MAC again.
    """
    from ovsfab.plumbing import sysctl  # noqa: PLC0415

    nl.set_mac(idx, mac)
    sysctl.write_many(nic, _family(prev, "ipv4"), nl.ns)
    sysctl.write_many(nic, _family(prev, "ipv6"), nl.ns)


@dataclass
class Uplink:
    """An uplink as recorded in OVSDB."""

    bridge: str
    nic: str
    mac: str
    datapath: str
    addresses: List[Dict[str, object]] = field(default_factory=list)
    routes: List[Dict[str, object]] = field(default_factory=list)
    offloads: List[str] = field(default_factory=list)
    ofport: Optional[int] = None
    error: Optional[str] = None

    @classmethod
    def from_owned(cls, rec: OwnedPort) -> "Uplink":
        """Rebuild an uplink from its port's external_ids."""
        ids = rec.external_ids
        return cls(bridge=rec.bridge, nic=ids.get(KEY_NIC, rec.port), mac=ids.get(KEY_NIC_MAC, ""),
                   datapath=rec.datapath, addresses=_loads(ids.get(KEY_ADDRS)),
                   routes=_loads(ids.get(KEY_ROUTES)),
                   offloads=[f for f in ids.get(KEY_OFFLOADS, "").split(",") if f],
                   ofport=rec.ofport, error=rec.error)

    def to_json(self) -> dict:
        """JSON-ready form (addresses as ADDR/PREFIX, routes as in the record)."""
        return {
            "bridge": self.bridge, "nic": self.nic, "mac": self.mac, "datapath": self.datapath,
            "addresses": [f"{a['address']}/{a['prefixlen']}" for a in self.addresses],
            "routes": [_route_text(r) for r in self.routes],
            "offloads_disabled": self.offloads, "ofport": self.ofport, "error": self.error,
        }


@dataclass
class UplinkResult:
    """What uplink add/del did."""

    action: str
    uplink: Optional[Uplink]
    changed: bool
    notes: List[str] = field(default_factory=list)

    def to_json(self) -> dict:
        out: dict = {"action": self.action, "changed": self.changed, "notes": self.notes}
        if self.uplink is not None:
            out.update(self.uplink.to_json())
        return out


def _loads(text: Optional[str]) -> List[Dict[str, object]]:
    if not text:
        return []
    try:
        value = json.loads(text)
    except ValueError:
        return []
    return value if isinstance(value, list) else []


def _loads_map(text: Optional[str]) -> Dict[str, str]:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def _route_text(r: Dict[str, object]) -> str:
    dst = "default" if r.get("dst_len") == 0 else f"{r['dst']}/{r['dst_len']}"
    via = f" via {r['gateway']}" if r.get("gateway") else ""
    return dst + via


def _check_names(bridge: str, nic: str) -> None:
    parse_name(bridge, "bridge name")
    parse_name(nic, "interface name")
    if bridge == nic:
        raise InvalidInput(f"the NIC and the bridge are both named {nic}", "give the bridge and the NIC to plug into it")


def find_uplink(backend: Backend, nic: str) -> Optional[OwnedPort]:
    """The recorded uplink of a NIC (selected by tags, never by name pattern)."""
    for rec in backend.owned_ports(ROLE_UPLINK):
        if rec.external_ids.get(KEY_NIC) == nic:
            return rec
    return None


def uplink_add(bridge: str, nic: str, force: bool, datapath: str,
               backend_factory: BackendFactory, fault: Optional[str] = None) -> UplinkResult:
    """Make ``nic`` a port of ``bridge`` and move its L3 configuration onto the bridge."""
    from ovsfab.ops.attach import require_root  # noqa: PLC0415
    from ovsfab.plumbing.links import L3Handle, L3Config  # noqa: PLC0415

    _check_names(bridge, nic)
    if datapath not in ("auto", "system", "netdev"):
        raise InvalidInput(f"datapath {datapath!r} is unknown", "use auto, system or netdev")
    require_root()
    with Plan("uplink add", fault) as plan:
        backend = plan.step("connect", backend_factory)
        plan.add_undo("close backend", backend.close)
        nl = L3Handle()
        plan.add_undo("close netlink", nl.close)

        recorded = find_uplink(backend, nic)
        if recorded is not None:
            if recorded.bridge != bridge:
                raise Conflict(f"{nic} is already the uplink of bridge {recorded.bridge}",
                               f"run `ovsfab uplink del {recorded.bridge} {nic}` first")
            up = Uplink.from_owned(recorded)
            nl.close()
            backend.close()
            return UplinkResult("uplink-add", up, changed=False)

        info = nl.link(nic)
        if info is None:
            raise NotFound(f"there is no interface named {nic} on this host", "check the name with `ip link`")
        owner = backend.port_exists(nic)
        if owner is not None:
            where = f"OVS bridge {owner}" if owner else "OVS"
            raise Conflict(f"{nic} is already a port of {where}",
                           f"remove it there first (ovs-vsctl del-port {owner or '<bridge>'} {nic})")
        if nic in backend.internal_ports() or backend.bridge_datapath(nic) is not None:
            raise Conflict(f"{nic} is an OVS bridge's own interface, not a NIC", "give a physical or veth NIC")
        idx = int(info["index"])
        master = info.get("master")
        if master:
            raise Conflict(f"{nic} is enslaved to another device (ifindex {master})",
                           f"release it first (ip link set {nic} nomaster)")
        if not info["up"]:
            raise Conflict(f"{nic} is down, so the host could not be reached through {bridge}",
                           f"bring it up first (ip link set {nic} up)")
        multipath = nl.multipath_routes_via(idx)
        if multipath:
            raise Conflict(f"{nic} is a next hop of multipath routes ({', '.join(multipath)}), "
                           "which ovsfab does not move", "remove them, add the uplink, and add them back via "
                           + bridge)
        cfg: L3Config = nl.l3_config(idx)
        defaults = cfg.default_routes()
        if defaults and not force:
            via = ", ".join(_route_text(r) for r in defaults)
            raise Conflict(f"{nic} carries the host's default route ({via}); moving it to {bridge} briefly "
                           "interrupts it and could cut the session running this command",
                           "pass --force if you run this from a console or over another interface")

        existing_dp = backend.bridge_datapath(bridge)
        if existing_dp is None:
            dp = backend.new_bridge_datapath(bridge, datapath)[0]
        else:
            dp = existing_dp
            if datapath not in ("auto", existing_dp):
                raise Conflict(f"bridge {bridge} exists with datapath {existing_dp}",
                               f"use --datapath {existing_dp} or auto")
        mac = str(info["mac"]).lower()
        # The bridge's own port always takes the NIC's MAC: neighbours'
        # ARP/ND caches (and peers' tunnel neighbour caches) stay valid.
        br_mac = mac
        quiet = nic_stays_in_kernel(dp)
        prev_hwaddr = backend.bridge_other_config(bridge).get("hwaddr", "")

        disabled: List[str] = []

        def offloads() -> None:
            if not backend.needs_tx_csum_off(dp):
                return
            # OVS reads the NIC with AF_PACKET: frames the kernel sends out
            # of it with partial checksums would be forwarded unfinished.
            disabled.extend(nl.disable_tx_checksum(nic))

        plan.step("offloads", offloads, undo=lambda: nl.enable_features(nic, disabled))

        ids = {
            OWNER_KEY: OWNER_VALUE,
            KEY_ROLE: ROLE_UPLINK,
            KEY_NIC: nic,
            KEY_NIC_MAC: mac,
            KEY_ADDRS: json.dumps(cfg.addresses, sort_keys=True),
            KEY_ROUTES: json.dumps(cfg.routes, sort_keys=True),
            KEY_OFFLOADS: ",".join(disabled),
            KEY_PREV_HWADDR: prev_hwaddr,
            KEY_CREATED_BRIDGE: "true" if existing_dp is None else "false",
        }
        if quiet:
            from ovsfab.plumbing import sysctl  # noqa: PLC0415

            ids[KEY_NIC_SYSCTLS] = json.dumps(sysctl.read_many(nic, QUIET_SYSCTLS, nl.ns), sort_keys=True)
            ids[KEY_NIC_QUIET_MAC] = nic_hwaddr(mac)
        def unplug() -> None:
            backend.del_uplink_port(nic, hwaddr=prev_hwaddr or None)
            if existing_dp is None:  # this add created the bridge: it goes too
                backend.del_br(bridge, if_exists=True)

        # The undo covers the bridge as well: a fault right after this step
        # must not leave a bridge behind.
        res = plan.step(
            "plug",
            lambda: backend.add_uplink_port(bridge, nic, external_ids=ids, datapath=dp, hwaddr=br_mac),
            undo=unplug,
        )

        def internal_port() -> int:
            bidx = nl.wait_link(bridge, time.monotonic() + INTERNAL_PORT_TIMEOUT, mac=br_mac)
            binfo = nl.link(bridge)
            if binfo is not None and not binfo["up"]:
                nl.set_up(bidx)
                plan.add_undo("internal port up", lambda: nl.set_down(bidx))
            return bidx

        bidx: int = plan.step("internal_port", internal_port)
        plan.step("move", lambda: nl.move_l3(idx, bidx, cfg), undo=lambda: nl.move_l3(bidx, idx, cfg))
        if quiet:
            prev_sysctls = json.loads(ids[KEY_NIC_SYSCTLS])
            plan.step("silence", lambda: silence_nic(nl, nic, idx, ids[KEY_NIC_QUIET_MAC], mac, prev_sysctls),
                      undo=lambda: unsilence_nic(nl, nic, idx, mac, prev_sysctls))

        up = Uplink(bridge=bridge, nic=nic, mac=mac, datapath=dp, addresses=cfg.addresses,
                    routes=cfg.routes, offloads=disabled, ofport=res.ofport)
        notes = []
        if defaults:
            notes.append(f"moved the default route from {nic} to {bridge} (--force)")
        notes.extend(backend.traffic_notes(bridge))
        nl.close()
        backend.close()
        return UplinkResult("uplink-add", up, changed=True, notes=notes)


def uplink_del(bridge: str, nic: str, if_exists: bool, backend_factory: BackendFactory,
               fault: Optional[str] = None) -> UplinkResult:
    """Undo ``uplink add``: addresses and routes back on the NIC, port removed."""
    from ovsfab.ops.attach import require_root  # noqa: PLC0415
    from ovsfab.plumbing.links import L3Config, L3Handle  # noqa: PLC0415

    _check_names(bridge, nic)
    require_root()
    with Plan("uplink del", fault) as plan:
        backend = backend_factory()
        plan.add_undo("close backend", backend.close)
        rec = plan.step("find", lambda: find_uplink(backend, nic))
        if rec is None or rec.bridge != bridge:
            backend.close()
            if if_exists:
                return UplinkResult("uplink-del", None, changed=False)
            where = f" (it is the uplink of {rec.bridge})" if rec is not None else ""
            raise NotFound(f"{nic} is not an ovsfab uplink of {bridge}{where}", "see `ovsfab uplink list`")
        up = Uplink.from_owned(rec)
        ids = dict(rec.external_ids)
        prev_hwaddr = ids.get(KEY_PREV_HWADDR) or None
        nl = L3Handle()
        plan.add_undo("close netlink", nl.close)
        idx = nl.index(nic)
        if idx is None:
            raise NotFound(f"the uplink NIC {nic} no longer exists",
                           f"remove the port by hand: ovs-vsctl del-port {bridge} {nic}")
        bidx = nl.index(bridge)
        cfg = L3Config(up.addresses, up.routes)

        quiet_mac = ids.get(KEY_NIC_QUIET_MAC)
        if quiet_mac:  # netdev: the NIC answers again, with its own MAC
            prev_sysctls = _loads_map(ids.get(KEY_NIC_SYSCTLS))
            plan.step("unsilence", lambda: unsilence_nic(nl, nic, idx, up.mac, prev_sysctls),
                      undo=lambda: silence_nic(nl, nic, idx, quiet_mac, up.mac, prev_sysctls))

        def move_back() -> None:
            if bidx is None:  # bridge's port gone (vswitchd restarting?): just restore the NIC
                for a in cfg.addresses:
                    nl.put_address(idx, a)
                for r in cfg.routes:
                    nl.put_route(idx, r)
                return
            nl.move_l3(bidx, idx, cfg)

        plan.step("move_back", move_back,
                  undo=lambda: nl.move_l3(idx, bidx, cfg) if bidx is not None else None)
        plan.step("unplug", lambda: backend.del_uplink_port(nic, hwaddr=prev_hwaddr),
                  undo=lambda: backend.add_uplink_port(bridge, nic, external_ids=ids, datapath=up.datapath,
                                                       hwaddr=up.mac))
        plan.step("offloads", lambda: nl.enable_features(nic, up.offloads),
                  undo=lambda: nl.disable_tx_checksum(nic))
        if ids.get(KEY_CREATED_BRIDGE) == "true":
            # Only if nothing else uses it (containers, tunnels): attach's rule.
            backend.del_br(bridge, if_exists=True, only_if_empty=True)
        nl.close()
        backend.close()
        return UplinkResult("uplink-del", up, changed=True)


def uplink_list(bridge: Optional[str], backend_factory: BackendFactory) -> List[Uplink]:
    """Every recorded uplink (on one bridge, or all)."""
    backend = backend_factory()
    try:
        return [Uplink.from_owned(r) for r in backend.owned_ports(ROLE_UPLINK, bridge)]
    finally:
        backend.close()
