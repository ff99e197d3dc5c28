"""``ovsfab apply FILE``: make this host's part of a fabric true, in one run.

Flow:

1. load      the file is parsed and validated (``FILE:LINE`` errors) before
             anything on the host is looked at; IPAM fills in addresses
2. plan      one OVSDB session reads what exists; targets are resolved; the
             difference is a list of changes (``+`` create, ``~`` change,
             ``-`` delete).  ``--dry-run`` stops here.
3. uplinks   ``uplink add`` for uplink-mode networks and, on the userspace
             datapath, for the vxlan underlay (``br-<nic>``)
4. remove    ports of changed / moved / pruned attachments and unwanted
             tunnels in ONE transaction; their veths
5. check     every new tunnel's underlay (as ``tunnel add`` does)
6. prepare   per attachment, netlink only: veth (peer born in the container),
             addresses, routes, link up, checksum offload on netdev
   ovn-ports for attachments to ``mode: ovn`` networks: their logical switches
             (if missing) and logical switch ports, with MAC + IP port
             security, in ONE northbound transaction
7. commit    every new port -- tunnels and attachments -- in ONE OVSDB
             transaction; ovs-vswitchd reconfigures once and is waited for once
8. announce  gratuitous ARP / unsolicited NA from each new interface
9. prune     bridges left empty (only with --prune)

Every step registers its undo; a failure anywhere undoes everything done, in
reverse order, and the error is one line.

Ownership: everything apply creates carries ``ovsfab-owner=ovsfab`` (so
``detach``, ``tunnel del``, ``reconcile`` and ``show`` treat it like any
other ovsfab object) plus ``ovsfab-fabric=<name>`` and
``ovsfab-fabric-network=<network>``.  Only objects carrying this fabric's
tag are ever removed, and only when the file no longer names them here:

* an attachment the file still names on another host (moved), a changed
  attachment (re-created), or a tunnel on a bridge of one of this host's
  networks that the mesh no longer needs (key change, host left): always;
* an attachment, tunnel or bridge of something the file no longer names at
  all: only with ``--prune`` (otherwise listed as kept).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from ovsfab.backends.base import CAP_BFD, KEY_ROLE, NOT_IN_OVSDB, Backend, Borrowed, NewPort, add_failed
from ovsfab.errors import Conflict, OvsfabError
from ovsfab.fabric.desired import host_part
from ovsfab.fabric.spec import Fabric
from ovsfab.model import OWNER_KEY, OWNER_VALUE, Attachment
from ovsfab.ops.apply_plan import ApplyPlan, NewAttachment, fabric_ids, make_plan
from ovsfab.ops.batch import map_parallel
from ovsfab.ops.plan import Plan

LOG = logging.getLogger(__name__)

APPLY_STEPS = ("uplinks", "remove", "check", "prepare", "ovn-ports", "commit", "announce", "prune")

#: Threads announcing (closing a packet socket waits for an RCU grace period; those waits overlap).
ANNOUNCE_WORKERS = 8


BackendFactory = Callable[[], Backend]
Progress = Callable[[int, int], None]




@dataclass
class ApplyResult:
    """What apply did."""

    plan: ApplyPlan
    dry_run: bool
    changed: bool
    attachments: List[Attachment] = field(default_factory=list)
    timings: Dict[str, Any] = field(default_factory=dict)
    #: ``wait`` > 0: what ``ovsfab check`` found once it passed or time ran out.
    check: Optional[Any] = None

    def to_json(self) -> Dict[str, Any]:
        out = {"action": "apply", "dry_run": self.dry_run, "changed": self.changed}
        out.update(self.plan.to_json())
        out["attachments"] = [a.to_json() for a in self.attachments]
        out["timings"] = self.timings
        out["check"] = self.check.to_json() if self.check is not None else None
        return out


# ---------------------------------------------------------------------------
# 2. plan
# ---------------------------------------------------------------------------


# ---------------------------------------------------------------------------
# 3..9 execute
# ---------------------------------------------------------------------------
def execute(plan: ApplyPlan, backend: Backend, progress: Optional[Progress] = None,
            fault: Optional[str] = None) -> ApplyResult:
    """Carry out a plan; undo everything on failure."""
    from ovsfab.ops.attach import attach  # noqa: PLC0415
    from ovsfab.ops.reconcile import request_of  # noqa: PLC0415
    from ovsfab.ops.tunnel import (BFD_ON, KEY_KEY, KEY_REMOTE, KEY_TYPE, ROLE_TUNNEL,  # noqa: PLC0415
                                   check_underlay)
    from ovsfab.ops.uplink import uplink_add, uplink_del  # noqa: PLC0415
    from ovsfab.plumbing.links import L3Handle  # noqa: PLC0415

    t0 = time.monotonic()
    timings: Dict[str, Any] = {}
    fabric = plan.fabric
    result = ApplyResult(plan, dry_run=False, changed=not plan.empty, timings=timings)
    if plan.empty:
        return result
    borrowed = Borrowed(backend)
    host = L3Handle()
    host_links = set(host.link_table())  # one dump, not one per attachment
    nb: List[Any] = []  # the northbound session, opened when first needed

    def nbs() -> Any:
        if not nb:
            from ovsfab.ovn.network import nb_session  # noqa: PLC0415

            assert plan.ovn_nb is not None
            nb.append(nb_session(plan.ovn_nb))
        return nb[0]

    try:
        with Plan("apply", fault) as steps:
            # 3. uplinks (each its own operation; undone by uplink del)
            def uplinks() -> None:
                for bridge, nic in plan.uplinks:
                    uplink_add(bridge, nic, False, "auto", lambda: borrowed)
                    steps.add_undo(f"uplink {nic}", lambda b=bridge, n=nic: uplink_del(b, n, True, lambda: borrowed))

            steps.step("uplinks", uplinks)

            # 4. remove: one transaction for every port going away, then the veths
            def remove() -> None:
                if not plan.del_attachments and not plan.del_tunnels:
                    return
                gone = [a.port for a in plan.del_attachments] + [t.port for t in plan.del_tunnels]
                lports = [a.iface_id for a in plan.del_attachments if a.iface_id]
                if lports and plan.ovn_nb:
                    from ovsfab.ovn.network import del_lports, restore_lports  # noqa: PLC0415

                    removed = del_lports(nbs(), lports)  # one NB transaction
                    steps.add_undo("put removed logical ports back", lambda: restore_lports(nbs(), removed))
                backend.del_ports(gone)
                back = [NewPort(a.bridge, a.port, dict(a.external_ids), backend.bridge_datapath(a.bridge) or "netdev",
                                a.vlan) for a in plan.del_attachments]
                back += [NewPort(t.bridge, t.port, dict(t.external_ids), t.datapath, None, t.iface_type,
                                 dict(t.options), dict(t.bfd)) for t in plan.del_tunnels]
                steps.add_undo("put removed ports back", lambda: backend.add_many(back))
                for att in plan.del_attachments:
                    host.delete(att.port, if_exists=True)
                    # Undo: the attach flow re-creates it exactly from its record.
                    steps.add_undo(f"re-attach {att.container_name}",
                                   lambda a=att: attach(request_of(a), lambda: borrowed))

            steps.step("remove", remove)

            # 5. check the underlay of every new tunnel (as `tunnel add` does)
            def check() -> None:
                owners = host.address_owners()
                internal = backend.internal_ports()
                for want, _port, dp in plan.add_tunnels:
                    route = host.route_to(want.remote)
                    if route is not None and route.get("type") != 1:
                        route = None
                    note = check_underlay(dp, want.remote, None, route, owners, internal)
                    if note and note not in plan.notes:
                        plan.notes.append(note)

            if plan.add_tunnels:
                steps.step("check", check)

            # 6. prepare every attachment (netlink only)
            t_prep = time.monotonic()
            prepared: List[Tuple[NewAttachment, Attachment]] = []
            total = len(plan.add_attachments)

            stamps: List[float] = []  # when each attachment was ready (s since prepare began): for bench/

            def prepare() -> None:
                prepared.extend(_prepare_all(plan.add_attachments, host, steps, fabric, host_links,
                                             t_prep, stamps, progress))

            steps.step("prepare", prepare)
            timings["prepare_s"] = round(time.monotonic() - t_prep, 4)
            timings["prepared_s"] = stamps

            # 6b. OVN: switches and logical ports before the interfaces that
            # name them (ovn-controller binds an iface-id as soon as it sees it)
            ovn_new = [new for new, _att in prepared if new.iface_id]
            if ovn_new:
                t_ovn = time.monotonic()
                steps.step("ovn-ports", lambda: _add_logical_ports(nbs(), ovn_new, fabric, steps))
                timings["ovn_ports_s"] = round(time.monotonic() - t_ovn, 4)

            # 7. commit: ONE transaction for all tunnels and attachment ports
            t_commit = time.monotonic()
            ports: List[NewPort] = []
            for want, port, dp in plan.add_tunnels:
                ids = {OWNER_KEY: OWNER_VALUE, KEY_ROLE: ROLE_TUNNEL, KEY_REMOTE: want.remote, KEY_TYPE: "vxlan",
                       KEY_KEY: str(want.key)}
                ids.update(fabric_ids(fabric, want.network))
                ports.append(NewPort(want.bridge, port, ids, dp, None, "vxlan",
                                     {"remote_ip": want.remote, "key": str(want.key)},
                                     dict(BFD_ON) if CAP_BFD in backend.capabilities else {}))
            for new, att in prepared:
                ports.append(NewPort(new.want.bridge, new.port, att.external_ids, new.datapath, new.want.spec.vlan))
            created_bridges = [b for b in {p.bridge for p in ports} if backend.bridge_datapath(b) is None]

            def commit() -> Dict[str, Tuple[Optional[int], Optional[str]]]:
                return backend.add_many(ports, set_ids=plan.retag)

            def uncommit() -> None:
                backend.del_ports([p.port for p in ports])
                for b in created_bridges:
                    backend.del_br(b, if_exists=True)

            applied = steps.step("commit", commit, undo=uncommit if ports else None)
            failed = [(p, applied.get(p.port, (None, NOT_IN_OVSDB))[1]) for p in ports
                      if applied.get(p.port, (None, NOT_IN_OVSDB))[1]]
            if failed:  # the commit step's undo removes what did get in
                p, err = failed[0]
                raise add_failed(p.port, p.bridge, err, len(failed) - 1)
            for new, att in prepared:
                att.ofport = applied[new.port][0]
            timings["commit_s"] = round(time.monotonic() - t_commit, 4)
            if progress is not None and total:
                progress(total, total)

            # 8. announce (best effort, after the ports exist so neighbours hear it)
            def announce() -> None:
                from ovsfab.plumbing.links import announce_in  # noqa: PLC0415
                from ovsfab.plumbing.netns import Namespace  # noqa: PLC0415

                def one(new: NewAttachment, att: Attachment) -> None:
                    try:
                        ns = Namespace.open(new.target.netns_path)
                    except OvsfabError:
                        return
                    try:
                        # Only a packet socket in the namespace, no rtnetlink socket.
                        announce_in(ns, att.ifname, att.mac or "", att.addresses)
                    finally:
                        ns.close()

                # Closing a packet socket waits for an RCU grace period: in
                # parallel, the waits overlap.
                map_parallel(lambda pa: one(*pa), prepared, ANNOUNCE_WORKERS, "announce")

            t_announce = time.monotonic()
            steps.step("announce", announce)
            timings["announce_s"] = round(time.monotonic() - t_announce, 4)

            # 9. prune bridges left empty
            def prune_bridges() -> None:
                for bridge in plan.del_bridges:
                    backend.del_br(bridge, if_exists=True, only_if_empty=True)

            steps.step("prune", prune_bridges)
            result.attachments = [att for _new, att in prepared]
    finally:
        host.close()
        for session in nb:
            session.close()
    timings["total_s"] = round(time.monotonic() - t0, 4)
    return result


def _add_logical_ports(nbs: Any, news: List[NewAttachment], fabric: Fabric, steps: Plan) -> None:
    """The OVN networks' switches (if missing), then every logical port in ONE transaction."""
    from ovsfab.model import KEY_CONTAINER_ID, KEY_CONTAINER_NAME, KEY_IFNAME  # noqa: PLC0415
    from ovsfab.ovn.network import (KEY_CHASSIS, LportSpec, add_lports, del_lports,  # noqa: PLC0415
                                    delete_switch_if_empty, ensure_switch)

    for name in sorted({new.ovn_network for new in news}):
        if ensure_switch(nbs, name, str(fabric.networks[name].subnet)):
            steps.add_undo(f"OVN network {name}", lambda n=name: delete_switch_if_empty(nbs, n))
    specs = []
    for new in news:
        req = new.request()
        ids = {KEY_CONTAINER_ID: new.target.key, KEY_CONTAINER_NAME: new.target.name,
               KEY_IFNAME: new.want.spec.ifname, KEY_CHASSIS: new.chassis}
        ids.update(fabric_ids(fabric, new.ovn_network))
        specs.append(LportSpec(new.ovn_network, new.iface_id, req.mac or "", req.addresses, ids))
    created = add_lports(nbs, specs)
    if created:
        steps.add_undo(f"{len(created)} logical port(s)", lambda: del_lports(nbs, created))


