"""Lookups into the IDL's replica that do not walk every row.

python-ovs converts a column on every attribute access (``Row.__getattr__``
→ ``Datum.to_python``), so "find the Port named X" as a loop over the Port
table costs tens of milliseconds at 1,000 ports, and an attach did several of
those.  :class:`PortIndex` is kept in step with the replica by the IDL's row
notifications (one small update per changed row), so each lookup is a dict
access plus one check that the row is still there.

Why the check: when the IDL reconnects it clears its tables without
notifications and then re-creates every row *with* them.  Entries for rows
deleted meanwhile are stale; they are detected on use (the UUID is no longer
in the table, or the row no longer has that name) and dropped, so the index
never answers with a row that is gone, and it never misses a row that is
there (every present row was announced by a notification).

The index is built on first use, not during the initial sync: a command that
only lists (``show``) or only adds a bridge does not pay for it.
"""

from __future__ import annotations

import uuid
from typing import Callable, Dict, Iterator, List, Optional, Set, Tuple

import ovs.db.idl

from ovsfab.backends.base import KEY_ROLE
from ovsfab.model import KEY_CONTAINER_ID, KEY_IFNAME, OWNER_KEY, OWNER_VALUE

Rows = Dict[uuid.UUID, "ovs.db.idl.Row"]


def _ref_uuids(row: "ovs.db.idl.Row", column: str) -> Set[uuid.UUID]:
    """The UUIDs a reference column holds, without turning each into a Row.

    Reading ``row.ports`` would build a list of 1,000 Row objects (and drop
    references to rows not yet received); the raw datum is what we need.
    """
    datum = row._data.get(column)  # noqa: SLF001 - python-ovs has no public raw accessor
    if datum is None:
        return set()
    return {atom.value for atom in datum.values}


