"""``ovsfab tunnel``: overlay tunnels (VXLAN, GRE, Geneve) between hosts.

``tunnel add BRIDGE REMOTE`` (each step undone in reverse if a later one fails):

1. connect  to OVSDB; validate; find an existing identical tunnel (idempotent)
2. check    the underlay: the remote is not one of this host's addresses and,
            on the userspace (netdev) datapath, the local endpoint is held by
            an OVS bridge's internal port -- otherwise OVS has no route for
            the encapsulated packets and drops them silently
3. plug     one OVSDB transaction: Port + Interface(type, options) with
            ownership and identity in external_ids; wait for vswitchd

A tunnel's identity is (bridge, remote, type, key); its port name is derived
from that identity, so a retry or a second ``add`` finds it.

The MTU rule for containers on a bridge that carries tunnels lives here too
(:func:`auto_mtu`, used by ``ovsfab attach``).
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Optional, Tuple

from ovsfab.backends.base import CAP_BFD, KEY_ROLE, Backend, OwnedPort, PortResult
from ovsfab.errors import Conflict, InvalidInput, NotFound, OperationFailed
from ovsfab.model import MAX_MTU, MIN_MTU, OWNER_KEY, OWNER_VALUE, parse_name, tunnel_overhead
from ovsfab.ops.plan import Plan

LOG = logging.getLogger(__name__)

TUNNEL_ADD_STEPS = ("connect", "check", "plug")
TUNNEL_TYPES = ("vxlan", "gre", "geneve")

ROLE_TUNNEL = "tunnel"
KEY_REMOTE = "ovsfab-tunnel-remote"
KEY_TYPE = "ovsfab-tunnel-type"
KEY_KEY = "ovsfab-tunnel-key"

#: Largest key per type: VXLAN VNI and Geneve VNI are 24 bits, the GRE key 32.
MAX_KEY = {"vxlan": (1 << 24) - 1, "geneve": (1 << 24) - 1, "gre": (1 << 32) - 1}
_NAME_PREFIX = {"vxlan": "vx", "gre": "gr", "geneve": "gn"}
#: The Interface ``bfd`` column of a tunnel with BFD: OVS's default timers
#: (detect multiplier 3, 1 s receive interval) declare a dead path in ~3 s.
BFD_ON = {"enable": "true"}
#: Underlay MTU assumed when the route to a remote is unknown.
DEFAULT_UNDERLAY_MTU = 1500

BackendFactory = Callable[[], Backend]


# ---------------------------------------------------------------------------
# Pure logic (unit-tested without a switch)
# ---------------------------------------------------------------------------
def tunnel_port_name(bridge: str, remote: str, tun_type: str, key: int) -> str:
    """Deterministic port name: type prefix + '-' + 12 hex digits = 15 characters."""
    ident = f"{bridge}\0{ipaddress.ip_address(remote)}\0{tun_type}\0{key}"
    return f"{_NAME_PREFIX[tun_type]}-{hashlib.sha256(ident.encode()).hexdigest()[:12]}"


#: The tunnel overhead arithmetic (ovsfab/model.py): under its old name here.
overhead = tunnel_overhead


def underlay_bridge_name(nic: str) -> str:
    """The bridge name suggested to carry a NIC as uplink (``br-eth1``)."""
    return f"br-{nic}"[:15]


def check_underlay(datapath: str, remote: str, local_ip: Optional[str],
                   route: Optional[Dict[str, object]], owners: Dict[str, str],
                   internal: Dict[str, Tuple[str, str]]) -> Optional[str]:
    """Refuse a tunnel that could not carry a packet; returns a note or None.

    ``route`` is the kernel's route to ``remote`` (see ``L3Handle.route_to``),
    ``owners`` maps each host address to its link, ``internal`` maps OVS
    internal interfaces to (bridge, datapath).

    * The remote must not be one of the host's own addresses (a loop).
    * system datapath: the kernel routes the encapsulated packets, so any
      route will do; a missing one is only a note (it may come later).
    * netdev datapath: OVS routes them itself, through its own route table,
      which only knows routes of OVS bridges' internal ports.  The local
      endpoint must therefore sit on such a port, or packets vanish.
    """
    rip = str(ipaddress.ip_address(remote))
    if rip in owners:
        raise InvalidInput(f"remote {rip} is an address of this host ({owners[rip]})",
                           "give the other host's underlay address")
    if local_ip is not None:
        lip = str(ipaddress.ip_address(local_ip))
        if lip not in owners:
            raise InvalidInput(f"--local-ip {lip} is not an address of this host",
                               "give one of this host's underlay addresses, or leave it out")
    if datapath != "netdev":
        if route is None or route.get("ifname") is None:
            return f"no route to {rip} yet: the tunnel carries nothing until there is one"
        return None
    if local_ip is not None:
        holder = owners[str(ipaddress.ip_address(local_ip))]
        if not _on_netdev_bridge(holder, internal):
            raise Conflict(
                f"on the userspace datapath the tunnel's local endpoint {local_ip} must be on an OVS bridge, "
                f"but it is on {holder}, so OVS would drop every encapsulated packet",
                f"move it onto a bridge first: ovsfab uplink add {underlay_bridge_name(holder)} {holder}")
    if route is None or route.get("ifname") is None:
        raise Conflict(f"this host has no route to the remote {rip}, so OVS would drop every encapsulated packet",
                       "give the host an underlay address on an OVS bridge first, e.g. "
                       "ovsfab uplink add br-eth1 eth1")
    oif = str(route["ifname"])
    if not _on_netdev_bridge(oif, internal):
        raise Conflict(
            f"on the userspace datapath the route to {rip} must leave through an OVS bridge, but it leaves "
            f"through {oif}, so OVS would drop every encapsulated packet",
            f"make {oif} an uplink first: ovsfab uplink add {underlay_bridge_name(oif)} {oif}")
    return None


def _on_netdev_bridge(ifname: str, internal: Dict[str, Tuple[str, str]]) -> bool:
    return ifname in internal and internal[ifname][1] == "netdev"


def mtu_for(tunnels: Iterable[Tuple[str, str, int, bool, Optional[int]]]) -> Optional[int]:
    """The container MTU that fits every tunnel: min(underlay MTU - overhead).

    Each tunnel is (type, remote, key, csum, underlay MTU or None).
    """
    best: Optional[int] = None
    for tun_type, remote, key, csum, underlay in tunnels:
        v6 = ipaddress.ip_address(remote).version == 6
        mtu = (underlay or DEFAULT_UNDERLAY_MTU) - overhead(tun_type, v6, key, csum)
        best = mtu if best is None else min(best, mtu)
    if best is None:
        return None
    return max(MIN_MTU, min(MAX_MTU, best))


# ---------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------
@dataclass
class TunnelRequest:
    """A validated ``tunnel add``."""

    bridge: str
    remote: str
    tun_type: str = "vxlan"
    key: int = 0
    name: Optional[str] = None
    dstport: Optional[int] = None
    local_ip: Optional[str] = None
    csum: Optional[bool] = None
    datapath: str = "auto"
    #: BFD on the tunnel: None = on where the backend has it (OVS), False = off.
    bfd: Optional[bool] = None

    @classmethod
    def parse(cls, bridge: str, remote: str, tun_type: str = "vxlan", key: Optional[str] = None,
              name: Optional[str] = None, dstport: Optional[str] = None, local_ip: Optional[str] = None,
              csum: Optional[bool] = None, datapath: str = "auto", bfd: Optional[bool] = None) -> "TunnelRequest":
        """Validate every argument; raises InvalidInput before anything changes."""
        parse_name(bridge, "bridge name")
        if tun_type not in TUNNEL_TYPES:
            raise InvalidInput(f"tunnel type {tun_type!r} is unknown", "use --type vxlan, gre or geneve")
        rip = parse_ip(remote, "remote")
        k = parse_key(key, tun_type)
        port = None
        if dstport is not None:
            if tun_type == "gre":
                raise InvalidInput("GRE has no UDP destination port", "leave out --dstport")
            try:
                port = int(dstport)
            except (TypeError, ValueError):
                raise InvalidInput(f"--dstport {dstport!r} is not a number", "give 1..65535") from None
            if not 1 <= port <= 65535:
                raise InvalidInput(f"--dstport {port} is outside 1..65535")
        lip = None
        if local_ip is not None:
            lip = parse_ip(local_ip, "--local-ip")
            if ipaddress.ip_address(lip).version != ipaddress.ip_address(rip).version:
                raise InvalidInput(f"--local-ip {lip} and remote {rip} differ in IP version")
        if name is not None:
            parse_name(name, "tunnel name")
        if datapath not in ("auto", "system", "netdev"):
            raise InvalidInput(f"datapath {datapath!r} is unknown", "use auto, system or netdev")
        return cls(bridge, rip, tun_type, k, name, port, lip, csum, datapath, bfd)

    def bfd_config(self, backend: Backend) -> Dict[str, str]:
        """The Interface ``bfd`` column to write: enabled unless turned off, where the backend has BFD."""
        if CAP_BFD not in backend.capabilities or self.bfd is False:
            return {}
        return dict(BFD_ON)

    def options(self) -> Dict[str, str]:
        """The Interface options OVS needs."""
        opts = {"remote_ip": self.remote}
        if self.key:
            opts["key"] = str(self.key)
        if self.dstport is not None:
            opts["dst_port"] = str(self.dstport)
        if self.local_ip is not None:
            opts["local_ip"] = self.local_ip
        if self.csum is not None:
            opts["csum"] = "true" if self.csum else "false"
        return opts


def parse_ip(value: str, what: str) -> str:
    """A unicast IP address, normalised."""
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        raise InvalidInput(f"{what} {value!r} is not an IP address", "e.g. 192.168.77.6") from None
    if ip.is_multicast or ip.is_unspecified or ip.is_loopback:
        raise InvalidInput(f"{what} {ip} is not a unicast address", "give the other host's underlay address")
    return str(ip)


def parse_key(value: Optional[str], tun_type: str) -> int:
    """A tunnel key (VNI) in range for its type; None means 0."""
    if value is None:
        return 0
    try:
        key = int(str(value), 0)
    except ValueError:
        raise InvalidInput(f"--key {value!r} is not a number", f"give 0..{MAX_KEY[tun_type]}") from None
    if not 0 <= key <= MAX_KEY[tun_type]:
        raise InvalidInput(f"--key {key} is outside 0..{MAX_KEY[tun_type]} for {tun_type}")
    return key


@dataclass
class Tunnel:
    """A tunnel as recorded in OVSDB."""

    bridge: str
    name: str
    tun_type: str
    remote: str
    key: int
    datapath: str
    options: Dict[str, str] = field(default_factory=dict)
    ofport: Optional[int] = None
    error: Optional[str] = None
    liveness: "Liveness" = field(default_factory=lambda: Liveness(available=False))

    @classmethod
    def from_owned(cls, rec: OwnedPort) -> "Tunnel":
        ids = rec.external_ids
        key = ids.get(KEY_KEY, "0")
        return cls(bridge=rec.bridge, name=rec.port, tun_type=ids.get(KEY_TYPE, rec.iface_type),
                   remote=ids.get(KEY_REMOTE, rec.options.get("remote_ip", "")),
                   key=int(key) if key.isdigit() else 0, datapath=rec.datapath, options=dict(rec.options),
                   ofport=rec.ofport, error=rec.error, liveness=Liveness.of(rec))

    def identity(self) -> Tuple[str, str, str, int]:
        return (self.bridge, self.remote, self.tun_type, self.key)

    def to_json(self) -> dict:
        opts = self.options
        return {
            "bridge": self.bridge, "name": self.name, "type": self.tun_type, "remote": self.remote,
            "key": self.key, "datapath": self.datapath,
            "dstport": int(opts["dst_port"]) if opts.get("dst_port", "").isdigit() else None,
            "local_ip": opts.get("local_ip"),
            "csum": {"true": True, "false": False}.get(opts.get("csum", "")),
            "ofport": self.ofport, "error": self.error, "bfd": self.liveness.to_json(),
        }


@dataclass
class Liveness:
    """What is known of a tunnel's path: BFD's view (OVS) or the kernel device's (Linux)."""

    #: True where the backend has BFD (then ``enabled`` says whether it runs).
    available: bool
    enabled: bool = False
    state: Optional[str] = None
    remote_state: Optional[str] = None
    diagnostic: Optional[str] = None
    forwarding: Optional[bool] = None
    #: Linux: the device's carrier and its forwarding entries (``MAC dst REMOTE``).
    carrier: Optional[bool] = None
    fdb: Optional[List[str]] = None

    @classmethod
    def of(cls, rec: OwnedPort) -> "Liveness":
        if rec.carrier is not None or rec.fdb is not None:
            return cls(available=False, carrier=rec.carrier, fdb=list(rec.fdb or []))
        st = rec.bfd_status
        return cls(available=True, enabled=rec.bfd.get("enable") == "true", state=st.get("state"),
                   remote_state=st.get("remote_state"), diagnostic=st.get("diagnostic") or None,
                   forwarding={"true": True, "false": False}.get(st.get("forwarding", "")))

    def to_json(self) -> dict:
        return {"available": self.available, "enabled": self.enabled, "state": self.state,
                "remote_state": self.remote_state, "diagnostic": self.diagnostic, "forwarding": self.forwarding,
                "carrier": self.carrier, "fdb": self.fdb}


