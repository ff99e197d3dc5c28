"""``ovsfab attach``: a veth from a container into a bridge port.

Flow (each step undone in reverse if a later one fails):

1. resolve      the target to its network namespace (Docker API / netns / pid)
2. connect      to the backend (OVSDB) and read what is recorded
3. create_veth  one netlink request: host end in this namespace, container
                end born inside the container with its final name, MTU, MAC
4. configure    addresses, link up, default route (inside the container,
                in one netlink send; the host end was born up)
5. offloads     on the netdev datapath, TX checksum offload off on both ends
6. plug         one OVSDB transaction: bridge (if missing) + port + interface
                with ownership in external_ids; wait for vswitchd and ofport
7. announce     gratuitous ARP / unsolicited NA
8. verify       the container is still running (it may stop mid-way)
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Set, Tuple, Union

from ovsfab.backends.base import Backend, Borrowed, NewPort, PortResult, add_failed
from ovsfab.errors import Conflict, OperationFailed, OvsfabError, PermissionDenied
from ovsfab.model import Attachment, AttachRequest, Target, host_ifname
from ovsfab.ops.lock import attachment_lock
from ovsfab.ops.plan import Plan
from ovsfab.plumbing import containers
from ovsfab.plumbing.links import NetlinkHandle
from ovsfab.plumbing.netns import Namespace

LOG = logging.getLogger(__name__)

ATTACH_STEPS = ("resolve", "connect", "create_veth", "configure", "offloads", "plug", "announce", "verify")

BackendFactory = Callable[[], Backend]


@dataclass
class AttachResult:
    """What attach did (or found already done)."""

    attachment: Attachment
    changed: bool
    datapath: str
    notes: List[str] = field(default_factory=list)

    def to_json(self) -> dict:
        out = {"action": "attach", "changed": self.changed, "datapath": self.datapath}
        out.update(self.attachment.to_json())
        out["notes"] = self.notes
        return out


def require_root() -> None:
    """ovsfab changes links and OVSDB: it needs root."""
    if os.geteuid() != 0:
        raise PermissionDenied("ovsfab needs root to change links and OVSDB", "run it with sudo")


def kernel_has_ovs_datapath() -> bool:
    """True when the openvswitch kernel module is loaded (or built in)."""
    return os.path.isdir("/sys/module/openvswitch")


def choose_datapath(requested: str) -> str:
    if requested != "auto":
        return requested
    return "system" if kernel_has_ovs_datapath() else "netdev"


def differences(recorded: Attachment, req: AttachRequest) -> List[str]:
    """How a recorded attachment differs from a request (empty: the same)."""
    diffs = []
    if recorded.bridge != req.bridge:
        diffs.append(f"bridge {recorded.bridge}")
    if {str(a) for a in recorded.addresses} != {str(a) for a in req.addresses}:
        diffs.append("addresses " + ",".join(str(a) for a in recorded.addresses))
    if recorded.vlan != req.vlan:
        diffs.append(f"vlan {recorded.vlan if recorded.vlan is not None else 'none'}")
    if req.mac is not None and recorded.mac != req.mac:
        diffs.append(f"mac {recorded.mac}")
    if req.mtu is not None and recorded.mtu != req.mtu:
        diffs.append(f"mtu {recorded.mtu}")
    return diffs


def attach(req: AttachRequest, backend_factory: BackendFactory,
           resolved: Optional[Target] = None, fault: Optional[str] = None,
           docker_host: Optional[str] = None) -> AttachResult:
    """Attach a container to a bridge; idempotent; nothing left behind on failure.

    ``resolved``: the target, already resolved by the caller (ovsfab reconcile
    looks many containers up at once instead of one Docker call each).
    ``fault``: the test hook (ovsfab/ops/plan.py), from the request's context;
    ``docker_host``: dockerd's API address, from the request's context.
    """
    require_root()
    # The lock is released after the Plan's rollback (ExitStack exits last).
    with contextlib.ExitStack() as stack, Plan("attach", fault) as plan:
        pending = _begin(req, backend_factory, resolved, docker_host, stack, plan)
        if isinstance(pending, AttachResult):
            return pending

        def plug() -> PortResult:
            result = pending.backend.add_port(pending.req.bridge, pending.port, external_ids=pending.ids,
                                              tag=pending.req.vlan, datapath=pending.datapath)
            pending.created_bridge = result.created_bridge
            return result

        res = plan.step("plug", plug, undo=pending.unplug)
        return _end(pending, plan, res.ofport)


def attach_many(reqs: Sequence[AttachRequest], backend: Backend, fault: Optional[str] = None,
                docker_host: Optional[str] = None,
                timings: Optional[Dict[str, float]] = None) -> List[Union[AttachResult, OvsfabError]]:
    """Attach several containers with ONE OVSDB transaction for all their ports.

    The agent's group commit: requests that arrive together share one
    vswitchd reconfiguration (on netdev each costs tens of ms at hundreds of
    ports).  Each request keeps its own steps, undo and fault hook; a request
    that fails before the transaction is rolled back alone, and its error
    takes its place in the list.  A failed transaction fails (and rolls back)
    every request in it.  ``backend`` is borrowed: it is not closed.
    ``timings``, when given, receives the seconds spent in each phase
    (``links``: resolve .. offloads of all; ``plug``: the transaction and
    vswitchd; ``finish``: announce and verify of all), for the agent's log.
    """
    batch = AttachBatch(backend, fault, docker_host, timings)
    for req in reqs:
        batch.add(req)
    return batch.commit()


class AttachBatch:
    """:func:`attach_many` one request at a time: each request's link work when it is added, one
    transaction for all at :meth:`commit`.

    The agent adds requests as they arrive during a burst, so their link
    work overlaps the start-up of the clients still coming, and plugs them
    all at once.
    """

    def __init__(self, backend: Backend, fault: Optional[str] = None, docker_host: Optional[str] = None,
                 timings: Optional[Dict[str, float]] = None) -> None:
        require_root()
        self.backend = backend
        self.fault = fault
        self.docker_host = docker_host
        self._out: List[Union[AttachResult, OvsfabError, None]] = []
        self._open: List[Tuple[int, contextlib.ExitStack, Plan, "_Pending"]] = []
        #: Host-end names whose lock an open request holds.
        self._ports: Set[str] = set()
        #: Requests for an interface already in this batch: run after the commit.
        self._later: List[Tuple[int, AttachRequest, Target]] = []
        self._timings = timings
        self._clock = _Clock(timings)

    def __len__(self) -> int:
        return len(self._out)

    def _fail(self, i: int, stack: contextlib.ExitStack, plan: Plan, exc: BaseException) -> None:
        plan.__exit__(type(exc), exc, exc.__traceback__)  # rollback, in reverse
        stack.close()
        self._out[i] = _as_error(exc)

    def add(self, req: AttachRequest, resolved: Optional[Target] = None) -> None:
        """Steps resolve .. offloads of one more request (its failure is its result, rolled back now).

        The same interface twice in one batch (a retry, two shells) would
        wait forever for its own lock: the second runs after the commit, and
        then finds the first's record, as it would have one after the other.
        """
        i = len(self._out)
        self._out.append(None)
        self._clock.restart()
        try:
            target = resolved or containers.resolve(req.target_spec, docker_host=self.docker_host)
        except Exception as exc:  # noqa: BLE001 - this request fails, the others go on
            self._out[i] = _as_error(exc)
            self._clock.lap("links")
            return
        port = host_ifname(target.key, req.ifname)
        if port in self._ports:
            self._later.append((i, req, target))
            return
        stack = contextlib.ExitStack()
        plan = Plan("attach", self.fault).__enter__()
        backend = self.backend
        try:
            pending = _begin(req, lambda: Borrowed(backend), target, self.docker_host, stack, plan)
        except Exception as exc:  # noqa: BLE001 - this request fails, the others go on
            self._fail(i, stack, plan, exc)
            self._clock.lap("links")
            return
        if isinstance(pending, AttachResult):
            plan.__exit__(None, None, None)
            stack.close()
            self._out[i] = pending
        else:
            self._open.append((i, stack, plan, pending))
            self._ports.add(port)
        self._clock.lap("links")

    def commit(self) -> List[Union[AttachResult, OvsfabError]]:
        """One transaction for every port added, then announce and verify each: a result or error each, in order."""
        self._clock.restart()
        open_, self._open = self._open, []
        backend = self.backend
        if open_:
            bridges_before = {p.req.bridge: backend.bridge_datapath(p.req.bridge) is not None
                              for _, _, _, p in open_}
            try:
                plugged = backend.add_many([NewPort(p.req.bridge, p.port, p.ids, p.datapath, p.req.vlan)
                                            for _, _, _, p in open_])
            except Exception as exc:  # noqa: BLE001 - the one transaction failed: so did every request in it
                for i, stack, plan, _ in open_:
                    self._fail(i, stack, plan, exc)
                open_ = []
                plugged = {}
            self._clock.lap("plug")
            for i, stack, plan, pending in open_:
                pending.created_bridge = not bridges_before[pending.req.bridge]
                plan.add_undo("plug", pending.unplug)
                try:
                    ofport, error = plugged.get(pending.port, (None, None))
                    if error:
                        raise add_failed(pending.port, pending.req.bridge, error)
                    plan.checkpoint("plug")
                    self._out[i] = _end(pending, plan, ofport)
                except Exception as exc:  # noqa: BLE001
                    self._fail(i, stack, plan, exc)
                    continue
                plan.__exit__(None, None, None)
                stack.close()
            self._clock.lap("finish")
        self._ports.clear()
        later, self._later = self._later, []
        if later:  # the locks are free now: these see the first ones' records
            again = AttachBatch(backend, self.fault, self.docker_host, self._timings)
            for _, req, target in later:
                again.add(req, target)
            for (i, _, _), res in zip(later, again.commit()):
                self._out[i] = res
        return [r for r in self._out if r is not None]

    def abort(self, exc: BaseException) -> None:
        """Roll back every request added and not yet plugged (the caller could not commit)."""
        open_, self._open = self._open, []
        for i, stack, plan, _ in open_:
            self._fail(i, stack, plan, exc)
        self._ports.clear()
        self._later = []


def _as_error(exc: BaseException) -> OvsfabError:
    """An error as a request's result: itself, or a bug said as one line."""
    return exc if isinstance(exc, OvsfabError) else OperationFailed(
        f"internal error: {type(exc).__name__}: {exc}", "rerun with --debug and report it")


