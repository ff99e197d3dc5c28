"""What ``show`` and ``inspect`` read from OVSDB: bridges, ports and interfaces, classified.

One python-ovs IDL sync of only :data:`OVSDB_COLUMNS` (no statistics: a host
with thousands of ports should not ship them to us), or the agent's warm
session.  OVSDB, not ``IFLA_MASTER``, says which bridge a port is on: on the
netdev datapath the kernel knows of no master at all.  Rows are read from
their synced data (backends/ovs/python_ovs_private.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from ovsfab.backends.base import KEY_ROLE
# Standard library only at import time (python-ovs is imported by its functions).
from ovsfab.backends.ovs import python_ovs_private
from ovsfab.model import OWNER_KEY, OWNER_VALUE
from ovsfab.ops.inspect_facts import (STALE_INTERFACE_ERROR, STALE_NO_OFPORT, BridgeFacts, LinkFacts, PortFacts,
                                      is_uplink_link, owner_of)


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
        owner=owner_of(port_ids, iface_ids),
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
    elif itype in ("", "system", "dpdk", "afxdp") and (len(ifaces) > 1 or is_uplink_link(link)):
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


