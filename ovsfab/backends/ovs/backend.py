"""OVS backend: bridges and ports in OVSDB, one transaction per change."""

from __future__ import annotations

import json
import logging
from typing import Any, Dict, Iterator, List, Optional, Tuple

import ovs.db.idl

from ovsfab.backends.base import (CAP_BATCH, CAP_BFD, CAP_PORT_EXTRAS, CAP_RECORDS, JOURNAL_PREFIX, KEY_ROLE, NOT_IN_OVSDB, Backend, NewPort,
                                  OwnedPort, PortResult)
from ovsfab.backends.ovs.idl import IdlSession, batch_timeout, default_remote
from ovsfab.backends.ovs.index import PortIndex
from ovsfab.errors import Conflict, NotFound, OperationFailed
from ovsfab.model import OWNER_KEY, OWNER_VALUE, Attachment

LOG = logging.getLogger(__name__)

#: Only what ovsfab reads or writes is monitored: a host with thousands of
#: ports should not ship their statistics to every CLI call.
COLUMNS: Dict[str, List[str]] = {
    "Open_vSwitch": ["bridges", "next_cfg", "cur_cfg"],
    "Bridge": ["name", "ports", "datapath_type", "external_ids", "other_config"],
    "Port": ["name", "interfaces", "tag", "external_ids", "protected", "trunks"],
    "Interface": ["name", "type", "ofport", "error", "external_ids", "options", "link_state", "bfd",
                  "bfd_status", "ofport_request"],
}


def _opt(value: object) -> Optional[object]:
    """python-ovs returns optional columns as [] or [x]."""
    if isinstance(value, list):
        return value[0] if value else None
    return value


