"""The CNI operations: ``cni.add``, ``cni.del``, ``cni.check``, ``cni.gc``, ``cni.status``.

The CNI plugin (ovsfab/cni) turns the runtime's request (stdin + ``CNI_*``)
into these operations' parameters; IPAM has already run (its addresses and
routes come in as parameters), so everything here is ovsfab's own work on
links and OVSDB, as plans with undo.

The attachment is an ordinary ovsfab attachment (ovsfab/ops/attach.py) with
target ``cni:CONTAINERID``: the host-end name derives from the runtime's
container ID and CNI_IFNAME (:func:`~ovsfab.model.host_ifname`), so a retried
ADD or DEL finds the leftovers of an interrupted one, and DEL needs nothing
but the container ID, even after the namespace is gone.  It is recorded as
one-shot (``ovsfab-persist=false``): the runtime owns its life, so
``ovsfab reconcile`` never restores or removes it.  The CNI network's name is
recorded in ``external_ids:ovsfab-cni-network`` (GC removes only its own).

``ovs_netns``: the network namespace ovs-vswitchd runs in.  The host ends of
the veths must live there (the netdev datapath opens them by name in its own
namespace; the system datapath needs them in the namespace of the bridge).
None: the caller's, i.e. the host's.  The operation runs its thread in that
namespace while it works (sockets are bound to the namespace they are made
in, see ovsfab/plumbing/netns.py): per thread, never per process.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Tuple

from ovsfab.backends.base import CAP_PORT_EXTRAS
from ovsfab.errors import Conflict, InvalidInput, NotFound, OperationFailed, OvsfabError
from ovsfab.model import (AddressSpec, Attachment, AttachRequest, Target, host_ifname, parse_address, parse_mac,
                          parse_mtu, parse_name, parse_target_spec, parse_vlan)
from ovsfab.ops.api import Operation
from ovsfab.ops.context import Context
from ovsfab.ops.plan import Plan

LOG = logging.getLogger(__name__)

#: external_ids key: the CNI network (its ``name``) an attachment belongs to.
KEY_CNI_NETWORK = "ovsfab-cni-network"
#: OpenFlow port numbers a request may ask for (OVS: 1..65279, the rest is reserved).
MAX_OFPORT = 65279


# ---------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------
def target_spec(container_id: str) -> str:
    """The target spec of a CNI attachment (validated)."""
    spec = f"cni:{container_id}"
    parse_target_spec(spec)
    return spec


def parse_trunks(values: List[str]) -> List[int]:
    """VLAN IDs from ``"42"`` / ``"1000-1010"`` items (the front end flattens ovs-cni's list)."""
    out: set = set()
    for item in values:
        low, sep, high = item.partition("-")
        first = parse_vlan(low)
        last = parse_vlan(high) if sep else first
        if last < first:
            raise InvalidInput(f"trunk range {item} is empty", "give minID <= maxID")
        out.update(range(first, last + 1))
    return sorted(out)


def parse_route(text: str) -> Tuple[ipaddress._BaseNetwork, Optional[ipaddress._BaseAddress]]:
    """``DST`` or ``DST@GW`` (an IPAM result's route) into (network, gateway)."""
    dst_text, sep, gw_text = text.partition("@")
    try:
        dst = ipaddress.ip_network(dst_text, strict=False)
        gw = ipaddress.ip_address(gw_text) if sep and gw_text else None
    except ValueError:
        raise InvalidInput(f"route {text!r} is malformed", "e.g. 10.2.0.0/16@10.1.0.1") from None
    if gw is not None and gw.version != dst.version:
        raise InvalidInput(f"route {text!r} mixes IP versions")
    return dst, gw


def addresses_of(p: Dict[str, Any]) -> Tuple[AddressSpec, ...]:
    """The IPAM addresses, with a default route folded in as ``ADDR@GW`` (how attach sets one)."""
    specs = [parse_address(a) for a in p.get("addresses") or []]
    for text in p.get("routes") or []:
        dst, gw = parse_route(text)
        if dst.prefixlen != 0 or gw is None:
            continue
        for i, spec in enumerate(specs):
            if spec.version == gw.version and spec.gateway is None and gw in spec.interface.network \
                    and not any(s.gateway is not None and s.version == gw.version for s in specs):
                specs[i] = AddressSpec(spec.interface, gw)
                break
        else:
            raise InvalidInput(f"default route via {gw} has no address on its subnet",
                               "check the IPAM configuration's routes and ranges")
    return tuple(specs)


def other_routes(p: Dict[str, Any]) -> List[Tuple[ipaddress._BaseNetwork, Optional[ipaddress._BaseAddress]]]:
    """The IPAM routes that are not default routes (those ride on the addresses)."""
    out = []
    for text in p.get("routes") or []:
        dst, gw = parse_route(text)
        if dst.prefixlen != 0:
            out.append((dst, gw))
    return out


def _ofport_request(value: Any) -> Optional[int]:
    if value is None:
        return None
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"ofport_request {value!r} is not a number", f"give 1..{MAX_OFPORT}") from None
    if not 1 <= port <= MAX_OFPORT:
        raise InvalidInput(f"ofport_request {port} is outside 1..{MAX_OFPORT}")
    return port


