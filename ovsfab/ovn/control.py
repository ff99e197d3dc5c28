"""OVN on this host: addresses, listeners, settings and status (what ``ovsfab ovn`` reads and writes).

The operations ``ovsfab ovn central`` and ``ovsfab ovn join`` are in
:mod:`ovsfab.ops.ovn_control`; ``ovsfab ovn status`` reads through
:func:`status` and :func:`controller_status` here.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import time
from typing import Dict, List, Optional, Tuple

from ovsfab.errors import InvalidInput, Unavailable
from ovsfab.model import OWNER_KEY, OWNER_VALUE
from ovsfab.ovn.daemons import CentralDaemons, ControllerDaemon, ovn_dbdir, ovn_rundir, ovs_rundir
from ovsfab.ovn.idl import (NB_COLUMNS, NB_DB, OVS_COLUMNS, SB_COLUMNS, SB_DB, OvnSession, fetch_schema,
                            opt)

LOG = logging.getLogger(__name__)

ENCAPS = ("geneve", "vxlan")
#: Open_vSwitch external_ids key where join records the NB remote (OVN itself
#: only needs the SB one; ovsfab writes logical switches into NB).
KEY_NB = "ovsfab-ovn-nb"
INTEGRATION_BRIDGE = "br-int"
#: The keys join owns in Open_vSwitch external_ids.
JOIN_KEYS = ("system-id", "ovn-remote", "ovn-encap-type", "ovn-encap-ip", "hostname",
             "ovn-bridge-datapath-type", KEY_NB)


def tcp_remote(address: str, port: int) -> str:
    """An OVSDB tcp: remote (IPv6 addresses in brackets)."""
    ip = ipaddress.ip_address(address)
    return f"tcp:[{ip}]:{port}" if ip.version == 6 else f"tcp:{ip}:{port}"


def _listen_target(address: str, port: int) -> str:
    ip = ipaddress.ip_address(address)
    return f"ptcp:{port}:[{ip}]" if ip.version == 6 else f"ptcp:{port}:{ip}"


def _parse_ip(value: str, what: str) -> str:
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        raise InvalidInput(f"{what} {value!r} is not an IP address", "e.g. 192.168.77.4") from None
    if ip.is_unspecified or ip.is_multicast or (ip.is_loopback and what != "central address"):
        raise InvalidInput(f"{what} {value} is not a usable unicast address")
    return str(ip)


def _source_address(dst: str) -> Optional[str]:
    """The address this host uses to reach ``dst`` (the kernel's preferred source)."""
    from ovsfab.plumbing.links import L3Handle  # noqa: PLC0415

    handle = L3Handle()
    try:
        route = handle.route_to(dst)
    finally:
        handle.close()
    if route is None:
        return None
    src = route.get("prefsrc")
    return str(src) if src else None


def _answers(remote: str, db: str, timeout: float = 1.0) -> bool:
    try:
        fetch_schema(remote, db, time.monotonic() + timeout)
        return True
    except Unavailable:
        return False


def _ensure_listener(remote: str, db: str, root_table: str, target: str) -> Tuple[bool, List[str]]:
    """Make ``target`` one of the server's connections; returns (changed, targets replaced)."""
    session = OvnSession(remote, db, {root_table: ["connections"], "Connection": ["target", "external_ids"]})
    try:
        def build(txn):  # noqa: ANN001, ANN202
            root = session.first(root_table)
            fresh = root is None
            if fresh:
                # An empty database: ovn-northd would create the row too, but
                # it is not running yet.
                root = txn.insert(session.idl.tables[root_table])
            replaced = []
            present = False
            for conn in ([] if fresh else list(root.connections)):
                if conn.target == target:
                    present = True
                elif conn.external_ids.get(OWNER_KEY) == OWNER_VALUE:
                    # Ours, for another address: the central moved.
                    replaced.append(conn.target)
                    root.delvalue("connections", conn.uuid)
                    conn.delete()
            if not present:
                conn = txn.insert(session.idl.tables["Connection"])
                conn.target = target
                conn.external_ids = {OWNER_KEY: OWNER_VALUE}
                if fresh:
                    root.connections = [conn.uuid]
                else:
                    root.addvalue("connections", conn.uuid)
            return replaced

        replaced, changed = session.transact(build, wait_applied=False, comment="ovsfab: ovn central listener")
        return changed, replaced
    finally:
        session.close()


def _drop_listener(remote: str, db: str, root_table: str, target: str) -> None:
    session = OvnSession(remote, db, {root_table: ["connections"], "Connection": ["target", "external_ids"]})
    try:
        def build(txn):  # noqa: ANN001, ANN202
            root = session.first(root_table)
            for conn in list(root.connections if root is not None else []):
                if conn.target == target and conn.external_ids.get(OWNER_KEY) == OWNER_VALUE:
                    root.delvalue("connections", conn.uuid)
                    conn.delete()

        session.transact(build, wait_applied=False, comment="ovsfab: undo ovn central listener")
    finally:
        session.close()


def local_ovs(remote: Optional[str] = None, timeout: float = 10.0):  # -> IdlSession
    """An IDL session on this host's Open_vSwitch (only the rows OVN needs)."""
    from ovsfab.backends.ovs.idl import IdlSession, default_remote  # noqa: PLC0415

    return IdlSession(remote or default_remote(), OVS_COLUMNS, timeout=timeout)


def joined_settings(remote: Optional[str] = None) -> Dict[str, str]:
    """The OVN settings in this host's Open_vSwitch external_ids ({} when not joined)."""
    session = local_ovs(remote)
    try:
        ids = dict(session.root().external_ids)
    finally:
        session.close()
    return {k: v for k, v in ids.items() if k in JOIN_KEYS}


# -- status -------------------------------------------------------------------
def remotes(nb: Optional[str] = None, sb: Optional[str] = None,
            ovs_remote: Optional[str] = None) -> Tuple[str, str]:
    """NB and SB remotes: given, else this host's join settings, else the local central."""
    if nb and sb:
        return nb, sb
    settings: Dict[str, str] = {}
    try:
        settings = joined_settings(ovs_remote)
    except Unavailable:
        pass  # no local OVS: a central-only host
    local = CentralDaemons(ovn_rundir(), ovn_dbdir())
    nb = nb or settings.get(KEY_NB) or local.remote("nb")
    sb = sb or settings.get("ovn-remote") or local.remote("sb")
    return nb, sb


def status(nb: Optional[str] = None, sb: Optional[str] = None, timeout: float = 5.0) -> dict:
    """Chassis with their encapsulations, logical switches/routers, and port bindings."""
    nb, sb = remotes(nb, sb)
    sbs = OvnSession(sb, SB_DB, SB_COLUMNS, timeout)
    try:
        chassis = []
        names = {}
        for ch in sbs.rows("Chassis"):
            names[ch.uuid] = ch.name
            chassis.append({"name": ch.name, "hostname": ch.hostname,
                            "encaps": sorted(({"type": e.type, "ip": e.ip} for e in ch.encaps),
                                             key=lambda e: (e["type"], e["ip"]))})
        bindings = {}
        for pb in sbs.rows("Port_Binding"):
            ch = opt(pb.chassis)
            bindings[pb.logical_port] = names.get(ch.uuid) if ch is not None else None
    finally:
        sbs.close()
    nbs = OvnSession(nb, NB_DB, NB_COLUMNS, timeout)
    try:
        switches = []
        for ls in sorted(nbs.rows("Logical_Switch"), key=lambda r: r.name):
            ports = []
            for lsp in sorted(ls.ports, key=lambda r: r.name):
                ports.append({"name": lsp.name, "type": lsp.type, "addresses": list(lsp.addresses),
                              "port_security": list(lsp.port_security),
                              "up": bool(opt(lsp.up)), "chassis": bindings.get(lsp.name),
                              "container": lsp.external_ids.get("ovsfab-container-name", "")})
            switches.append({"name": ls.name, "owned": ls.external_ids.get(OWNER_KEY) == OWNER_VALUE,
                             "subnet": ls.other_config.get("subnet", ""), "ports": ports})
        routers = []
        for lr in sorted(nbs.rows("Logical_Router"), key=lambda r: r.name):
            routers.append({"name": lr.name, "owned": lr.external_ids.get(OWNER_KEY) == OWNER_VALUE,
                            "ports": [{"name": p.name, "mac": p.mac, "networks": list(p.networks)}
                                      for p in sorted(lr.ports, key=lambda r: r.name)]})
    finally:
        nbs.close()
    return {"nb": nb, "sb": sb, "chassis": sorted(chassis, key=lambda c: c["name"]),
            "switches": switches, "routers": routers}


def controller_status(ovs_remote: Optional[str] = None) -> dict:
    """This host's side: join settings and whether ovn-controller runs."""
    from ovsfab.backends.ovs.idl import default_remote  # noqa: PLC0415

    remote = ovs_remote or default_remote()
    ovs_dir = os.path.dirname(remote[len("unix:"):]) if remote.startswith("unix:") else ovs_rundir()
    try:
        settings = joined_settings(remote)
    except Unavailable:
        return {"joined": False, "settings": {}, "controller_pid": None}
    pid = ControllerDaemon(ovn_rundir(), remote, ovs_dir).pid()
    return {"joined": "ovn-remote" in settings, "settings": settings, "controller_pid": pid}