class _Clock:
    """Seconds per phase into a dict, when one is given."""

    def __init__(self, into: Optional[Dict[str, float]]) -> None:
        self.into = into
        self.t = time.monotonic()

    def restart(self) -> None:
        """Time between laps is not counted (the agent waiting for requests)."""
        self.t = time.monotonic()

    def lap(self, name: str) -> None:
        now = time.monotonic()
        if self.into is not None:
            self.into[name] = self.into.get(name, 0.0) + now - self.t
        self.t = now


@dataclass
class _Pending:
    """An attach between its link work and its port: what plugging and finishing need."""

    req: AttachRequest
    target: Target
    port: str
    ns: Namespace
    inode: int
    backend: Backend
    host: NetlinkHandle
    inner: NetlinkHandle
    datapath: str
    att: Attachment
    ids: Dict[str, str]
    notes: List[str]
    created_bridge: bool = False

    def unplug(self) -> None:
        """Undo of the plug: the port goes first (del_br keeps a bridge that still has ports)."""
        self.backend.del_port(self.port, if_exists=True)
        if self.created_bridge:
            self.backend.del_br(self.req.bridge, if_exists=True)


def _begin(req: AttachRequest, backend_factory: BackendFactory, resolved: Optional[Target],
           docker_host: Optional[str], stack: contextlib.ExitStack,
           plan: Plan) -> Union[AttachResult, _Pending]:
    """Steps resolve .. offloads: everything before the port; an AttachResult when already attached."""
    target: Target = plan.step("resolve", lambda: resolved or containers.resolve(req.target_spec,
                                                                                  docker_host=docker_host))
    port = host_ifname(target.key, req.ifname)
    # Before connecting: what OVSDB says is then read after any other
    # attach / detach of this interface is done (ovsfab/ops/lock.py).
    stack.enter_context(attachment_lock(port))
    ns = Namespace.open(target.netns_path)
    plan.add_undo("close namespace", ns.close)
    inode = ns.inode()
    backend = plan.step("connect", backend_factory)
    plan.add_undo("close backend", backend.close)
    host = NetlinkHandle()
    plan.add_undo("close netlink", host.close)
    inner = NetlinkHandle(ns)
    plan.add_undo("close netlink", inner.close)
    recorded = backend.find_attachment(target.key, req.ifname)
    if recorded is not None:
        diffs = differences(recorded, req)
        if diffs:
            raise Conflict(
                f"{target.name} {req.ifname} is already attached with other settings ({'; '.join(diffs)})",
                f"detach it first: ovsfab detach {recorded.bridge} {req.target_spec} --ifname {req.ifname}",
            )
        if host.index(port) is not None and inner.index(req.ifname) is not None \
                and recorded.ofport is not None and recorded.ofport >= 0:
            result = AttachResult(recorded, changed=False,
                                  datapath=backend.bridge_datapath(recorded.bridge) or "")
            _finish(ns, backend, host, inner)
            return result
        # Recorded but broken (the container restarted, or a crash):
        # clear our own leftovers and attach afresh.
        LOG.debug("recorded attachment %s is incomplete; re-creating it", port)
        # Journaled: a kill before the plug leaves the record for reconcile.
        backend.del_ports([recorded.port], journal=True)
        host.delete(port, if_exists=True)
    else:
        owner = backend.port_exists(port)
        if owner is not None:
            if backend.kind == "linux":
                raise Conflict(f"{port} is a port of Linux bridge {owner} but is not recorded for "
                               f"{target.name}", f"remove it: ip link del {port}")
            raise Conflict(f"OVS port {port} exists but is not recorded for {target.name}",
                           f"remove it: ovs-vsctl del-port {port}")
        leftover = host.link(port)
        if leftover is not None:
            if leftover["kind"] != "veth":
                raise Conflict(f"interface {port} exists and is not an ovsfab veth",
                               "remove or rename it")
            LOG.debug("removing leftover veth %s from an interrupted attach", port)
            host.delete(port, if_exists=True)

    if inner.index(req.ifname) is not None:
        raise Conflict(f"{target.name} already has an interface named {req.ifname}",
                       "choose another --ifname")

    existing_dp = backend.bridge_datapath(req.bridge)
    notes: List[str] = []
    if existing_dp is None:
        # The backend knows its datapaths (OVS: system/netdev; Linux: one).
        datapath, dp_note = backend.new_bridge_datapath(req.bridge, req.datapath)
        if dp_note:
            notes.append(dp_note)
    else:
        datapath = existing_dp
        if req.datapath != "auto" and req.datapath != existing_dp:
            raise Conflict(f"bridge {req.bridge} exists with datapath {existing_dp}",
                           f"use --datapath {existing_dp} or auto")

    # -- ovsfab tunnel: --mtu auto (the default when the bridge carries tunnels) --
    if req.mtu is None:
        from ovsfab.ops.tunnel import auto_mtu  # noqa: PLC0415

        auto = auto_mtu(backend, req.bridge)
        if auto is not None:
            req = dataclasses.replace(req, mtu=auto)
            notes.append(f"bridge {req.bridge} carries tunnels: MTU {auto} (underlay MTU minus tunnel overhead)")
    # -- end of --mtu auto --

    plan.step("create_veth",
              lambda: create_link(host, ns, port, req),
              undo=lambda: host.delete(port, if_exists=True))
    link = read_link(inner, req.ifname)
    mac, mtu = link.mac, link.mtu

    # Undo of everything inside the container is the veth's deletion.
    plan.step("configure", lambda: configure_link(inner, req, link))

    def offloads() -> None:
        if not backend.needs_tx_csum_off(datapath):
            LOG.debug("datapath %s: kernel offloads left on", datapath)
            return
        offload_link(host, inner, port, req.ifname)

    plan.step("offloads", offloads)

    att = Attachment(bridge=req.bridge, port=port, container_key=target.key,
                     container_name=target.name, ifname=req.ifname, addresses=req.addresses,
                     mac=mac, mtu=mtu, vlan=req.vlan, target=req.target_spec if target.kind != "docker"
                     else target.key, persist=req.persist,
                     network=req.network or "", iface_id=req.iface_id or "")  # OVN: ovsfab/ovn
    return _Pending(req, target, port, ns, inode, backend, host, inner, datapath, att, att.to_external_ids(),
                    notes)


