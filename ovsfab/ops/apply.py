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

from ovsfab.backends.base import CAP_BFD, KEY_ROLE, Backend, Borrowed, NewPort, OwnedPort, is_attachment
from ovsfab.errors import Conflict, InvalidInput, OperationFailed, OvsfabError, Unavailable
from ovsfab.fabric.desired import HostPart, WantAttachment, WantTunnel, host_part, named_anywhere
from ovsfab.fabric.spec import Fabric
from ovsfab.model import OWNER_KEY, OWNER_VALUE, Attachment, AttachRequest, Target, host_ifname
from ovsfab.ops.plan import Plan

LOG = logging.getLogger(__name__)

APPLY_STEPS = ("uplinks", "remove", "check", "prepare", "ovn-ports", "commit", "announce", "prune")

#: Threads announcing (closing a packet socket waits for an RCU grace period; those waits overlap).
ANNOUNCE_WORKERS = 8

KEY_FABRIC = "ovsfab-fabric"
KEY_FABRIC_NETWORK = "ovsfab-fabric-network"

BackendFactory = Callable[[], Backend]
Progress = Callable[[int, int], None]


# ---------------------------------------------------------------------------
# The plan
# ---------------------------------------------------------------------------
@dataclass
class Change:
    """One line of the plan, like a diff: ``+ attach web eth1 10.77.0.10/16 → br0``."""

    op: str      # "+" create, "~" change, "-" delete
    kind: str    # "bridge" | "uplink" | "tunnel" | "attach"
    text: str
    detail: str = ""

    def line(self) -> str:
        return f"{self.op} {self.kind} {self.text}" + (f" ({self.detail})" if self.detail else "")

    def to_json(self) -> Dict[str, str]:
        return {"op": self.op, "kind": self.kind, "text": self.text, "detail": self.detail, "line": self.line()}


@dataclass
class NewAttachment:
    """An attachment to create: what the file wants and where it goes."""

    want: WantAttachment
    target: Target
    port: str
    mtu: Optional[int]
    datapath: str
    #: OVN networks only: the logical switch port bound to this interface, and
    #: its MAC (the file's, else derived from the address: port security needs one).
    iface_id: str = ""
    mac: Optional[str] = None
    chassis: str = ""  # this host's OVN system-id

    @property
    def ovn_network(self) -> str:
        """The OVN network ("" for a bridge network)."""
        return self.want.network if self.iface_id else ""

    def request(self) -> AttachRequest:
        s = self.want.spec
        return AttachRequest(bridge=self.want.bridge, target_spec=s.container, addresses=(self.want.address,),
                             ifname=s.ifname, mac=s.mac or self.mac, mtu=self.mtu, vlan=s.vlan,
                             network=self.ovn_network or None, iface_id=self.iface_id or None)


@dataclass
class ApplyPlan:
    """What apply will do on this host (computed without changing anything)."""

    fabric: Fabric
    part: HostPart
    prune: bool
    changes: List[Change] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)
    kept: List[str] = field(default_factory=list)
    # -- what execute() needs --
    uplinks: List[Tuple[str, str]] = field(default_factory=list)
    del_attachments: List[Attachment] = field(default_factory=list)
    del_tunnels: List[OwnedPort] = field(default_factory=list)
    add_tunnels: List[Tuple[WantTunnel, str, str]] = field(default_factory=list)  # (want, port, datapath)
    add_attachments: List[NewAttachment] = field(default_factory=list)
    retag: Dict[str, Dict[str, str]] = field(default_factory=dict)
    del_bridges: List[str] = field(default_factory=list)
    #: The OVN northbound remote, when this host's part has OVN attachments.
    ovn_nb: Optional[str] = None

    @property
    def empty(self) -> bool:
        return not self.changes

    def to_json(self) -> Dict[str, Any]:
        return {"fabric": self.fabric.name, "file": self.fabric.path, "host": self.part.host.name,
                "prune": self.prune, "changes": [c.to_json() for c in self.changes],
                "kept": self.kept, "notes": self.notes}


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


def fabric_ids(fabric: Fabric, network: str) -> Dict[str, str]:
    """The tags that make an object this fabric's."""
    return {KEY_FABRIC: fabric.name, KEY_FABRIC_NETWORK: network}