class PortIndex:
    """Port by name, by (container, ifname) and by role; the bridge of each port."""

    def __init__(self, tables: Callable[[str], Rows]) -> None:
        self._tables = tables
        self.port_by_name: Dict[str, uuid.UUID] = {}
        self.port_by_attachment: Dict[Tuple[str, str], uuid.UUID] = {}
        self.ports_by_role: Dict[str, Set[uuid.UUID]] = {}
        self.bridge_by_name: Dict[str, uuid.UUID] = {}
        self.bridge_of_port: Dict[uuid.UUID, uuid.UUID] = {}
        self._port_keys: Dict[uuid.UUID, Tuple[str, Optional[Tuple[str, str]], Optional[str]]] = {}
        self._bridge_keys: Dict[uuid.UUID, Tuple[str, Set[uuid.UUID]]] = {}
        self._built = False

    # -- kept in step by the IDL ---------------------------------------
    def _build(self) -> None:
        """Learn every row once; from then on notifications keep the index current."""
        if self._built:
            return
        for row in list(self._tables("Port").values()):
            self._learn_port(row)
        for row in list(self._tables("Bridge").values()):
            self._learn_bridge(row)
        self._built = True

    def notify(self, event: str, row: "ovs.db.idl.Row", updates: object = None) -> None:
        """python-ovs ``Idl.notify`` hook: one row was created, updated or deleted."""
        if not self._built:
            return  # _build() will read the replica as it is then
        table = row._table.name  # noqa: SLF001
        if table == "Port":
            self._forget_port(row.uuid)
            if event != ovs.db.idl.ROW_DELETE:
                self._learn_port(row)
        elif table == "Bridge":
            self._forget_bridge(row.uuid)
            if event != ovs.db.idl.ROW_DELETE:
                self._learn_bridge(row)

    def _learn_port(self, row: "ovs.db.idl.Row") -> None:
        name = row.name
        ids = row.external_ids
        att = role = None
        if ids.get(OWNER_KEY) == OWNER_VALUE:
            if KEY_CONTAINER_ID in ids:
                att = (ids[KEY_CONTAINER_ID], ids.get(KEY_IFNAME, ""))
                self.port_by_attachment[att] = row.uuid
            role = ids.get(KEY_ROLE)
            if role:
                self.ports_by_role.setdefault(role, set()).add(row.uuid)
        self.port_by_name[name] = row.uuid
        self._port_keys[row.uuid] = (name, att, role)

    def _forget_port(self, key: uuid.UUID) -> None:
        old = self._port_keys.pop(key, None)
        if old is None:
            return
        name, att, role = old
        if self.port_by_name.get(name) == key:
            del self.port_by_name[name]
        if att is not None and self.port_by_attachment.get(att) == key:
            del self.port_by_attachment[att]
        if role is not None:
            self.ports_by_role.get(role, set()).discard(key)

    def _learn_bridge(self, row: "ovs.db.idl.Row") -> None:
        ports = _ref_uuids(row, "ports")
        self.bridge_by_name[row.name] = row.uuid
        for p in ports:
            self.bridge_of_port[p] = row.uuid
        self._bridge_keys[row.uuid] = (row.name, ports)

    def _forget_bridge(self, key: uuid.UUID) -> None:
        old = self._bridge_keys.pop(key, None)
        if old is None:
            return
        name, ports = old
        if self.bridge_by_name.get(name) == key:
            del self.bridge_by_name[name]
        for p in ports:
            if self.bridge_of_port.get(p) == key:
                del self.bridge_of_port[p]

    # -- lookups --------------------------------------------------------
    def _live(self, table: str, key: Optional[uuid.UUID], name: Optional[str] = None):
        """The row behind ``key`` if it is still in the replica (and still so named)."""
        if key is None:
            return None
        row = self._tables(table).get(key)
        if row is None or (name is not None and row.name != name):
            return None
        return row

    def port(self, name: str):
        """The Port row named ``name``, or None."""
        self._build()
        key = self.port_by_name.get(name)
        row = self._live("Port", key, name)
        if row is None and key is not None:
            self._forget_port(key)  # stale: deleted while we were disconnected
        return row

    def port_names(self) -> Set[str]:
        """Names of every Port in the replica."""
        self._build()
        return {name for name in list(self.port_by_name) if self.port(name) is not None}

    def bridge(self, name: str):
        """The Bridge row named ``name``, or None."""
        self._build()
        key = self.bridge_by_name.get(name)
        row = self._live("Bridge", key, name)
        if row is None and key is not None:
            self._forget_bridge(key)
        return row

    def bridge_of(self, port_row: "ovs.db.idl.Row"):
        """The Bridge row holding ``port_row``, or None (a Port in no bridge)."""
        self._build()
        # bridge_of_port changes only together with _bridge_keys (learn/forget
        # of a Bridge row), so a live bridge here does hold the port.
        return self._live("Bridge", self.bridge_of_port.get(port_row.uuid))

    def attachment_port(self, container_key: str, ifname: str):
        """The ovsfab-owned Port recorded for (container, ifname), or None."""
        self._build()
        key = self.port_by_attachment.get((container_key, ifname))
        row = self._live("Port", key)
        if row is None:
            if key is not None:
                self._forget_port(key)
            return None
        ids = row.external_ids
        if ids.get(KEY_CONTAINER_ID) != container_key or ids.get(KEY_IFNAME, "") != ifname:
            return None
        return row

    def ports_with_role(self, role: str) -> List["ovs.db.idl.Row"]:
        """The ovsfab-owned Port rows tagged ``ovsfab-role=role``."""
        self._build()
        rows = self._tables("Port")
        out = []
        for key in list(self.ports_by_role.get(role, ())):
            row = rows.get(key)
            if row is None:
                self._forget_port(key)
            else:
                out.append(row)
        return out

    def ports_in(self, bridge_row: "ovs.db.idl.Row") -> Iterator["ovs.db.idl.Row"]:
        """The Port rows of a bridge (only those present in the replica)."""
        self._build()
        rows = self._tables("Port")
        for key in self._bridge_keys.get(bridge_row.uuid, ("", set()))[1]:
            row = rows.get(key)
            if row is not None:
                yield row