def _prepare_all(news: List[NewAttachment], host: Any, steps: Plan, fabric: Fabric, host_links: Set[str],
                 t0: float, stamps: List[float], progress: Optional[Progress]) -> List[Tuple[NewAttachment, Attachment]]:
    """Prepare every attachment, in plan order, on one host-side handle.

    One thread: measured (300 netns targets, 1 vs 4 worker threads, each
    with its own handle), workers were ~30 % slower -- the kernel work
    (veth creation, addresses, link up) is serialised by the RTNL lock
    anyway, and the GIL hand-offs only add to it.
    """
    out: List[Tuple[NewAttachment, Attachment]] = []
    for i, new in enumerate(news, start=1):
        out.append((new, _prepare(new, host, steps, fabric, host_links)))
        stamps.append(round(time.monotonic() - t0, 5))
        if progress is not None:
            progress(i, len(news))
    return out


def _prepare(new: NewAttachment, host: Any, steps: Plan, fabric: Fabric, host_links: Set[str]) -> Attachment:
    """Create and configure one attachment's veth (no OVSDB): attach's steps 3-5.

    Requests by name and no dumps, so the cost per attachment does not grow
    with the number of links on the host.
    """
    from ovsfab.ops.attach import prepare_link  # noqa: PLC0415
    from ovsfab.plumbing.netns import Namespace  # noqa: PLC0415

    spec = new.want.spec
    target = new.target
    ns = Namespace.open(target.netns_path)
    try:
        if new.port in host_links:
            leftover = host.link(new.port)
            if leftover is not None:
                if leftover["kind"] != "veth":
                    raise Conflict(f"interface {new.port} exists and is not an ovsfab veth",
                                   "remove or rename it")
                host.delete(new.port, if_exists=True)  # an interrupted attach's own leftover
        req = new.request()
        try:
            link = prepare_link(host, ns, new.port, req, host_needs_csum_off(new.datapath),
                                created=lambda: steps.add_undo(f"veth {new.port}",
                                                               lambda p=new.port: host.delete(p, if_exists=True)))
        except Conflict as exc:
            if not str(exc).startswith("cannot create veth pair"):
                raise
            # The kernel refuses a peer name taken inside the container.
            raise Conflict(f"{target.name} already has an interface named {spec.ifname} (or {new.port} "
                           "exists on the host)",
                           f"choose another ifname in {fabric.path} (line {spec.line})") from None
        att = Attachment(bridge=new.want.bridge, port=new.port, container_key=target.key,
                         container_name=target.name, ifname=spec.ifname, addresses=req.addresses,
                         mac=link.mac, mtu=link.mtu, vlan=spec.vlan,
                         target=spec.container if target.kind != "docker" else target.key,
                         network=new.ovn_network, iface_id=new.iface_id)
        ids = att.to_external_ids()
        ids.update(fabric_ids(fabric, spec.network))
        att.external_ids = ids
        return att
    finally:
        ns.close()