def _addr_text(want: WantAttachment) -> str:
    return want.address.interface.with_prefixlen + (f" via {want.address.gateway}" if want.address.gateway else "")


def _att_text(name: str, ifname: str, addresses: str, bridge: str) -> str:
    return f"{name} {ifname} {addresses} → {bridge}"


# ---------------------------------------------------------------------------
# 2. plan
# ---------------------------------------------------------------------------
def make_plan(fabric: Fabric, host: str, backend: Backend, prune: bool = False) -> ApplyPlan:
    """Compare this host's part of the fabric with what exists; change nothing."""
    from ovsfab.ops.tunnel import ROLE_TUNNEL, KEY_KEY, KEY_REMOTE, overhead, tunnel_port_name  # noqa: PLC0415
    from ovsfab.ops.uplink import find_uplink  # noqa: PLC0415
    from ovsfab.plumbing import containers  # noqa: PLC0415
    from ovsfab.plumbing.links import L3Handle  # noqa: PLC0415

    part = host_part(fabric, host)
    plan = ApplyPlan(fabric, part, prune)
    my_bridges = set(part.bridges)
    nl = L3Handle()
    try:
        host_links = set(nl.link_table())

        # -- datapaths of this host's bridges (existing, or what a new one gets)
        datapaths: Dict[str, str] = {}
        ovn = _ovn_local(fabric, part, backend, nl)
        for net in part.networks:
            if net.mode == "ovn":
                datapaths[net.bridge] = ovn.datapath if ovn is not None else "netdev"
                continue  # br-int is ovn-controller's: never created or pruned here
            dp = backend.bridge_datapath(net.bridge)
            if dp is None:
                dp, note = backend.new_bridge_datapath(net.bridge, "auto")
                if note and note not in plan.notes:
                    plan.notes.append(note)
                plan.changes.append(Change("+", "bridge", net.bridge, f"network {net.name}, datapath {dp}"))
            datapaths[net.bridge] = dp

        # -- uplinks: uplink-mode networks, and the vxlan underlay on netdev
        planned_nics: Set[str] = set()
        for bridge, nic in part.uplinks:
            rec = find_uplink(backend, nic)
            if rec is not None and rec.bridge != bridge:
                raise Conflict(f"{nic} is already the uplink of bridge {rec.bridge}, but network "
                               f"{part.network_of_bridge(bridge).name} needs it on {bridge}",  # type: ignore[union-attr]
                               f"run `ovsfab uplink del {rec.bridge} {nic}` first")
            planned_nics.add(nic)
            if rec is None:
                plan.uplinks.append((bridge, nic))
                plan.changes.append(Change("+", "uplink", f"{nic} → {bridge}"))
        nic = part.host.uplink
        if part.tunnels and nic and nic not in planned_nics and any(
                datapaths[t.bridge] == "netdev" for t in part.tunnels) and find_uplink(backend, nic) is None:
            # The userspace datapath routes encapsulated packets only through
            # OVS bridges: the underlay NIC goes onto br-<nic>, as `tunnel
            # add`'s error message suggests.
            from ovsfab.ops.tunnel import underlay_bridge_name  # noqa: PLC0415

            plan.uplinks.append((underlay_bridge_name(nic), nic))
            plan.changes.append(Change("+", "uplink", f"{nic} → {underlay_bridge_name(nic)}",
                                       "underlay of the vxlan mesh on the userspace datapath"))

        # -- tunnels: the full mesh ------------------------------------------
        existing_tunnels = backend.owned_ports(ROLE_TUNNEL)
        by_ident: Dict[Tuple[str, str, int], OwnedPort] = {}
        for rec in existing_tunnels:
            key = rec.external_ids.get(KEY_KEY, "0")
            remote = rec.external_ids.get(KEY_REMOTE, rec.options.get("remote_ip", ""))
            if rec.iface_type == "vxlan" or rec.external_ids.get("ovsfab-tunnel-type") == "vxlan":
                by_ident[(rec.bridge, remote, int(key) if key.isdigit() else 0)] = rec
        wanted_idents = set()
        added_by_bridge_remote: Dict[Tuple[str, str], WantTunnel] = {}
        for t in part.tunnels:
            ident = (t.bridge, t.remote, t.key)
            wanted_idents.add(ident)
            rec = by_ident.get(ident)
            if rec is not None:
                if rec.external_ids.get(KEY_FABRIC) != fabric.name:
                    plan.retag[rec.port] = fabric_ids(fabric, t.network)
                    plan.changes.append(Change("~", "tunnel", f"{t.bridge} → {t.remote_host} {t.remote} key {t.key}",
                                               f"adopted into fabric {fabric.name}"))
                continue
            port = tunnel_port_name(t.bridge, t.remote, "vxlan", t.key)
            owner = backend.port_exists(port)
            if owner is not None:
                raise Conflict(f"OVS already has a port named {port}" + (f" on {owner}" if owner else ""),
                               f"remove it (ovs-vsctl del-port {port})")
            plan.add_tunnels.append((t, port, datapaths[t.bridge]))
            added_by_bridge_remote[(t.bridge, t.remote)] = t
        for rec in existing_tunnels:
            if rec.external_ids.get(KEY_FABRIC) != fabric.name:
                continue  # not ours: never touched
            key = rec.external_ids.get(KEY_KEY, "0")
            remote = rec.external_ids.get(KEY_REMOTE, rec.options.get("remote_ip", ""))
            ident = (rec.bridge, remote, int(key) if key.isdigit() else 0)
            if ident in wanted_idents:
                continue
            text = f"{rec.bridge} → {remote} key {ident[2]}"
            if rec.bridge in my_bridges or prune:
                plan.del_tunnels.append(rec)
                repl = added_by_bridge_remote.pop((rec.bridge, remote), None)
                if repl is not None:
                    plan.changes.append(Change("~", "tunnel", f"{rec.bridge} → {repl.remote_host} {remote} "
                                               f"key {repl.key}", f"was key {ident[2]}"))
                else:
                    plan.changes.append(Change("-", "tunnel", text))
            else:
                plan.kept.append(f"tunnel {text} (not in the file; --prune removes it)")
        for t in added_by_bridge_remote.values():
            plan.changes.append(Change("+", "tunnel", f"{t.bridge} → {t.remote_host} {t.remote} key {t.key}"))

        # -- attachments -----------------------------------------------------
        records = [a for a in backend.list_attachments() if is_attachment(a)]
        by_key = {(a.container_key, a.ifname): a for a in records}
        underlay_mtu = _underlay_mtu(nl, part.host.underlay, part.host.uplink)
        import ipaddress  # noqa: PLC0415

        v6 = ipaddress.ip_address(part.host.underlay).version == 6
        matched: Set[str] = set()
        dead_ports: Set[str] = set()
        all_ports = backend.port_names()  # one pass, not one table scan per attachment
        if ovn is not None:
            plan.ovn_nb = ovn.nb
            for name in ovn.missing_switches:
                net = fabric.networks[name]
                plan.changes.append(Change("+", "network", f"{name} {net.subnet}", "OVN logical switch"))
        for want in part.attachments:
            spec = want.spec
            net = fabric.networks[spec.network]
            target = containers.resolve(spec.container)
            port = host_ifname(target.key, spec.ifname)
            if net.mode == "ovn":
                assert ovn is not None  # _ovn_local made it: this host has OVN attachments
                new = ovn.new_attachment(want, target, port, net.mtu)
            else:
                mtu = net.mtu if net.mtu is not None else (
                    underlay_mtu - overhead("vxlan", v6) if not net.l2 else None)
                new = NewAttachment(want, target, port, mtu, datapaths[want.bridge])
            text = _att_text(target.name, spec.ifname, _addr_text(want), _where(new))
            rec = by_key.get((target.key, spec.ifname))
            if rec is None:
                owner = backend.port_exists(port) if all_ports is None or port in all_ports else None
                if owner is not None:
                    raise Conflict(f"OVS port {port} exists but is not recorded for {target.name}",
                                   f"remove it: ovs-vsctl del-port {port}")
                plan.add_attachments.append(new)
                plan.changes.append(Change("+", "attach", text))
                continue
            matched.add(rec.port)
            diffs = _differences(rec, new)
            healthy = rec.port in host_links and rec.ofport is not None and rec.ofport >= 0 and (
                not new.iface_id or ovn is None or new.iface_id in ovn.lports)
            if diffs or not healthy:
                plan.del_attachments.append(rec)
                dead_ports.add(rec.port)
                plan.add_attachments.append(new)
                plan.changes.append(Change("~", "attach", text, "was " + "; ".join(diffs) if diffs
                                           else "link or logical port missing: re-created"))
            elif rec.external_ids.get(KEY_FABRIC) != fabric.name \
                    or rec.external_ids.get(KEY_FABRIC_NETWORK) != spec.network:
                plan.retag[rec.port] = fabric_ids(fabric, spec.network)
                plan.changes.append(Change("~", "attach", text, f"adopted into fabric {fabric.name}"))
        for rec in records:
            if rec.port in matched or rec.external_ids.get(KEY_FABRIC) != fabric.name:
                continue
            network = rec.external_ids.get(KEY_FABRIC_NETWORK, "")
            text = _att_text(rec.container_name, rec.ifname, ",".join(str(a) for a in rec.addresses), rec.bridge)
            named = named_anywhere(fabric, network, rec.target, rec.ifname) or \
                named_anywhere(fabric, network, rec.container_name, rec.ifname)
            if named is not None and named.host != host:
                plan.del_attachments.append(rec)
                plan.changes.append(Change("-", "attach", text, f"moved to {named.host}"))
            elif named is not None or prune:
                # Named for this host under another identity (e.g. a re-created
                # Docker container has a new ID), or gone from the file (prune).
                plan.del_attachments.append(rec)
                plan.changes.append(Change("-", "attach", text, "replaced" if named is not None else "pruned"))
            else:
                plan.kept.append(f"attach {text} (not in the file; --prune removes it)")

        if plan.ovn_nb is None and any(a.iface_id for a in plan.del_attachments):
            # Removing OVN attachments (pruned, moved) from a host whose part
            # has no OVN attachment left: their logical ports go too.
            plan.ovn_nb = _joined(backend, "removing OVN attachments")[0]

        # -- bridges left empty (prune) --------------------------------------
        if prune:
            removed = {a.port for a in plan.del_attachments} | {t.port for t in plan.del_tunnels}
            candidates = {a.bridge for a in plan.del_attachments} | {t.bridge for t in plan.del_tunnels}
            for bridge in sorted(candidates - my_bridges):
                if backend.bridge_external_ids(bridge).get(OWNER_KEY) != OWNER_VALUE:
                    continue
                others = [p for p in backend.bridge_ports(bridge) if p != bridge and p not in removed]
                if not others:
                    plan.del_bridges.append(bridge)
                    plan.changes.append(Change("-", "bridge", bridge))
    finally:
        nl.close()
    return plan


