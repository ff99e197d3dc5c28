"""``ovsfab ovn apply FILE``: the fabric file's OVN part, as one operation.

Logical switches for ``mode: ovn`` networks and ``routers:`` (NB access and
naming in :mod:`ovsfab.ovn.fabric` and :mod:`ovsfab.ovn.network`).  Only rows
with this fabric's tag are ever changed or (with ``prune``) removed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List

from ovsfab.errors import NotFound
from ovsfab.fabric.spec import Fabric, RouterSpec
from ovsfab.model import KEY_FABRIC, OWNER_KEY, OWNER_VALUE
from ovsfab.ops.plan import Plan
from ovsfab.ovn.fabric import _find_router, lrp_name, router_mac, rsp_name
from ovsfab.ovn.idl import OvnSession
from ovsfab.ovn.network import KEY_NETWORK, KEY_ROUTER, ensure_switch, find_switch, nb_session

SYNC_STEPS = ("ovn-switches", "ovn-routers")


@dataclass
class SyncResult:
    """What ``ovn apply`` changed in the northbound database."""

    nb: str
    changes: List[str] = field(default_factory=list)
    dry_run: bool = False

    @property
    def changed(self) -> bool:
        """True when something was (or, dry run, would be) changed."""
        return bool(self.changes)

    def to_json(self) -> dict:
        """JSON-ready dict."""
        return {"action": "ovn-apply", "nb": self.nb, "changes": self.changes, "changed": self.changed,
                "dry_run": self.dry_run}


def _router_changes(nbs: OvnSession, fabric: Fabric, r: RouterSpec) -> List[str]:
    out = []
    lr = _find_router(nbs, r.name)
    if lr is None:
        out.append(f"+ router {r.name}")
    have = {p.name: p for p in (lr.ports if lr is not None else [])}
    for net in r.networks:
        spec = fabric.networks[net]
        want = [f"{spec.gateway}/{spec.subnet.prefixlen}"]
        p = have.get(lrp_name(r.name, net))
        if p is None:
            out.append(f"+ router port {r.name} on {net} {want[0]}")
        elif list(p.networks) != want or p.mac != router_mac(r.name, net):
            out.append(f"~ router port {r.name} on {net} {want[0]} (was {' '.join(p.networks)})")
    return out


def sync_fabric(fabric: Fabric, nb_remote: str, dry_run: bool = False, prune: bool = False,
                timeout: float = 10.0) -> SyncResult:
    """Make the NB database hold the fabric's OVN switches and routers."""
    result = SyncResult(nb=nb_remote, dry_run=dry_run)
    ovn_nets = [n for n in fabric.networks.values() if n.mode == "ovn"]
    nbs = nb_session(nb_remote, timeout)
    try:
        for net in ovn_nets:
            if find_switch(nbs, net.name) is None:
                result.changes.append(f"+ network {net.name} {net.subnet}")
        for r in fabric.routers.values():
            result.changes.extend(_router_changes(nbs, fabric, r))
        stale = [lr for lr in nbs.rows("Logical_Router")
                 if lr.external_ids.get(OWNER_KEY) == OWNER_VALUE and lr.external_ids.get(KEY_FABRIC) == fabric.name
                 and lr.external_ids.get(KEY_ROUTER) not in fabric.routers]
        if prune:
            result.changes.extend(f"- router {lr.name}" for lr in stale)
        if dry_run or not result.changes:
            return result
        with Plan("ovn-apply") as plan:
            made: List[str] = []

            def switches() -> None:
                for net in ovn_nets:
                    if ensure_switch(nbs, net.name, str(net.subnet)):
                        made.append(net.name)

            def unmake() -> None:
                from ovsfab.ovn.network import delete_switch_if_empty  # noqa: PLC0415

                for name in made:
                    delete_switch_if_empty(nbs, name)

            plan.step("ovn-switches", switches, undo=unmake)
            # The routers in ONE transaction: all of them appear, or none.
            plan.step("ovn-routers", lambda: _apply_routers(nbs, fabric, stale if prune else []))
    finally:
        nbs.close()
    return result


def _apply_routers(nbs: OvnSession, fabric: Fabric, stale: List[object]) -> None:
    tables = nbs.idl.tables

    def build(txn):  # noqa: ANN001, ANN202
        for r in fabric.routers.values():
            ids = {OWNER_KEY: OWNER_VALUE, KEY_ROUTER: r.name, KEY_FABRIC: fabric.name}
            lr = _find_router(nbs, r.name)
            fresh = lr is None
            if fresh:
                lr = txn.insert(tables["Logical_Router"])
                lr.name = r.name
                lr.external_ids = ids
            have = {} if fresh else {p.name: p for p in lr.ports}
            new_ports = []
            for net in r.networks:
                spec = fabric.networks[net]
                want = [f"{spec.gateway}/{spec.subnet.prefixlen}"]
                mac = router_mac(r.name, net)
                p = have.get(lrp_name(r.name, net))
                if p is None:
                    p = txn.insert(tables["Logical_Router_Port"])
                    p.name = lrp_name(r.name, net)
                    p.external_ids = dict(ids, **{KEY_NETWORK: net})
                    new_ports.append(p.uuid)
                if fresh or list(p.networks) != want or p.mac != mac:
                    p.networks = want
                    p.mac = mac
                ls = find_switch(nbs, net)
                if ls is None:  # made by the step before; absent only in a race with a delete
                    raise NotFound(f"OVN network {net} vanished while adding router {r.name}",
                                   "run ovsfab ovn apply again")
                if not any(sp.name == rsp_name(r.name, net) for sp in ls.ports):
                    sp = txn.insert(tables["Logical_Switch_Port"])
                    sp.name = rsp_name(r.name, net)
                    sp.type = "router"
                    sp.addresses = ["router"]  # OVN fills in the router port's MAC and IPs
                    sp.options = {"router-port": lrp_name(r.name, net)}
                    sp.external_ids = dict(ids, **{KEY_NETWORK: net})
                    ls.addvalue("ports", sp.uuid)
            if fresh:
                lr.ports = new_ports
            else:
                for u in new_ports:
                    lr.addvalue("ports", u)
        for lr in stale:
            name = lr.external_ids.get(KEY_ROUTER, "")
            for ls in nbs.rows("Logical_Switch"):
                for sp in list(ls.ports):
                    if sp.type == "router" and sp.external_ids.get(KEY_ROUTER) == name \
                            and sp.external_ids.get(OWNER_KEY) == OWNER_VALUE:
                        ls.delvalue("ports", sp.uuid)
            lr.delete()

    nbs.transact(build, wait_applied=False, comment=f"ovsfab: routers of fabric {fabric.name}")
