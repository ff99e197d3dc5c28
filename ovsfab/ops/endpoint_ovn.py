"""The Docker driver on an OVN network: ``docker network create -d ovsfab -o network=NAME``.

An OVN network is a logical switch in the northbound database
(:mod:`ovsfab.ovn.network`).  A Docker endpoint on it is what ``ovsfab
attach --network`` makes for a container: a logical switch port carrying
the endpoint's MAC and address, and the veth's host end plugged into
``br-int`` with ``external_ids:iface-id`` naming that port, so ovn-controller
binds it and builds the flows and Geneve tunnels.  The containers' MTU is
the tunnel-aware one (Geneve's 58 bytes off the underlay's).

Addresses: Docker asks its IPAM for an endpoint's address *before* the
endpoint exists, and refuses a CreateEndpoint answer that changes it; so the
endpoint's logical port carries the address Docker's IPAM handed out
statically (``MAC IP``), and OVN's port security and ARP responder know it.
With ``--ipam-opt network=NAME`` that address is OVN's dynamic one: ovsfab's
IPAM made a pending logical port with ``dynamic`` addresses at RequestAddress
(ops/endpoint_ipam.py) and returned what ovn-northd assigned; CreateEndpoint
replaces that pending port by the endpoint's, in one NB transaction, so the
address is never free in between (:func:`add_lport`).

These helpers run inside the plans of :mod:`ovsfab.ops.endpoint`, each
change a step with its undo.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ovsfab.backends.base import Backend
from ovsfab.errors import InvalidInput, NotFound
from ovsfab.model import AddressSpec, KEY_IFACE_ID, KEY_NETWORK
from ovsfab.ops.context import Context
from ovsfab.ops.plan import Plan
from ovsfab.ovn.control import INTEGRATION_BRIDGE, KEY_NB

LOG = logging.getLogger(__name__)

#: How long endpoint.create waits for ovn-controller to bind the port (not an error when it does not).
BIND_WAIT = 10.0


def parse_options(opts: Dict[str, str]) -> Tuple[str, str]:
    """(network, bridge) of ``-o network=NAME``; InvalidInput for what an OVN network does not take."""
    from ovsfab.ovn.network import parse_network  # noqa: PLC0415

    network = parse_network(opts["network"])
    for k in ("mode", "key", "vlan"):
        if k in opts:
            raise InvalidInput(f"-o {k} does not go with -o network= (OVN makes its own Geneve tunnels)",
                               f"drop -o {k}")
    bridge = opts.get("bridge") or INTEGRATION_BRIDGE
    if bridge != INTEGRATION_BRIDGE:
        raise InvalidInput(f"an OVN network rides {INTEGRATION_BRIDGE}, not {bridge}", "drop -o bridge")
    return network, bridge


def settings(ctx: Context, network: str) -> Dict[str, str]:
    """This host's OVN join settings; refuses a host that has not joined an OVN central."""
    from ovsfab.ovn.network import joined  # noqa: PLC0415

    return joined(ctx.db, f"network {network} is an OVN network")


def mtu(join: Dict[str, str]) -> Optional[int]:
    """The tunnel-aware MTU: the underlay's (the link holding ovn-encap-ip) minus the encapsulation."""
    from ovsfab.ovn.network import tunnel_mtu, underlay_mtu  # noqa: PLC0415

    encap_ip = join.get("ovn-encap-ip", "")
    base = underlay_mtu(encap_ip) if encap_ip else None
    if base is None:
        return None
    return tunnel_mtu(base, join.get("ovn-encap-type", "geneve"), ipaddress.ip_address(encap_ip).version == 6)


def check(backend: Backend, network: str, ctx: Context) -> Tuple[Dict[str, str], Optional[int]]:
    """The host can carry the network: joined, br-int made by ovn-controller; (settings, MTU limit)."""
    join = settings(ctx, network)
    if backend.bridge_datapath(INTEGRATION_BRIDGE) is None:
        raise NotFound(f"{INTEGRATION_BRIDGE} does not exist on this host", "is ovn-controller running? "
                       "(ovsfab ovn status)")
    return join, mtu(join)


