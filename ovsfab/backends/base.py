"""The small interface every backend implements.

A backend knows bridges and ports, not plans: the operations in
:mod:`ovsfab.ops` decide *what* to do and in which order, and undo on
failure; a backend makes one change at a time, atomically, and raises an
:class:`ovsfab.errors.OvsfabError` when the switch refuses it.  Verbs follow
ovs-vsctl (``add_port``, ``del_port``) with ``may_exist`` / ``if_exists``.
"""

from __future__ import annotations

import abc
import os
from dataclasses import dataclass, field
from typing import Any, Dict, FrozenSet, List, Optional, Tuple

from ovsfab.errors import OperationFailed
from ovsfab.model import Attachment

#: external_ids key naming what an ovsfab port is for ("uplink" | "tunnel");
#: attachments have none (they predate it).
KEY_ROLE = "ovsfab-role"



def is_attachment(att: Attachment) -> bool:
    """True for container attachments (not uplinks or tunnels, which also carry the owner tag)."""
    return KEY_ROLE not in att.external_ids and bool(att.container_key) and bool(att.ifname)


#: Capability: tunnels can run BFD (Interface ``bfd`` / ``bfd_status``).
CAP_BFD = "bfd"
#: Capability: a port's trunk VLANs, requested OpenFlow port number and extra
#: external_ids can be set after it is added (``set_port_extras``; ovs-cni's options).
CAP_PORT_EXTRAS = "port-extras"
#: Bridge external_ids key (+ port name) holding a port's record while a
#: restore has it removed (``del_ports(journal=True)``); the add clears it.
JOURNAL_PREFIX = "ovsfab-restoring-"
#: Capability: ovsfab's own keys in bridges' and ports' external_ids are read
#: and set one by one (``bridge_names``, ``set_bridge_key``, ``set_port_key``):
#: the Docker driver keeps its networks and sandboxes there, not in a file.
CAP_RECORDS = "records"
#: Capability: many ports removed in one change (one OVSDB transaction), safe
#: to run in a thread of its own while the caller works on links.
CAP_BATCH = "batch"


@dataclass
class PortResult:
    """What ``add_port`` did."""

    ofport: Optional[int]
    created_bridge: bool
    datapath: str
    #: The port actually used, when the backend chose it (a Linux VXLAN
    #: device is shared by every remote of one key); None: the one asked for.
    port: Optional[str] = None


#: The error :meth:`Backend.add_many` reports for a port whose row OVSDB does
#: not hold after the commit: ovs-vswitchd never removes rows, so this is
#: ovsdb-server restarting (or another client deleting the port) mid-way.
NOT_IN_OVSDB = "not in OVSDB after the commit"


def add_failed(port: str, bridge: str, error: str, more: int = 0) -> OperationFailed:
    """The one-line error for ports :meth:`Backend.add_many` could not add, blaming the right daemon."""
    also = f" (and {more} more)" if more else ""
    if error == NOT_IN_OVSDB:
        return OperationFailed(f"OVSDB lost {port} on {bridge} during the commit{also}: ovsdb-server restarted "
                               "or another client removed it", "run the command again; it converges")
    return OperationFailed(f"ovs-vswitchd could not add {port} to {bridge}: {error}{also}", "see ovs-vswitchd.log")


