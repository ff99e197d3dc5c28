"""``ovsfab inspect`` and ``ovsfab show``: collect facts, change nothing.

Both commands gather plain facts into dataclasses with a ``to_json()``; the
CLI renders them as a tree or as JSON (schema in docs/json.md).

Where facts come from, and why:

* **Links** -- one rtnetlink link dump (plus one address dump) per namespace
  on ovsfab's netlink socket (netlink/rtnl.py: timeouts, ENOBUFS), decoding
  only the attributes read here (:func:`_link_request`).  A container interface's host peer is found through the
  veth's ``IFLA_LINK`` (the peer's ifindex) and ``IFLA_LINK_NETNSID`` (the
  peer's namespace *as numbered by the container's namespace*), never by
  name: a name says nothing about which namespace or which pair it is.  The
  match is confirmed from both ends (the host link's own ``IFLA_LINK`` must be
  the container interface's ifindex).
* **OVS** -- one python-ovs IDL sync of only the columns read here (no
  statistics: a host with thousands of ports should not ship them to us).
  OVSDB, not ``IFLA_MASTER``, says which bridge a port is on: on the netdev
  datapath the kernel knows of no master at all.
* **Docker** -- one API call: ``inspect`` for the container being inspected;
  for ``show``, one container *list* for all ports (never one call per port,
  and no namespace is entered: the OVSDB record says whose port it is),
  through the docker SDK, imported only when a port or the target is a
  Docker container (the import costs ~160 ms; the agent has it loaded).

Speed (issue #5: 300 attachments, "well under a second"): run by the agent,
these read its warm OVSDB session (the ``warm`` provider their callers pass); run in a one-shot
CLI process, pyroute2 is imported without its package ``__init__``
(:func:`_prepare_pyroute2`).  OVSDB rows are read from their synced data
(:func:`_scalar` and friends).  The private interfaces these rely on live
in plumbing/pyroute2_private.py and backends/ovs/python_ovs_private.py.
See docs/performance.md, "show and inspect" and "Private interfaces".

What ovsfab owns is decided by external_ids tags only, never by name
patterns.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple

from ovsfab.backends.base import KEY_ROLE
# Standard library only at import time (python-ovs is imported by its functions).
from ovsfab.backends.ovs import python_ovs_private
from ovsfab.errors import NotFound, OvsfabError, Unavailable
from ovsfab.model import (KEY_CONTAINER_ID, KEY_CONTAINER_NAME, KEY_IFNAME, KEY_TARGET, KEY_VLAN,
                          OVS_DOCKER_CONTAINER_ID, OVS_DOCKER_CONTAINER_IFACE, OWNER_KEY,
                          OWNER_VALUE, parse_target_spec)

LOG = logging.getLogger(__name__)

#: Bumped only on incompatible changes to the JSON (see docs/json.md).
SCHEMA_VERSION = 1


#: The only OVSDB columns inspect/show read; monitored by a read-only session.
OVSDB_COLUMNS: Dict[str, List[str]] = {
    "Bridge": ["name", "ports", "datapath_type", "external_ids"],
    "Port": ["name", "interfaces", "tag", "external_ids"],
    "Interface": ["name", "type", "ofport", "error", "external_ids", "options", "link_state", "bfd",
                  "bfd_status"],
}

#: OVS Interface types that are tunnels.
OVS_TUNNEL_TYPES = frozenset({"vxlan", "gre", "geneve", "stt", "erspan", "ip6erspan", "ip6gre",
                              "lisp", "gtpu", "bareudp", "srv6"})
#: Kernel link kinds that are tunnels (members of a Linux bridge).
LINUX_TUNNEL_KINDS = frozenset({"vxlan", "geneve", "gretap", "ip6gretap", "erspan", "ip6erspan",
                                "gre", "ip6gre", "ipip", "sit", "bareudp"})
#: Kernel link kinds that are never uplinks even when plugged into a bridge:
#: taps belong to VMs or userspace programs, veths are handled separately.
NOT_UPLINK_KINDS = frozenset({"tun", "veth", "bridge", "openvswitch"})

#: Port classes (the ``class`` field), in the order the tree lists them.
PORT_CLASSES = ("attachment", "ovs-docker", "foreign", "patch", "uplink", "tunnel", "internal")

IFF_UP = 0x1
IFF_LOOPBACK = 0x8

# Stale reason codes (documented in docs/json.md).
STALE_CONTAINER_GONE = "container-gone"
STALE_CONTAINER_STOPPED = "container-not-running"
STALE_NETNS_GONE = "netns-gone"
STALE_PROCESS_GONE = "process-gone"
STALE_INTERFACE_ERROR = "interface-error"
STALE_NO_OFPORT = "no-ofport"


# ---------------------------------------------------------------------------
# Facts
# ---------------------------------------------------------------------------
@dataclass
class LinkFacts:
    """One kernel link, as read from an rtnetlink dump."""

    index: int
    name: str
    kind: Optional[str]
    mac: Optional[str]
    mtu: Optional[int]
    admin_up: bool
    oper_state: str
    loopback: bool
    #: IFLA_LINK: for a veth, the peer's ifindex (in the peer's namespace).
    link_index: Optional[int]
    #: IFLA_LINK_NETNSID: the peer's namespace id, None when in the same namespace.
    link_netnsid: Optional[int]
    master: Optional[int]
    tunnel: Optional[Dict[str, Any]] = None
    #: IFLA_IFALIAS: where the Linux-bridge backend records ownership.
    alias: Optional[str] = None

    @property
    def state(self) -> str:
        return "up" if self.admin_up else "down"


@dataclass
class Owner:
    """Who a port belongs to, from its external_ids."""

    tool: str  # "ovsfab" | "ovs-docker"
    container: str
    container_id: str
    ifname: str
    target: Optional[str] = None

    def to_json(self) -> Dict[str, Any]:
        return {"tool": self.tool, "container": self.container, "container_id": self.container_id,
                "ifname": self.ifname, "target": self.target}


@dataclass
class PortFacts:
    """One bridge port: its class, owner, OpenFlow facts and health."""

    name: str
    cls: str
    interface_type: str
    ifindex: Optional[int] = None
    ofport: Optional[int] = None
    vlan: Optional[int] = None
    error: Optional[str] = None
    link_state: Optional[str] = None
    owner: Optional[Owner] = None
    tunnel: Optional[Dict[str, Any]] = None
    patch_peer: Optional[str] = None
    stale_reasons: List[str] = field(default_factory=list)

    @property
    def stale(self) -> bool:
        return bool(self.stale_reasons)

    def to_json(self) -> Dict[str, Any]:
        return {
            "name": self.name,
            "class": self.cls,
            "interface_type": self.interface_type,
            "ifindex": self.ifindex,
            "ofport": self.ofport,
            "vlan": self.vlan,
            "error": self.error,
            "link_state": self.link_state,
            "owner": self.owner.to_json() if self.owner else None,
            "tunnel": self.tunnel,
            "patch_peer": self.patch_peer,
            "stale": self.stale,
            "stale_reasons": list(self.stale_reasons),
        }


@dataclass
class BridgeFacts:
    """One bridge on the host, OVS or Linux, with its ports."""

    name: str
    kind: str  # "ovs" | "linux"
    datapath: Optional[str]
    owned: bool
    ports: List[PortFacts] = field(default_factory=list)

    def of_class(self, cls: str) -> List[PortFacts]:
        return [p for p in self.ports if p.cls == cls]

    def to_json(self) -> Dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "datapath": self.datapath,
                "ovsfab_owned": self.owned, "ports": [p.to_json() for p in self.ports]}


@dataclass
class ServiceStatus:
    """Whether a service (OVSDB, dockerd) was asked, and how it went."""

    status: str  # "ok" | "unavailable" | "not-needed"
    error: Optional[str] = None

    def to_json(self) -> Dict[str, Any]:
        return {"status": self.status, "error": self.error}


@dataclass
class ShowResult:
    """Every bridge on the host (or one)."""

    bridges: List[BridgeFacts]
    ovs: ServiceStatus
    docker: ServiceStatus
    notes: List[str] = field(default_factory=list)

    def to_json(self) -> Dict[str, Any]:
        return {"schema_version": SCHEMA_VERSION, "command": "show",
                "bridges": [b.to_json() for b in self.bridges],
                "ovs": self.ovs.to_json(), "docker": self.docker.to_json(), "notes": list(self.notes)}


@dataclass
class PeerFacts:
    """The host end of a container's veth, and the bridge it is plugged into."""

    ifindex: Optional[int]
    netnsid: Optional[int]
    in_host_namespace: bool
    name: Optional[str] = None
    #: Both ends of the pair are inside the container.
    in_container: bool = False
    bridge: Optional[BridgeFacts] = None
    #: The peer's own port on ``bridge`` (also in ``bridge.ports``).
    port: Optional[PortFacts] = None

    def to_json(self) -> Dict[str, Any]:
        br = None
        if self.bridge is not None:
            br = {
                "name": self.bridge.name,
                "kind": self.bridge.kind,
                "datapath": self.bridge.datapath,
                "ovsfab_owned": self.bridge.owned,
                "port": self.port.to_json() if self.port else None,
                "uplinks": [p.to_json() for p in self.bridge.of_class("uplink")],
                "tunnels": [p.to_json() for p in self.bridge.of_class("tunnel")],
            }
        return {"name": self.name, "ifindex": self.ifindex, "netnsid": self.netnsid,
                "in_host_namespace": self.in_host_namespace, "in_container": self.in_container,
                "bridge": br}


