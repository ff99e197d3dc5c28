"""The CNI operations on an OVN network: ``cni.ovn_add`` and ``cni.ovn_del``.

A configuration with ``"network": NAME`` puts the container on the OVN
logical switch NAME instead of a bridge: :func:`ovsfab.ops.ovn_network.attach_network`
(what ``ovsfab attach --network`` runs) creates the logical switch port with
the container's MAC and IPAM's addresses, and plugs the veth into ``br-int``
with ``external_ids:iface-id`` naming that port; ovn-controller binds it.  The
MTU, when the configuration gives none, is the underlay's minus the Geneve
(or VXLAN) overhead.  The host must have joined an OVN central (``ovsfab ovn
join``).  DEL removes the logical port, the OVS port and the veth; nothing
there is success.

``"ipam": {"type": "ovn", "subnet": ..., "gateway": ..., "routes": [...]}``
(``dynamic``): OVN's own IPAM.  The logical port is created first with
``MAC dynamic`` (``dynamic`` when the configuration gives no MAC: northd
picks it too), on a switch that has ``other_config:subnet`` (the
configuration's ``subnet`` when the switch has none); ovn-northd fills
``dynamic_addresses``, ADD waits for that (at most :data:`ASSIGN_WAIT`),
pins ``port_security`` to it and configures the veth with it.  The address
goes back to the runtime in the result's ``ips``.  DEL removes the logical
port, and northd frees its address.

As for a bridge, the target is ``cni:CONTAINERID`` (names derive from it, so
DEL needs only the container ID), the attachment is one-shot
(``ovsfab-persist=false``) and carries ``ovsfab-cni-network``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from ovsfab.model import host_ifname, parse_mtu, parse_name
from ovsfab.ops.cni import (KEY_CNI_NETWORK, CniAddResult, add_routes, addresses_of, host_mac, in_ovs_netns,
                            netns_target, other_routes, parse_route, target_spec)
from ovsfab.ops.context import Context
from ovsfab.ops.plan import Plan

#: How long ADD waits for ovn-controller to bind the logical port (then it says so in the result's notes).
BIND_WAIT = 10.0
#: How long ADD waits for ovn-northd to fill a dynamic port's ``dynamic_addresses`` (then it fails, undone).
ASSIGN_WAIT = 10.0


@dataclass
class CniOvnAddResult(CniAddResult):
    """cni.add's result plus, for OVN's dynamic addresses, the IPAM-shaped result (``ips``, ``routes``)."""

    ipam: Optional[Dict[str, Any]] = None

    def to_json(self) -> Dict[str, Any]:
        out = super().to_json()
        if self.ipam is not None:
            out["ipam"] = self.ipam
        return out


def cni_ovn_add(p: Dict[str, Any], ctx: Context) -> CniAddResult:
    """Plug CNI_NETNS's ``ifname`` into OVN network ``network``: logical port, br-int port, routes, record."""
    from ovsfab.backends.ovs.backend import OvsBackend  # noqa: PLC0415
    from ovsfab.ops.ovn_network import attach_network  # noqa: PLC0415
    from ovsfab.ovn.network import parse_network  # noqa: PLC0415

    network = parse_network(p["network"])
    spec = target_spec(p["container_id"])
    ifname = parse_name(p["ifname"], "interface name")
    dynamic = bool(p.get("dynamic"))
    addresses = [] if dynamic else [str(a) for a in addresses_of(p)]
    routes = [] if dynamic else other_routes(p)
    mtu = parse_mtu(p["mtu"]) if p.get("mtu") is not None else None
    mac = p.get("mac")
    ipam: Optional[Dict[str, Any]] = None
    with in_ovs_netns(p.get("ovs_netns")):
        target = netns_target(p["container_id"], p["netns"], p.get("name"))
        with Plan("cni.ovn_add", ctx.fault) as plan:
            made: Dict[str, Any] = {}
            if dynamic:
                dyn: Dict[str, Any] = {}
                # Registered first: a failure half-way (northd never answers) must take the port away too.
                plan.add_undo("ovn-dynamic", lambda: _unassign(network, ctx, dyn))
                mac, address = plan.step("ovn-dynamic", lambda: _assign(network, spec, ifname, p, ctx, dyn))
                folded = _with_gateway(p.get("routes") or [], p.get("gateway"))
                addresses = [str(a) for a in addresses_of({"addresses": [address], "routes": folded})]
                routes = other_routes({"routes": folded})
                ipam = _ipam_result(address, p.get("gateway"), folded)

            def attach() -> Any:
                made["res"] = attach_network(
                    network, spec, addresses, ifname=ifname, mac=mac, mtu=mtu, persist=False,
                    wait=BIND_WAIT, ovs_remote=ctx.db, fault=ctx.fault, resolved=target)
                return made["res"]

            res = plan.step("ovn-attach", attach, undo=lambda: _unattach(network, spec, ifname, ctx, made["res"]))
            if routes:
                plan.step("routes", lambda: add_routes(target.netns_path, ifname, routes))

            def record() -> None:
                backend = OvsBackend(ctx.db)
                try:
                    backend.set_port_extras(res.attachment.port, external_ids={
                        KEY_CNI_NETWORK: p.get("network_name") or network})
                finally:
                    backend.close()

            plan.step("extras", record)
            mac = host_mac(res.attachment.port)  # type: ignore[attr-defined]
    notes = list(res.notes) + ([] if res.bound else [f"logical port {res.iface_id} not bound within {BIND_WAIT:g} s"])
    return CniOvnAddResult(res.attachment, res.changed, mac, target.netns_path, notes,  # type: ignore[arg-type]
                           ipam=ipam)


