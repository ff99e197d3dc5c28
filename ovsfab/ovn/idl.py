"""IDL sessions on the OVN databases (and the local Open_vSwitch external_ids).

The OVN databases are plain OVSDB: :class:`ovsfab.backends.ovs.idl.IdlSession`
does everything needed (schema from the server, deadlines, TRY_AGAIN
rebuilds); :class:`OvnSession` only names the database.  OVN databases have no
``next_cfg`` handshake with a local daemon: transactions here use
``wait_applied=False``.
"""

from __future__ import annotations

import time
from typing import Dict, List, Mapping, Optional, Sequence

from ovsfab.backends.ovs import idl as ovs_idl
from ovsfab.backends.ovs.idl import IdlSession
from ovsfab.errors import Unavailable

NB_DB = "OVN_Northbound"
SB_DB = "OVN_Southbound"
NB_PORT = 6641
SB_PORT = 6642

#: Only what ovsfab reads or writes is monitored (a big fabric has many rows).
NB_COLUMNS: Dict[str, List[str]] = {
    "NB_Global": ["connections", "external_ids"],
    "Connection": ["target", "external_ids"],
    "Logical_Switch": ["name", "ports", "external_ids", "other_config"],
    "Logical_Switch_Port": ["name", "addresses", "port_security", "type", "options", "external_ids", "up",
                            "enabled"],
    "Logical_Router": ["name", "ports", "external_ids"],
    "Logical_Router_Port": ["name", "mac", "networks", "external_ids"],
}
SB_COLUMNS: Dict[str, List[str]] = {
    "SB_Global": ["connections"],
    "Connection": ["target", "external_ids"],
    "Chassis": ["name", "hostname", "encaps", "external_ids"],
    "Encap": ["type", "ip", "chassis_name"],
    "Port_Binding": ["logical_port", "chassis", "datapath", "mac", "type", "up"],
    "Datapath_Binding": ["external_ids"],
}
#: The local Open_vSwitch row: external_ids is where OVN reads its settings.
OVS_COLUMNS: Dict[str, List[str]] = {
    "Open_vSwitch": ["external_ids", "next_cfg", "cur_cfg", "bridges"],
    "Bridge": ["name", "datapath_type", "external_ids"],
}


def fetch_schema(remote: str, db: str, deadline: float) -> dict:
    """Fetch database ``db``'s schema from the server (raises Unavailable if it is not there)."""
    return ovs_idl.fetch_schema(remote, deadline, db)


class OvnSession(IdlSession):
    """An :class:`IdlSession` on any database of an OVSDB server (NB, SB, ...)."""

    def __init__(self, remote: str, db: str, columns: Mapping[str, Sequence[str]],
                 timeout: float = 10.0) -> None:  # noqa: D107 - see the class docstring
        # Any member of a clustered central may answer reads and writes.
        super().__init__(remote, columns, timeout, db=db, leader_only=False)

    def rows(self, table: str) -> List[object]:
        """The rows of a monitored table."""
        return list(self.table(table).values())

    def first(self, table: str) -> Optional[object]:
        """The first row of a table (the NB_Global / SB_Global singletons)."""
        rows = self.rows(table)
        return rows[0] if rows else None

    def wait_for(self, condition, timeout: float, what: str) -> bool:
        """Process updates until ``condition()`` or the timeout; False on timeout."""
        try:
            self.run_until(condition, time.monotonic() + timeout, what)
            return True
        except Unavailable:
            return False


def opt(value: object) -> Optional[object]:
    """python-ovs returns optional columns as [] or [x]."""
    if isinstance(value, list):
        return value[0] if value else None
    return value