@dataclass
class InterfaceFacts:
    """One interface inside the container's namespace."""

    link: LinkFacts
    addresses: List[str]
    docker_network: Optional[str] = None
    peer: Optional[PeerFacts] = None

    def to_json(self) -> Dict[str, Any]:
        ln = self.link
        return {"name": ln.name, "ifindex": ln.index, "kind": ln.kind, "mac": ln.mac, "mtu": ln.mtu,
                "addresses": list(self.addresses), "state": ln.state,
                "oper_state": ln.oper_state, "docker_network": self.docker_network,
                "peer": self.peer.to_json() if self.peer else None}


@dataclass
class ContainerFacts:
    """The inspected target."""

    name: str
    kind: str  # "docker" | "netns" | "pid"
    target: str
    id: Optional[str]
    pid: Optional[int]
    state: str

    @property
    def short_id(self) -> Optional[str]:
        return self.id[:12] if self.id else None

    def to_json(self) -> Dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "target": self.target, "id": self.id,
                "short_id": self.short_id, "pid": self.pid, "state": self.state}


@dataclass
class InspectResult:
    """A container and the path of each of its interfaces to a bridge."""

    container: ContainerFacts
    interfaces: List[InterfaceFacts]
    ovs: ServiceStatus
    notes: List[str] = field(default_factory=list)

    def to_json(self) -> Dict[str, Any]:
        return {"schema_version": SCHEMA_VERSION, "command": "inspect",
                "container": self.container.to_json(),
                "interfaces": [i.to_json() for i in self.interfaces],
                "ovs": self.ovs.to_json(), "notes": list(self.notes)}


