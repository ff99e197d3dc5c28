"""The facts ``show`` and ``inspect`` gather, and their JSON (schema in docs/json.md).

Plain dataclasses with ``to_json()``; the readers (inspect_links.py: the
kernel, inspect_ovsdb.py: OVSDB) fill them, ``ops/inspect.py`` assembles
them, ``cli/render.py`` turns their JSON into text.  Also the classification
both readers share: who owns a port (external_ids, or the Linux backend's
alias record) and which kernel links carry traffic off the host.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional

from ovsfab.model import (KEY_CONTAINER_ID, KEY_CONTAINER_NAME, KEY_IFNAME, KEY_TARGET, OVS_DOCKER_CONTAINER_ID,
                          OVS_DOCKER_CONTAINER_IFACE, OWNER_KEY, OWNER_VALUE)

#: Bumped only on incompatible changes to the JSON (see docs/json.md).
SCHEMA_VERSION = 1

#: Kernel link kinds that are tunnels (members of a Linux bridge).
LINUX_TUNNEL_KINDS = frozenset({"vxlan", "geneve", "gretap", "ip6gretap", "erspan", "ip6erspan",
                                "gre", "ip6gre", "ipip", "sit", "bareudp"})
#: Kernel link kinds that are never uplinks even when plugged into a bridge:
#: taps belong to VMs or userspace programs, veths are handled separately.
NOT_UPLINK_KINDS = frozenset({"tun", "veth", "bridge", "openvswitch"})

#: Port classes (the ``class`` field), in the order the tree lists them.
PORT_CLASSES = ("attachment", "ovs-docker", "foreign", "patch", "uplink", "tunnel", "internal")

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
    #: A Docker driver endpoint's ID (ops/endpoint.py): Docker, not the record, knows its container.
    endpoint: Optional[str] = None

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
# Classification shared by the OVS and the Linux readers
# ---------------------------------------------------------------------------
def owner_of(port_ids: Mapping[str, str], iface_ids: Mapping[str, str]) -> Optional[Owner]:
    if port_ids.get(OWNER_KEY) == OWNER_VALUE and port_ids.get(KEY_CONTAINER_ID):
        from ovsfab.backends.base import KEY_ROLE  # noqa: PLC0415
        from ovsfab.ops.endpoint import KEY_ENDPOINT_ID, ROLE_DOCKER  # noqa: PLC0415

        endpoint = port_ids.get(KEY_ENDPOINT_ID) if port_ids.get(KEY_ROLE) == ROLE_DOCKER else None
        return Owner("ovsfab", port_ids.get(KEY_CONTAINER_NAME, ""), port_ids[KEY_CONTAINER_ID],
                     port_ids.get(KEY_IFNAME, ""), port_ids.get(KEY_TARGET) or None, endpoint or None)
    if port_ids.get(OWNER_KEY) == OWNER_VALUE or iface_ids.get(OWNER_KEY) == OWNER_VALUE:
        return None
    # ovs-docker tags only the Interface row; accept the Port row too.
    for ids in (iface_ids, port_ids):
        cid = ids.get(OVS_DOCKER_CONTAINER_ID)
        if cid:
            return Owner("ovs-docker", cid, cid, ids.get(OVS_DOCKER_CONTAINER_IFACE, ""))
    return None


def is_uplink_link(link: Optional[LinkFacts]) -> bool:
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


