"""The Docker driver's IPAM (``--ipam-driver ovsfab``): per-host ranges of a network's subnet.

Each host's dockerd allocates on its own, so hosts draw from different ranges
of the shared subnet: the ``--ip-range`` Docker passes (``SubPool``), or one
derived from the host's ID (:func:`host_range`).  Free means: not the
gateway, not recorded by an endpoint in this host's OVSDB, not just handed
out (the front end's reservations).  The PoolID carries ``subnet|range``,
so nothing is kept between calls.

An OVN network's pool (``--ipam-opt network=NAME``, PoolID ``subnet|ovn:NAME``)
takes OVN's dynamic addresses instead: RequestAddress makes a logical port
with ``dynamic`` addresses, tagged pending (``ovsfab-ipam-pending``), and
returns what ovn-northd assigned; so the address exists, in NB, before
Docker's CreateEndpoint, which adopts it (ops/endpoint_ovn.py: the pending
port is replaced by the endpoint's in one transaction).  ReleaseAddress
removes a pending port; one that no endpoint adopted within PENDING_TTL (a
driver or dockerd that died in between) is removed by the next
RequestAddress of the network on this host.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ovsfab.errors import Conflict, InvalidInput, OperationFailed
from ovsfab.ops.context import Context

LOG = logging.getLogger(__name__)

#: PoolID range part of an OVN network's pool: ``ovn:NAME``.
OVN_PREFIX = "ovn:"
#: How long a pending OVN IPAM port may wait for its endpoint (Docker creates it right after asking;
#: the driver's own reservations last as long: ovsfab.driver.handlers.RESERVATION_TTL).
PENDING_TTL = 120.0
#: How long RequestAddress waits for ovn-northd to assign an address.
ASSIGN_WAIT = 10.0


def host_range(pool: str, host_id: str) -> str:
    """This host's slice of ``pool``, derived from ``host_id`` (the same on every call, on every host).

    The pool is cut into 2**n slices of at least 16 addresses (n <= 6); the
    host's slice is sha256(host_id) modulo 2**n.  Two hosts may draw the same
    slice (1 in 2**n): give each host its own ``--ip-range`` to rule that out
    (docs/docker-driver.md).
    """
    net = ipaddress.ip_network(pool)
    bits = max(0, min(6, net.max_prefixlen - net.prefixlen - 4))
    if bits == 0:
        return str(net)
    index = int(hashlib.sha256(host_id.encode()).hexdigest(), 16) % (1 << bits)
    return str(list(net.subnets(prefixlen_diff=bits))[index])


@dataclass
class IpamResult:
    """An IPAM answer: a pool or an address (CIDR)."""

    action: str
    pool_id: str = ""
    pool: str = ""
    address: str = ""

    def to_json(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


def _pool_id(pool: str, rng: str) -> str:
    return f"{pool}|{rng}"


def ovn_network_of(pool_id: str) -> Optional[str]:
    """The OVN network of a PoolID made with ``--ipam-opt network=NAME``, or None."""
    _, _, rng = pool_id.partition("|")
    return rng[len(OVN_PREFIX):] if rng.startswith(OVN_PREFIX) else None


def parse_pool_id(pool_id: str) -> Tuple[Any, Any]:
    """(pool, range) networks of a PoolID made by :func:`ipam_request_pool` (an OVN pool's range is
    the whole pool: northd chooses)."""
    pool, sep, rng = pool_id.partition("|")
    if rng.startswith(OVN_PREFIX):
        rng = pool
    try:
        return ipaddress.ip_network(pool), ipaddress.ip_network(rng if sep else pool)
    except ValueError:
        raise InvalidInput(f"pool ID {pool_id!r} is not ovsfab's", "create the network with --ipam-driver ovsfab") from None


def ipam_request_pool(pool: Optional[str], sub_pool: Optional[str], host_id: str,
                      network: Optional[str] = None) -> IpamResult:
    """A pool for a new network: the whole subnet, with this host's range of it in the PoolID
    (or, with ``network``, the OVN network whose ovn-northd assigns the addresses)."""
    if network is not None:
        from ovsfab.ovn.network import parse_network  # noqa: PLC0415

        parse_network(network)
        if sub_pool:
            raise InvalidInput("--ip-range does not go with --ipam-opt network= (ovn-northd assigns from the "
                               "whole subnet)", "drop --ip-range")
        net = ipaddress.ip_network(pool or "", strict=True) if pool else None
        if net is None or net.version != 4:
            raise InvalidInput("--ipam-opt network= needs an IPv4 --subnet (ovn-northd's other_config:subnet)",
                               "e.g. --subnet 10.1.0.0/24")
        return IpamResult("ipam.request_pool", pool_id=f"{net}|{OVN_PREFIX}{network}", pool=str(net))
    if not pool:
        raise InvalidInput("ovsfab IPAM needs a subnet", "give --subnet (and --ip-range for this host's share)")
    try:
        net = ipaddress.ip_network(pool, strict=True)
    except ValueError:
        raise InvalidInput(f"subnet {pool!r} is not a network", "e.g. --subnet 10.1.0.0/24") from None
    if sub_pool:
        try:
            rng = ipaddress.ip_network(sub_pool, strict=True)
        except ValueError:
            raise InvalidInput(f"--ip-range {sub_pool!r} is not a network", "e.g. --ip-range 10.1.0.0/25") from None
        if rng.version != net.version or not rng.subnet_of(net):  # type: ignore[arg-type]
            raise InvalidInput(f"--ip-range {rng} is not inside --subnet {net}")
    else:
        rng = ipaddress.ip_network(host_range(str(net), host_id))
    return IpamResult("ipam.request_pool", pool_id=_pool_id(str(net), str(rng)), pool=str(net))


def _gateway(net: Any) -> Any:
    """The address reserved for a gateway on every host: the subnet's first."""
    return next(net.hosts()) if net.num_addresses > 2 else net.network_address