# ---------------------------------------------------------------------------
# Netlink
# ---------------------------------------------------------------------------
def _prepare_pyroute2() -> None:
    """Before this process's first pyroute2 import: its package ``__init__`` is deferred.

    ~130 ms of a one-shot ``show``/``inspect`` (see plumbing/pyroute2_private.py);
    a no-op in the agent, which has pyroute2 loaded.
    """
    from ovsfab.plumbing.pyroute2_private import defer_package_init  # noqa: PLC0415

    defer_package_init()


def _addr_text(value: object) -> Optional[str]:
    return str(value) if value not in (None, "", "0.0.0.0", "::") else None


def _linux_tunnel(kind: Optional[str], data: Any) -> Optional[Dict[str, Any]]:
    """Remote/local/key of a kernel tunnel link (best effort: attrs vary by kind)."""
    if kind not in LINUX_TUNNEL_KINDS:
        return None
    get = data.get_attr if data is not None and hasattr(data, "get_attr") else (lambda _k: None)
    if kind == "vxlan":
        remote = get("IFLA_VXLAN_GROUP") or get("IFLA_VXLAN_GROUP6")
        local = get("IFLA_VXLAN_LOCAL") or get("IFLA_VXLAN_LOCAL6")
        key = get("IFLA_VXLAN_ID")
    elif kind == "geneve":
        remote = get("IFLA_GENEVE_REMOTE") or get("IFLA_GENEVE_REMOTE6")
        local, key = None, get("IFLA_GENEVE_ID")
    else:
        remote, local = get("IFLA_GRE_REMOTE"), get("IFLA_GRE_LOCAL")
        key = get("IFLA_GRE_OKEY")
    port = get("IFLA_VXLAN_PORT") if kind == "vxlan" else None
    return {"type": kind, "remote_ip": _addr_text(remote), "local_ip": _addr_text(local),
            "key": str(key) if key not in (None, 0) else None,
            "dst_port": str(port) if port else None, "bfd": None}


def parse_link(msg: Any) -> LinkFacts:
    """LinkFacts from one pyroute2 ifinfmsg."""
    # One pass over the attributes: msg.get_attr() scans them all per name.
    slots: Dict[str, Any] = {}
    for slot in msg["attrs"]:
        slots.setdefault(slot[0], slot)  # the first of a name, as get_attr() returns

    def get(name: str) -> Any:
        slot = slots.get(name)
        return slot[1] if slot is not None else None

    info = get("IFLA_LINKINFO")
    kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
    data = info.get_attr("IFLA_INFO_DATA") if info is not None else None
    flags = int(msg["flags"])
    return LinkFacts(
        index=int(msg["index"]),
        name=get("IFLA_IFNAME"),
        kind=kind,
        mac=get("IFLA_ADDRESS"),
        mtu=get("IFLA_MTU"),
        admin_up=bool(flags & IFF_UP),
        oper_state=str(get("IFLA_OPERSTATE") or "UNKNOWN").lower(),
        loopback=bool(flags & IFF_LOOPBACK),
        link_index=get("IFLA_LINK"),
        link_netnsid=get("IFLA_LINK_NETNSID"),
        master=get("IFLA_MASTER"),
        tunnel=_linux_tunnel(kind, data),
        alias=get("IFLA_IFALIAS"),
    )


#: The link attributes :func:`parse_link` reads.
LINK_ATTRS = frozenset({"IFLA_IFNAME", "IFLA_ADDRESS", "IFLA_MTU", "IFLA_OPERSTATE", "IFLA_LINK",
                        "IFLA_LINK_NETNSID", "IFLA_MASTER", "IFLA_IFALIAS", "IFLA_LINKINFO"})