def _nb(join: Dict[str, str], stack: contextlib.ExitStack) -> Any:
    """A northbound session closed by ``stack``, which the callers exit after their plan: an undo
    still has it open."""
    from ovsfab.ovn.network import nb_session  # noqa: PLC0415

    nbs = nb_session(join[KEY_NB])
    stack.callback(nbs.close)
    return nbs


def ensure_switch(plan: Plan, stack: contextlib.ExitStack, join: Dict[str, str], network: str,
                  subnet: str) -> None:
    """The logical switch (shared by every host; made by the first), undone only if this call made it."""
    from ovsfab.ovn.network import delete_switch_if_empty, ensure_switch as ensure  # noqa: PLC0415

    nbs = _nb(join, stack)
    made = {"switch": False}

    def step() -> None:
        made["switch"] = ensure(nbs, network, subnet)

    plan.step("ovn-switch", step, undo=lambda: delete_switch_if_empty(nbs, network) if made["switch"] else None)


def delete_switch_if_empty(plan: Plan, stack: contextlib.ExitStack, ctx: Context, network: str) -> None:
    """At ``docker network rm``: the logical switch goes once no host has a port on it."""
    from ovsfab.ovn.network import delete_switch_if_empty as delete  # noqa: PLC0415

    nbs = _nb(settings(ctx, network), stack)
    plan.step("ovn-switch-del", lambda: delete(nbs, network))


def add_lport(plan: Plan, stack: contextlib.ExitStack, join: Dict[str, str], network: str, port: str, mac: str,
              addresses: Sequence[AddressSpec], ids: Dict[str, str]) -> Dict[str, str]:
    """The endpoint's logical switch port (``MAC IP``); returns the external_ids the OVS port needs.

    A pending IPAM port of this chassis holding the address (``--ipam-opt network=``) is adopted: removed
    in the same transaction.  The undo removes the endpoint's port, freeing the address, as Docker
    releases it after a failed CreateEndpoint.
    """
    from ovsfab.ovn.network import KEY_CHASSIS, add_lport as add, del_lport, iface_id_for  # noqa: PLC0415

    iface_id = iface_id_for(network, join["system-id"], port)
    nbs = _nb(join, stack)
    made = {"lport": False}

    def step() -> None:
        made["lport"] = add(nbs, network, iface_id, mac, addresses, dict(ids, **{KEY_CHASSIS: join["system-id"]}),
                            adopt_from=join["system-id"])

    plan.step("ovn-lport", step, undo=lambda: del_lport(nbs, iface_id) if made["lport"] else None)
    return {KEY_NETWORK: network, KEY_IFACE_ID: iface_id}


def wait_bound(ctx: Context, network: str, iface_id: str) -> bool:
    """Wait (at most BIND_WAIT) for ovn-controller to bind the port, so the container's first packets pass."""
    from ovsfab.ovn.network import nb_session, wait_up  # noqa: PLC0415

    nbs = nb_session(settings(ctx, network)[KEY_NB])
    try:
        return wait_up(nbs, iface_id, BIND_WAIT)
    finally:
        nbs.close()


def remove_lport(plan: Plan, stack: contextlib.ExitStack, ctx: Context, ids: Dict[str, str]) -> None:
    """The logical port of an endpoint being removed (restored if a later step fails)."""
    from ovsfab.ovn.network import del_lport, restore_lports  # noqa: PLC0415

    iface_id, network = ids.get(KEY_IFACE_ID), ids.get(KEY_NETWORK)
    if not iface_id or not network:
        return
    nbs = _nb(settings(ctx, network), stack)
    removed: Dict[str, object] = {}

    def step() -> None:
        removed.update(del_lport(nbs, iface_id) or {})

    plan.step("ovn-lport-del", step, undo=lambda: restore_lports(nbs, {iface_id: removed}) if removed else None)


def same_segment(att_ids: Dict[str, str], network: str) -> bool:
    return att_ids.get(KEY_NETWORK) == network


__all__: List[str] = ["parse_options", "check", "ensure_switch", "delete_switch_if_empty", "add_lport",
                      "wait_bound", "remove_lport", "same_segment", "INTEGRATION_BRIDGE"]