@dataclass
class TunnelResult:
    """What tunnel add/del did."""

    action: str
    tunnel: Optional[Tunnel]
    changed: bool
    notes: List[str] = field(default_factory=list)

    def to_json(self) -> dict:
        out: dict = {"action": self.action, "changed": self.changed, "notes": self.notes}
        if self.tunnel is not None:
            out.update(self.tunnel.to_json())
        return out


def _differences(found: Tunnel, req: TunnelRequest) -> List[str]:
    diffs = []
    if req.name is not None and found.name != req.name:
        diffs.append(f"name {found.name}")
    want = req.options()
    for opt, label in (("dst_port", "dstport"), ("local_ip", "local-ip"), ("csum", "csum")):
        if found.options.get(opt) != want.get(opt):
            diffs.append(f"{label} {found.options.get(opt, 'default')}")
    return diffs


# ---------------------------------------------------------------------------
# Operations
# ---------------------------------------------------------------------------
def tunnel_add(req: TunnelRequest, backend_factory: BackendFactory, fault: Optional[str] = None) -> TunnelResult:
    """Add a tunnel port; idempotent; nothing left behind on failure."""
    from ovsfab.ops.attach import require_root  # noqa: PLC0415
    from ovsfab.plumbing.links import L3Handle  # noqa: PLC0415

    require_root()
    with Plan("tunnel add", fault) as plan:
        backend = plan.step("connect", backend_factory)
        plan.add_undo("close backend", backend.close)
        nl = L3Handle()
        plan.add_undo("close netlink", nl.close)
        name = req.name or tunnel_port_name(req.bridge, req.remote, req.tun_type, req.key)
        existing = [Tunnel.from_owned(r) for r in backend.owned_ports(ROLE_TUNNEL, req.bridge)]
        ident = (req.bridge, req.remote, req.tun_type, req.key)
        bfd = req.bfd_config(backend)
        notes: List[str] = []
        if req.bfd and CAP_BFD not in backend.capabilities:
            notes.append(f"the {backend.kind} backend has no BFD: `ovsfab tunnel list` shows the device's "
                         "carrier and forwarding entries instead")
        for tun in existing:
            if tun.identity() == ident:
                diffs = _differences(tun, req)
                if diffs:
                    raise Conflict(f"a {req.tun_type} tunnel to {req.remote} with key {req.key} exists on "
                                   f"{req.bridge} with other settings ({'; '.join(diffs)})",
                                   f"remove it first: ovsfab tunnel del {req.bridge} --name {tun.name}")
                changed = False
                if tun.liveness.available and tun.liveness.enabled != bool(bfd):
                    # BFD is liveness, not identity: switch it in place.
                    backend.set_tunnel_bfd(tun.name, bfd)
                    tun.liveness = Liveness(available=True, enabled=bool(bfd))
                    changed = True
                nl.close()
                backend.close()
                return TunnelResult("tunnel-add", tun, changed=changed, notes=notes)
        owner = backend.port_exists(name)
        if owner is not None:
            raise Conflict(f"OVS already has a port named {name}" + (f" on {owner}" if owner else ""),
                           "choose another --name")

        existing_dp = backend.bridge_datapath(req.bridge)
        dp = existing_dp or backend.new_bridge_datapath(req.bridge, req.datapath)[0]

        def check() -> None:
            route = nl.route_to(req.remote)
            if route is not None and route.get("type") != 1:
                route = None
            note = check_underlay(dp, req.remote, req.local_ip, route, nl.address_owners(),
                                  backend.internal_ports())
            if note:
                notes.append(note)

        plan.step("check", check)
        ids = {OWNER_KEY: OWNER_VALUE, KEY_ROLE: ROLE_TUNNEL, KEY_REMOTE: req.remote,
               KEY_TYPE: req.tun_type, KEY_KEY: str(req.key)}
        # The port the backend used: a Linux VXLAN device is shared by all
        # remotes of one key, so it may not be ``name``.
        used = {"port": name}

        def plug() -> PortResult:
            result = backend.add_tunnel_port(req.bridge, name, iface_type=req.tun_type, options=req.options(),
                                             external_ids=ids, datapath=dp, bfd=bfd or None)
            used["port"] = result.port or name
            return result

        def unplug() -> None:
            backend.del_tunnel_port(used["port"], remote=req.remote)
            if existing_dp is None:  # this add created the bridge: it goes too
                backend.del_br(req.bridge, if_exists=True)

        # The undo covers the bridge as well: a fault right after this step
        # must not leave a bridge behind.
        res = plan.step("plug", plug, undo=unplug)
        name = used["port"]
        notes.extend(backend.traffic_notes(req.bridge))
        tun = Tunnel(bridge=req.bridge, name=name, tun_type=req.tun_type, remote=req.remote, key=req.key,
                     datapath=res.datapath, options=req.options(), ofport=res.ofport,
                     liveness=Liveness(available=CAP_BFD in backend.capabilities, enabled=bool(bfd)))
        nl.close()
        backend.close()
        return TunnelResult("tunnel-add", tun, changed=True, notes=notes)