def _link_request() -> Any:
    """An RTM_GETLINK dump request whose replies decode only :data:`LINK_ATTRS`.

    The replies are decoded by the request's class: a lean ifinfmsg
    (plumbing/pyroute2_private.py, ~4x faster for a few hundred links) or,
    if pyroute2's internals changed, pyroute2's own.  Statistics are left out
    by the kernel (they are most of each message).
    """
    from ovsfab.plumbing.pyroute2_private import lean_link_message  # noqa: PLC0415
    from ovsfab.netlink.rtnl import RTEXT_FILTER_SKIP_STATS  # noqa: PLC0415

    cls = lean_link_message(LINK_ATTRS)
    if cls is None:
        from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg as cls  # noqa: PLC0415, N813
    msg = cls()
    msg["attrs"] = [("IFLA_EXT_MASK", RTEXT_FILTER_SKIP_STATS)]
    return msg


def _netlink_error(exc: OSError, what: str) -> OvsfabError:
    # Imported only on failure: plumbing.links is a big module (~20 ms) show does not otherwise need.
    from ovsfab.plumbing.links import netlink_error  # noqa: PLC0415

    return netlink_error(exc, what)


def dump_links(sock: Any) -> Dict[int, LinkFacts]:
    """All links of the namespace the :class:`~ovsfab.netlink.rtnl.Rtnl` ``sock`` lives in, by ifindex (one dump)."""
    from ovsfab.netlink.rtnl import RTM_GETLINK  # noqa: PLC0415

    try:
        return {lf.index: lf for lf in (parse_link(m) for m in sock.dump(_link_request(), RTM_GETLINK))}
    except OSError as exc:
        raise _netlink_error(exc, "cannot list links") from exc


def dump_addresses(sock: Any) -> Dict[int, List[str]]:
    """Global-scope addresses by ifindex, as ADDR/PREFIX (one dump)."""
    from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg  # noqa: PLC0415

    from ovsfab.netlink.rtnl import RTM_GETADDR  # noqa: PLC0415

    out: Dict[int, List[str]] = {}
    try:
        msgs = sock.dump(ifaddrmsg(), RTM_GETADDR)
    except OSError as exc:
        raise _netlink_error(exc, "cannot list addresses") from exc
    for msg in msgs:
        # Link-local and host-scope addresses are the kernel's own, not configuration.
        if msg["scope"] != 0:
            continue
        out.setdefault(int(msg["index"]), []).append(f"{msg.get_attr('IFA_ADDRESS')}/{msg['prefixlen']}")
    return out


# ---------------------------------------------------------------------------
# OVSDB
# ---------------------------------------------------------------------------
#: Set by the agent (ovsfab/agent/server.py) for the one command it runs:
#: A provider of warm sessions (the agent's): remote -> an already synced
#: session monitoring at least :data:`OVSDB_COLUMNS` whose close() keeps it
#: open, or None for a fresh one.
WarmSessions = Callable[[str], Optional[Any]]


def open_ovsdb(remote: Optional[str], timeout: float, warm: Optional[WarmSessions] = None) -> Any:
    """A read-only IDL session monitoring only :data:`OVSDB_COLUMNS` (``warm``'s if it has one)."""
    from ovsfab.backends.ovs.idl import IdlSession, default_remote  # noqa: PLC0415

    remote = remote or default_remote()
    if warm is not None:
        session = warm(remote)
        if session is not None:
            return session
    return IdlSession(remote, OVSDB_COLUMNS, timeout=timeout)


def _owner(port_ids: Mapping[str, str], iface_ids: Mapping[str, str]) -> Optional[Owner]:
    if port_ids.get(OWNER_KEY) == OWNER_VALUE and port_ids.get(KEY_CONTAINER_ID):
        return Owner("ovsfab", port_ids.get(KEY_CONTAINER_NAME, ""), port_ids[KEY_CONTAINER_ID],
                     port_ids.get(KEY_IFNAME, ""), port_ids.get(KEY_TARGET) or None)
    if port_ids.get(OWNER_KEY) == OWNER_VALUE or iface_ids.get(OWNER_KEY) == OWNER_VALUE:
        return None
    # ovs-docker tags only the Interface row; accept the Port row too.
    for ids in (iface_ids, port_ids):
        cid = ids.get(OVS_DOCKER_CONTAINER_ID)
        if cid:
            return Owner("ovs-docker", cid, cid, ids.get(OVS_DOCKER_CONTAINER_IFACE, ""))
    return None


def _is_uplink_link(link: Optional[LinkFacts]) -> bool:
    """A kernel device that carries the bridge's traffic off the host.

    Veths count only when both ends are in this namespace (e.g. a pair wiring
    an OVS bridge to a Linux bridge); a veth whose peer is elsewhere leads to
    a container.
    """
    if link is None:
        return False
    if link.kind == "veth":
        return link.link_netnsid is None
    return link.kind not in NOT_UPLINK_KINDS and link.kind not in LINUX_TUNNEL_KINDS


