"""The CNI result types, in the version the request asked for.

1.0.0 and 1.1.0: ``ips[]`` have no ``version`` field; 0.3.x and 0.4.0 have
one (``"4"``/``"6"``).  ``prevResult`` may come in another version than the
configuration's (a runtime's cache): it is converted like IPAM's result.
"""

from __future__ import annotations

import copy
import ipaddress
from typing import Any, Dict, List, Optional, Tuple

from ovsfab.ops.cni_errors import INVALID_CONFIG, CniError


def _old(version: str) -> bool:
    return version.startswith("0.")


def _list(result: Dict[str, Any], key: str, what: str) -> List[Any]:
    value = result.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise CniError(INVALID_CONFIG, f"{what} {key} must be a list, not {type(value).__name__}")
    return value


def normalize(result: Optional[Dict[str, Any]], version: str) -> Dict[str, Any]:
    """A result (IPAM's, or prevResult) with its ``ips`` in ``version``'s form; its lists checked."""
    out: Dict[str, Any] = copy.deepcopy(result) if result else {}
    for key in ("interfaces", "routes"):
        if any(not isinstance(item, dict) for item in _list(out, key, "result")):
            raise CniError(INVALID_CONFIG, f"result {key} must be a list of objects")
    if out.get("dns") is not None and not isinstance(out["dns"], dict):
        raise CniError(INVALID_CONFIG, "result dns must be an object")
    for ip in _list(out, "ips", "result"):
        if not isinstance(ip, dict) or not isinstance(ip.get("address"), str):
            raise CniError(INVALID_CONFIG, f"result ip {ip!r} has no address")
        try:
            fam = ipaddress.ip_interface(ip["address"]).version
        except ValueError:
            raise CniError(INVALID_CONFIG, f"result ip address {ip['address']!r} is not ADDR/PREFIX") from None
        if _old(version):
            ip["version"] = str(fam)
        else:
            ip.pop("version", None)
    out["cniVersion"] = version
    return out


def ipam_params(ipam: Dict[str, Any]) -> Tuple[List[str], List[str]]:
    """(addresses, routes) for the cni.add operation from an IPAM result."""
    addresses = [ip["address"] for ip in ipam.get("ips") or []]
    # A route without gw goes via the gateway of the same family's address
    # (the spec leaves it to the plugin; the reference plugins do this).
    gateways = {}
    for ip in ipam.get("ips") or []:
        if ip.get("gateway"):
            gateways.setdefault(ipaddress.ip_interface(ip["address"]).version, ip["gateway"])
    routes = []
    for route in ipam.get("routes") or []:
        if not isinstance(route, dict) or not isinstance(route.get("dst"), str):
            raise CniError(INVALID_CONFIG, f"IPAM route {route!r} has no dst")
        try:
            family = ipaddress.ip_network(route["dst"], strict=False).version
        except ValueError:
            raise CniError(INVALID_CONFIG, f"IPAM route dst {route['dst']!r} is not a network") from None
        gw = route.get("gw") or gateways.get(family)
        routes.append(f"{route['dst']}@{gw}" if gw else route["dst"])
    return addresses, routes


def add_result(version: str, prev: Optional[Dict[str, Any]], ipam: Optional[Dict[str, Any]],
               added: Dict[str, Any], ifname: str) -> Dict[str, Any]:
    """The ADD result: prevResult's content (if any), our two interfaces, IPAM's ips on the container's."""
    out = normalize(prev, version)
    interfaces = list(out.get("interfaces") or [])
    interfaces.append({"name": added["port"], "mac": added["host_mac"]})
    interfaces.append({"name": ifname, "mac": added["mac"], "sandbox": added["sandbox"]})
    out["interfaces"] = interfaces
    own = len(interfaces) - 1
    ips = list(out.get("ips") or [])
    routes = list(out.get("routes") or [])
    if ipam:
        norm = normalize(ipam, version)
        for ip in norm.get("ips") or []:
            ip["interface"] = own
            ips.append(ip)
        routes.extend(norm.get("routes") or [])
        if norm.get("dns"):
            out["dns"] = norm["dns"]
    out["ips"] = ips
    if routes:
        out["routes"] = routes
    out.setdefault("dns", {})
    return out


def own_addresses(prev: Optional[Dict[str, Any]], ifname: str, netns: str) -> List[str]:
    """The addresses prevResult gives the container interface ``ifname`` in ``netns`` (for CHECK)."""
    if not prev:
        return []
    index = None
    for i, iface in enumerate(prev.get("interfaces") or []):
        if isinstance(iface, dict) and iface.get("name") == ifname and iface.get("sandbox") == netns:
            index = i
    if index is None:
        raise CniError(INVALID_CONFIG, f"prevResult has no interface {ifname} in {netns}",
                       "CHECK needs the result of this plugin's ADD")
    return [ip["address"] for ip in prev.get("ips") or []
            if isinstance(ip, dict) and ip.get("interface") == index and isinstance(ip.get("address"), str)]