def _end(p: _Pending, plan: Plan, ofport: Optional[int]) -> AttachResult:
    """Steps announce and verify, once the port is in: the result."""
    p.att.ofport = ofport
    p.notes.extend(p.backend.traffic_notes(p.req.bridge))
    mac = p.att.mac or ""
    plan.step("announce", lambda: p.inner.announce(p.req.ifname, mac, list(p.req.addresses)))

    def verify() -> None:
        if not containers.still_alive(p.target, p.inode):
            raise Conflict(f"{p.target.name} stopped while it was being attached",
                           "start it and run attach again")

    plan.step("verify", verify)
    _finish(p.ns, p.backend, p.host, p.inner)
    return AttachResult(p.att, changed=True, datapath=p.datapath, notes=p.notes)


# ---------------------------------------------------------------------------
# The per-container link work, shared with the batch operations (ovsfab apply
# and reconcile prepare many links, then plug every port in one transaction).
# ---------------------------------------------------------------------------
@dataclass
class LinkFacts:
    """The container end of a new veth, as the record needs it."""

    index: int
    mac: str
    mtu: int


def create_link(host: NetlinkHandle, ns: Namespace, port: str, req: AttachRequest, host_up: bool = True) -> None:
    """Step create_veth: the pair, then the host end without IPv6, then up.

    The container end is born inside the container with its final name, MTU
    and MAC (it cannot be born up: see create_veth).  The host end is a
    bridge port and needs no address of its own; with IPv6 on, each one
    would get a link-local address and routes, and send RS/MLD/DAD into the
    bridge.  ovs-vswitchd re-reads the whole routing table and every address
    on each route change (its tunnel route cache): measured with 100 such
    ports per host on the userspace datapath, its main thread stayed busy
    for minutes after an apply, and packets waited seconds.  So IPv6 is off
    before the end comes up (no address is ever made).

    ``host_up=False``: the host end stays down and IPv6 is left alone; a
    batch restore (ops/reconcile.py) calls :func:`host_end_up` once
    ovs-vswitchd has let go of the old port of that name.
    """
    host.create_veth(port, req.ifname, ns, req.mtu, req.mac, up=False)
    if host_up:
        host_end_up(host, port)