@dataclass
class _OvsIface:
    """The columns of one Interface row, read once (python-ovs converts on every access)."""

    name: str
    type: str
    ofport: Optional[int]
    error: Optional[str]
    link_state: Optional[str]
    external_ids: Dict[str, str]
    options: Dict[str, str]
    bfd: Dict[str, str]
    bfd_status: Dict[str, str]

    @classmethod
    def read(cls, row: Any) -> "_OvsIface":
        ofport = _scalar(row, "ofport")
        return cls(name=_scalar(row, "name"), type=_scalar(row, "type") or "",
                   ofport=ofport if isinstance(ofport, int) else None,
                   error=_scalar(row, "error") or None, link_state=_scalar(row, "link_state"),
                   external_ids=_map(row, "external_ids"), options=_map(row, "options"),
                   bfd=_map(row, "bfd"), bfd_status=_map(row, "bfd_status"))


# Column readers: python-ovs's Row.__getattr__ rebuilds and re-validates a
# Datum for every set or map column on every access (~37 ms against ~8 ms
# for 300 ports); these read the synced Datum (backends/ovs/python_ovs_private.py).
_scalar, _map, _refs = python_ovs_private.scalar, python_ovs_private.map_of, python_ovs_private.refs


def _bfd(iface: Optional[_OvsIface]) -> Optional[Dict[str, Any]]:
    """A tunnel's BFD as vswitchd reports it; None when BFD is not enabled on it."""
    if iface is None or iface.bfd.get("enable") != "true":
        return None
    st = iface.bfd_status
    return {"state": st.get("state"), "remote_state": st.get("remote_state"),
            "diagnostic": st.get("diagnostic") or None}


def classify_ovs_port(name: str, tag: Optional[int], port_ids: Mapping[str, str],
                      ifaces: List[_OvsIface], links_by_name: Mapping[str, LinkFacts]) -> PortFacts:
    """PortFacts for one OVS Port (its columns and its Interfaces' columns)."""
    iface = next((i for i in ifaces if i.name == name), ifaces[0] if ifaces else None)
    iface_ids = iface.external_ids if iface is not None else {}
    itype = iface.type if iface is not None else ""
    options = iface.options if iface is not None else {}
    link = links_by_name.get(iface.name) if iface is not None else None
    facts = PortFacts(
        name=name,
        cls="foreign",
        interface_type=itype or "system",
        ifindex=link.index if link is not None else None,
        ofport=iface.ofport if iface is not None else None,
        vlan=tag,
        error=iface.error if iface is not None else None,
        link_state=iface.link_state if iface is not None else None,
        owner=_owner(port_ids, iface_ids),
    )
    role = port_ids.get(KEY_ROLE) or iface_ids.get(KEY_ROLE)
    if itype in OVS_TUNNEL_TYPES or role == "tunnel":
        facts.cls = "tunnel"
        facts.tunnel = {"type": itype or None, "remote_ip": options.get("remote_ip"),
                        "local_ip": options.get("local_ip"), "key": options.get("key"),
                        "dst_port": options.get("dst_port"), "bfd": _bfd(iface)}
    elif role == "uplink":
        facts.cls = "uplink"
    elif facts.owner is not None:
        facts.cls = "attachment" if facts.owner.tool == "ovsfab" else "ovs-docker"
    elif itype == "internal":
        facts.cls = "internal"
    elif itype == "patch":
        facts.cls = "patch"
        facts.patch_peer = options.get("peer")
    elif itype in ("", "system", "dpdk", "afxdp") and (len(ifaces) > 1 or _is_uplink_link(link)):
        # A bond (several interfaces) or a NIC-like device: traffic leaves here.
        facts.cls = "uplink"
    if facts.error:
        facts.stale_reasons.append(STALE_INTERFACE_ERROR)
    if facts.ofport == -1:
        facts.stale_reasons.append(STALE_NO_OFPORT)
    return facts


def ovs_bridges(session: Any, links_by_name: Mapping[str, LinkFacts],
                by_interface: Optional[Dict[str, Tuple[BridgeFacts, PortFacts]]] = None
                ) -> List[BridgeFacts]:
    """Every OVS bridge with its classified ports, sorted by name.

    When ``by_interface`` is given, it is filled with {Interface name:
    (bridge, port)}: a port's interface names are the kernel link names.
    """
    ifaces = {uuid: _OvsIface.read(row) for uuid, row in session.table("Interface").items()}
    port_rows = session.table("Port")
    out = []
    for br in session.table("Bridge").values():
        facts = BridgeFacts(name=_scalar(br, "name"), kind="ovs",
                            datapath=_scalar(br, "datapath_type") or "system",
                            owned=_map(br, "external_ids").get(OWNER_KEY) == OWNER_VALUE)
        for port_uuid in _refs(br, "ports"):
            prow = port_rows.get(port_uuid)
            if prow is None:  # referential integrity makes this a transient state at most
                continue
            mine = [ifaces[i] for i in _refs(prow, "interfaces") if i in ifaces]
            tag = _scalar(prow, "tag")
            port = classify_ovs_port(_scalar(prow, "name"), tag if isinstance(tag, int) else None,
                                     _map(prow, "external_ids"), mine, links_by_name)
            facts.ports.append(port)
            if by_interface is not None:
                for iface in mine:
                    by_interface[iface.name] = (facts, port)
        facts.ports.sort(key=lambda p: p.name)
        out.append(facts)
    return sorted(out, key=lambda b: b.name)


