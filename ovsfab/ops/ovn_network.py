"""Attach a container to an OVN network, and detach it: the operations.

An OVN network is a logical switch in the northbound database (access in
:mod:`ovsfab.ovn.network`).  Attaching a container creates a logical switch
port carrying the container's MAC and addresses, then runs the ordinary
attach into ``br-int`` with ``external_ids:iface-id`` naming that port:
ovn-controller binds it and builds the flows and tunnels.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

from ovsfab.errors import Conflict, NotFound
from ovsfab.model import (KEY_CONTAINER_ID, KEY_CONTAINER_NAME, KEY_IFACE_ID, KEY_IFNAME, AttachRequest, host_ifname,
                          parse_name)
from ovsfab.ops.plan import Plan
from ovsfab.ovn.control import INTEGRATION_BRIDGE, KEY_NB
from ovsfab.ovn.network import (KEY_CHASSIS, KEY_NETWORK, add_lport, default_mac, del_lport,
                                delete_switch_if_empty, ensure_switch, iface_id_for, joined, nb_session,
                                parse_network, restore_lports, tunnel_mtu, underlay_mtu, wait_up)

LOG = logging.getLogger(__name__)

ATTACH_STEPS = ("ovn-local", "ovn-resolve", "ovn-switch", "ovn-lport", "ovn-plug", "ovn-bound")


DETACH_STEPS = ("ovn-find", "ovn-lport-del")


# -- attach / detach -------------------------------------------------------------
@dataclass
class OvnAttachResult:
    """What ``attach --network`` did."""

    network: str
    iface_id: str
    attachment: object            # ovsfab.model.Attachment
    changed: bool
    bound: bool
    seconds_to_bound: Optional[float]
    notes: List[str] = field(default_factory=list)

    def to_json(self) -> dict:
        """JSON-ready dict: the attachment's fields plus the OVN ones."""
        out = {"action": "attach", "changed": self.changed, "datapath": "ovn"}
        out.update(self.attachment.to_json())  # type: ignore[attr-defined]
        out.update({"network": self.network, "iface_id": self.iface_id, "bound": self.bound,
                    "bound_s": None if self.seconds_to_bound is None else round(self.seconds_to_bound, 3),
                    "notes": self.notes})
        return out


def attach_network(network: str, target_spec: str, addresses: Sequence[str], ifname: str = "eth1",
                   mac: Optional[str] = None, mtu: Optional[int] = None, persist: bool = True,
                   wait: float = 10.0, ovs_remote: Optional[str] = None,
                   subnet: Optional[str] = None, fault: Optional[str] = None,
                   resolved: Optional[object] = None) -> OvnAttachResult:
    """Attach a container to an OVN network; idempotent; nothing left behind on failure.

    ``resolved``: the target (:class:`~ovsfab.model.Target`), already resolved by
    the caller (the CNI plugin: a ``cni:`` target is CNI_NETNS, not a lookup).
    """
    from ovsfab.backends.ovs.backend import OvsBackend  # noqa: PLC0415
    from ovsfab.ops.attach import attach, require_root  # noqa: PLC0415
    from ovsfab.plumbing import containers  # noqa: PLC0415

    parse_network(network)
    # Everything validated before anything is touched.
    probe = AttachRequest.parse(INTEGRATION_BRIDGE, target_spec, addresses, ifname=ifname, mac=mac, mtu=mtu,
                                persist=persist)
    require_root()
    notes: List[str] = []
    with Plan("ovn-attach", fault) as plan:
        settings = plan.step("ovn-local", lambda: joined(ovs_remote))
        sid = settings["system-id"]
        if probe.mtu is None:
            encap = settings.get("ovn-encap-type", "geneve")
            encap_ip = settings.get("ovn-encap-ip", "")
            base = underlay_mtu(encap_ip) if encap_ip else None
            if base is not None:
                v6 = ipaddress.ip_address(encap_ip).version == 6
                probe.mtu = tunnel_mtu(base, encap, v6)
                notes.append(f"OVN {encap} over a {base}-byte underlay: MTU {probe.mtu}")
        target = plan.step("ovn-resolve", lambda: resolved or containers.resolve(target_spec))
        port = host_ifname(target.key, ifname)
        iface_id = iface_id_for(network, sid, port)
        probe.mac = probe.mac or default_mac(iface_id, probe.addresses)
        probe.network = network
        probe.iface_id = iface_id
        nbs = nb_session(settings[KEY_NB])
        plan.add_undo("close NB", nbs.close)
        # Undo removes only what this call created (known once the step ran).
        made = {"switch": False, "lport": False}

        def switch() -> bool:
            made["switch"] = ensure_switch(nbs, network, subnet)
            return made["switch"]

        plan.step("ovn-switch", switch,
                  undo=lambda: delete_switch_if_empty(nbs, network) if made["switch"] else None)
        ids = {KEY_CONTAINER_ID: target.key, KEY_CONTAINER_NAME: target.name, KEY_IFNAME: ifname,
               KEY_CHASSIS: sid}

        def lport() -> bool:
            made["lport"] = add_lport(nbs, network, iface_id, probe.mac, probe.addresses, ids)
            return made["lport"]

        plan.step("ovn-lport", lport, undo=lambda: del_lport(nbs, iface_id) if made["lport"] else None)
        created_ls, created_lsp = made["switch"], made["lport"]
        t_plug = time.monotonic()
        factory = lambda: OvsBackend(ovs_remote)  # noqa: E731
        plugged: Dict[str, bool] = {}

        def plug():  # noqa: ANN202 - ops.attach.AttachResult
            # attach() undoes its own steps; once it returned, a later failure
            # here must take the veth and port away again (if it made them).
            out = attach(probe, factory, resolved=target)
            plugged["changed"] = out.changed
            return out

        def unplug() -> None:
            if plugged.get("changed"):
                from ovsfab.ops.detach import detach  # noqa: PLC0415

                detach(INTEGRATION_BRIDGE, target_spec, ifname, True, factory, network=network)

        res = plan.step("ovn-plug", plug, undo=unplug)
        notes.extend(res.notes)
        bound = plan.step("ovn-bound", lambda: wait_up(nbs, iface_id, wait) if wait > 0 else False)
        seconds = time.monotonic() - t_plug if bound else None
        if wait > 0 and not bound:
            notes.append(f"logical port {iface_id} is not bound yet: is ovn-controller running? "
                         "(ovsfab ovn status)")
        nbs.close()
    if created_ls:
        notes.append(f"created OVN network {network}")
    return OvnAttachResult(network=network, iface_id=iface_id, attachment=res.attachment,
                           changed=res.changed or created_lsp or created_ls, bound=bound,
                           seconds_to_bound=seconds, notes=notes)