def host_end_up(host: NetlinkHandle, port: str) -> None:
    """The host end without IPv6, then up (see :func:`create_link`)."""
    host.disable_ipv6(port)
    host.set_up_by_name(port)


def read_link(inner: NetlinkHandle, ifname: str) -> LinkFacts:
    """The new container end's index, MAC and MTU (the kernel chose what the request did not)."""
    info = inner.link(ifname)
    if info is None:
        raise OperationFailed(f"the container end {ifname} vanished after creation",
                              "check whether the container is stopping")
    return LinkFacts(int(info["index"]), str(info["mac"]), int(info["mtu"]))  # type: ignore[arg-type]


def configure_link(inner: NetlinkHandle, req: AttachRequest, link: LinkFacts) -> None:
    """Step configure: addresses, link up, default routes -- one send into the container."""
    if any(spec.version == 6 for spec in req.addresses):
        inner.enable_ipv6(req.ifname)
    inner.configure(link.index, req.addresses)


def offload_link(host: NetlinkHandle, inner: NetlinkHandle, port: str, ifname: str) -> None:
    """Step offloads (netdev datapath only): TX checksum offload off on both ends.

    The userspace datapath reads frames whose TCP/UDP checksums the veth
    left for "hardware" to finish; nothing finishes them, so TCP dies while
    ping works.  Make the kernel finish them.
    """
    off_c = inner.disable_tx_checksum(ifname)
    off_h = host.disable_tx_checksum(port)
    LOG.debug("netdev datapath: TX checksum offload off on %s (%s) and %s (%s)",
              ifname, ",".join(off_c) or "already off", port, ",".join(off_h) or "already off")


def prepare_link(host: NetlinkHandle, ns: Namespace, port: str, req: AttachRequest, csum_off: bool,
                 created: Callable[[], None], host_up: bool = True) -> LinkFacts:
    """attach's create_veth, configure and offloads for one container of a batch.

    ``created`` is called as soon as the veth exists (the caller registers
    its undo then, so a failure in a later request leaves nothing behind).
    One short-lived handle in the container: batches touch hundreds of
    namespaces, and their sockets must not pile up.
    """
    inner = NetlinkHandle(ns)
    try:
        create_link(host, ns, port, req, host_up)
        created()
        link = read_link(inner, req.ifname)
        configure_link(inner, req, link)
        if csum_off:
            offload_link(host, inner, port, req.ifname)
        return link
    finally:
        inner.close()


def _finish(ns: Namespace, backend: Backend, host: NetlinkHandle, inner: NetlinkHandle) -> None:
    inner.close()
    host.close()
    backend.close()
    ns.close()