class OvsBackend(Backend):
    """Bridges and ports in OVSDB, through one IDL session."""

    kind = "ovs"
    capabilities = frozenset({CAP_BFD, CAP_BATCH, CAP_PORT_EXTRAS, CAP_RECORDS})

    def __init__(self, remote: Optional[str] = None, timeout: float = 10.0) -> None:
        self.remote = remote or default_remote()
        # The index must see the initial sync, so it exists before the session.
        self.index = PortIndex(lambda table: self.session.table(table))
        self.session = IdlSession(self.remote, COLUMNS, timeout=timeout, listeners=[self.index.notify])

    # -- reading -------------------------------------------------------
    # Lookups go through the index (a dict access each); only listings that
    # must visit every port walk the tables.  See index.py for why.
    def _bridge(self, name: str):
        return self.index.bridge(name)

    def _port_bridges(self) -> Iterator[Tuple[object, object]]:
        for br in self.session.table("Bridge").values():
            for port in br.ports:
                yield br, port

    def _port(self, name: str):
        return self.index.port(name)

    def _port_and_bridge(self, name: str) -> Tuple[Optional[object], Optional[object]]:
        """(Port row, its Bridge row) by port name; either may be None."""
        row = self.index.port(name)
        return row, (self.index.bridge_of(row) if row is not None else None)

    def bridge_datapath(self, bridge: str) -> Optional[str]:
        row = self._bridge(bridge)
        if row is None:
            return None
        # An empty datapath_type means the default, "system".
        return row.datapath_type or "system"

    def port_exists(self, port: str) -> Optional[str]:
        row, br = self._port_and_bridge(port)
        if row is None:
            return None
        return br.name if br is not None else ""

    def _attachment(self, br, port) -> Attachment:
        att = Attachment.from_external_ids(br.name, port.name, dict(port.external_ids))
        att.vlan = _opt(port.tag)
        for iface in port.interfaces:
            if iface.name == port.name:
                ofport = _opt(iface.ofport)
                att.ofport = ofport if isinstance(ofport, int) else None
                att.error = _opt(iface.error) or None
        return att

    def journaled_attachments(self) -> List[Attachment]:
        out = []
        for br in self.session.table("Bridge").values():
            for key, value in dict(br.external_ids).items():
                if not key.startswith(JOURNAL_PREFIX) or self._port(key[len(JOURNAL_PREFIX):]) is not None:
                    continue
                try:
                    rec = json.loads(value)
                    att = Attachment.from_external_ids(br.name, key[len(JOURNAL_PREFIX):], dict(rec["ids"]))
                except (ValueError, KeyError, TypeError):
                    LOG.warning("bridge %s: unreadable journal entry %s; ignored", br.name, key)
                    continue
                att.vlan = rec.get("tag") if isinstance(rec.get("tag"), int) else None
                out.append(att)
        return out

    def _forget_journal(self, port: str) -> bool:
        """Inside a transaction: drop a journaled record of ``port``; True if there was one."""
        found = False
        for br in self.session.table("Bridge").values():
            if JOURNAL_PREFIX + port in br.external_ids:
                br.delkey("external_ids", JOURNAL_PREFIX + port)
                found = True
        return found

    def list_attachments(self, bridge: Optional[str] = None) -> List[Attachment]:
        return [self._attachment(br, port) for br, port in self._port_bridges()
                if port.external_ids.get(OWNER_KEY) == OWNER_VALUE
                and (bridge is None or br.name == bridge)]

    def find_attachment(self, container_key: str, ifname: str) -> Optional[Attachment]:
        port = self.index.attachment_port(container_key, ifname)
        if port is None:
            # A restore killed mid-way may hold it in the journal: still recorded.
            return next((a for a in self.journaled_attachments()
                         if a.container_key == container_key and a.ifname == ifname), None)
        br = self.index.bridge_of(port)
        return self._attachment(br, port) if br is not None else None

    # -- writing -------------------------------------------------------
    def add_port(self, bridge: str, port: str, *, external_ids: Dict[str, str],
                 tag: Optional[int] = None, datapath: str = "netdev",
                 may_exist: bool = False) -> PortResult:
        def build(txn: ovs.db.idl.Transaction) -> Tuple[bool, str]:
            if may_exist and self._port(port) is not None:
                return False, self.bridge_datapath(bridge) or datapath
            br, created = self._insert_port(txn, bridge, port, external_ids, datapath, tag=tag)
            return created, br.datapath_type or "system"

        (created, dp), _ = self.session.transact(build, comment=f"ovsfab: add port {port} to {bridge}")
        result = self._applied_port(bridge, port, created, dp)
        LOG.debug("port %s on %s: ofport %s (bridge created: %s)", port, bridge, result.ofport, created)
        return result

    def del_port(self, port: str, *, if_exists: bool = False) -> bool:
        def build(txn: ovs.db.idl.Transaction) -> bool:
            journaled = self._forget_journal(port)  # a removed attachment is not to be restored
            row, br = self._port_and_bridge(port)
            if row is not None and br is not None:
                self._remove_port(br, row)
                return True
            if if_exists or journaled:
                return journaled
            raise NotFound(f"no OVS port named {port}")

        found, _ = self.session.transact(build, comment=f"ovsfab: del port {port}")
        return found

    def del_br(self, bridge: str, *, if_exists: bool = False, only_if_empty: bool = True) -> bool:
        def build(txn: ovs.db.idl.Transaction) -> bool:
            br = self._bridge(bridge)
            if br is None:
                if if_exists:
                    return False
                raise NotFound(f"no OVS bridge named {bridge}")
            others = [p for p in br.ports if p.name != bridge]
            if only_if_empty and others:
                return False
            br.verify("ports")
            for p in br.ports:
                for iface in p.interfaces:
                    iface.delete()
                p.delete()
            self.session.root().delvalue("bridges", br.uuid)
            br.delete()
            return True

        done, _ = self.session.transact(build, comment=f"ovsfab: del bridge {bridge}")
        return done

    # -- uplinks and tunnels (ovsfab uplink / ovsfab tunnel) --------------
    def owned_ports(self, role: str, bridge: Optional[str] = None) -> List[OwnedPort]:
        """Ports tagged ``ovsfab-owner=ovsfab`` and ``ovsfab-role=role``."""
        out = []
        for port in self.index.ports_with_role(role):
            br = self.index.bridge_of(port)
            if br is None or (bridge is not None and br.name != bridge):
                continue
            ids = dict(port.external_ids)
            if ids.get(OWNER_KEY) != OWNER_VALUE or ids.get(KEY_ROLE) != role:
                continue
            rec = OwnedPort(bridge=br.name, port=port.name, datapath=br.datapath_type or "system",
                            external_ids=ids)
            for iface in port.interfaces:
                if iface.name == port.name:
                    rec.iface_type = iface.type or ""
                    rec.options = dict(iface.options)
                    ofport = _opt(iface.ofport)
                    rec.ofport = ofport if isinstance(ofport, int) else None
                    rec.error = _opt(iface.error) or None
                    rec.bfd = dict(iface.bfd)
                    rec.bfd_status = dict(iface.bfd_status)
            out.append(rec)
        return sorted(out, key=lambda r: (r.bridge, r.port))

    def bridge_other_config(self, bridge: str) -> Dict[str, str]:
        row = self._bridge(bridge)
        return dict(row.other_config) if row is not None else {}

    def internal_ports(self) -> Dict[str, Tuple[str, str]]:
        out = {}
        for br, port in self._port_bridges():
            for iface in port.interfaces:
                if iface.type == "internal":
                    out[iface.name] = (br.name, br.datapath_type or "system")
        return out

    def _insert_port(self, txn: ovs.db.idl.Transaction, bridge: str, port: str,
                     external_ids: Dict[str, str], datapath: str, iface_type: str = "",
                     options: Optional[Dict[str, str]] = None,
                     tag: Optional[int] = None, bfd: Optional[Dict[str, str]] = None) -> Tuple[object, bool]:
        """Insert Port+Interface into ``bridge`` (created if missing); returns (bridge row, created)."""
        tables = self.session.idl.tables
        if self._port(port) is not None:
            raise Conflict(f"OVS already has a port named {port}",
                           f"remove it (ovs-vsctl del-port {port}) or choose another name")
        br = self._bridge(bridge)
        created = br is None
        if created:
            root = self.session.root()
            root.verify("bridges")  # concurrent creation -> TRY_AGAIN, not a duplicate
            br = txn.insert(tables["Bridge"])
            br.name = bridge
            br.datapath_type = datapath
            br.external_ids = {OWNER_KEY: OWNER_VALUE}
            local_if = txn.insert(tables["Interface"])
            local_if.name = bridge
            local_if.type = "internal"
            local_port = txn.insert(tables["Port"])
            local_port.name = bridge
            local_port.interfaces = [local_if.uuid]
            root.addvalue("bridges", br.uuid)
            br.ports = [local_port.uuid]
        self._insert_rows(txn, br, port, external_ids, iface_type, options, tag, bfd)
        return br, created

    def _insert_rows(self, txn: ovs.db.idl.Transaction, br: object, port: str, external_ids: Dict[str, str],
                     iface_type: str = "", options: Optional[Dict[str, str]] = None, tag: Optional[int] = None,
                     bfd: Optional[Dict[str, str]] = None) -> None:
        """Port + Interface rows of ``port``, added to bridge row ``br``."""
        tables = self.session.idl.tables
        self._forget_journal(port)  # the port is back: its journaled record is done with
        iface = txn.insert(tables["Interface"])
        iface.name = port
        if iface_type:
            iface.type = iface_type
        if options:
            iface.options = options
        if bfd:
            iface.bfd = bfd
        iface.external_ids = external_ids
        prow = txn.insert(tables["Port"])
        prow.name = port
        prow.interfaces = [iface.uuid]
        prow.external_ids = external_ids
        if tag is not None:
            prow.tag = [tag]
        if iface_type:
            # Split horizon for full-mesh overlays: traffic between protected
            # ports is blocked at L2, so a frame from one tunnel never goes
            # out another (no broadcast loop through three hosts).
            prow.protected = True
        br.addvalue("ports", prow.uuid)

    @staticmethod
    def _remove_port(br, row) -> None:
        """Detach a Port row from its bridge and delete it with its interfaces."""
        br.delvalue("ports", row.uuid)
        for iface in row.interfaces:
            iface.delete()
        row.delete()

    def _applied_port(self, bridge: str, port: str, created: bool, datapath: str) -> PortResult:
        row = self._port(port)
        ofport: Optional[int] = None
        if row is not None:
            for iface in row.interfaces:
                if iface.name == port:
                    error = _opt(iface.error)
                    value = _opt(iface.ofport)
                    if error or not isinstance(value, int) or value < 0:
                        raise OperationFailed(
                            f"ovs-vswitchd could not add {port} to {bridge}: {error or 'no OpenFlow port number'}",
                            "see ovs-vswitchd.log",
                        )
                    ofport = value
        return PortResult(ofport=ofport, created_bridge=created, datapath=datapath)

    def add_uplink_port(self, bridge: str, port: str, *, external_ids: Dict[str, str],
                        datapath: str, hwaddr: Optional[str]) -> PortResult:
        def build(txn: ovs.db.idl.Transaction) -> Tuple[bool, str]:
            br, created = self._insert_port(txn, bridge, port, external_ids, datapath)
            if hwaddr:
                # Same MAC as the NIC: neighbours' ARP/ND caches stay valid.
                br.setkey("other_config", "hwaddr", hwaddr)
            return created, br.datapath_type or "system"

        (created, dp), _ = self.session.transact(build, comment=f"ovsfab: uplink {port} into {bridge}")
        return self._applied_port(bridge, port, created, dp)

    def del_uplink_port(self, port: str, *, hwaddr: Optional[str]) -> bool:
        def build(txn: ovs.db.idl.Transaction) -> bool:
            row, br = self._port_and_bridge(port)
            if row is None or br is None:
                return False
            self._remove_port(br, row)
            if hwaddr:
                br.setkey("other_config", "hwaddr", hwaddr)
            elif "hwaddr" in br.other_config:
                br.delkey("other_config", "hwaddr")
            return True

        found, _ = self.session.transact(build, comment=f"ovsfab: remove uplink {port}")
        return found

    def add_tunnel_port(self, bridge: str, port: str, *, iface_type: str, options: Dict[str, str],
                        external_ids: Dict[str, str], datapath: str = "netdev",
                        bfd: Optional[Dict[str, str]] = None) -> PortResult:
        def build(txn: ovs.db.idl.Transaction) -> Tuple[bool, str]:
            br, created = self._insert_port(txn, bridge, port, external_ids, datapath,
                                            iface_type=iface_type, options=options, bfd=bfd)
            return created, br.datapath_type or "system"

        (created, dp), _ = self.session.transact(build, comment=f"ovsfab: tunnel {port} on {bridge}")
        return self._applied_port(bridge, port, created, dp)

    def set_tunnel_bfd(self, port: str, bfd: Dict[str, str]) -> None:
        def build(txn: ovs.db.idl.Transaction) -> None:
            row = self._port(port)
            for iface in (row.interfaces if row is not None else []):
                iface.bfd = bfd

        self.session.transact(build, comment=f"ovsfab: bfd of tunnel {port}")

    def set_port_extras(self, port: str, *, trunks: Optional[List[int]] = None,
                        ofport_request: Optional[int] = None,
                        external_ids: Optional[Dict[str, str]] = None) -> None:
        """Trunk VLANs, a requested OpenFlow port number and extra external_ids of one port.

        The CNI plugin's ovs-cni options (``trunk``, ``ofport_request``) and
        its ownership record; one transaction.  Raises NotFound for no port.
        """
        def build(txn: ovs.db.idl.Transaction) -> None:
            row = self._port(port)
            if row is None:
                raise NotFound(f"no OVS port named {port}")
            if trunks is not None:
                row.trunks = sorted(trunks)
            if external_ids:
                merged = dict(row.external_ids)
                merged.update(external_ids)
                row.external_ids = merged
            for iface in row.interfaces:
                if iface.name == port:
                    if ofport_request is not None:
                        iface.ofport_request = [ofport_request]
                    if external_ids:
                        merged = dict(iface.external_ids)
                        merged.update(external_ids)
                        iface.external_ids = merged

        self.session.transact(build, comment=f"ovsfab: extras of port {port}")

    def port_extras(self, port: str) -> Tuple[List[int], Optional[int]]:
        """(trunks, ofport_request) of one port, as recorded (empty, None: none)."""
        row = self._port(port)
        if row is None:
            return [], None
        req = None
        for iface in row.interfaces:
            if iface.name == port:
                req = _opt(iface.ofport_request)
        return sorted(int(t) for t in row.trunks), req  # type: ignore[return-value]

    # -- ovsfab reconcile: many ports per transaction (additive) ----------
    # Restoring 100 containers one port at a time costs 200 transactions,
    # each waiting for ovs-vswitchd; these do it in two.
    def del_ports(self, ports: List[str], journal: bool = False) -> int:
        """Remove several ports in one transaction; returns how many were there.

        ``journal``: each removed port's record goes to its bridge's
        external_ids in the same transaction (JOURNAL_PREFIX + port), and the
        transaction that adds the port back removes it: a process killed in
        between loses no record.
        """
        wanted = set(ports)

        def build(txn: ovs.db.idl.Transaction) -> int:
            found = 0
            for name in wanted:
                row, br = self._port_and_bridge(name)
                if row is not None and br is not None:
                    if journal:
                        tag = _opt(row.tag)
                        br.setkey("external_ids", JOURNAL_PREFIX + name,
                                  json.dumps({"ids": dict(row.external_ids), "tag": tag}, sort_keys=True))
                    self._remove_port(br, row)
                    found += 1
            return found

        if not wanted:
            return 0
        found, _ = self.session.transact(build, comment=f"ovsfab: del {len(wanted)} ports",
                                         timeout=batch_timeout(self.session.timeout, len(wanted)))
        return found

    # -- ovsfab apply: many ports, one transaction (additive) ---------------
    def bridge_external_ids(self, bridge: str) -> Dict[str, str]:
        row = self._bridge(bridge)
        return dict(row.external_ids) if row is not None else {}

    def bridge_ports(self, bridge: str) -> List[str]:
        row = self._bridge(bridge)
        return [p.name for p in self.index.ports_in(row)] if row is not None else []

    def bridge_names(self) -> List[str]:
        return [br.name for br in self.session.table("Bridge").values()]

    def set_bridge_key(self, bridge: str, key: str, value: Optional[str]) -> None:
        # No wait for ovs-vswitchd: external_ids change nothing it does.
        def build(txn: ovs.db.idl.Transaction) -> None:
            br = self._bridge(bridge)
            if br is None:
                if value is None:
                    return
                raise NotFound(f"bridge {bridge} vanished", "recreate the fabric, then the network")
            br.verify("external_ids")
            _set_external_id(br, key, value)

        self.session.transact(build, wait_applied=False, comment=f"ovsfab: record {key} on bridge {bridge}")

    def set_port_key(self, port: str, key: str, value: Optional[str]) -> None:
        def build(txn: ovs.db.idl.Transaction) -> None:
            row = self._port(port)
            if row is not None:
                _set_external_id(row, key, value)

        self.session.transact(build, wait_applied=False, comment=f"ovsfab: record {key} on port {port}")

    def port_names(self) -> "set[str]":
        return self.index.port_names()

    def add_many(self, ports: List[NewPort], *,
                 set_ids: Optional[Dict[str, Dict[str, str]]] = None,
                 may_exist: bool = False,
                 ) -> Dict[str, Tuple[Optional[int], Optional[str]]]:
        """Add many ports (veth ends and tunnels) in ONE transaction and wait once.

        ovs-vswitchd then reconfigures once for the whole batch instead of
        once per port (each reconfiguration walks every port of the bridge,
        which is what makes port-by-port attaching slow down as a bridge
        fills).  Lookups use one name index per build, not a table scan per
        port, for the same reason.  A missing bridge is created in the same
        transaction.  ``set_ids`` merges keys into existing ports'
        external_ids.  ``may_exist``: a port that exists already is left
        alone (reconcile re-records attachments).  Returns {port: (ofport,
        error)} as ovs-vswitchd reported them; the caller decides what an
        error means.
        """
        set_ids = set_ids or {}

        def build(txn: ovs.db.idl.Transaction) -> None:
            bridges: Dict[str, object] = {}
            for p in ports:
                if self._port(p.port) is not None:
                    if may_exist:
                        continue
                    raise Conflict(f"OVS already has a port named {p.port}",
                                   f"remove it (ovs-vsctl del-port {p.port}) or choose another name")
                br = bridges.get(p.bridge)
                if br is None:
                    br = self._bridge(p.bridge)
                if br is None:  # the first port of a new bridge creates it (verified, as in add_port)
                    br, _ = self._insert_port(txn, p.bridge, p.port, p.external_ids, p.datapath,
                                              iface_type=p.iface_type, options=p.options or None, tag=p.tag,
                                              bfd=p.bfd or None)
                    bridges[p.bridge] = br
                    continue
                self._insert_rows(txn, br, p.port, p.external_ids, p.iface_type, p.options or None, p.tag,
                                  p.bfd or None)
            for port, ids in set_ids.items():
                row = self._port(port)
                if row is not None:
                    merged = dict(row.external_ids)
                    merged.update(ids)
                    row.external_ids = merged

        if not ports and not set_ids:
            return {}
        self.session.transact(build, comment=f"ovsfab: apply {len(ports)} ports",
                              timeout=batch_timeout(self.session.timeout, len(ports)))
        out: Dict[str, Tuple[Optional[int], Optional[str]]] = {}
        for p in ports:
            row = self._port(p.port)
            ofport, error = None, NOT_IN_OVSDB
            if row is not None:
                for iface in row.interfaces:
                    if iface.name == p.port:
                        value = _opt(iface.ofport)
                        ofport = value if isinstance(value, int) and value >= 0 else None
                        error = _opt(iface.error) or (None if ofport is not None else "no OpenFlow port number")
            out[p.port] = (ofport, error)
        return out

    def close(self) -> None:
        self.session.close()


def _set_external_id(row: Any, key: str, value: Optional[str]) -> None:
    """Set one key of a row's external_ids, or remove it (None) if it is there (a mutation, not a rewrite)."""
    if value is None:
        if key in row.external_ids:
            row.delkey("external_ids", key)
    else:
        row.setkey("external_ids", key, value)
