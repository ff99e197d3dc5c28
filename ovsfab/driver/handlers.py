"""The remote driver API: one handler per Docker call, each a thin adapter to an ovsfab operation.

Docker (libnetwork 20.10) POSTs JSON to ``/Plugin.Activate``,
``/NetworkDriver.*`` and ``/IpamDriver.*``; an answer carrying ``Err`` is a
refusal, and Docker shows its text.  Everything that changes the host goes
through :func:`ovsfab.ops.api.execute` with the request's
:class:`~ovsfab.ops.context.Context`; the only state kept here is the IPAM's
addresses handed out and not yet recorded by an endpoint (see
:class:`Reservations`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional

from ovsfab.errors import InvalidInput, OvsfabError
from ovsfab.ops.context import Context

LOG = logging.getLogger(__name__)

#: Docker's generic driver options (``docker network create -o K=V``).
GENERIC = "com.docker.network.generic"
#: RequestAddress asks for the network's gateway when Options carry this type.
GATEWAY_TYPE = "com.docker.network.gateway"
#: How long an address handed out by RequestAddress stays reserved without an
#: endpoint recording it (Docker creates the endpoint right after asking).
RESERVATION_TTL = 120.0
#: Where dockerd's pid is (its network namespace receives the veth ends it moves).
DOCKER_PIDFILE = "/var/run/docker.pid"


class Reservations:
    """Addresses the IPAM handed out that no endpoint records in OVSDB yet.

    Between ``RequestAddress`` and ``CreateEndpoint`` an address exists only
    in Docker's memory; without this, two containers started at once could
    get the same one.  Once an endpoint records it (or Docker releases it, or
    RESERVATION_TTL passes) OVSDB is the only truth again, so losing this
    set in a driver restart loses nothing that is in use.
    """

    def __init__(self, ttl: float = RESERVATION_TTL) -> None:
        self._ttl = ttl
        self._by_pool: Dict[str, Dict[str, float]] = {}

    def _live(self, pool_id: str) -> Dict[str, float]:
        now = time.monotonic()
        ips = self._by_pool.setdefault(pool_id, {})
        for ip in [ip for ip, t in ips.items() if now - t > self._ttl]:
            del ips[ip]
        return ips

    def list(self, pool_id: str) -> List[str]:
        return sorted(self._live(pool_id))

    def add(self, pool_id: str, ip: str) -> None:
        self._live(pool_id)[ip] = time.monotonic()

    def discard(self, ip: str, pool_id: Optional[str] = None) -> None:
        for pid, ips in self._by_pool.items():
            if pool_id is None or pid == pool_id:
                ips.pop(ip, None)


class WarmBackend:
    """One OVSDB session kept open across requests (each would otherwise connect and sync afresh).

    Handed to operations through ``Context.warm_backend``: lent (its close()
    does nothing) and only to a request for the same OVSDB.  Before each
    loan, one round trip makes the replica as fresh as a new session's (a
    change another client committed is in it).  A session that fails that
    round trip (ovsdb-server restarted) is dropped and made anew.  Used under
    the driver's lock only: python-ovs is not thread safe.
    """

    def __init__(self, remote: str) -> None:
        self.remote = remote
        self._backend: Any = None

    def __call__(self, remote: str) -> Any:
        from ovsfab.backends.base import Borrowed  # noqa: PLC0415
        from ovsfab.backends.ovs.backend import OvsBackend  # noqa: PLC0415

        if remote != self.remote:
            return None
        for _ in range(2):
            if self._backend is None:
                self._backend = OvsBackend(self.remote)
            try:
                self._backend.session.transact(
                    lambda txn: txn.add_op({"op": "select", "table": "Open_vSwitch", "where": [],
                                            "columns": ["_uuid"]}),
                    wait_applied=False, comment="ovsfab: docker-driver sync")
                return Borrowed(self._backend)
            except OvsfabError as exc:
                LOG.info("OVSDB session lost (%s); reconnecting", exc)
                self.close()
        return None

    def close(self) -> None:
        if self._backend is not None:
            try:
                self._backend.close()
            finally:
                self._backend = None


def docker_netns(pidfile: str = DOCKER_PIDFILE) -> str:
    """dockerd's network namespace, from its pid file; this process's own when there is none.

    Read on every request: a restarted dockerd has a new pid.
    """
    try:
        with open(pidfile) as f:
            pid = int(f.read().strip())
        path = f"/proc/{pid}/ns/net"
        if os.path.exists(path):
            return path
    except (OSError, ValueError):
        pass
    return "/proc/self/ns/net"


@dataclass
class Driver:
    """The handlers of one plugin instance; ``handle`` is safe to call from several threads."""

    context: Callable[[], Context]
    host_id: str
    netns: Callable[[], str] = docker_netns
    reservations: Reservations = field(default_factory=Reservations)
    #: python-ovs and the plans are not thread safe: one request at a time.
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, method: str, body: Mapping[str, Any]) -> Dict[str, Any]:
        """The JSON answer to one call (``{"Err": ...}`` for a refusal)."""
        fn = HANDLERS.get(method)
        if fn is None:
            return {"Err": f"ovsfab does not implement {method}; it is a NetworkDriver and IpamDriver plugin"}
        if not isinstance(body, Mapping):
            return {"Err": f"the body of {method} is not a JSON object"}
        t0 = time.monotonic()
        try:
            with self.lock:
                answer = fn(self, body)
            LOG.info("%s ok (%.0f ms)", method, (time.monotonic() - t0) * 1000)
            return answer
        except OvsfabError as exc:
            LOG.info("%s -> %s (%.0f ms)", method, exc, (time.monotonic() - t0) * 1000)
            return {"Err": str(exc)}
        except Exception as exc:  # a bug: one line for Docker, the traceback in our log
            LOG.exception("%s failed", method)
            return {"Err": f"ovsfab internal error in {method}: {type(exc).__name__}: {exc}; "
                           "see the driver's log and report it"}

    def run(self, op: str, params: Dict[str, Any]) -> Dict[str, Any]:
        from ovsfab.ops import api  # noqa: PLC0415

        return api.execute(op, params, self.context()).to_json()


# Docker's bodies are JSON objects of known shape; anything else is refused in
# one line here, before an operation sees it (tests/test_fuzz_driver.py).
def _str(body: Mapping[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"Docker sent no {key}")
    return value


def _opt_str(body: Mapping[str, Any], key: str) -> Optional[str]:
    """A string field that may be absent, null or empty (all three: None)."""
    value = body.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"Docker sent {key} that is not a string")
    return value


def _obj(body: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """An object field that may be absent or null (then empty)."""
    value = body.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidInput(f"Docker sent {key} that is not an object")
    return value


def _list(body: Mapping[str, Any], key: str) -> List[Any]:
    value = body.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidInput(f"Docker sent {key} that is not a list")
    return value


def _generic_options(body: Mapping[str, Any]) -> List[str]:
    opts = _obj(_obj(body, "Options"), GENERIC)
    out = []
    for k, v in sorted(opts.items()):
        if not isinstance(v, (str, int)) or isinstance(v, bool):
            raise InvalidInput(f"the value of -o {k} is not a string", f"e.g. -o {k}=VALUE")
        out.append(f"{k}={v}")
    return out


def _pools(body: Mapping[str, Any]) -> List[str]:
    out = []
    for key in ("IPv4Data", "IPv6Data"):
        for data in _list(body, key):
            if not isinstance(data, Mapping):
                raise InvalidInput(f"Docker sent {key} entries that are not objects")
            pool = _opt_str(data, "Pool")
            if pool and pool != "0.0.0.0/0":  # Docker's placeholder for "no IPv4"
                out.append(pool)
    return out


# -- Plugin / NetworkDriver --------------------------------------------------
def activate(d: Driver, body: Mapping[str, Any]) -> Dict[str, Any]:
    return {"Implements": ["NetworkDriver", "IpamDriver"]}


def capabilities(d: Driver, body: Mapping[str, Any]) -> Dict[str, Any]:
    # local: each host's dockerd has its own copy of the network; the fabric joins them.
    return {"Scope": "local", "ConnectivityScope": "global"}


def create_network(d: Driver, body: Mapping[str, Any]) -> Dict[str, Any]:
    d.run("network.create", {"network_id": _str(body, "NetworkID"), "options": _generic_options(body),
                             "subnets": _pools(body)})
    return {}


def delete_network(d: Driver, body: Mapping[str, Any]) -> Dict[str, Any]:
    d.run("network.delete", {"network_id": _str(body, "NetworkID")})
    return {}


def create_endpoint(d: Driver, body: Mapping[str, Any]) -> Dict[str, Any]:
    iface = _obj(body, "Interface")
    addresses = [a for a in (_opt_str(iface, "Address"), _opt_str(iface, "AddressIPv6")) if a]
    given_mac = _opt_str(iface, "MacAddress")
    res = d.run("endpoint.create", {"network_id": _str(body, "NetworkID"), "endpoint_id": _str(body, "EndpointID"),
                                    "addresses": addresses, "mac": given_mac, "peer_netns": d.netns()})
    for a in addresses:  # recorded in OVSDB now: the reservation has done its job
        d.reservations.discard(a.split("/")[0])
    # Docker refuses an answer that changes what it gave: only a MAC it left to us.
    return {"Interface": {} if given_mac else {"MacAddress": res["mac"]}}


def delete_endpoint(d: Driver, body: Mapping[str, Any]) -> Dict[str, Any]:
    d.run("endpoint.delete", {"network_id": _str(body, "NetworkID"), "endpoint_id": _str(body, "EndpointID")})
    return {}


def endpoint_info(d: Driver, body: Mapping[str, Any]) -> Dict[str, Any]:
    res = d.run("endpoint.info", {"network_id": _str(body, "NetworkID"), "endpoint_id": _str(body, "EndpointID")})
    return {"Value": {k: v for k, v in res.items() if k not in ("action", "changed") and v not in (None, "")}}


def join(d: Driver, body: Mapping[str, Any]) -> Dict[str, Any]:
    res = d.run("endpoint.join", {"network_id": _str(body, "NetworkID"), "endpoint_id": _str(body, "EndpointID"),
                                  "sandbox": _opt_str(body, "SandboxKey") or ""})
    # No gateway: the fabric is layer 2.  DisableGatewayService keeps Docker
    # from adding docker_gwbridge to every container for a default route.
    return {"InterfaceName": {"SrcName": res["src_name"], "DstPrefix": "eth"}, "DisableGatewayService": True}


def leave(d: Driver, body: Mapping[str, Any]) -> Dict[str, Any]:
    d.run("endpoint.leave", {"network_id": _str(body, "NetworkID"), "endpoint_id": _str(body, "EndpointID")})
    return {}


def nothing(d: Driver, body: Mapping[str, Any]) -> Dict[str, Any]:
    """Discovery and external connectivity: ovsfab's fabric is built by ovsfab itself, nothing to program."""
    return {}