class Backend(abc.ABC):
    """A switch ovsfab plugs host-side interfaces into."""

    #: "ovs" or "linux".
    kind: str = ""
    #: What this backend offers beyond the abstract methods, declared so that
    #: operations ask instead of catching AttributeError: CAP_BFD, ...
    capabilities: FrozenSet[str] = frozenset()

    @abc.abstractmethod
    def bridge_datapath(self, bridge: str) -> Optional[str]:
        """The bridge's datapath ("system", "netdev", "linux"), or None if it does not exist."""

    @abc.abstractmethod
    def find_attachment(self, container_key: str, ifname: str) -> Optional[Attachment]:
        """The recorded attachment of (container, ifname), if any, on any bridge."""

    @abc.abstractmethod
    def list_attachments(self, bridge: Optional[str] = None) -> List[Attachment]:
        """Every attachment ovsfab owns (on one bridge, or all)."""

    @abc.abstractmethod
    def port_exists(self, port: str) -> Optional[str]:
        """The bridge holding a port of that name, or None."""

    @abc.abstractmethod
    def add_port(self, bridge: str, port: str, *, external_ids: Dict[str, str],
                 tag: Optional[int] = None, datapath: str = "netdev",
                 may_exist: bool = False) -> PortResult:
        """Plug an existing interface into ``bridge``, creating the bridge (with
        ``datapath``) in the same change when it is missing."""

    @abc.abstractmethod
    def del_port(self, port: str, *, if_exists: bool = False) -> bool:
        """Remove a port; returns False if it was not there (and if_exists)."""

    @abc.abstractmethod
    def del_br(self, bridge: str, *, if_exists: bool = False, only_if_empty: bool = True) -> bool:
        """Remove a bridge; with only_if_empty, keep one that still has ports."""

    def close(self) -> None:
        """Release connections."""

    # -- datapath and offloads (the operations stay backend-neutral) ------
    def new_bridge_datapath(self, bridge: str, requested: str) -> Tuple[str, Optional[str]]:
        """The datapath for a bridge about to be created, and a note for the user (or None).

        OVS: ``auto`` is the kernel datapath (``system``) when the openvswitch
        module is loaded, else the userspace one (``netdev``), said once.
        """
        if requested != "auto":
            return requested, None
        if os.path.isdir("/sys/module/openvswitch"):
            return "system", None
        return "netdev", (f"no OVS kernel datapath on this host: bridge {bridge} uses "
                          "the userspace datapath (netdev)")

    def traffic_notes(self, bridge: str) -> List[str]:
        """Warnings about host settings that would silently drop traffic on ``bridge``."""
        return []

    def needs_tx_csum_off(self, datapath: str) -> bool:
        """True when veth/NIC TX checksum offload must be off for ``datapath``.

        OVS's userspace datapath forwards partial checksums nobody finishes.
        """
        return datapath == "netdev"

    # -- uplinks and tunnels (ovsfab uplink / ovsfab tunnel) --------------
    # Not abstract: a backend without them says so when they are used.
    def owned_ports(self, role: str, bridge: Optional[str] = None) -> List["OwnedPort"]:
        """Ports ovsfab owns with ``ovsfab-role=role`` (on one bridge, or all)."""
        raise NotImplementedError(f"the {self.kind} backend has no {role}s")

    def bridge_other_config(self, bridge: str) -> Dict[str, str]:
        """A bridge's other_config (empty if the bridge does not exist)."""
        raise NotImplementedError(f"the {self.kind} backend has no other_config")

    def internal_ports(self) -> Dict[str, Tuple[str, str]]:
        """Internal interfaces (the bridges' own ports): name -> (bridge, datapath)."""
        raise NotImplementedError(f"the {self.kind} backend has no internal ports")

    def add_uplink_port(self, bridge: str, port: str, *, external_ids: Dict[str, str],
                        datapath: str, hwaddr: Optional[str]) -> PortResult:
        """Plug a NIC into ``bridge`` (created if missing) and, in the same
        change, pin the bridge's MAC to ``hwaddr``."""
        raise NotImplementedError(f"the {self.kind} backend has no uplinks")

    def del_uplink_port(self, port: str, *, hwaddr: Optional[str]) -> bool:
        """Unplug a NIC; in the same change set the bridge's other_config:hwaddr
        back to ``hwaddr`` (None: remove the key).  False if it was not there."""
        raise NotImplementedError(f"the {self.kind} backend has no uplinks")

    def add_tunnel_port(self, bridge: str, port: str, *, iface_type: str, options: Dict[str, str],
                        external_ids: Dict[str, str], datapath: str = "netdev",
                        bfd: Optional[Dict[str, str]] = None) -> PortResult:
        """Add a tunnel port (Interface of ``iface_type`` with ``options``; ``bfd``
        only where the backend declares CAP_BFD)."""
        raise NotImplementedError(f"the {self.kind} backend has no tunnels")

    def set_tunnel_bfd(self, port: str, bfd: Dict[str, str]) -> None:
        """Replace a tunnel's BFD settings (CAP_BFD backends only)."""
        raise NotImplementedError(f"the {self.kind} backend has no BFD")

    def del_tunnel_port(self, port: str, *, remote: Optional[str] = None) -> bool:
        """Remove one tunnel (the one to ``remote`` when a port carries several)."""
        return self.del_port(port, if_exists=True)

    def del_ports(self, ports: List[str], journal: bool = False) -> int:
        """Remove several ports; returns how many were there.

        One change per port here; a backend with CAP_BATCH makes it one and,
        with ``journal``, keeps each removed port's record in that same change
        until a later add of that port (see :meth:`journaled_attachments`).
        """
        return sum(1 for port in ports if self.del_port(port, if_exists=True))

    def journaled_attachments(self) -> List[Attachment]:
        """Attachments whose port a journaled removal took and no add has put back yet.

        What a process killed between removing ports and adding them back
        (a restore) leaves: the next reconcile restores them from here.
        """
        return []

    # -- ovsfab apply: many ports in one change ---------------------------
    def bridge_external_ids(self, bridge: str) -> Dict[str, str]:
        """A bridge's external_ids (empty if it has none or does not exist)."""
        return {}

    def bridge_ports(self, bridge: str) -> List[str]:
        """The names of a bridge's ports (its own local port included)."""
        return []

    def bridge_names(self) -> List[str]:
        """Every bridge's name (CAP_RECORDS backends; others know none)."""
        return []

    def set_bridge_key(self, bridge: str, key: str, value: Optional[str]) -> None:
        """Set (None: remove) one key of a bridge's external_ids (CAP_RECORDS backends only).

        Raises NotFound when the bridge is gone and there is something to set.
        """
        raise NotImplementedError(f"the {self.kind} backend keeps no bridge records")

    def set_port_key(self, port: str, key: str, value: Optional[str]) -> None:
        """Set (None: remove) one key of a port's external_ids; a missing port is left alone (CAP_RECORDS)."""
        raise NotImplementedError(f"the {self.kind} backend keeps no port records")

    def set_port_extras(self, port: str, *, trunks: Optional[List[int]] = None,
                        ofport_request: Optional[int] = None,
                        external_ids: Optional[Dict[str, str]] = None) -> None:
        """Trunk VLANs, a requested OpenFlow port number and extra external_ids (CAP_PORT_EXTRAS only)."""
        raise NotImplementedError(f"the {self.kind} backend cannot set port extras")

    def port_extras(self, port: str) -> Tuple[List[int], Optional[int]]:
        """A port's trunk VLANs and requested OpenFlow port number (CAP_PORT_EXTRAS only)."""
        raise NotImplementedError(f"the {self.kind} backend cannot read port extras")

    def port_names(self) -> "Optional[set[str]]":
        """Every port name, in one pass; None: unknown (ask port_exists for each)."""
        return None

    def add_many(self, ports: List["NewPort"], *,
                 set_ids: Optional[Dict[str, Dict[str, str]]] = None,
                 may_exist: bool = False,
                 ) -> Dict[str, Tuple[Optional[int], Optional[str]]]:
        """Add many ports (attachments and tunnels) and merge ``set_ids`` into
        existing ports' external_ids, as one change where the backend can.

        Returns {port: (ofport, error)} for the added ports.  This fallback
        makes one change per port; the OVS backend overrides it with one
        OVSDB transaction and one wait for ovs-vswitchd.
        """
        out: Dict[str, Tuple[Optional[int], Optional[str]]] = {}
        for p in ports:
            if p.iface_type:
                res = self.add_tunnel_port(p.bridge, p.port, iface_type=p.iface_type, options=p.options,
                                           external_ids=p.external_ids, datapath=p.datapath,
                                           bfd=p.bfd or None)
            else:
                res = self.add_port(p.bridge, p.port, external_ids=p.external_ids, tag=p.tag,
                                    datapath=p.datapath, may_exist=may_exist)
            out[p.port] = (res.ofport, None)
        if set_ids:
            raise NotImplementedError(f"the {self.kind} backend cannot re-tag ports")
        return out


