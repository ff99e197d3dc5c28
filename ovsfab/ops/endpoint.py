"""Docker networks and endpoints (the libnetwork remote driver) as ovsfab operations.

Docker's flow differs from ``ovsfab attach``: the driver never sees the
container.  ``CreateEndpoint`` must leave a veth end (``SrcName``) in
dockerd's own network namespace; at ``Join`` Docker moves it into the
container, renames it ``ethN`` and gives it the addresses and MAC.  So:

``network.create``   validate the ``-o`` options against this host's fabric
                     (the bridge exists and is ovsfab's, its tunnels carry the
                     key, the MTU fits, no other Docker network overlaps) and
                     record the network on the Bridge row's external_ids
``endpoint.create``  a veth: the host end in this namespace, plugged into the
                     bridge (VLAN tag, ownership and the endpoint's identity
                     in the Port's external_ids), the peer born in dockerd's
                     namespace with its MTU, MAC and checksum offloads set
``endpoint.join``    the peer's name for Docker; the sandbox is recorded
``endpoint.leave``   the sandbox record goes (Docker moves the peer back)
``endpoint.delete``  port and veth go (idempotent: the veth may have died
                     with the container's namespace already)
``network.delete``   the record goes, with any endpoint Docker left behind

Every change runs as a :class:`~ovsfab.ops.plan.Plan` step with its undo.
The driver keeps no state of its own: networks live on Bridge rows, endpoints
on Port rows (``ovsfab-role=docker``, so ``reconcile``, ``apply`` and
``check`` leave them to Docker, while ``show``/``inspect`` list them as
attachments).  The ``ipam.*`` operations (ovsfab/ops/endpoint_ipam.py) hand
out addresses from a per-host range of a network's subnet, avoiding the
addresses OVSDB records; an OVN network (``-o network=``) is
ovsfab/ops/endpoint_ovn.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import ipaddress
import json
import logging
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from ovsfab.backends.base import CAP_RECORDS, KEY_ROLE, Backend
from ovsfab.errors import Conflict, InvalidInput, NotFound, OperationFailed, Unavailable
from ovsfab.model import (KEY_IFACE_ID, KEY_NETWORK, OWNER_KEY, OWNER_VALUE, Attachment, host_ifname, parse_address,
                          parse_mac, parse_mtu, parse_name, parse_vlan)
from ovsfab.ops.context import Context
from ovsfab.ops.lock import attachment_lock
from ovsfab.ops.plan import Plan

LOG = logging.getLogger(__name__)

#: Port ``ovsfab-role`` of an endpoint: Docker owns its lifecycle (reconcile skips it).
ROLE_DOCKER = "docker"
#: Bridge external_ids key prefix: one key per Docker network riding that bridge.
KEY_NET_PREFIX = "ovsfab-docker-net-"
KEY_NETWORK_ID = "ovsfab-docker-network"
KEY_ENDPOINT_ID = "ovsfab-docker-endpoint"
KEY_PEER = "ovsfab-docker-peer"
KEY_SANDBOX = "ovsfab-docker-sandbox"
#: The attachment's "ifname": Docker names the interface ``<DstPrefix>N`` itself.
DST_PREFIX = "eth"
#: Docker's own driver option for the MTU (``-o com.docker.network.driver.mtu=N``).
DOCKER_MTU_OPTION = "com.docker.network.driver.mtu"
OPTIONS = ("bridge", "vlan", "mode", "key", "mtu", "network", DOCKER_MTU_OPTION)
TUNNEL_MODES = ("vxlan", "geneve", "gre")

NETWORK_CREATE_STEPS = ("connect", "check", "record")
ENDPOINT_CREATE_STEPS = ("connect", "check", "create_veth", "offloads", "plug")


# ---------------------------------------------------------------------------
# Value types (pure)
# ---------------------------------------------------------------------------
def _docker_id(value: Any, what: str) -> str:
    """A Docker network or endpoint ID: 64 hex digits (shorter test IDs are allowed, not other text)."""
    if not isinstance(value, str) or not value or len(value) > 64 or any(c not in "0123456789abcdef" for c in value):
        raise InvalidInput(f"{what} {value!r} is not a Docker ID", "Docker sends 64 lower-case hex digits")
    return value


@dataclass(frozen=True)
class NetworkSpec:
    """A Docker network as ovsfab records it on its bridge."""

    network_id: str
    bridge: str
    subnets: Tuple[str, ...] = ()
    vlan: Optional[int] = None
    mode: str = ""          # "" (the bridge as it is) or a tunnel type the bridge must carry
    key: Optional[int] = None
    mtu: Optional[int] = None  # explicit (-o mtu / Docker's option); None: the tunnel-aware one
    network: str = ""       # an OVN logical switch (-o network=; ops/endpoint_ovn.py), on br-int

    @classmethod
    def parse(cls, network_id: str, options: Sequence[str], subnets: Sequence[str]) -> "NetworkSpec":
        """Validate ``-o`` options (``KEY=VALUE`` strings) and subnets; InvalidInput before any change."""
        opts: Dict[str, str] = {}
        for item in options:
            name, sep, value = item.partition("=")
            if not sep:
                raise InvalidInput(f"option {item!r} is not KEY=VALUE", "e.g. -o bridge=br0")
            if name not in OPTIONS:
                raise InvalidInput(f"unknown option -o {name}",
                                   "ovsfab takes -o bridge=BR, vlan=N, mode=vxlan|geneve|gre, key=N, mtu=N, "
                                   "network=OVN_NETWORK")
            opts[name] = value
        network = ""
        if "network" in opts:
            from ovsfab.ops.endpoint_ovn import parse_options  # noqa: PLC0415

            network, opts["bridge"] = parse_options(opts)
        if not opts.get("bridge"):
            raise InvalidInput("no bridge given", "docker network create -d ovsfab -o bridge=br0 --subnet ...")
        mode = opts.get("mode", "")
        if mode and mode not in TUNNEL_MODES:
            raise InvalidInput(f"mode {mode!r} is unknown", "use -o mode=vxlan, geneve or gre")
        key: Optional[int] = None
        if "key" in opts:
            if not mode:
                raise InvalidInput("-o key needs -o mode", "e.g. -o mode=vxlan -o key=5001")
            text = opts["key"]
            if not text.isdigit() or not 0 <= int(text) < (1 << (32 if mode == "gre" else 24)):
                raise InvalidInput(f"tunnel key {text!r} is not a valid {mode} key", "e.g. -o key=5001")
            key = int(text)
        elif mode:
            raise InvalidInput(f"-o mode={mode} needs -o key", "give the tunnels' key, e.g. -o key=5001")
        mtus = {opts[k] for k in ("mtu", DOCKER_MTU_OPTION) if k in opts}
        if len(mtus) > 1:
            raise InvalidInput("-o mtu and -o com.docker.network.driver.mtu differ", "give one MTU")
        nets = []
        for text in subnets:
            try:
                nets.append(str(ipaddress.ip_network(text, strict=True)))
            except ValueError:
                raise InvalidInput(f"subnet {text!r} is not a network", "e.g. --subnet 10.1.0.0/24") from None
        if not nets:
            raise InvalidInput("the network has no subnet", "give --subnet (ovsfab does not pick one)")
        return cls(network_id=_docker_id(network_id, "network ID"), bridge=parse_name(opts["bridge"], "bridge name"),
                   subnets=tuple(nets), vlan=parse_vlan(opts["vlan"]) if "vlan" in opts else None,
                   mode=mode, key=key, mtu=parse_mtu(mtus.pop()) if mtus else None, network=network)

    def to_record(self) -> str:
        """The value of the bridge's ``ovsfab-docker-net-<id>`` key (compact JSON)."""
        data = dataclasses.asdict(self)
        data.pop("network_id")
        data.pop("bridge")
        data["subnets"] = list(self.subnets)
        return json.dumps({k: v for k, v in data.items() if v not in (None, "")}, sort_keys=True,
                          separators=(",", ":"))

    @classmethod
    def from_record(cls, network_id: str, bridge: str, text: str) -> "NetworkSpec":
        data = json.loads(text)
        return cls(network_id=network_id, bridge=bridge, subnets=tuple(data.get("subnets", ())),
                   vlan=data.get("vlan"), mode=data.get("mode", ""), key=data.get("key"), mtu=data.get("mtu"),
                   network=data.get("network", ""))

    def to_json(self) -> Dict[str, Any]:
        return {"network_id": self.network_id, "bridge": self.bridge, "subnets": list(self.subnets),
                "vlan": self.vlan, "mode": self.mode or None, "key": self.key, "mtu": self.mtu,
                "network": self.network or None}