def host_needs_csum_off(datapath: str) -> bool:
    """Same rule as Backend.needs_tx_csum_off for OVS: only the userspace datapath."""
    return datapath == "netdev"


# ---------------------------------------------------------------------------
# The operation
# ---------------------------------------------------------------------------
def apply(path: str, host: str, backend_factory: BackendFactory, dry_run: bool = False, prune: bool = False,
          progress: Optional[Progress] = None,
          on_plan: Optional[Callable[[ApplyPlan], None]] = None, wait: float = 0.0,
          db_remote: Optional[str] = None, fault: Optional[str] = None) -> ApplyResult:
    """Load the file, plan this host's part, and (unless dry_run) carry it out.

    ``wait`` > 0: then wait up to that long for ``ovsfab check`` to pass
    (tunnels' BFD up, neighbour caches right, MTUs fit); the result carries
    what it found, and the caller decides what a failed check means.
    """
    from ovsfab.fabric.spec import load_fabric  # noqa: PLC0415
    from ovsfab.ops.attach import require_root  # noqa: PLC0415
    from ovsfab.plumbing.pyroute2_private import defer_package_init  # noqa: PLC0415

    t0 = time.monotonic()
    # As attach's lean path: apply needs pyroute2's rtnetlink message classes,
    # not its package __init__ (every netlink family: ~100-150 ms of a one-shot
    # CLI).  A no-op where pyroute2 is imported already (the agent).
    defer_package_init()
    fabric = load_fabric(path)          # file errors: before anything is touched
    part = host_part(fabric, host)      # unknown --host: likewise (and the plan's input: 0.1 s at 300)
    require_root()
    backend = backend_factory()
    try:
        plan = make_plan(fabric, host, backend, prune, part=part)
        if on_plan is not None:
            on_plan(plan)
        if dry_run:
            return ApplyResult(plan, dry_run=True, changed=False,
                               timings={"total_s": round(time.monotonic() - t0, 4)})
        result = execute(plan, backend, progress, fault)
        result.timings["total_s"] = round(time.monotonic() - t0, 4)
    finally:
        backend.close()
    if wait > 0:
        from ovsfab.ops.check import check  # noqa: PLC0415

        result.check = check(backend_factory, db_remote, wait=wait)
        result.timings["converge_s"] = round(result.check.elapsed, 4)
    return result
