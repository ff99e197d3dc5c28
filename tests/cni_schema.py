"""JSON schemas of the CNI result types, written from the CNI specification.

Sources: SPEC.md of containernetworking/cni, v1.0.0 ("Result Types":
Success, Error, Version) and v1.1.0 (its additions: ``mtu``, ``socketPath``,
``pciID`` of an interface).  0.3.x/0.4.0 differ only in ``ips[].version``
(required there, "4" or "6"; absent from 1.0.0 on).  The checks the schema
language cannot express (an ``ips[].interface`` is an index into
``interfaces``) are in :func:`semantic_errors`.
"""

from __future__ import annotations

import copy
from typing import Any, Dict, List

_CIDR = {"type": "string", "pattern": r"^[0-9a-fA-F.:]+/[0-9]{1,3}$"}
_IP = {"type": "string", "pattern": r"^[0-9a-fA-F.:]+$"}
_MAC = {"type": "string", "pattern": r"^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$"}
_VERSION = {"type": "string", "pattern": r"^[0-9]+\.[0-9]+\.[0-9]+$"}

INTERFACE = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "mac": _MAC,
        "sandbox": {"type": "string"},
        "mtu": {"type": "integer", "minimum": 0},          # 1.1.0
        "socketPath": {"type": "string"},                   # 1.1.0
        "pciID": {"type": "string"},                        # 1.1.0
    },
    "additionalProperties": False,
}
IP = {
    "type": "object",
    "required": ["address"],
    "properties": {"address": _CIDR, "gateway": _IP, "interface": {"type": "integer", "minimum": 0}},
    "additionalProperties": False,
}
ROUTE = {
    "type": "object",
    "required": ["dst"],
    "properties": {"dst": _CIDR, "gw": _IP, "mtu": {"type": "integer"}, "advmss": {"type": "integer"},
                   "priority": {"type": "integer"}, "table": {"type": "integer"}, "scope": {"type": "integer"}},
    "additionalProperties": False,
}
DNS = {
    "type": "object",
    "properties": {"nameservers": {"type": "array", "items": _IP}, "domain": {"type": "string"},
                   "search": {"type": "array", "items": {"type": "string"}},
                   "options": {"type": "array", "items": {"type": "string"}}},
    "additionalProperties": False,
}
SUCCESS = {
    "type": "object",
    "required": ["cniVersion"],
    "properties": {"cniVersion": _VERSION, "interfaces": {"type": "array", "items": INTERFACE},
                   "ips": {"type": "array", "items": IP}, "routes": {"type": "array", "items": ROUTE},
                   "dns": DNS},
    "additionalProperties": False,
}
ERROR = {
    "type": "object",
    "required": ["cniVersion", "code", "msg"],
    "properties": {"cniVersion": _VERSION, "code": {"type": "integer", "minimum": 1},
                   "msg": {"type": "string", "minLength": 1}, "details": {"type": "string"}},
    "additionalProperties": False,
}
VERSION = {
    "type": "object",
    "required": ["cniVersion", "supportedVersions"],
    "properties": {"cniVersion": _VERSION, "supportedVersions": {"type": "array", "items": _VERSION,
                                                                  "minItems": 1}},
    "additionalProperties": False,
}


def success_schema(cni_version: str) -> Dict[str, Any]:
    """The Success schema of one version (0.x: ``ips[].version`` required)."""
    if not cni_version.startswith("0."):
        return SUCCESS
    schema = copy.deepcopy(SUCCESS)
    ip = schema["properties"]["ips"]["items"]
    ip["properties"]["version"] = {"enum": ["4", "6"]}
    ip["required"] = ["address", "version"]
    return schema


def semantic_errors(result: Dict[str, Any]) -> List[str]:
    """What the schema cannot say: ips[].interface indexes interfaces; sandbox only on container ends."""
    out = []
    n = len(result.get("interfaces") or [])
    for ip in result.get("ips") or []:
        if "interface" in ip and not 0 <= ip["interface"] < n:
            out.append(f"ip {ip['address']} points at interface {ip['interface']} of {n}")
        elif "interface" in ip and not result["interfaces"][ip["interface"]].get("sandbox"):
            out.append(f"ip {ip['address']} is on a host interface (no sandbox)")
    return out