def _where(new: NewAttachment) -> str:
    """Where an attachment goes, for the plan's lines: the bridge, or ``ovn:NETWORK``."""
    return f"ovn:{new.ovn_network}" if new.iface_id else new.want.bridge


@dataclass
class _OvnLocal:
    """This host's OVN side, read while planning: join settings, br-int, the NB's ports."""

    nb: str
    system_id: str
    datapath: str
    mtu: int
    lports: Set[str]
    missing_switches: List[str]

    def new_attachment(self, want: WantAttachment, target: Target, port: str,
                       mtu: Optional[int]) -> NewAttachment:
        """An OVN attachment: br-int, the network's MTU (else the tunnel's), a logical port and its MAC."""
        from ovsfab.ovn.network import default_mac, iface_id_for  # noqa: PLC0415

        iface_id = iface_id_for(want.network, self.system_id, port)
        return NewAttachment(want, target, port, mtu or self.mtu, self.datapath, iface_id=iface_id,
                             mac=want.spec.mac or default_mac(iface_id, (want.address,)), chassis=self.system_id)


def _ovn_local(fabric: Fabric, part: HostPart, backend: Backend, nl: Any) -> Optional[_OvnLocal]:
    """The OVN facts a plan needs, or None when this host has no OVN attachments.

    Refuses (before anything changes) a host that has not joined, or whose
    ovn-controller has not made br-int yet.
    """
    ovn_nets = sorted({w.network for w in part.attachments if fabric.networks[w.network].mode == "ovn"})
    if not ovn_nets:
        return None
    import ipaddress  # noqa: PLC0415

    from ovsfab.ovn.control import INTEGRATION_BRIDGE  # noqa: PLC0415
    from ovsfab.ovn.network import find_switch, nb_session, tunnel_mtu  # noqa: PLC0415

    nb, settings = _joined(backend, f"network {ovn_nets[0]} is mode ovn")
    datapath = backend.bridge_datapath(INTEGRATION_BRIDGE)
    if datapath is None:
        raise Unavailable(f"{INTEGRATION_BRIDGE} does not exist: ovn-controller has not created it",
                          "check ovsfab ovn status (ovsfab ovn join starts ovn-controller), then apply again")
    encap = settings.get("ovn-encap-type", "geneve")
    encap_ip = settings.get("ovn-encap-ip") or part.host.underlay
    v6 = ipaddress.ip_address(encap_ip).version == 6
    # A network's own mtu in the file wins over this (see new_attachment).
    mtu = tunnel_mtu(_underlay_mtu(nl, encap_ip, None), encap.split(",")[0], v6)
    nbs = nb_session(nb)
    try:
        lports = {lsp.name for ls in nbs.rows("Logical_Switch") for lsp in ls.ports}
        missing = [n for n in ovn_nets if find_switch(nbs, n) is None]
    finally:
        nbs.close()
    return _OvnLocal(nb, settings["system-id"], datapath, mtu, lports, missing)