def _assign(network: str, spec: str, ifname: str, p: Dict[str, Any], ctx: Context,
            dyn: Dict[str, Any]) -> Tuple[str, str]:
    """The dynamic logical port, made before the veth: (MAC, ``IP/PREFIX``) ovn-northd gave it.

    ``dyn`` records what was made, for :func:`_unassign`.  The port's name is
    the one attach_network derives, so attach_network finds it (same MAC and
    address: idempotent) and binds the veth to it.
    """
    from ovsfab.model import KEY_CONTAINER_ID, KEY_CONTAINER_NAME, KEY_IFNAME  # noqa: PLC0415
    from ovsfab.ovn.control import KEY_NB  # noqa: PLC0415
    from ovsfab.ovn.network import (KEY_CHASSIS, add_dynamic_lport, ensure_dynamic_switch, iface_id_for,  # noqa: PLC0415
                                    joined, nb_session, secure_lport, wait_assigned)

    settings = joined(ctx.db)
    sid = settings["system-id"]
    iface_id = iface_id_for(network, sid, host_ifname(spec, ifname))
    nbs = nb_session(settings[KEY_NB])
    dyn["nbs"] = nbs
    created_ls, subnet = ensure_dynamic_switch(nbs, network, p.get("subnet"), p.get("gateway"))
    dyn["switch"] = created_ls
    ids = {KEY_CONTAINER_ID: spec, KEY_CONTAINER_NAME: p.get("name") or p["container_id"][:12], KEY_IFNAME: ifname,
           KEY_CHASSIS: sid}
    dyn["lport"] = iface_id if add_dynamic_lport(nbs, network, iface_id, p.get("mac"), ids) else None
    mac, ip = wait_assigned(nbs, iface_id, ASSIGN_WAIT)
    secure_lport(nbs, iface_id, mac, ip)
    nbs.close()
    dyn.pop("nbs")
    return mac, f"{ip}/{ipaddress.ip_network(subnet, strict=False).prefixlen}"


def _unassign(network: str, ctx: Context, dyn: Dict[str, Any]) -> None:
    """Undo :func:`_assign`: the logical port and the switch, only if it made them."""
    from ovsfab.ovn.control import KEY_NB  # noqa: PLC0415
    from ovsfab.ovn.network import del_lport, delete_switch_if_empty, joined, nb_session  # noqa: PLC0415

    nbs = dyn.pop("nbs", None)
    if not dyn.get("lport") and not dyn.get("switch"):
        if nbs is not None:
            nbs.close()
        return
    nbs = nbs or nb_session(joined(ctx.db)[KEY_NB])
    try:
        if dyn.get("lport"):
            del_lport(nbs, dyn["lport"])
        if dyn.get("switch"):
            delete_switch_if_empty(nbs, network)
    finally:
        nbs.close()


def _with_gateway(routes: List[str], gateway: Optional[str]) -> List[str]:
    """Routes without a ``@GW`` go via the configured gateway (as for IPAM results, ops/cni_result.py)."""
    return [r if "@" in r or not gateway else f"{r}@{gateway}" for r in routes]


def _ipam_result(address: str, gateway: Optional[str], routes: List[str]) -> Dict[str, Any]:
    """northd's address in the shape of an IPAM result, for the CNI result's ``ips`` and ``routes``."""
    ip: Dict[str, str] = {"address": address}
    if gateway:
        ip["gateway"] = gateway
    out: Dict[str, Any] = {"ips": [ip]}
    if routes:
        out["routes"] = []
        for text in routes:
            dst, gw = parse_route(text)
            out["routes"].append(dict({"dst": str(dst)}, **({"gw": str(gw)} if gw is not None else {})))
    return out


def _unattach(network: str, spec: str, ifname: str, ctx: Context, res: Any) -> None:
    """Undo an ADD's attach_network: the logical port, port and veth, and the switch if it made it."""
    from ovsfab.ops.ovn_network import detach_network  # noqa: PLC0415
    from ovsfab.ovn.network import delete_switch_if_empty, joined, nb_session  # noqa: PLC0415
    from ovsfab.ovn.control import KEY_NB  # noqa: PLC0415

    detach_network(network, spec, ifname, True, ovs_remote=ctx.db)
    # attach_network says so only in its notes (OvnAttachResult has no flag for it).
    if f"created OVN network {network}" in res.notes:
        nbs = nb_session(joined(ctx.db)[KEY_NB])
        try:
            delete_switch_if_empty(nbs, network)
        finally:
            nbs.close()


def cni_ovn_del(p: Dict[str, Any], ctx: Context) -> Any:
    """Remove (container, ifname) from OVN network ``network``; nothing there is success.

    With no veth there, a logical port of that name is removed all the same:
    an ADD that died after making its (dynamic) port and before plugging the
    veth would otherwise hold that address until someone removed it by hand.
    """
    from ovsfab.ops.ovn_network import detach_network  # noqa: PLC0415
    from ovsfab.ovn.control import KEY_NB  # noqa: PLC0415
    from ovsfab.ovn.network import del_lport, iface_id_for, joined, nb_session  # noqa: PLC0415

    spec = target_spec(p["container_id"])
    ifname = parse_name(p["ifname"], "interface name")
    with in_ovs_netns(p.get("ovs_netns")):
        out = detach_network(p["network"], spec, ifname, True, ovs_remote=ctx.db, fault=ctx.fault)
        if not out.changed:
            settings = joined(ctx.db)
            nbs = nb_session(settings[KEY_NB])
            try:
                del_lport(nbs, iface_id_for(p["network"], settings["system-id"], host_ifname(spec, ifname)))
            finally:
                nbs.close()
        return out