# -- IpamDriver -----------------------------------------------------------------
def ipam_capabilities(d: Driver, body: Mapping[str, Any]) -> Dict[str, Any]:
    return {"RequiresMACAddress": False, "RequiresRequestReplay": False}


def address_spaces(d: Driver, body: Mapping[str, Any]) -> Dict[str, Any]:
    return {"LocalDefaultAddressSpace": "ovsfab-local", "GlobalDefaultAddressSpace": "ovsfab-global"}


def request_pool(d: Driver, body: Mapping[str, Any]) -> Dict[str, Any]:
    res = d.run("ipam.request_pool", {"pool": _opt_str(body, "Pool"), "sub_pool": _opt_str(body, "SubPool"),
                                      "host_id": d.host_id,
                                      # --ipam-opt network=NAME: OVN's dynamic addresses (ops/endpoint_ipam.py)
                                      "network": _opt_str(_obj(body, "Options"), "network")})
    return {"PoolID": res["pool_id"], "Pool": res["pool"], "Data": {}}


def release_pool(d: Driver, body: Mapping[str, Any]) -> Dict[str, Any]:
    return {}


def request_address(d: Driver, body: Mapping[str, Any]) -> Dict[str, Any]:
    pool_id = _str(body, "PoolID")
    gateway = _opt_str(_obj(body, "Options"), "RequestAddressType") == GATEWAY_TYPE
    res = d.run("ipam.request_address", {"pool_id": pool_id, "address": _opt_str(body, "Address"),
                                         "gateway": gateway, "reserved": d.reservations.list(pool_id)})
    if not gateway:
        d.reservations.add(pool_id, res["address"].split("/")[0])
    return {"Address": res["address"], "Data": {}}


