"""ovsfab's own IPAM for the CNI plugin: ``"ipam": {"type": "ovsfab", ...}``.

Addresses come from the configured ranges and are unique among every
ovsfab attachment of this Open vSwitch: the ones in use are read from OVSDB
(each attachment records its addresses in ``external_ids``), so there is no
file of leases that could drift from what is plugged in.  DEL removes the
port and with it the record: the address is free again.  A retried ADD of
the same container and interface gets the address it already has.

The configuration is host-local's (so switching is changing ``type``)::

    "ipam": {"type": "ovsfab",
             "ranges": [[{"subnet": "10.90.0.0/24", "rangeStart": "10.90.0.10",
                          "rangeEnd": "10.90.0.199", "gateway": "10.90.0.1"}]],
             "routes": [{"dst": "0.0.0.0/0"}]}

or, for one range, ``"subnet"`` (with ``rangeStart``, ``rangeEnd``,
``gateway``) directly in ``ipam``.  One address per range set (a set per
IP family, as host-local); within a set the first range with a free address
gives it.  Defaults as host-local's: the gateway is the subnet's first
address, the range runs from the address after it to the last one before
the broadcast address.

Two ADDs of one network choose under one lock (``flock``, per OVSDB remote
and network; the lock file holds nothing), held until the port and its
record are in OVSDB, so they never pick the same address.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
from dataclasses import dataclass
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Set

from ovsfab.errors import InvalidInput, OperationFailed
from ovsfab.ops.lock import DEFAULT_DIR as DEFAULT_LOCK_BASE, attachment_lock

#: The ``ipam.type`` that selects this IPAM.
TYPE = "ovsfab"
#: Longest range walked for a free address (a /16 of IPv4; a v6 /64 is not walked whole).
MAX_SCAN = 1 << 16

IPAddr = Any  # ipaddress.IPv4Address | IPv6Address


@dataclass(frozen=True)
class Range:
    """One range: addresses ``start``..``end`` of ``subnet``, and the gateway the result names."""

    subnet: Any  # IPv4Network | IPv6Network
    start: IPAddr
    end: IPAddr
    gateway: Optional[IPAddr]

    def addresses(self) -> Iterator[IPAddr]:
        """The range's addresses in order, without the gateway (at most MAX_SCAN of them)."""
        first, last = int(self.start), int(self.end)
        for n in range(first, min(last, first + MAX_SCAN - 1) + 1):
            addr = ipaddress.ip_address(n) if self.subnet.version == 4 else ipaddress.IPv6Address(n)
            if addr != self.gateway:
                yield addr


@dataclass(frozen=True)
class Pool:
    """The range sets (one address from each) and the routes of an ``ipam`` configuration."""

    sets: Sequence[Sequence[Range]]
    routes: Sequence[Mapping[str, str]]

    def result(self, chosen: Sequence[str], version: str) -> Dict[str, Any]:
        """The IPAM result (host-local's shape) for the chosen ``ADDR/PREFIX`` addresses."""
        ips = []
        for text in chosen:
            iface = ipaddress.ip_interface(text)
            rng = self.range_of(iface.ip)
            ip: Dict[str, str] = {"address": text}
            if rng is not None and rng.gateway is not None:
                ip["gateway"] = str(rng.gateway)
            ips.append(ip)
        out: Dict[str, Any] = {"cniVersion": version, "ips": ips}
        if self.routes:
            out["routes"] = [dict(r) for r in self.routes]
        return out

    def range_of(self, addr: IPAddr) -> Optional[Range]:
        for ranges in self.sets:
            for rng in ranges:
                if addr.version == rng.subnet.version and int(rng.start) <= int(addr) <= int(rng.end):
                    return rng
        return None


def _addr(value: Any, what: str) -> IPAddr:
    if not isinstance(value, str):
        raise InvalidInput(f"ipam {what} must be a string address, not {type(value).__name__}")
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        raise InvalidInput(f"ipam {what} {value!r} is not an IP address") from None