@contextlib.contextmanager
def in_ovs_netns(path: Optional[str]) -> Iterator[None]:
    """Run the body with this thread in ovs-vswitchd's namespace (None: stay where we are)."""
    if not path:
        yield
        return
    from ovsfab.plumbing.netns import Namespace  # noqa: PLC0415

    try:
        ns = Namespace.open(path)
    except NotFound:
        raise NotFound(f"the OVS network namespace {path} does not exist",
                       "fix ovs_netns in the network configuration (the namespace ovs-vswitchd runs in)") from None
    try:
        with ns.entered():
            yield
    finally:
        ns.close()


def netns_target(container_id: str, netns: str, name: Optional[str]) -> Target:
    """The Target of CNI_NETNS; NotFound when it is gone, Conflict when it is this namespace."""
    if not netns or not os.path.isabs(netns):
        raise InvalidInput(f"CNI_NETNS {netns!r} is not an absolute path", "the runtime passes e.g. /run/netns/cni-...")
    try:
        inode = os.stat(netns).st_ino
    except FileNotFoundError:
        raise NotFound(f"the container's network namespace {netns} does not exist",
                       "the container is gone; the runtime should not ADD to it") from None
    if inode == os.stat("/proc/thread-self/ns/net").st_ino:
        raise Conflict(f"CNI_NETNS {netns} is the namespace ovs-vswitchd runs in",
                       "give the container its own network namespace")
    return Target("cni", f"cni:{container_id}", name or container_id[:12], None, netns)


# ---------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------
@dataclass
class CniAddResult:
    """What cni.add made: the two veth ends (the CNI result's ``interfaces``)."""

    attachment: Attachment
    changed: bool
    host_mac: str
    sandbox: str
    notes: List[str] = field(default_factory=list)

    def to_json(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"action": "cni.add", "changed": self.changed, "host_mac": self.host_mac,
                               "sandbox": self.sandbox}
        out.update(self.attachment.to_json())
        out["notes"] = self.notes
        return out


@dataclass
class CniCheckResult:
    """cni.check found everything as the request describes it."""

    attachment: Attachment
    checked: List[str]

    def to_json(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"action": "cni.check", "ok": True, "checked": self.checked}
        out.update(self.attachment.to_json())
        return out


@dataclass
class CniGcResult:
    """cni.gc: the attachments of this network it removed (container ID, ifname)."""

    removed: List[Tuple[str, str]]

    def to_json(self) -> Dict[str, Any]:
        return {"action": "cni.gc", "removed": [{"containerID": c, "ifname": i} for c, i in self.removed]}


@dataclass
class CniStatusResult:
    """cni.status: OVSDB answers (and the bridge exists when one was named)."""

    bridge: Optional[str]
    datapath: Optional[str]

    def to_json(self) -> Dict[str, Any]:
        return {"action": "cni.status", "ok": True, "bridge": self.bridge, "datapath": self.datapath}