def tunnel_del(bridge: str, remote: Optional[str], name: Optional[str], key: Optional[str],
               tun_type: Optional[str], if_exists: bool, backend_factory: BackendFactory) -> TunnelResult:
    """Remove one tunnel, chosen by remote (and key/type) or by name."""
    from ovsfab.ops.attach import require_root  # noqa: PLC0415

    parse_name(bridge, "bridge name")
    if (remote is None) == (name is None):
        raise InvalidInput("give either the remote address or --name", "e.g. ovsfab tunnel del br0 192.168.77.6")
    rip = parse_ip(remote, "remote") if remote is not None else None
    if name is not None:
        parse_name(name, "tunnel name")
    if tun_type is not None and tun_type not in TUNNEL_TYPES:
        raise InvalidInput(f"tunnel type {tun_type!r} is unknown", "use --type vxlan, gre or geneve")
    k = parse_key(key, tun_type or "gre") if key is not None else None
    require_root()
    backend = backend_factory()
    try:
        tunnels = [Tunnel.from_owned(r) for r in backend.owned_ports(ROLE_TUNNEL, bridge)]
        hits = [t for t in tunnels
                if (name is None or t.name == name) and (rip is None or t.remote == rip)
                and (k is None or t.key == k) and (tun_type is None or t.tun_type == tun_type)]
        if not hits:
            if if_exists:
                return TunnelResult("tunnel-del", None, changed=False)
            what = f"named {name}" if name else f"to {rip}"
            raise NotFound(f"bridge {bridge} has no ovsfab tunnel {what}"
                           + (f" with key {k}" if k is not None else ""), "see `ovsfab tunnel list`")
        if len(hits) > 1:
            names = ", ".join(f"{t.name} ({t.tun_type} key {t.key})" for t in hits)
            raise Conflict(f"{len(hits)} tunnels match: {names}", "pick one with --key, --type or --name")
        tun = hits[0]
        backend.del_tunnel_port(tun.name, remote=tun.remote)
        return TunnelResult("tunnel-del", tun, changed=True)
    finally:
        backend.close()