def ipam_request_address(pool_id: str, address: Optional[str], gateway: bool, reserved: Sequence[str],
                         ctx: Context) -> IpamResult:
    """An address of the pool: the one asked for, the gateway, or the first free one in this host's range.

    Free: not the gateway, not recorded by an endpoint in OVSDB, not in
    ``reserved`` (what the front end handed out and Docker has not yet used
    in an endpoint: between RequestAddress and CreateEndpoint nothing is in
    OVSDB yet).
    """
    net, rng = parse_pool_id(pool_id)
    gw = _gateway(net)
    if address:
        try:
            ip = ipaddress.ip_address(address.split("/")[0])
        except ValueError:
            raise InvalidInput(f"address {address!r} is not an IP address") from None
        if ip not in net or (net.prefixlen < net.max_prefixlen - 1 and ip in (net.network_address,
                                                                               net.broadcast_address)):
            raise InvalidInput(f"address {ip} is not a host address of {net}")
        if not gateway and str(ip) in reserved:
            raise Conflict(f"address {ip} was just handed out to another endpoint", "choose another --ip")
        return IpamResult("ipam.request_address", pool_id=pool_id, pool=str(net), address=f"{ip}/{net.prefixlen}")
    if gateway:
        return IpamResult("ipam.request_address", pool_id=pool_id, pool=str(net), address=f"{gw}/{net.prefixlen}")
    network = ovn_network_of(pool_id)
    if network is not None:
        ip = _ovn_request(network, net, gw, ctx)
        return IpamResult("ipam.request_address", pool_id=pool_id, pool=str(net), address=f"{ip}/{net.prefixlen}")
    from ovsfab.ops.endpoint import _backend, docker_endpoints  # noqa: PLC0415 - endpoint registers this module

    taken = set(reserved) | {str(gw)}
    with _backend(ctx) as backend:
        for att in docker_endpoints(backend):
            taken.update(str(a.interface.ip) for a in att.addresses)
    for ip in rng.hosts() if rng.num_addresses > 2 else rng:
        if ip in net and ip not in (net.network_address, net.broadcast_address) and str(ip) not in taken:
            return IpamResult("ipam.request_address", pool_id=pool_id, pool=str(net),
                              address=f"{ip}/{net.prefixlen}")
    raise OperationFailed(f"no free address left in {rng} (this host's range of {net})",
                          "give this host a larger --ip-range")


def _ovn_request(network: str, net: Any, gw: Any, ctx: Context) -> str:
    """A pending dynamic logical port on ``network`` and the IP ovn-northd gave it (see the module doc)."""
    from ovsfab.ovn.control import KEY_NB  # noqa: PLC0415
    from ovsfab.ovn.network import (KEY_CHASSIS, KEY_IPAM_PENDING, add_dynamic_lport, del_lport,  # noqa: PLC0415
                                    ensure_dynamic_switch, joined, nb_session, wait_assigned)

    join = joined(ctx.db, f"pool of OVN network {network}")
    sid = join["system-id"]
    nbs = nb_session(join[KEY_NB])
    try:
        _, subnet = ensure_dynamic_switch(nbs, network, str(net), str(gw))
        gc_pending(nbs, network, sid, PENDING_TTL)
        # Named by chassis and a random token: the endpoint (and its name) does not exist yet.
        name = f"{network}.{sid}.ipam-{secrets.token_hex(6)}"
        add_dynamic_lport(nbs, network, name, None, {KEY_CHASSIS: sid, KEY_IPAM_PENDING: str(int(time.time()))})
        try:
            _, ip = wait_assigned(nbs, name, ASSIGN_WAIT)
        except Exception:
            del_lport(nbs, name)
            raise
        return ip
    finally:
        nbs.close()


def gc_pending(nbs: Any, network: str, chassis: str, ttl: float) -> List[str]:
    """Remove the chassis' pending IPAM ports of ``network`` older than ``ttl`` seconds; their names."""
    from ovsfab.ovn.network import del_lports, pending_lports  # noqa: PLC0415

    now = time.time()
    stale = [name for name, _, made in pending_lports(nbs, network, chassis) if now - made > ttl]
    if stale:
        LOG.info("OVN network %s: removing %d address(es) no endpoint took: %s", network, len(stale),
                 ", ".join(stale))
        del_lports(nbs, stale)
    return stale


def ipam_release_address(pool_id: str, address: Optional[str], ctx: Context) -> IpamResult:
    """ReleaseAddress: an OVN pool's pending port holding ``address`` goes (an adopted one went with
    its endpoint); other pools keep nothing to release."""
    network = ovn_network_of(pool_id)
    net, _ = parse_pool_id(pool_id)
    if network is not None and address:
        from ovsfab.ovn.control import KEY_NB  # noqa: PLC0415
        from ovsfab.ovn.network import del_lports, joined, nb_session, pending_lports  # noqa: PLC0415

        join = joined(ctx.db, f"pool of OVN network {network}")
        nbs = nb_session(join[KEY_NB])
        try:
            ip = address.split("/")[0]
            del_lports(nbs, [name for name, held, _ in pending_lports(nbs, network, join["system-id"])
                             if held == ip])
        finally:
            nbs.close()
    return IpamResult("ipam.release_address", pool_id=pool_id, pool=str(net), address=address or "")