def linux_bridges(links: Mapping[int, LinkFacts]) -> List[BridgeFacts]:
    """Every Linux bridge in this namespace, members classified by link kind (and ovsfab's alias record)."""
    out = []
    for br in links.values():
        if br.kind != "bridge":
            continue
        # Imported only when there is a Linux bridge (no pyroute2/ovs import, but a big module).
        from ovsfab.backends.linux import decode_record  # noqa: PLC0415
        ports = []
        for ln in links.values():
            if ln.master != br.index:
                continue
            cls = "foreign"
            if ln.tunnel is not None:
                cls = "tunnel"
            elif _is_uplink_link(ln):
                cls = "uplink"
            # -- Linux-bridge backend: ownership recorded in the interface alias --
            ids = decode_record(ln.alias) or {}
            owner = _owner(ids, {}) if ids else None
            role = ids.get(KEY_ROLE)
            if role in ("uplink", "tunnel"):
                cls = role
            elif owner is not None:
                cls = "attachment"
            vlan = ids.get(KEY_VLAN)
            ports.append(PortFacts(name=ln.name, cls=cls, interface_type=ln.kind or "system",
                                   ifindex=ln.index, link_state=ln.oper_state, tunnel=ln.tunnel,
                                   owner=owner, vlan=int(vlan) if vlan and vlan.isdigit() else None))
        # A bridge the Linux backend created carries its record in its alias;
        # any other Linux bridge (and what is plugged into it untagged) is foreign.
        owned = (decode_record(br.alias) or {}).get(KEY_ROLE) == "bridge"
        out.append(BridgeFacts(name=br.name, kind="linux", datapath=None, owned=owned,
                               ports=sorted(ports, key=lambda p: p.name)))
    return sorted(out, key=lambda b: b.name)


# ---------------------------------------------------------------------------
# show
# ---------------------------------------------------------------------------
def _docker_containers(docker_host: Optional[str] = None) -> List[Dict[str, Any]]:
    """Every container dockerd knows of (one API call, through the docker SDK); raises Unavailable."""
    import docker.errors  # noqa: PLC0415 - lazy: the SDK costs ~160 ms to import
    import requests.exceptions  # noqa: PLC0415

    # The one place that knows DOCKER_HOST and the timeout.  Its client is
    # kept for the process: making one asks dockerd for its API version (a
    # round trip) that the agent would otherwise pay on every show.
    from ovsfab.plumbing.containers import _inspect_client  # noqa: PLC0415

    try:
        return list(_inspect_client(docker_host).containers(all=True))
    except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
        raise Unavailable(f"cannot reach dockerd: {type(exc).__name__}") from None


def _inspect_container(ref: str, docker_host: Optional[str] = None) -> Dict[str, Any]:
    """``docker inspect REF`` (one API call), with the errors of plumbing.containers._inspect_docker."""
    from ovsfab.plumbing import containers  # noqa: PLC0415

    return containers._inspect_docker(ref, docker_host)  # noqa: SLF001 - shares the client and the error mapping


def _docker_index(listing: Iterable[Mapping[str, Any]]) -> Tuple[Dict[str, Mapping[str, Any]],
                                                                 Dict[str, Mapping[str, Any]]]:
    by_id: Dict[str, Mapping[str, Any]] = {}
    by_name: Dict[str, Mapping[str, Any]] = {}
    for c in listing:
        by_id[c["Id"]] = c
        for n in c.get("Names") or []:
            by_name[n.lstrip("/")] = c
    return by_id, by_name


def _find_container(ref: str, by_id: Mapping[str, Mapping[str, Any]],
                    by_name: Mapping[str, Mapping[str, Any]]) -> Optional[Mapping[str, Any]]:
    if ref in by_id:
        return by_id[ref]
    if ref in by_name:
        return by_name[ref]
    # ovs-docker records whatever the user typed, possibly a short ID.
    if len(ref) >= 6 and all(ch in "0123456789abcdef" for ch in ref):
        hits = [c for cid, c in by_id.items() if cid.startswith(ref)]
        if len(hits) == 1:
            return hits[0]
    return None


def _target_kind(owner: Owner) -> str:
    """docker / netns / pid, from the recorded target (or the container key)."""
    spec = owner.target or owner.container_id
    try:
        kind, _ = parse_target_spec(spec)
    except OvsfabError:
        return "docker"
    return kind