# ---------------------------------------------------------------------------
# The operations
# ---------------------------------------------------------------------------
def cni_add(p: Dict[str, Any], ctx: Context) -> CniAddResult:
    """Plug CNI_NETNS's ``ifname`` into ``bridge``: attach, routes, then ovs-cni's extras and ownership."""
    from ovsfab.backends.base import Borrowed  # noqa: PLC0415
    from ovsfab.ops.attach import attach  # noqa: PLC0415
    from ovsfab.ops.detach import detach  # noqa: PLC0415

    spec = target_spec(p["container_id"])
    vlan = parse_vlan(p["vlan"]) if p.get("vlan") is not None else None
    trunks = parse_trunks(p.get("trunk") or [])
    if vlan is not None and trunks:
        raise InvalidInput("vlan and trunk are both given", "an access port has one VLAN: drop one of them")
    req = AttachRequest(bridge=parse_name(p["bridge"], "bridge name"), target_spec=spec,
                        addresses=addresses_of(p), ifname=parse_name(p["ifname"], "interface name"),
                        mac=parse_mac(p["mac"]) if p.get("mac") is not None else None,
                        mtu=parse_mtu(p["mtu"]) if p.get("mtu") is not None else None,
                        vlan=vlan, persist=False)
    routes = other_routes(p)
    ofport_request = _ofport_request(p.get("ofport_request"))
    network_name = p.get("network_name") or ""
    with in_ovs_netns(p.get("ovs_netns")):
        target = netns_target(p["container_id"], p["netns"], p.get("name"))
        with Plan("cni.add", ctx.fault) as plan:
            backend = ctx.backend_factory(req.bridge)()
            plan.add_undo("close backend", backend.close)
            if CAP_PORT_EXTRAS not in backend.capabilities:
                raise InvalidInput(f"{req.bridge} is a Linux bridge: the {backend.kind} backend cannot carry a CNI "
                                   "attachment", "name an OVS bridge in the network configuration")
            # One OVSDB session for attach and the extras: a second connection
            # would cost a full sync on every ADD.
            borrowed = lambda: Borrowed(backend)  # noqa: E731
            result = plan.step("attach", lambda: attach(req, borrowed, resolved=target, fault=ctx.fault),
                               undo=lambda: detach(req.bridge, spec, req.ifname, True, borrowed))
            if routes:
                plan.step("routes", lambda: add_routes(target.netns_path, req.ifname, routes))
            ids = {KEY_CNI_NETWORK: network_name} if network_name else None
            plan.step("extras", lambda: backend.set_port_extras(
                result.attachment.port, trunks=trunks or None, ofport_request=ofport_request, external_ids=ids))
            mac = host_mac(result.attachment.port)
            backend.close()
    return CniAddResult(result.attachment, result.changed, mac, target.netns_path, result.notes)


def add_routes(netns: str, ifname: str, routes: List[Tuple[Any, Any]]) -> None:
    """The IPAM result's other routes through ``ifname`` (they go with the veth on undo)."""
    from ovsfab.plumbing.links import L3Handle  # noqa: PLC0415
    from ovsfab.plumbing.netns import Namespace  # noqa: PLC0415

    with Namespace.open(netns) as ns:
        handle = L3Handle(ns)
        try:
            index = handle.index(ifname)
            if index is None:
                raise OperationFailed(f"{ifname} vanished from {netns}", "check whether the container is stopping")
            for dst, gw in routes:
                rec: Dict[str, object] = {"family": dst.version, "dst": str(dst.network_address),
                                          "dst_len": dst.prefixlen, "table": 254, "proto": 3,
                                          "scope": 0 if gw is not None else 253, "type": 1}
                if gw is not None:
                    rec["gateway"] = str(gw)
                handle.put_route(index, rec)
            LOG.debug("cni.add: %d route(s) via %s", len(routes), ifname)
        finally:
            handle.close()


def host_mac(port: str) -> str:
    from ovsfab.plumbing.links import NetlinkHandle  # noqa: PLC0415

    host = NetlinkHandle()
    try:
        link = host.link(port)
    finally:
        host.close()
    if link is None:
        raise OperationFailed(f"the host end {port} vanished", "see ovs-vswitchd.log")
    return str(link["mac"])


def cni_del(p: Dict[str, Any], ctx: Context) -> Any:
    """Remove the attachment of (container, ifname) from ``bridge``; nothing there is success."""
    from ovsfab.ops.detach import detach  # noqa: PLC0415

    spec = target_spec(p["container_id"])
    with in_ovs_netns(p.get("ovs_netns")):
        return detach(parse_name(p["bridge"], "bridge name"), spec, parse_name(p["ifname"], "interface name"),
                      True, ctx.backend_factory(p["bridge"]), fault=ctx.fault)