def _range(doc: Any) -> Range:
    if not isinstance(doc, dict):
        raise InvalidInput(f"ipam range {doc!r} is not an object", 'e.g. {"subnet": "10.90.0.0/24"}')
    if not isinstance(doc.get("subnet"), str):
        raise InvalidInput("ipam range has no subnet", 'e.g. {"subnet": "10.90.0.0/24"}')
    try:
        subnet = ipaddress.ip_network(doc["subnet"], strict=False)
    except ValueError:
        raise InvalidInput(f"ipam subnet {doc['subnet']!r} is not a network", "e.g. 10.90.0.0/24") from None
    if subnet.num_addresses < 4 and subnet.version == 4 or subnet.num_addresses < 2:
        raise InvalidInput(f"ipam subnet {subnet} is too small", "give at least a /30 (IPv6: /127)")
    gateway = _addr(doc["gateway"], "gateway") if doc.get("gateway") is not None else subnet.network_address + 1
    last = subnet.broadcast_address - 1 if subnet.version == 4 else subnet.broadcast_address
    first = subnet.network_address + 1
    start = _addr(doc["rangeStart"], "rangeStart") if doc.get("rangeStart") is not None else first
    end = _addr(doc["rangeEnd"], "rangeEnd") if doc.get("rangeEnd") is not None else last
    for what, addr in (("rangeStart", start), ("rangeEnd", end), ("gateway", gateway)):
        if addr.version != subnet.version or addr not in subnet:
            raise InvalidInput(f"ipam {what} {addr} is not in subnet {subnet}")
    if not first <= start <= end <= last:
        raise InvalidInput(f"ipam range {start}-{end} is empty or outside {first}-{last}",
                           "give rangeStart <= rangeEnd, neither the network nor the broadcast address")
    return Range(subnet, start, end, gateway)


def parse_pool(ipam: Mapping[str, Any]) -> Pool:
    """The pool of an ``ipam`` object; InvalidInput (CNI code 7) when it is malformed."""
    if ipam.get("ranges") is not None:
        raw = ipam["ranges"]
        if not isinstance(raw, list) or not raw or not all(isinstance(s, list) and s for s in raw):
            raise InvalidInput("ipam ranges must be a non-empty list of non-empty lists of ranges",
                               'e.g. [[{"subnet": "10.90.0.0/24"}]]')
        sets = [[_range(r) for r in s] for s in raw]
    elif ipam.get("subnet") is not None:
        sets = [[_range(dict(ipam))]]
    else:
        raise InvalidInput("ipam of type ovsfab has neither ranges nor subnet", 'e.g. "subnet": "10.90.0.0/24"')
    for s in sets:
        if len({r.subnet.version for r in s}) != 1:
            raise InvalidInput("a range set mixes IPv4 and IPv6", "one set per family")
    routes = ipam.get("routes") if ipam.get("routes") is not None else []
    if not isinstance(routes, list):
        raise InvalidInput("ipam routes must be a list", 'e.g. [{"dst": "0.0.0.0/0"}]')
    out_routes = []
    for route in routes:
        if not isinstance(route, dict) or not isinstance(route.get("dst"), str):
            raise InvalidInput(f"ipam route {route!r} has no dst", 'e.g. {"dst": "0.0.0.0/0"}')
        try:
            ipaddress.ip_network(route["dst"], strict=False)
            if route.get("gw") is not None:
                _addr(route["gw"], "route gw")
        except ValueError:
            raise InvalidInput(f"ipam route dst {route['dst']!r} is not a network") from None
        out_routes.append({k: route[k] for k in ("dst", "gw") if route.get(k) is not None})
    return Pool(sets, out_routes)


def choose(pool: Pool, used: Set[IPAddr], mine: Iterable[str] = ()) -> List[str]:
    """One ``ADDR/PREFIX`` per range set: the one ``mine`` already holds there, else the first free.

    ``used``: every address in use on this Open vSwitch (``mine``'s too).
    OperationFailed when a set has no free address left.
    """
    held = [ipaddress.ip_interface(a) for a in mine]
    out = []
    for ranges in pool.sets:
        kept = next((h for h in held for r in ranges if h.ip.version == r.subnet.version
                     and int(r.start) <= int(h.ip) <= int(r.end) and h.network == r.subnet), None)
        if kept is not None:
            out.append(kept.with_prefixlen)
            continue
        for rng in ranges:
            free = next((a for a in rng.addresses() if a not in used), None)
            if free is not None:
                out.append(f"{free}/{rng.subnet.prefixlen}")
                break
        else:
            span = ", ".join(f"{r.start}-{r.end}" for r in ranges)
            raise OperationFailed(f"ipam: no free address left in {span}",
                                  "widen the range, or free addresses (CNI DEL of containers that are gone; GC)")
    return out


def in_use(attachments: Iterable[Any]) -> Set[IPAddr]:
    """Every address the attachments record (their ``addresses``, ``AddressSpec`` items)."""
    return {spec.interface.ip for att in attachments for spec in att.addresses}


@contextlib.contextmanager
def pool_lock(db: str, network: str) -> Iterator[None]:
    """The lock of one network's choices on one OVSDB (held until the ADD's record is in OVSDB)."""
    # Always under /run/ovsfab, whatever OVS_RUNDIR says: the agent and an
    # in-process plugin may see different environments, and the digest of the
    # OVSDB remote already keeps hosts apart.
    digest = hashlib.sha256(f"{db}\0{network}".encode()).hexdigest()[:16]
    with attachment_lock(f"cni-ipam-{digest}", base=DEFAULT_LOCK_BASE):
        yield
