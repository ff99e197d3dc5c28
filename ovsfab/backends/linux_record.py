"""The Linux-bridge backend's ownership record: external_ids in an interface alias.

OVS keeps ovsfab's facts in the ``external_ids`` of Port and Interface rows;
a Linux link has no such column, so the backend keeps them in the link's
alias (``IFLA_IFALIAS``, at most 255 bytes): ``ovsfab:`` followed by compact
JSON, long key names abbreviated, an uplink's recorded addresses and routes
packed.  Decoding gives the full external_ids names back, so the operations
read the same records from both backends.  Pure functions, unit-tested.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any, Dict, List, Optional

from ovsfab.backends.base import KEY_ROLE
from ovsfab.errors import InvalidInput
from ovsfab.model import (KEY_ADDRESSES, KEY_CONTAINER_ID, KEY_CONTAINER_NAME, KEY_IFNAME, KEY_MAC, KEY_MTU,
                          KEY_TARGET, KEY_VLAN, OVS_DOCKER_CONTAINER_ID, OVS_DOCKER_CONTAINER_IFACE, OWNER_KEY,
                          OWNER_VALUE)

#: The alias of every link ovsfab owns starts with this.
ALIAS_PREFIX = "ovsfab:"
#: IFALIASZ is 256 including the terminating NUL.
MAX_ALIAS = 255
#: Role of a bridge ovsfab created (recorded in the bridge's own alias).
ROLE_BRIDGE = "bridge"
#: Key recording which bridge an attachment was plugged into (Linux only:
#: in OVS the Port row's bridge says it).
KEY_BRIDGE = "ovsfab-bridge"

# Recorded key -> short key in the alias.  The alias holds 255 bytes, so the
# long external_ids names are abbreviated; decoding gives the full names back
# so the operations read the same records from both backends.
_SHORT = {
    KEY_ROLE: "r", KEY_CONTAINER_ID: "c", KEY_CONTAINER_NAME: "n", KEY_IFNAME: "i", KEY_TARGET: "t",
    KEY_ADDRESSES: "a", KEY_MAC: "m", KEY_MTU: "u", KEY_VLAN: "v", KEY_BRIDGE: "b",
    "ovsfab-uplink-nic": "N", "ovsfab-uplink-mac": "M", "ovsfab-uplink-addresses": "A",
    "ovsfab-uplink-routes": "R", "ovsfab-uplink-offloads": "O", "ovsfab-uplink-prev-hwaddr": "P",
    "ovsfab-uplink-created-bridge": "C", "ovsfab-uplink-bridge-was-down": "D",
    "ovsfab-tunnel-remote": "tr", "ovsfab-tunnel-type": "tt", "ovsfab-tunnel-key": "tk",
    # tunnel options as the user gave them (OVS keeps them in Interface.options)
    "opt:dst_port": "op", "opt:local_ip": "ol", "opt:csum": "oc",
}
_LONG = {v: k for k, v in _SHORT.items()}
_UPLINK_ADDRS = "ovsfab-uplink-addresses"
_UPLINK_ROUTES = "ovsfab-uplink-routes"

#: Route fields and their kernel defaults; only differences are recorded.
_ROUTE_FIELDS = (("priority", "m", None), ("table", "T", 254), ("proto", "p", 3), ("scope", "s", 0),
                 ("type", "y", 1), ("flags", "f", 0), ("pref", "P", None), ("prefsrc", "S", None))
UPLINK_NIC = "ovsfab-uplink-nic"
UPLINK_MAC = "ovsfab-uplink-mac"


def _pack_addrs(text: str) -> List[str]:
    out = []
    for rec in json.loads(text or "[]"):
        item = f"{rec['address']}/{rec['prefixlen']}"
        if rec.get("flags"):
            item += f" f{int(rec['flags'])}"
        if rec.get("broadcast"):
            std = ipaddress.ip_interface(item.split()[0]).network.broadcast_address
            item += " b+" if rec["broadcast"] == str(std) else f" b{rec['broadcast']}"
        out.append(item)
    return out


def _unpack_addrs(items: List[str]) -> str:
    recs = []
    for item in items:
        head, *opts = item.split()
        addr, plen = head.rsplit("/", 1)
        rec: Dict[str, object] = {"family": 6 if ":" in addr else 4, "address": addr, "prefixlen": int(plen),
                                  "flags": 0}
        for opt in opts:
            if opt[0] == "f":
                rec["flags"] = int(opt[1:])
            elif opt[0] == "b":
                rec["broadcast"] = (str(ipaddress.ip_interface(head).network.broadcast_address)
                                    if opt == "b+" else opt[1:])
        recs.append(rec)
    return json.dumps(recs, sort_keys=True)


def _pack_routes(text: str) -> List[str]:
    out = []
    for r in json.loads(text or "[]"):
        parts = [f"{r['dst']}/{r['dst_len']}"]
        if r.get("gateway"):
            parts.append(f"g{r['gateway']}")
        for key, short, default in _ROUTE_FIELDS:
            if key in r and r[key] != default:
                parts.append(f"{short}{r[key]}")
        out.append(" ".join(parts))
    return out


def _unpack_routes(items: List[str]) -> str:
    recs = []
    for item in items:
        head, *opts = item.split()
        dst, dst_len = head.rsplit("/", 1)
        rec: Dict[str, object] = {"family": 6 if ":" in dst else 4, "dst": dst, "dst_len": int(dst_len)}
        for key, _short, default in _ROUTE_FIELDS:
            if default is not None:
                rec[key] = default
        by_short = {short: key for key, short, _d in _ROUTE_FIELDS}
        for opt in opts:
            if opt[0] == "g":
                rec["gateway"] = opt[1:]
            elif opt[0] == "S":
                rec["prefsrc"] = opt[1:]
            elif opt[0] in by_short:
                rec[by_short[opt[0]]] = int(opt[1:])
        recs.append(rec)
    return json.dumps(recs, sort_keys=True)


def encode_record(ids: Dict[str, str]) -> str:
    """The alias text recording ``ids`` (external_ids vocabulary); raises if it does not fit."""
    rec: Dict[str, Any] = {}
    for key, value in ids.items():
        if key in (OWNER_KEY, OVS_DOCKER_CONTAINER_ID, OVS_DOCKER_CONTAINER_IFACE) or value in ("", None):
            continue  # implied by the prefix / rebuilt on decoding
        if key in (UPLINK_NIC, UPLINK_MAC):
            continue  # the NIC's own name and MAC: read back from the link (see LinuxBackend._owned)
        if key == KEY_TARGET and value == ids.get(KEY_CONTAINER_ID):
            continue  # Docker targets record their ID twice in OVS
        if key == _UPLINK_ADDRS:
            rec[_SHORT[key]] = _pack_addrs(value)
        elif key == _UPLINK_ROUTES:
            rec[_SHORT[key]] = _pack_routes(value)
        else:
            rec[_SHORT.get(key, key)] = value
    text = ALIAS_PREFIX + json.dumps(rec, separators=(",", ":"), sort_keys=True)
    if len(text.encode()) > MAX_ALIAS:
        raise InvalidInput(f"ovsfab's ownership record ({len(text.encode())} bytes) does not fit the "
                           f"{MAX_ALIAS}-byte interface alias the Linux backend keeps it in",
                           "use a shorter container name, fewer addresses/routes, or the OVS backend")
    return text


def decode_record(alias: Optional[str]) -> Optional[Dict[str, str]]:
    """external_ids from an alias written by :func:`encode_record`; None if not ovsfab's."""
    if not alias or not alias.startswith(ALIAS_PREFIX):
        return None
    try:
        rec = json.loads(alias[len(ALIAS_PREFIX):])
    except ValueError:
        return None
    if not isinstance(rec, dict):
        return None
    ids: Dict[str, str] = {OWNER_KEY: OWNER_VALUE}
    for short, value in rec.items():
        key = _LONG.get(short, short)
        if key == _UPLINK_ADDRS:
            ids[key] = _unpack_addrs(value)
        elif key == _UPLINK_ROUTES:
            ids[key] = _unpack_routes(value)
        else:
            ids[key] = str(value)
    if KEY_CONTAINER_ID in ids:
        ids.setdefault(KEY_TARGET, ids[KEY_CONTAINER_ID])
        ids[OVS_DOCKER_CONTAINER_ID] = ids[KEY_CONTAINER_ID]
        ids[OVS_DOCKER_CONTAINER_IFACE] = ids.get(KEY_IFNAME, "")
    return ids