def cni_check(p: Dict[str, Any], ctx: Context) -> CniCheckResult:
    """The attachment exists as recorded and as asked: port, ofport, host end, container end, addresses."""
    from ovsfab.plumbing.links import NetlinkHandle  # noqa: PLC0415
    from ovsfab.plumbing.netns import Namespace  # noqa: PLC0415

    spec = target_spec(p["container_id"])
    bridge = parse_name(p["bridge"], "bridge name")
    ifname = parse_name(p["ifname"], "interface name")
    want = addresses_of(p)
    vlan = parse_vlan(p["vlan"]) if p.get("vlan") is not None else None
    mtu = parse_mtu(p["mtu"]) if p.get("mtu") is not None else None
    trunks = parse_trunks(p.get("trunk") or [])
    checked: List[str] = []
    with in_ovs_netns(p.get("ovs_netns")):
        target = netns_target(p["container_id"], p["netns"], None)
        backend = ctx.backend_factory(bridge)()
        try:
            att = backend.find_attachment(target.key, ifname)
            if att is None or att.bridge != bridge:
                raise NotFound(f"{spec} has no {ifname} on bridge {bridge}", "the runtime should ADD it again")
            if att.ofport is None or att.ofport < 0:
                raise OperationFailed(f"port {att.port} has no OpenFlow port number", "see ovs-vswitchd.log")
            checked.append("port")
            if att.vlan != vlan:
                raise Conflict(f"port {att.port} has VLAN {att.vlan}, the configuration says {vlan}")
            got_trunks, _ = backend.port_extras(att.port)
            if got_trunks != trunks:
                raise Conflict(f"port {att.port} trunks {got_trunks}, the configuration says {trunks}")
            checked.append("vlan")
        finally:
            backend.close()
        host = NetlinkHandle()
        try:
            link = host.link(att.port)
        finally:
            host.close()
        if link is None or link["kind"] != "veth":
            raise NotFound(f"the host end {att.port} is missing", "the runtime should ADD it again")
        checked.append("host end")
        with Namespace.open(target.netns_path) as ns:
            inner = NetlinkHandle(ns)
            try:
                clink = inner.link(ifname)
                if clink is None:
                    raise NotFound(f"{ifname} is missing in {target.netns_path}", "the runtime should ADD it again")
                if not clink["up"]:
                    raise OperationFailed(f"{ifname} is down in {target.netns_path}")
                if mtu is not None and clink["mtu"] != mtu:
                    raise Conflict(f"{ifname} has MTU {clink['mtu']}, the configuration says {mtu}")
                have = set(inner.addresses(int(clink["index"])))  # type: ignore[call-overload]
            finally:
                inner.close()
        checked.append("container end")
        missing = sorted(s.interface.with_prefixlen for s in want if s.interface.with_prefixlen not in have)
        if missing:
            raise Conflict(f"{ifname} lacks address(es) {', '.join(missing)}", "the runtime should ADD it again")
        checked.append("addresses")
    return CniCheckResult(att, checked)


def cni_gc(p: Dict[str, Any], ctx: Context) -> CniGcResult:
    """Remove this network's attachments that are not in ``valid`` (``CONTAINERID/IFNAME`` items)."""
    from ovsfab.ops.detach import detach  # noqa: PLC0415

    network = p["network_name"]
    valid = set()
    for item in p.get("valid") or []:
        cid, sep, ifname = item.partition("/")
        if not sep:
            raise InvalidInput(f"valid attachment {item!r} is not CONTAINERID/IFNAME")
        valid.add((cid, ifname))
    removed: List[Tuple[str, str]] = []
    errors: List[str] = []
    with in_ovs_netns(p.get("ovs_netns")):
        backend = ctx.backend_factory(p.get("bridge"))()
        try:
            stale = [a for a in backend.list_attachments(p.get("bridge"))
                     if a.container_key.startswith("cni:") and a.external_ids.get(KEY_CNI_NETWORK) == network
                     and (a.container_key[len("cni:"):], a.ifname) not in valid]
        finally:
            backend.close()
        for att in stale:
            try:
                if att.network:  # an OVN network's: its logical port goes too
                    from ovsfab.ops.ovn_network import detach_network  # noqa: PLC0415

                    detach_network(att.network, att.container_key, att.ifname, True, ovs_remote=ctx.db,
                                   fault=ctx.fault)
                else:
                    detach(att.bridge, att.container_key, att.ifname, True, ctx.backend_factory(att.bridge),
                           fault=ctx.fault)
                removed.append((att.container_key[len("cni:"):], att.ifname))
            except OvsfabError as exc:  # keep collecting: one stuck port must not keep the rest
                errors.append(f"{att.port}: {exc.message}")
    if errors:
        raise OperationFailed(f"GC could not remove {len(errors)} attachment(s): {'; '.join(errors)}",
                              "run GC again")
    return CniGcResult(removed)


