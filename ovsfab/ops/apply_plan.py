"""``ovsfab apply``, step 2: the plan -- what this host's part of a fabric needs changed.

One OVSDB session reads what exists, targets are resolved, and the
difference becomes a list of changes (``+`` create, ``~`` change, ``-``
delete) that :func:`ovsfab.ops.apply.execute` carries out (``--dry-run``
prints it and stops).  Only objects carrying this fabric's tag are ever
planned for removal.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Set, Tuple

from ovsfab.backends.base import Backend, OwnedPort, is_attachment
from ovsfab.errors import Conflict, InvalidInput, Unavailable
from ovsfab.fabric.desired import HostPart, WantAttachment, WantTunnel, host_part, named_anywhere
from ovsfab.fabric.spec import Fabric
from ovsfab.model import (KEY_FABRIC, KEY_FABRIC_NETWORK, OWNER_KEY, OWNER_VALUE, Attachment, AttachRequest, Target,
                          host_ifname, parse_target_spec)

LOG = logging.getLogger(__name__)





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


def fabric_ids(fabric: Fabric, network: str) -> Dict[str, str]:
    """The tags that make an object this fabric's."""
    return {KEY_FABRIC: fabric.name, KEY_FABRIC_NETWORK: network}


def _addr_text(want: WantAttachment) -> str:
    return want.address.interface.with_prefixlen + (f" via {want.address.gateway}" if want.address.gateway else "")


def _att_text(name: str, ifname: str, addresses: str, bridge: str) -> str:
    return f"{name} {ifname} {addresses} → {bridge}"


#: Docker lookups in flight at once while planning: one inspect per container,
#: and dockerd answers several at a time (netns: and pid: targets are a stat).
RESOLVE_WORKERS = 8


def _resolve_all(specs: List[str], containers: Any) -> Dict[str, Target]:
    """Every target of the file, by spec; the first failure in file order is raised, as one by one."""
    from ovsfab.ops.batch import map_parallel  # noqa: PLC0415

    unique = list(dict.fromkeys(specs))
    docker = sum(1 for s in unique if parse_target_spec(s)[0] == "docker")
    found = map_parallel(containers.resolve, unique, RESOLVE_WORKERS if docker > 1 else 1, "ovsfab-resolve")
    return dict(zip(unique, found))


def make_plan(fabric: Fabric, host: str, backend: Backend, prune: bool = False,
              part: Optional[HostPart] = None) -> ApplyPlan:
    """Compare this host's part of the fabric with what exists; change nothing.

    ``part``: ``host_part(fabric, host)`` if the caller has it already (it
    walks every attachment of the file).
    """
    from ovsfab.ops.tunnel import ROLE_TUNNEL, KEY_KEY, KEY_REMOTE, overhead, tunnel_port_name  # noqa: PLC0415
    from ovsfab.ops.uplink import find_uplink  # noqa: PLC0415
    from ovsfab.plumbing import containers  # noqa: PLC0415
    from ovsfab.plumbing.links import L3Handle  # noqa: PLC0415

    part = part if part is not None else host_part(fabric, host)
    plan = ApplyPlan(fabric, part, prune)
    my_bridges = set(part.bridges)
    nl = L3Handle()
    try:
        link_table = nl.link_table()
        host_links = set(link_table)

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
        targets = _resolve_all([want.spec.container for want in part.attachments], containers)
        for want in part.attachments:
            spec = want.spec
            net = fabric.networks[spec.network]
            target = targets[spec.container]
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
            # A veth whose peer's namespace has no id here lives in a dying
            # namespace (a restarted container's old one, not yet reaped):
            # not healthy, whatever OVSDB says (reconcile's rule too).
            peer_nsid = link_table.get(rec.port, {}).get("peer_netnsid")
            healthy = rec.port in host_links and rec.ofport is not None and rec.ofport >= 0 and (
                isinstance(peer_nsid, int) and peer_nsid >= 0) and (
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