def tunnel_list(bridge: Optional[str], backend_factory: BackendFactory) -> List[Tunnel]:
    """Every recorded tunnel (on one bridge, or all)."""
    if bridge is not None:
        parse_name(bridge, "bridge name")
    backend = backend_factory()
    try:
        return [Tunnel.from_owned(r) for r in backend.owned_ports(ROLE_TUNNEL, bridge)]
    finally:
        backend.close()


def auto_mtu(backend: Backend, bridge: str) -> Optional[int]:
    """The MTU for a container on ``bridge`` (``--mtu auto``): None if it carries no tunnel.

    Underlay MTU = MTU of the link the kernel routes each remote through.
    """
    try:
        owned = backend.owned_ports(ROLE_TUNNEL, bridge)
    except NotImplementedError:
        return None
    if not owned:
        return None
    from ovsfab.plumbing.links import L3Handle  # noqa: PLC0415

    nl = L3Handle()
    try:
        rows = []
        for rec in owned:
            tun = Tunnel.from_owned(rec)
            try:
                route = nl.route_to(tun.remote)
            except OperationFailed:
                route = None
            underlay = route.get("mtu") if route else None
            rows.append((tun.tun_type, tun.remote, tun.key, tun.options.get("csum") == "true",
                         int(underlay) if isinstance(underlay, int) else None))
        return mtu_for(rows)
    finally:
        nl.close()
