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

As for a bridge, the target is ``cni:CONTAINERID`` (names derive from it, so
DEL needs only the container ID), the attachment is one-shot
(``ovsfab-persist=false``) and carries ``ovsfab-cni-network``.
"""

from __future__ import annotations

from typing import Any, Dict

from ovsfab.model import parse_mtu, parse_name
from ovsfab.ops.cni import (KEY_CNI_NETWORK, CniAddResult, add_routes, addresses_of, host_mac, in_ovs_netns,
                            netns_target, other_routes, target_spec)
from ovsfab.ops.context import Context
from ovsfab.ops.plan import Plan

#: How long ADD waits for ovn-controller to bind the logical port (then it says so in the result's notes).
BIND_WAIT = 10.0


def cni_ovn_add(p: Dict[str, Any], ctx: Context) -> CniAddResult:
    """Plug CNI_NETNS's ``ifname`` into OVN network ``network``: logical port, br-int port, routes, record."""
    from ovsfab.backends.ovs.backend import OvsBackend  # noqa: PLC0415
    from ovsfab.ops.ovn_network import attach_network  # noqa: PLC0415
    from ovsfab.ovn.network import parse_network  # noqa: PLC0415

    network = parse_network(p["network"])
    spec = target_spec(p["container_id"])
    ifname = parse_name(p["ifname"], "interface name")
    addresses = [str(a) for a in addresses_of(p)]
    routes = other_routes(p)
    mtu = parse_mtu(p["mtu"]) if p.get("mtu") is not None else None
    with in_ovs_netns(p.get("ovs_netns")):
        target = netns_target(p["container_id"], p["netns"], p.get("name"))
        with Plan("cni.ovn_add", ctx.fault) as plan:
            made: Dict[str, Any] = {}

            def attach() -> Any:
                made["res"] = attach_network(
                    network, spec, addresses, ifname=ifname, mac=p.get("mac"), mtu=mtu, persist=False,
                    wait=BIND_WAIT, ovs_remote=ctx.db, fault=ctx.fault, resolved=target)
                return made["res"]

            res = plan.step("ovn-attach", attach, undo=lambda: _unattach(network, spec, ifname, ctx, made["res"]))
            if routes:
                plan.step("routes", lambda: add_routes(target.netns_path, ifname, routes))

            def record() -> None:
                backend = OvsBackend(ctx.db)
                try:
                    backend.set_port_extras(res.attachment.port, external_ids={  # type: ignore[attr-defined]
                        KEY_CNI_NETWORK: p.get("network_name") or network})
                finally:
                    backend.close()

            plan.step("extras", record)
            mac = host_mac(res.attachment.port)  # type: ignore[attr-defined]
    notes = list(res.notes) + ([] if res.bound else [f"logical port {res.iface_id} not bound within {BIND_WAIT:g} s"])
    return CniAddResult(res.attachment, res.changed, mac, target.netns_path, notes)  # type: ignore[arg-type]


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
    """Remove (container, ifname) from OVN network ``network``; nothing there is success."""
    from ovsfab.ops.ovn_network import detach_network  # noqa: PLC0415

    with in_ovs_netns(p.get("ovs_netns")):
        return detach_network(p["network"], target_spec(p["container_id"]),
                              parse_name(p["ifname"], "interface name"), True, ovs_remote=ctx.db, fault=ctx.fault)
