"""Deterministic IPAM: the same file gives the same addresses on every host.

No coordination, no state: an attachment without an address gets one from a
hash of its identity -- (network, container, ifname), *not* the host, so a
container moved to another host keeps its address -- and, when that address
is taken, the next free one (wrapping around).  Addresses that are never
handed out: the network address, the IPv4 broadcast address, the network's
gateway, and every address given explicitly in the file.

Attachments are served in the order of their hash (ties broken by host,
container, ifname), so adding or removing one attachment moves no other
attachment's address unless the two collide on the same slot -- rare in a
subnet much larger than the number of attachments (see docs/fabric.md).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Callable, Dict, List, Set, Tuple

if TYPE_CHECKING:  # pragma: no cover
    from ovsfab.fabric.spec import Fabric, FabricError


def slot(network: str, container: str, ifname: str, size: int) -> int:
    """The preferred host index (0-based, among the usable addresses) of an attachment."""
    digest = hashlib.sha256(f"{network}\0{container}\0{ifname}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % size


def allocate(fabric: "Fabric", fail: Callable[[int, str, str], "FabricError"]) -> None:
    """Fill ``fabric.addresses`` for every attachment (given or allocated)."""
    for net in fabric.networks.values():
        subnet = net.subnet
        first = int(subnet.network_address) + 1           # never the network address
        last = int(subnet.broadcast_address) - (1 if subnet.version == 4 else 0)  # nor the v4 broadcast
        size = last - first + 1
        taken: Set[int] = set()
        if net.gateway is not None:
            taken.add(int(net.gateway))
        atts = [a for a in fabric.attachments if a.network == net.name]
        for att in atts:
            if att.address is not None:
                taken.add(int(att.address))
                fabric.addresses[(net.name, att.host, att.container, att.ifname)] = att.address
        todo: List[Tuple[int, str, str, str, int]] = []
        for att in atts:
            if att.address is None:
                todo.append((slot(net.name, att.container, att.ifname, size), att.host, att.container,
                             att.ifname, att.line))
        todo.sort()
        free = size - len(taken & set(range(first, last + 1))) if size < 1 << 20 else size
        if len(todo) > free:
            line = todo[free][4] if free < len(todo) else net.line
            raise fail(line, f"network {net.name}'s subnet {subnet} has no free address left "
                       f"({len(todo)} needed, {free} free)", "use a larger subnet")
        for start, host, container, ifname, _line in todo:
            index = start
            while first + index in taken:
                index = (index + 1) % size
            taken.add(first + index)
            fabric.addresses[(net.name, host, container, ifname)] = type(subnet.network_address)(first + index)


def addresses_by_network(fabric: "Fabric") -> Dict[str, Dict[str, str]]:
    """{network: {"host/container/ifname": address}} -- for --json and the docs."""
    out: Dict[str, Dict[str, str]] = {}
    for (net, host, container, ifname), ip in sorted(fabric.addresses.items(), key=lambda kv: str(kv[0])):
        out.setdefault(net, {})[f"{host}/{container}/{ifname}"] = str(ip)
    return out