def peer_ifname(endpoint_id: str) -> str:
    """The name of the veth end Docker moves into the container (``SrcName``): ``ovc`` + 12 hex digits."""
    return "ovc" + hashlib.sha256(f"{endpoint_id}\0peer".encode()).hexdigest()[:12]


def port_ifname(endpoint_id: str) -> str:
    """The host end (the OVS port): derived like every attachment's, from (endpoint, ``eth``)."""
    return host_ifname(endpoint_id, DST_PREFIX)


# ---------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------
@dataclass
class NetworkResult:
    """What network.create / network.delete did."""

    action: str
    network: Optional[NetworkSpec]
    changed: bool
    notes: List[str] = field(default_factory=list)

    def to_json(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"action": self.action, "changed": self.changed, "notes": self.notes}
        if self.network is not None:
            out.update(self.network.to_json())
        return out


@dataclass
class EndpointResult:
    """An endpoint: its ports, MAC and MTU (and for join, the name Docker moves)."""

    action: str
    changed: bool
    network_id: str = ""
    endpoint_id: str = ""
    bridge: str = ""
    port: str = ""
    src_name: str = ""
    mac: Optional[str] = None
    mtu: Optional[int] = None
    vlan: Optional[int] = None
    addresses: List[str] = field(default_factory=list)
    ofport: Optional[int] = None
    sandbox: Optional[str] = None

    def to_json(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------
# Records: the networks on bridges, the endpoints on ports (a CAP_RECORDS backend)
# ---------------------------------------------------------------------------
@contextlib.contextmanager
def _backend(ctx: Context) -> Iterator[Backend]:
    """A connected OVS backend for one request, closed after it."""
    if ctx.backend == "linux":
        raise InvalidInput("the Docker driver needs the OVS backend", "run it with --backend ovs")
    backend = dataclasses.replace(ctx, backend="ovs").backend_factory()()
    try:
        if CAP_RECORDS not in backend.capabilities:  # its networks live in OVSDB records
            raise InvalidInput("the Docker driver needs the OVS backend", "run it with --backend ovs")
        yield backend
    finally:
        backend.close()


def recorded_networks(backend: Backend) -> List[NetworkSpec]:
    """Every Docker network recorded on any bridge of this host."""
    out = []
    for bridge in backend.bridge_names():
        for k, v in backend.bridge_external_ids(bridge).items():
            if k.startswith(KEY_NET_PREFIX):
                try:
                    out.append(NetworkSpec.from_record(k[len(KEY_NET_PREFIX):], bridge, v))
                except (ValueError, TypeError):
                    LOG.warning("bridge %s: unreadable record %s", bridge, k)
    return out


def find_network(backend: Backend, network_id: str) -> Optional[NetworkSpec]:
    return next((n for n in recorded_networks(backend) if n.network_id == network_id), None)


def docker_endpoints(backend: Backend, network_id: Optional[str] = None) -> List[Attachment]:
    """The endpoints the driver made (on one network, or all)."""
    return [a for a in backend.list_attachments()
            if a.external_ids.get(KEY_ROLE) == ROLE_DOCKER
            and (network_id is None or a.external_ids.get(KEY_NETWORK_ID) == network_id)]


def _endpoint(backend: Backend, endpoint_id: str) -> Optional[Attachment]:
    att = backend.find_attachment(endpoint_id, DST_PREFIX)
    if att is None or att.external_ids.get(KEY_ROLE) != ROLE_DOCKER:
        return None
    return att


def _endpoint_result(action: str, att: Attachment, changed: bool) -> EndpointResult:
    ids = att.external_ids
    return EndpointResult(action=action, changed=changed, network_id=ids.get(KEY_NETWORK_ID, ""),
                          endpoint_id=ids.get(KEY_ENDPOINT_ID, ""), bridge=att.bridge, port=att.port,
                          src_name=ids.get(KEY_PEER, ""), mac=att.mac, mtu=att.mtu, vlan=att.vlan,
                          addresses=[str(a) for a in att.addresses], ofport=att.ofport,
                          sandbox=ids.get(KEY_SANDBOX))


# ---------------------------------------------------------------------------
# Networks
# ---------------------------------------------------------------------------
def _fabric_mtu(backend: Backend, spec: NetworkSpec) -> Optional[int]:
    from ovsfab.ops.tunnel import auto_mtu  # noqa: PLC0415

    return auto_mtu(backend, spec.bridge)


def _check_fabric(backend: Backend, spec: NetworkSpec) -> List[str]:
    """Refuse a network this host's fabric cannot carry; returns notes."""
    from ovsfab.ops.tunnel import KEY_KEY, KEY_TYPE, ROLE_TUNNEL  # noqa: PLC0415

    if backend.bridge_datapath(spec.bridge) is None:
        from ovsfab.backends.factory import is_linux_bridge  # noqa: PLC0415

        if is_linux_bridge(spec.bridge):  # what `auto` would pick elsewhere: say so, not "does not exist"
            raise Conflict(f"bridge {spec.bridge} is a Linux bridge; the Docker driver plugs into Open vSwitch",
                           "name a bridge ovsfab made (ovsfab uplink add / tunnel add), or attach with "
                           "ovsfab attach --backend linux")
        raise NotFound(f"bridge {spec.bridge} does not exist on this host",
                       f"build the fabric first: ovsfab uplink add {spec.bridge} NIC, "
                       f"or ovsfab tunnel add {spec.bridge} REMOTE")
    if backend.bridge_external_ids(spec.bridge).get(OWNER_KEY) != OWNER_VALUE:
        raise Conflict(f"bridge {spec.bridge} is not ovsfab's (another tool made it)",
                       "use a bridge ovsfab made (ovsfab uplink add / tunnel add)")
    if spec.mode:
        tunnels = [t for t in backend.owned_ports(ROLE_TUNNEL, spec.bridge)
                   if t.external_ids.get(KEY_TYPE) == spec.mode and t.external_ids.get(KEY_KEY) == str(spec.key)]
        if not tunnels:
            raise NotFound(f"bridge {spec.bridge} carries no {spec.mode} tunnel with key {spec.key}",
                           f"ovsfab tunnel add {spec.bridge} REMOTE --type {spec.mode} --key {spec.key} on each host")
    notes = []
    limit = _fabric_mtu(backend, spec)
    _check_mtu(spec, limit, f"bridge {spec.bridge}")
    if limit is not None and spec.mtu is None:
        notes.append(f"bridge {spec.bridge} carries tunnels: containers get MTU {limit}")
    _check_overlap(backend, spec)
    return notes


def _check_mtu(spec: NetworkSpec, limit: Optional[int], what: str) -> None:
    if limit is not None and spec.mtu is not None and spec.mtu > limit:
        raise InvalidInput(f"MTU {spec.mtu} does not fit the tunnels of {what} (at most {limit})",
                           f"leave the MTU out (ovsfab uses {limit}) or lower it")


def _check_overlap(backend: Backend, spec: NetworkSpec) -> None:
    """One host's Docker networks never share addresses (with the ovsfab IPAM, Docker does not check)."""
    for other in recorded_networks(backend):
        if other.network_id == spec.network_id:
            continue
        for mine in spec.subnets:
            for theirs in other.subnets:
                a, b = ipaddress.ip_network(mine), ipaddress.ip_network(theirs)
                if a.version == b.version and a.overlaps(b):
                    raise Conflict(f"subnet {mine} overlaps {theirs} of Docker network {other.network_id[:12]} "
                                   f"on bridge {other.bridge}",
                                   "choose another --subnet, or remove that network first")


def _check_ovn(backend: Backend, spec: NetworkSpec, ctx: Context) -> Tuple[Dict[str, str], List[str]]:
    """Refuse an OVN network this host cannot carry; (join settings, notes)."""
    from ovsfab.ops import endpoint_ovn  # noqa: PLC0415

    join, limit = endpoint_ovn.check(backend, spec.network, ctx)
    _check_mtu(spec, limit, f"OVN network {spec.network}")
    _check_overlap(backend, spec)
    notes = [f"OVN network {spec.network}: containers get MTU {limit}"] if limit and spec.mtu is None else []
    return join, notes


def network_create(spec: NetworkSpec, ctx: Context) -> NetworkResult:
    """Record a Docker network on its bridge once this host's fabric is proved able to carry it."""
    with contextlib.ExitStack() as stack, Plan("network.create", ctx.fault) as plan:  # undo before close
        backend = stack.enter_context(_backend(ctx))
        plan.checkpoint("connect")
        existing = find_network(backend, spec.network_id)
        if existing is not None:
            if existing == spec:
                return NetworkResult("network.create", spec, changed=False)
            raise Conflict(f"Docker network {spec.network_id[:12]} is recorded with other settings",
                           "docker network rm it and create it again")
        if spec.network:
            from ovsfab.ops import endpoint_ovn  # noqa: PLC0415

            join, notes = plan.step("check", lambda: _check_ovn(backend, spec, ctx))
            endpoint_ovn.ensure_switch(plan, stack, join, spec.network, spec.subnets[0])
        else:
            notes = plan.step("check", lambda: _check_fabric(backend, spec))
        key = KEY_NET_PREFIX + spec.network_id
        plan.step("record", lambda: backend.set_bridge_key(spec.bridge, key, spec.to_record()),
                  undo=lambda: backend.set_bridge_key(spec.bridge, key, None))
        return NetworkResult("network.create", spec, changed=True, notes=notes)


def network_delete(network_id: str, ctx: Context) -> NetworkResult:
    """Forget a Docker network, and remove any endpoint of it Docker did not delete (idempotent)."""
    with contextlib.ExitStack() as stack, Plan("network.delete", ctx.fault) as plan:  # undo before close
        backend = stack.enter_context(_backend(ctx))
        spec = find_network(backend, network_id)
        for att in docker_endpoints(backend, network_id):
            LOG.info("network %s: removing endpoint %s left behind", network_id[:12], att.port)
            _remove_endpoint(backend, att, att.port, plan, stack, ctx)
        if spec is None:
            return NetworkResult("network.delete", None, changed=False)
        plan.step("forget", lambda: backend.set_bridge_key(spec.bridge, KEY_NET_PREFIX + network_id, None))
        if spec.network:  # the logical switch, once no host has a port on it
            from ovsfab.ops import endpoint_ovn  # noqa: PLC0415

            endpoint_ovn.delete_switch_if_empty(plan, stack, ctx, spec.network)
        return NetworkResult("network.delete", spec, changed=True)


# ---------------------------------------------------------------------------
# Endpoints
# ---------------------------------------------------------------------------
def _addresses_in_use(backend: Backend, spec: NetworkSpec, endpoint_id: str) -> Dict[str, str]:
    """{ip: endpoint} of the other endpoints on the same L2 segment (bridge and VLAN)."""
    out = {}
    for att in docker_endpoints(backend):
        same = (att.external_ids.get(KEY_NETWORK) == spec.network if spec.network
                else att.bridge == spec.bridge and att.vlan == spec.vlan)
        if same and att.external_ids.get(KEY_ENDPOINT_ID) != endpoint_id:
            for a in att.addresses:
                out[str(a.interface.ip)] = att.external_ids.get(KEY_ENDPOINT_ID, att.port)[:12]
    return out


def endpoint_create(network_id: str, endpoint_id: str, addresses: Sequence[str], mac: Optional[str],
                    peer_netns: str, ctx: Context) -> EndpointResult:
    """A veth for a Docker endpoint: host end plugged into the network's bridge, peer in dockerd's namespace."""
    from ovsfab.ops.attach import host_end_up, offload_link, require_root  # noqa: PLC0415
    from ovsfab.plumbing.links import NetlinkHandle  # noqa: PLC0415
    from ovsfab.plumbing.netns import Namespace  # noqa: PLC0415

    network_id = _docker_id(network_id, "network ID")
    endpoint_id = _docker_id(endpoint_id, "endpoint ID")
    specs = tuple(parse_address(a) for a in addresses)
    mac = parse_mac(mac) if mac else None
    require_root()
    port, peer = port_ifname(endpoint_id), peer_ifname(endpoint_id)
    with contextlib.ExitStack() as stack, Plan("endpoint.create", ctx.fault) as plan:
        stack.enter_context(attachment_lock(port))
        backend = stack.enter_context(_backend(ctx))
        plan.checkpoint("connect")
        spec = find_network(backend, network_id)
        if spec is None:
            raise NotFound(f"Docker network {network_id[:12]} is not recorded on this host's OVS",
                           "docker network rm it and create it again with -d ovsfab")
        try:
            ns = stack.enter_context(Namespace.open(peer_netns))
        except OSError as exc:
            raise Unavailable(f"dockerd's network namespace {peer_netns} cannot be opened ({exc.strerror})",
                              "is dockerd running? give the driver --docker-netns") from None
        host = NetlinkHandle()
        stack.callback(host.close)
        inner = NetlinkHandle(ns)
        stack.callback(inner.close)

        leftover = _endpoint(backend, endpoint_id)
        if spec.network and leftover is not None:  # a retry: its logical port goes too
            from ovsfab.ops import endpoint_ovn  # noqa: PLC0415

            endpoint_ovn.remove_lport(plan, stack, ctx, leftover.external_ids)

        def check() -> None:
            if leftover is not None or backend.port_exists(port) is not None:
                # A retry of an endpoint Docker never saw created: start afresh.
                backend.del_port(port, if_exists=True)
            host.delete(port, if_exists=True)  # a leftover of an interrupted create (deletes the peer too)
            if inner.index(peer) is not None:
                raise Conflict(f"an interface named {peer} exists in dockerd's namespace", f"remove it: ip link del {peer}")
            used = _addresses_in_use(backend, spec, endpoint_id)
            for a in specs:
                ip = str(a.interface.ip)
                if ip in used:
                    raise Conflict(f"address {ip} is in use by endpoint {used[ip]} on bridge {spec.bridge}",
                                   "choose another --ip")

        plan.step("check", check)
        join: Dict[str, str] = {}
        if spec.network:
            from ovsfab.ops import endpoint_ovn  # noqa: PLC0415

            join = endpoint_ovn.settings(ctx, spec.network)
            mtu = spec.mtu if spec.mtu is not None else endpoint_ovn.mtu(join)
        else:
            mtu = spec.mtu if spec.mtu is not None else _fabric_mtu(backend, spec)
        datapath = backend.bridge_datapath(spec.bridge)
        if datapath is None:
            raise NotFound(f"bridge {spec.bridge} of network {network_id[:12]} is gone",
                           f"recreate the fabric (ovsfab uplink/tunnel add {spec.bridge} ...)")

        def create() -> None:
            host.create_veth(port, peer, ns, mtu, mac, up=False)
            host_end_up(host, port)

        plan.step("create_veth", create, undo=lambda: host.delete(port, if_exists=True))
        info = inner.link(peer)
        if info is None:
            raise OperationFailed(f"the veth end {peer} vanished after creation", "check dockerd's namespace")
        link_mac, link_mtu = str(info["mac"]), int(info["mtu"])  # type: ignore[arg-type]

        def offloads() -> None:
            if backend.needs_tx_csum_off(datapath):
                offload_link(host, inner, port, peer)

        plan.step("offloads", offloads)
        att = Attachment(bridge=spec.bridge, port=port, container_key=endpoint_id,
                         container_name=f"docker-endpoint-{endpoint_id[:12]}", ifname=DST_PREFIX,
                         addresses=specs, mac=link_mac, mtu=link_mtu, vlan=spec.vlan, target="", persist=False)
        ids = att.to_external_ids()
        ids.update({KEY_ROLE: ROLE_DOCKER, KEY_NETWORK_ID: network_id, KEY_ENDPOINT_ID: endpoint_id,
                    KEY_PEER: peer})
        if spec.network:  # the logical port first: ovn-controller binds the OVS port as it appears
            ids.update(endpoint_ovn.add_lport(plan, stack, join, spec.network, port, link_mac, specs,
                                              {KEY_ROLE: ROLE_DOCKER, KEY_ENDPOINT_ID: endpoint_id}))
        res = plan.step("plug", lambda: backend.add_port(spec.bridge, port, external_ids=ids, tag=spec.vlan,
                                                         datapath=datapath),
                        undo=lambda: backend.del_port(port, if_exists=True))
        if spec.network and not endpoint_ovn.wait_bound(ctx, spec.network, ids[KEY_IFACE_ID]):
            LOG.warning("logical port %s is not bound yet: is ovn-controller running?", ids[KEY_IFACE_ID])
        return EndpointResult("endpoint.create", True, network_id, endpoint_id, spec.bridge, port, peer,
                              link_mac, link_mtu, spec.vlan, [str(a) for a in specs], res.ofport)


def _remove_endpoint(backend: Backend, att: Optional[Attachment], port: str, plan: Plan,
                     stack: contextlib.ExitStack, ctx: Context) -> None:
    """Logical port (OVN), port, then veth (deleting the host end deletes the peer, wherever it is)."""
    from ovsfab.plumbing.links import NetlinkHandle  # noqa: PLC0415

    if att is not None and att.external_ids.get(KEY_IFACE_ID):
        from ovsfab.ops import endpoint_ovn  # noqa: PLC0415

        endpoint_ovn.remove_lport(plan, stack, ctx, att.external_ids)
    plan.step("unplug", lambda: backend.del_port(port, if_exists=True))
    host = NetlinkHandle()
    try:
        plan.step("delete_veth", lambda: host.delete(port, if_exists=True))
    finally:
        host.close()


def endpoint_delete(network_id: str, endpoint_id: str, ctx: Context) -> EndpointResult:
    """Remove an endpoint's port and veth; nothing to do is not an error (Docker retries deletes)."""
    endpoint_id = _docker_id(endpoint_id, "endpoint ID")
    port = port_ifname(endpoint_id)
    with contextlib.ExitStack() as stack, Plan("endpoint.delete", ctx.fault) as plan:
        stack.enter_context(attachment_lock(port))
        backend = stack.enter_context(_backend(ctx))
        att = _endpoint(backend, endpoint_id)
        from ovsfab.plumbing.links import NetlinkHandle  # noqa: PLC0415

        host = NetlinkHandle()
        try:
            leftover = host.link(port)
        finally:
            host.close()
        if att is None and leftover is None:
            return EndpointResult("endpoint.delete", False, network_id, endpoint_id, port=port)
        if leftover is not None and leftover["kind"] != "veth":
            raise Conflict(f"interface {port} is not an ovsfab veth", "remove or rename it")
        _remove_endpoint(backend, att, port, plan, stack, ctx)
        if att is not None:
            return _endpoint_result("endpoint.delete", att, True)
        return EndpointResult("endpoint.delete", True, network_id, endpoint_id, port=port)


def endpoint_join(network_id: str, endpoint_id: str, sandbox: str, ctx: Context) -> EndpointResult:
    """The veth end Docker moves into the sandbox; the sandbox is recorded on the port."""
    endpoint_id = _docker_id(endpoint_id, "endpoint ID")
    with _backend(ctx) as backend, Plan("endpoint.join", ctx.fault) as plan:  # undo before close
        att = _endpoint(backend, endpoint_id)
        if att is None:
            raise NotFound(f"endpoint {endpoint_id[:12]} is not recorded on this host's OVS",
                           "disconnect and connect the container again")
        if att.external_ids.get(KEY_NETWORK_ID) != network_id:
            raise Conflict(f"endpoint {endpoint_id[:12]} belongs to another network", "connect it to its own network")
        plan.step("record", lambda: backend.set_port_key(att.port, KEY_SANDBOX, sandbox),
                  undo=lambda: backend.set_port_key(att.port, KEY_SANDBOX, None))
        att.external_ids[KEY_SANDBOX] = sandbox
        return _endpoint_result("endpoint.join", att, True)


def endpoint_leave(network_id: str, endpoint_id: str, ctx: Context) -> EndpointResult:
    """Forget the sandbox (Docker moves the veth end back to its own namespace itself)."""
    endpoint_id = _docker_id(endpoint_id, "endpoint ID")
    with _backend(ctx) as backend:
        att = _endpoint(backend, endpoint_id)
        if att is None:
            return EndpointResult("endpoint.leave", False, network_id, endpoint_id)
        backend.set_port_key(att.port, KEY_SANDBOX, None)
        att.external_ids.pop(KEY_SANDBOX, None)
        return _endpoint_result("endpoint.leave", att, True)


def endpoint_info(network_id: str, endpoint_id: str, ctx: Context) -> EndpointResult:
    """What OVSDB records for an endpoint (EndpointOperInfo)."""
    endpoint_id = _docker_id(endpoint_id, "endpoint ID")
    with _backend(ctx) as backend:
        att = _endpoint(backend, endpoint_id)
        if att is None:
            raise NotFound(f"endpoint {endpoint_id[:12]} is not recorded on this host's OVS")
        return _endpoint_result("endpoint.info", att, False)


# ---------------------------------------------------------------------------
# Registration (ovsfab/ops/api.py adds these to OPERATIONS)
# ---------------------------------------------------------------------------
def _network_create(p: Dict[str, Any], ctx: Context) -> Any:
    return network_create(NetworkSpec.parse(p["network_id"], p.get("options") or [], p.get("subnets") or []), ctx)


def _network_delete(p: Dict[str, Any], ctx: Context) -> Any:
    return network_delete(_docker_id(p["network_id"], "network ID"), ctx)


def _endpoint_create(p: Dict[str, Any], ctx: Context) -> Any:
    return endpoint_create(p["network_id"], p["endpoint_id"], p.get("addresses") or [], p.get("mac"),
                           p["peer_netns"], ctx)


def _ipam_request_pool(p: Dict[str, Any], ctx: Context) -> Any:
    from ovsfab.ops.endpoint_ipam import ipam_request_pool  # noqa: PLC0415

    return ipam_request_pool(p.get("pool"), p.get("sub_pool"), p.get("host_id") or "", p.get("network"))


def _ipam_request_address(p: Dict[str, Any], ctx: Context) -> Any:
    from ovsfab.ops.endpoint_ipam import ipam_request_address  # noqa: PLC0415

    return ipam_request_address(p["pool_id"], p.get("address"), bool(p.get("gateway")), p.get("reserved") or [], ctx)


def _ipam_release_address(p: Dict[str, Any], ctx: Context) -> Any:
    from ovsfab.ops.endpoint_ipam import ipam_release_address  # noqa: PLC0415

    return ipam_release_address(p["pool_id"], p.get("address"), ctx)


_EP = {"network_id": "str", "endpoint_id": "str"}


def _operations() -> List[Any]:
    """The Operation records; built on first use because ovsfab.ops.api imports this module
    at its end (importing api here at the top would make the two a cycle)."""
    from ovsfab.ops.api import Operation  # noqa: PLC0415

    return [
        Operation("network.create", {"network_id": "str", "options": "list", "subnets": "list"}, _network_create,
                  required=("network_id",), doc="record a Docker network on its bridge (the Docker driver)"),
        Operation("network.delete", {"network_id": "str"}, _network_delete, required=("network_id",),
                  doc="forget a Docker network and any endpoint left of it"),
        Operation("endpoint.create", {**_EP, "addresses": "list", "mac": "opt-str", "peer_netns": "str"},
                  _endpoint_create, required=("network_id", "endpoint_id", "peer_netns"),
                  doc="a veth for a Docker endpoint, its peer in dockerd's namespace"),
        Operation("endpoint.join", {**_EP, "sandbox": "str"},
                  lambda p, ctx: endpoint_join(p["network_id"], p["endpoint_id"], p.get("sandbox") or "", ctx),
                  required=("network_id", "endpoint_id"), doc="the veth end Docker moves into the container"),
        Operation("endpoint.leave", dict(_EP), lambda p, ctx: endpoint_leave(p["network_id"], p["endpoint_id"], ctx),
                  required=("network_id", "endpoint_id"), doc="forget an endpoint's sandbox"),
        Operation("endpoint.delete", dict(_EP), lambda p, ctx: endpoint_delete(p["network_id"], p["endpoint_id"], ctx),
                  required=("network_id", "endpoint_id"), doc="remove a Docker endpoint's port and veth"),
        Operation("endpoint.info", dict(_EP), lambda p, ctx: endpoint_info(p["network_id"], p["endpoint_id"], ctx),
                  changes=False, required=("network_id", "endpoint_id"), doc="what OVSDB records for an endpoint"),
        Operation("ipam.request_pool", {"pool": "opt-str", "sub_pool": "opt-str", "host_id": "opt-str",
                                        "network": "opt-str"},
                  _ipam_request_pool, changes=False, doc="a network's pool and this host's range of it"),
        Operation("ipam.request_address", {"pool_id": "str", "address": "opt-str", "gateway": "bool",
                                           "reserved": "list"},
                  _ipam_request_address, required=("pool_id",),
                  doc="an address from this host's range, none that OVSDB records (OVN pool: northd's)"),
        Operation("ipam.release_address", {"pool_id": "str", "address": "opt-str"}, _ipam_release_address,
                  required=("pool_id",), doc="an OVN pool's pending logical port goes (others: nothing)"),
    ]


def __getattr__(name: str) -> Any:
    """``OPERATIONS``: what ovsfab/ops/api.py registers (PEP 562, see :func:`_operations`)."""
    if name == "OPERATIONS":
        ops = _operations()
        globals()["OPERATIONS"] = ops
        return ops
    raise AttributeError(name)