def mark_stale(bridges: Iterable[BridgeFacts],
               docker_listing: Optional[List[Dict[str, Any]]]) -> None:
    """Flag owned ports whose container is gone.

    ``docker_listing`` is the result of one container list call, or None when
    dockerd could not be asked (Docker-backed ports are then left unflagged).
    """
    by_id, by_name = _docker_index(docker_listing or [])
    for br in bridges:
        for port in br.ports:
            owner = port.owner
            if owner is None:
                continue
            kind = "docker" if owner.tool == "ovs-docker" else _target_kind(owner)
            spec = owner.target or owner.container_id
            if kind == "netns":
                from ovsfab.plumbing.netns import named_path  # noqa: PLC0415

                if not os.path.exists(named_path(spec[len("netns:"):])):
                    port.stale_reasons.append(STALE_NETNS_GONE)
            elif kind == "pid":
                if not os.path.exists(f"/proc/{spec[len('pid:'):]}/ns/net"):
                    port.stale_reasons.append(STALE_PROCESS_GONE)
            elif docker_listing is not None:
                found = _find_container(owner.container_id, by_id, by_name)
                if found is None:
                    port.stale_reasons.append(STALE_CONTAINER_GONE)
                else:
                    if owner.tool == "ovs-docker":
                        # Say which container it is, not only what the user typed.
                        names = found.get("Names") or []
                        owner.container = names[0].lstrip("/") if names else owner.container
                        owner.container_id = found["Id"]
                    if found.get("State") not in ("running", "paused"):
                        port.stale_reasons.append(STALE_CONTAINER_STOPPED)
            port.stale_reasons.sort()


def show(bridge: Optional[str] = None, remote: Optional[str] = None,
         timeout: float = 10.0, with_ovs: bool = True, warm: Optional[WarmSessions] = None,
         docker_host: Optional[str] = None) -> ShowResult:
    """Every bridge on this host (or ``bridge``), its ports classified.

    Reads OVSDB once, dumps this namespace's links once and, only if some
    port belongs to a Docker container, lists Docker containers once.
    Raises Unavailable when OVSDB cannot be reached, NotFound for an unknown
    ``bridge``.
    """
    from ovsfab.netlink.rtnl import Rtnl  # noqa: PLC0415

    _prepare_pyroute2()
    with Rtnl() as sock:
        links = dump_links(sock)
    by_name = {ln.name: ln for ln in links.values()}
    bridges: List[BridgeFacts] = []
    ovs_status = ServiceStatus("not-needed")
    if with_ovs:  # False with --backend linux: a host without OVS
        session = open_ovsdb(remote, timeout, warm)
        try:
            bridges = ovs_bridges(session, by_name)
        finally:
            session.close()
        ovs_status = ServiceStatus("ok")
    bridges += linux_bridges(links)
    if bridge is not None:
        bridges = [b for b in bridges if b.name == bridge]
        if not bridges:
            raise NotFound(f"no bridge named {bridge} on this host", "run ovsfab show to list them")
    bridges.sort(key=lambda b: (b.name, b.kind))

    notes: List[str] = []
    needs_docker = any(p.owner is not None and (p.owner.tool == "ovs-docker" or _target_kind(p.owner) == "docker")
                       for b in bridges for p in b.ports)
    docker_status = ServiceStatus("not-needed")
    listing: Optional[List[Dict[str, Any]]] = None
    if needs_docker:
        try:
            listing = _docker_containers(docker_host)
            docker_status = ServiceStatus("ok")
        except Unavailable as exc:
            docker_status = ServiceStatus("unavailable", str(exc))
            notes.append(f"{exc}: Docker containers not checked for staleness")
    mark_stale(bridges, listing)
    return ShowResult(bridges, ovs_status, docker_status, notes)


# ---------------------------------------------------------------------------
# inspect
# ---------------------------------------------------------------------------
def _resolve(spec: str, docker_host: Optional[str] = None) -> Tuple[ContainerFacts, Optional[str], Dict[str, str]]:
    """The target's facts, its namespace file (None if it has none) and, for
    Docker, {MAC: network name} from the container's own network settings."""
    from ovsfab.plumbing import containers  # noqa: PLC0415

    kind, ref = parse_target_spec(spec)
    if kind != "docker":
        target = containers.resolve(spec, docker_host=docker_host)
        facts = ContainerFacts(name=target.name, kind=kind, target=target.key, id=None,
                               pid=target.pid, state="running")
        return facts, target.netns_path, {}
    # One inspect call gives identity, state, PID and Docker's own networks.
    info = _inspect_container(ref, docker_host)
    state = info.get("State") or {}
    pid = int(state.get("Pid") or 0)
    facts = ContainerFacts(name=(info.get("Name") or ref).lstrip("/"), kind="docker",
                           target=info["Id"], id=info["Id"], pid=pid or None,
                           state=str(state.get("Status") or "unknown"))
    networks = ((info.get("NetworkSettings") or {}).get("Networks") or {})
    macs = {str(n.get("MacAddress")).lower(): name for name, n in networks.items() if n.get("MacAddress")}
    return facts, (f"/proc/{pid}/ns/net" if pid > 0 else None), macs