@dataclass
class OvnDetachResult:
    """What ``detach --network`` did."""

    network: str
    iface_id: Optional[str]
    attachment: object
    changed: bool

    def to_json(self) -> dict:
        """JSON-ready dict."""
        out: dict = {"action": "detach", "changed": self.changed}
        if self.attachment is not None:
            out.update(self.attachment.to_json())  # type: ignore[attr-defined]
        out.update({"network": self.network, "iface_id": self.iface_id})
        return out


def detach_network(network: str, target_spec: str, ifname: str = "eth1", if_exists: bool = False,
                   ovs_remote: Optional[str] = None, fault: Optional[str] = None) -> OvnDetachResult:
    """Remove a container's port from an OVN network: logical port, OVS port, veth."""
    from ovsfab.backends.ovs.backend import OvsBackend  # noqa: PLC0415
    from ovsfab.ops.attach import require_root  # noqa: PLC0415
    from ovsfab.ops.detach import _find, detach  # noqa: PLC0415

    parse_network(network)
    parse_name(ifname, "interface name")
    require_root()
    factory = lambda: OvsBackend(ovs_remote)  # noqa: E731
    with Plan("ovn-detach", fault) as plan:
        settings = joined(ovs_remote)

        def find():  # noqa: ANN202
            backend = factory()
            try:
                att = _find(backend, INTEGRATION_BRIDGE, target_spec, ifname)
            finally:
                backend.close()
            if att is not None and att.external_ids.get(KEY_NETWORK) != network:
                raise Conflict(f"{target_spec} {ifname} is attached to OVN network "
                               f"{att.external_ids.get(KEY_NETWORK) or '(none)'}, not {network}",
                               "give the right --network")
            return att

        att = plan.step("ovn-find", find)
        if att is None:
            if if_exists:
                return OvnDetachResult(network, None, None, changed=False)
            raise NotFound(f"{target_spec} has no {ifname} on OVN network {network}",
                           "check ovsfab ovn status, or pass --if-exists")
        iface_id = att.external_ids.get(KEY_IFACE_ID, "")
        nbs = nb_session(settings[KEY_NB])
        plan.add_undo("close NB", nbs.close)
        removed: Dict[str, object] = {}

        def lport_del() -> None:
            removed.update(del_lport(nbs, iface_id) or {})

        plan.step("ovn-lport-del", lport_del,
                  undo=lambda: restore_lports(nbs, {iface_id: removed}) if removed else None)
        detach(INTEGRATION_BRIDGE, target_spec, ifname, True, factory, network=network)
        nbs.close()
    return OvnDetachResult(network, iface_id, att, changed=True)