class Borrowed:
    """A backend lent to another operation: its close() must not end the owner's session.

    reconcile and apply run attach/uplink (which close the backend they are
    given) many times over one shared OVSDB session.
    """

    def __init__(self, backend: "Backend") -> None:
        self._backend = backend

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)

    def close(self) -> None:
        """The owner closes the backend."""


@dataclass
class OwnedPort:
    """A port ovsfab owns, as recorded (uplinks, tunnels)."""

    bridge: str
    port: str
    datapath: str
    external_ids: Dict[str, str]
    iface_type: str = ""
    options: Dict[str, str] = field(default_factory=dict)
    ofport: Optional[int] = None
    error: Optional[str] = None
    #: Tunnels on a CAP_BFD backend: the Interface's ``bfd`` and ``bfd_status``.
    bfd: Dict[str, str] = field(default_factory=dict)
    bfd_status: Dict[str, str] = field(default_factory=dict)
    #: Tunnels on a kernel device: its carrier and the remotes in its FDB.
    carrier: Optional[bool] = None
    fdb: Optional[List[str]] = None


@dataclass
class NewPort:
    """A port for :meth:`Backend.add_many`: an attachment's veth end or a tunnel."""

    bridge: str
    port: str
    external_ids: Dict[str, str]
    datapath: str = "netdev"
    tag: Optional[int] = None
    #: "" for a veth end; "vxlan", "gre", "geneve" for a tunnel.
    iface_type: str = ""
    options: Dict[str, str] = field(default_factory=dict)
    #: Tunnels only: the Interface's ``bfd`` column (CAP_BFD backends).
    bfd: Dict[str, str] = field(default_factory=dict)