def cni_status(p: Dict[str, Any], ctx: Context) -> CniStatusResult:
    """OVSDB answers; the bridge, when named, exists or can be made (no bridge yet is fine)."""
    bridge = parse_name(p["bridge"], "bridge name") if p.get("bridge") else None
    with in_ovs_netns(p.get("ovs_netns")):
        backend = ctx.backend_factory(bridge)()
        try:
            datapath = backend.bridge_datapath(bridge) if bridge else None
        finally:
            backend.close()
    return CniStatusResult(bridge, datapath)


def derived_port(container_id: str, ifname: str) -> str:
    """The host-end name of a CNI attachment (tests and docs: what DEL removes)."""
    return host_ifname(target_spec(container_id), ifname)


def _request(p: Dict[str, Any], ctx: Context) -> Any:
    from ovsfab.ops.cni_request import cni_request  # noqa: PLC0415 - IPAM and result building: only here

    return cni_request(p, ctx)


def _ovn_add(p: Dict[str, Any], ctx: Context) -> Any:
    from ovsfab.ops.cni_ovn import cni_ovn_add  # noqa: PLC0415 - OVN: only for a network

    return cni_ovn_add(p, ctx)


def _ovn_del(p: Dict[str, Any], ctx: Context) -> Any:
    from ovsfab.ops.cni_ovn import cni_ovn_del  # noqa: PLC0415

    return cni_ovn_del(p, ctx)


_COMMON = {"container_id": "str", "ifname": "str", "bridge": "str", "ovs_netns": "opt-str"}

OPERATIONS = [
    Operation("cni.add", {**_COMMON, "netns": "str", "addresses": "list", "routes": "list", "vlan": "opt-num",
                          "trunk": "list", "mtu": "opt-num", "mac": "opt-str", "ofport_request": "opt-num",
                          "network_name": "opt-str", "name": "opt-str"},
              cni_add, required=("container_id", "netns", "ifname", "bridge"),
              doc="CNI ADD: a veth into CNI_NETNS, IPAM's addresses and routes, a port on the bridge"),
    Operation("cni.del", dict(_COMMON), cni_del, required=("container_id", "ifname", "bridge"),
              doc="CNI DEL: remove the port and veth; nothing there is success"),
    Operation("cni.check", {**_COMMON, "netns": "str", "addresses": "list", "routes": "list", "vlan": "opt-num",
                            "trunk": "list", "mtu": "opt-num"},
              cni_check, changes=False, required=("container_id", "netns", "ifname", "bridge"),
              doc="CNI CHECK: the attachment is as configured"),
    Operation("cni.gc", {"network_name": "str", "valid": "list", "bridge": "opt-str", "ovs_netns": "opt-str"},
              cni_gc, required=("network_name",), doc="CNI GC: remove this network's attachments not in valid"),
    Operation("cni.status", {"bridge": "opt-str", "ovs_netns": "opt-str"}, cni_status, changes=False,
              doc="CNI STATUS: OVSDB answers"),
    Operation("cni.ovn_add", {"container_id": "str", "ifname": "str", "network": "str", "ovs_netns": "opt-str",
                              "netns": "str", "addresses": "list", "routes": "list", "mtu": "opt-num",
                              "mac": "opt-str", "network_name": "opt-str", "name": "opt-str",
                              "dynamic": "opt-bool", "subnet": "opt-str", "gateway": "opt-str"},
              _ovn_add, required=("container_id", "netns", "ifname", "network"),
              doc="CNI ADD on an OVN network: a logical port, a veth into CNI_NETNS on br-int"),
    Operation("cni.ovn_del", {"container_id": "str", "ifname": "str", "network": "str", "ovs_netns": "opt-str"},
              _ovn_del, required=("container_id", "ifname", "network"),
              doc="CNI DEL on an OVN network: the logical port, the port and veth; nothing there is success"),
    Operation("cni.request", {"stdin": "str", "env": "list"}, _request, required=("stdin",),
              doc="one whole CNI plugin run (stdin, K=V environment): exit code and stdout document"),
]