def release_address(d: Driver, body: Mapping[str, Any]) -> Dict[str, Any]:
    d.reservations.discard(_opt_str(body, "Address") or "", _opt_str(body, "PoolID") or "")
    if "|ovn:" in (_opt_str(body, "PoolID") or ""):  # an OVN pool's address is a logical port until adopted
        d.run("ipam.release_address", {"pool_id": _str(body, "PoolID"), "address": _opt_str(body, "Address")})
    return {}


HANDLERS: Dict[str, Callable[[Driver, Mapping[str, Any]], Dict[str, Any]]] = {
    "Plugin.Activate": activate,
    "NetworkDriver.GetCapabilities": capabilities,
    "NetworkDriver.CreateNetwork": create_network,
    "NetworkDriver.DeleteNetwork": delete_network,
    "NetworkDriver.CreateEndpoint": create_endpoint,
    "NetworkDriver.DeleteEndpoint": delete_endpoint,
    "NetworkDriver.EndpointOperInfo": endpoint_info,
    "NetworkDriver.Join": join,
    "NetworkDriver.Leave": leave,
    "NetworkDriver.DiscoverNew": nothing,
    "NetworkDriver.DiscoverDelete": nothing,
    "NetworkDriver.ProgramExternalConnectivity": nothing,
    "NetworkDriver.RevokeExternalConnectivity": nothing,
    "IpamDriver.GetCapabilities": ipam_capabilities,
    "IpamDriver.GetDefaultAddressSpaces": address_spaces,
    "IpamDriver.RequestPool": request_pool,
    "IpamDriver.ReleasePool": release_pool,
    "IpamDriver.RequestAddress": request_address,
    "IpamDriver.ReleaseAddress": release_address,
}