def _joined(backend: Backend, why: str) -> Tuple[str, Dict[str, str]]:
    """This host's northbound remote and OVN join settings (see :func:`ovsfab.ovn.network.joined`)."""
    from ovsfab.ovn.control import KEY_NB  # noqa: PLC0415
    from ovsfab.ovn.network import joined  # noqa: PLC0415

    remote = getattr(backend, "remote", None)
    if remote is None:
        raise InvalidInput(f"OVN networks need the OVS backend ({why})", "run ovsfab --backend ovs apply FILE")
    settings = joined(remote, why)
    return settings[KEY_NB], settings


def _underlay_mtu(nl: Any, underlay: str, uplink: Optional[str]) -> int:
    """The underlay MTU: the uplink NIC's, else that of the link holding the underlay address, else 1500."""
    names = [uplink] if uplink else []
    holder = nl.address_owners().get(underlay)
    if holder:
        names.append(holder)
    for name in names:
        info = nl.link(name)
        if info is not None and isinstance(info.get("mtu"), int):
            return int(info["mtu"])
    return 1500


def _differences(rec: Attachment, new: NewAttachment) -> List[str]:
    """How a recorded attachment differs from the wanted one (empty: the same)."""
    from ovsfab.ops.attach import differences  # noqa: PLC0415

    diffs = differences(rec, new.request())
    if (rec.iface_id or "") != new.iface_id:
        diffs.append(f"logical port {rec.iface_id or 'none'}")
    return diffs


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
            failed = [(p, applied.get(p.port, (None, "not added"))[1]) for p in ports
                      if applied.get(p.port, (None, "not added"))[1]]
            if failed:
                p, err = failed[0]
                raise OperationFailed(f"ovs-vswitchd could not add {p.port} to {p.bridge}: {err}"
                                      + (f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""),
                                      "see ovs-vswitchd.log; nothing was changed")
            for new, att in prepared:
                att.ofport = applied[new.port][0]
            timings["commit_s"] = round(time.monotonic() - t_commit, 4)
            if progress is not None and total:
                progress(total, total)

            # 8. announce (best effort, after the ports exist so neighbours hear it)
            def announce() -> None:
                from ovsfab.plumbing.links import announce_in  # noqa: PLC0415
                from ovsfab.plumbing.netns import Namespace  # noqa: PLC0415

                import concurrent.futures  # noqa: PLC0415

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
                with concurrent.futures.ThreadPoolExecutor(max_workers=ANNOUNCE_WORKERS) as pool:
                    list(pool.map(lambda pa: one(*pa), prepared))

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

    t0 = time.monotonic()
    fabric = load_fabric(path)          # file errors: before anything is touched
    host_part(fabric, host)             # unknown --host: likewise
    require_root()
    backend = backend_factory()
    try:
        plan = make_plan(fabric, host, backend, prune)
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