def _peer_in_host(inner: Any, host_ns_fd: int, link: LinkFacts,
                  host_links: Mapping[int, LinkFacts], same_ns: bool) -> PeerFacts:
    """Find a container veth's peer among the host's links by ifindex, from both ends."""
    if link.link_netnsid is None:
        # No LINK_NETNSID: the peer is in the container's own namespace.
        return PeerFacts(ifindex=link.link_index, netnsid=None, in_host_namespace=same_ns,
                         in_container=True)
    from ovsfab.netlink.rtnl import netnsid  # noqa: PLC0415

    host_nsid = netnsid(inner, fd=host_ns_fd)  # None: the nsid check is skipped
    peer = PeerFacts(ifindex=link.link_index, netnsid=link.link_netnsid, in_host_namespace=False)
    if host_nsid is not None and host_nsid >= 0 and host_nsid != link.link_netnsid:
        return peer  # the peer lives in a third namespace
    cand = host_links.get(link.link_index) if link.link_index is not None else None
    # ifindexes are per namespace: confirm the pairing from the host end too.
    if cand is not None and cand.kind == "veth" and cand.link_index == link.index:
        peer.name = cand.name
        peer.in_host_namespace = True
    return peer


def inspect(spec: str, remote: Optional[str] = None, timeout: float = 10.0,
            warm: Optional[WarmSessions] = None, docker_host: Optional[str] = None) -> InspectResult:
    """Container -> interfaces -> host peers -> bridges (-> uplinks, tunnels).

    Raises NotFound for an unknown container.  An unreachable OVSDB does not
    fail the command: the namespace facts are returned with ``ovs.status`` set
    to "unavailable" and the OVS facts left out.
    """
    from ovsfab.plumbing.netns import Namespace  # noqa: PLC0415

    from ovsfab.netlink.rtnl import Rtnl  # noqa: PLC0415

    _prepare_pyroute2()
    container, ns_path, docker_macs = _resolve(spec, docker_host)
    notes: List[str] = []
    ovs_status = ServiceStatus("not-needed")
    if ns_path is None:
        notes.append(f"{container.name} is {container.state}: it has no network namespace")
        return InspectResult(container, [], ovs_status, notes)
    try:
        ns = Namespace.open(ns_path)
    except NotFound:
        container.state = "gone" if container.kind != "docker" else container.state
        notes.append(f"the network namespace of {container.name} is gone")
        return InspectResult(container, [], ovs_status, notes)

    host_ns = Namespace.current()
    try:
        same_ns = ns.inode() == host_ns.inode()
        if same_ns:
            notes.append(f"{container.name} shares this host's network namespace")
        with ns.entered():
            inner = Rtnl()  # the socket stays in the container's namespace for life
        try:
            inner_links = dump_links(inner)
            addrs = dump_addresses(inner)
            with Rtnl() as host_sock:
                host_links = dump_links(host_sock)
            interfaces: List[InterfaceFacts] = []
            for link in sorted(inner_links.values(), key=lambda ln: ln.index):
                if link.loopback:
                    continue
                facts = InterfaceFacts(link=link, addresses=addrs.get(link.index, []),
                                       docker_network=docker_macs.get((link.mac or "").lower()))
                if link.kind == "veth" and not same_ns:
                    facts.peer = _peer_in_host(inner, host_ns.fd, link, host_links, same_ns)
                    if facts.peer.in_container:
                        peer_link = inner_links.get(facts.peer.ifindex or -1)
                        facts.peer.name = peer_link.name if peer_link else None
                        notes.append(f"the peer of {link.name} is inside {container.name} too")
                    elif not facts.peer.in_host_namespace:
                        notes.append(f"the peer of {link.name} is not in this namespace "
                                     f"(netnsid {facts.peer.netnsid}); run ovsfab where it lives")
                interfaces.append(facts)
        finally:
            inner.close()
    finally:
        host_ns.close()
        ns.close()

    linux = {b.name: b for b in linux_bridges(host_links)}
    host_by_name = {ln.name: ln for ln in host_links.values()}
    need_ovs = []
    for facts in interfaces:
        peer = facts.peer
        if peer is None or peer.name is None:
            continue
        hlink = host_by_name[peer.name]
        master = host_links.get(hlink.master) if hlink.master is not None else None
        if master is not None and master.kind == "bridge":
            peer.bridge = linux[master.name]
            peer.port = next(p for p in peer.bridge.ports if p.name == peer.name)
        else:
            # On the netdev datapath there is no kernel master: OVSDB knows.
            need_ovs.append(peer)
    if need_ovs:
        try:
            session = open_ovsdb(remote, timeout, warm)
        except Unavailable as exc:
            ovs_status = ServiceStatus("unavailable", str(exc))
            notes.append(f"OVS facts unavailable: {exc}")
        else:
            ovs_status = ServiceStatus("ok")
            by_interface: Dict[str, Tuple[BridgeFacts, PortFacts]] = {}
            try:
                ovs_bridges(session, host_by_name, by_interface)
            finally:
                session.close()
            for peer in need_ovs:
                # An OVS Interface of a system device is named after the kernel link.
                hit = by_interface.get(peer.name or "")
                if hit is not None:
                    peer.bridge, peer.port = hit
    return InspectResult(container, interfaces, ovs_status, notes)
