"""``ovsfab ovn central`` and ``ovsfab ovn join``: the OVN operations on this host.

central  starts (or adopts) the NB and SB ovsdb-servers and ovn-northd and
         makes the databases listen on the underlay address (rows of their
         ``connections`` column, written through the IDL);
join     writes OVN's settings into this host's ``Open_vSwitch`` external_ids
         through the IDL, makes sure ovn-controller runs, and waits until the
         host is a chassis in the southbound database.

Each is a :class:`~ovsfab.ops.plan.Plan`: a failure undoes what was done
(daemons started by this call are stopped, settings restored).  The OVN
access they use (daemons, databases, settings) lives in :mod:`ovsfab.ovn`.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from ovsfab.errors import InvalidInput, OperationFailed
from ovsfab.ops.plan import Plan
from ovsfab.ovn.control import (ENCAPS, INTEGRATION_BRIDGE, KEY_NB, _answers, _drop_listener, _ensure_listener,
                                _listen_target, _parse_ip, _source_address, local_ovs, tcp_remote)
from ovsfab.ovn.daemons import CentralDaemons, ControllerDaemon, ovn_dbdir, ovn_rundir, ovs_rundir
from ovsfab.ovn.idl import NB_DB, NB_PORT, SB_DB, SB_PORT, OvnSession, fetch_schema

CENTRAL_STEPS = ("ovn-nb-db", "ovn-sb-db", "ovn-listen", "ovn-northd")


JOIN_STEPS = ("ovn-reach", "ovn-settings", "ovn-controller", "ovn-chassis")


# -- central ------------------------------------------------------------------
@dataclass
class CentralResult:
    """What ``ovn central`` did."""

    address: str
    nb: str
    sb: str
    started: List[str] = field(default_factory=list)
    adopted: List[str] = field(default_factory=list)
    changed: bool = False

    def to_json(self) -> dict:
        """JSON-ready dict."""
        return {"action": "ovn-central", "address": self.address, "nb": self.nb, "sb": self.sb,
                "started": self.started, "adopted": self.adopted, "changed": self.changed}


def central(address: Optional[str] = None, rundir: Optional[str] = None, dbdir: Optional[str] = None,
            timeout: float = 10.0, fault: Optional[str] = None) -> CentralResult:
    """Start or adopt NB/SB ovsdb-servers and ovn-northd; listen on ``address``."""
    from ovsfab.ops.attach import require_root  # noqa: PLC0415

    if address is None:
        address = _source_address("192.0.2.1")  # the default route's source: TEST-NET, never contacted
        if address is None:
            raise InvalidInput("cannot tell this host's underlay address (no default route)",
                               "give it: ovsfab ovn central --address IP")
    address = _parse_ip(address, "central address")
    require_root()
    daemons = CentralDaemons(rundir or ovn_rundir(), dbdir or ovn_dbdir())
    result = CentralResult(address=address, nb=tcp_remote(address, NB_PORT), sb=tcp_remote(address, SB_PORT))
    with Plan("ovn-central", fault) as plan:
        for which, db, step in (("nb", NB_DB, "ovn-nb-db"), ("sb", SB_DB, "ovn-sb-db")):
            name = f"ovn{which}_db"
            if _answers(daemons.remote(which), db):
                result.adopted.append(name)
                plan.checkpoint(step)
                continue
            dbfile = os.path.join(daemons.dbdir, f"{name}.db")
            fresh = not os.path.exists(dbfile)

            def undo(which: str = which, name: str = name, dbfile: str = dbfile, fresh: bool = fresh) -> None:
                pid = daemons.pid(name)
                if pid is not None:
                    from ovsfab.plumbing.daemons import stop_pid  # noqa: PLC0415

                    stop_pid(pid, name)
                if fresh:  # a database this call created goes with it
                    for path in (dbfile, os.path.join(os.path.dirname(dbfile), f".{name}.db.~lock~")):
                        if os.path.exists(path):
                            os.unlink(path)

            plan.step(step, lambda which=which: daemons.start_db(which, timeout), undo=undo)
            result.started.append(name)

        def listen() -> None:
            for which, db, table, port in (("nb", NB_DB, "NB_Global", NB_PORT), ("sb", SB_DB, "SB_Global", SB_PORT)):
                target = _listen_target(address, port)
                changed, _ = _ensure_listener(daemons.remote(which), db, table, target)
                if changed:
                    result.changed = True
                    plan.add_undo(f"drop {which} listener",
                                  lambda w=which, d=db, t=table, tg=target: _drop_listener(daemons.remote(w), d, t, tg))
            # ovsdb-server opens listeners asynchronously: wait until both answer.
            deadline = time.monotonic() + timeout
            for remote, db in ((result.nb, NB_DB), (result.sb, SB_DB)):
                while not _answers(remote, db, timeout=0.5):
                    if time.monotonic() >= deadline:
                        raise OperationFailed(f"{db} does not answer on {remote}",
                                              f"is {address} an address of this host? see {daemons.rundir}/*.log")
                    time.sleep(0.05)

        plan.step("ovn-listen", listen)
        if daemons.pid("ovn-northd") is not None:
            result.adopted.append("ovn-northd")
            plan.checkpoint("ovn-northd")
        else:
            def stop_northd() -> None:
                pid = daemons.pid("ovn-northd")
                if pid is not None:
                    from ovsfab.plumbing.daemons import stop_pid  # noqa: PLC0415

                    stop_pid(pid, "ovn-northd")

            plan.step("ovn-northd", lambda: daemons.start_northd(timeout), undo=stop_northd)
            result.started.append("ovn-northd")
    result.changed = result.changed or bool(result.started)
    return result


# -- join ---------------------------------------------------------------------
@dataclass
class JoinResult:
    """What ``ovn join`` did."""

    system_id: str
    settings: Dict[str, str]
    controller_pid: Optional[int]
    started_controller: bool
    changed: bool
    seconds: float = 0.0

    def to_json(self) -> dict:
        """JSON-ready dict."""
        return {"action": "ovn-join", "system_id": self.system_id, "settings": self.settings,
                "controller_pid": self.controller_pid, "started_controller": self.started_controller,
                "changed": self.changed, "seconds": round(self.seconds, 3)}


def join(central_ip: str, encap: str = "geneve", encap_ip: Optional[str] = None,
         system_id: Optional[str] = None, hostname: Optional[str] = None, datapath: str = "auto",
         ovs_remote: Optional[str] = None, rundir: Optional[str] = None,
         timeout: float = 10.0, fault: Optional[str] = None) -> JoinResult:
    """Make this host an OVN chassis of the central at ``central_ip``."""
    from ovsfab.backends.ovs.idl import default_remote  # noqa: PLC0415
    from ovsfab.ops.attach import choose_datapath, require_root  # noqa: PLC0415

    central_ip = _parse_ip(central_ip, "central address")
    if encap not in ENCAPS:
        raise InvalidInput(f"encapsulation {encap!r} is unknown", "use --encap geneve or vxlan")
    if datapath not in ("auto", "system", "netdev"):
        raise InvalidInput(f"datapath {datapath!r} is unknown", "use auto, system or netdev")
    if encap_ip is not None:
        encap_ip = _parse_ip(encap_ip, "encapsulation address")
    require_root()
    t0 = time.monotonic()
    ovs_remote = ovs_remote or default_remote()
    sb = tcp_remote(central_ip, SB_PORT)
    nb = tcp_remote(central_ip, NB_PORT)
    ovs_dir = os.path.dirname(ovs_remote[len("unix:"):]) if ovs_remote.startswith("unix:") else ovs_rundir()
    controller = ControllerDaemon(rundir or ovn_rundir(), ovs_remote, ovs_dir)
    with Plan("ovn-join", fault) as plan:
        def reach() -> None:
            fetch_schema(sb, SB_DB, time.monotonic() + timeout)

        plan.step("ovn-reach", reach)
        if encap_ip is None:
            encap_ip = _source_address(central_ip)
            if encap_ip is None:
                raise InvalidInput(f"no route from this host to {central_ip}", "give --encap-ip")
        session = local_ovs(ovs_remote, timeout)
        plan.add_undo("close OVSDB", session.close)
        before = dict(session.root().external_ids)
        sid = system_id or before.get("system-id") or str(uuid.uuid4())
        wanted = {
            "system-id": sid,
            "ovn-remote": sb,
            "ovn-encap-type": encap,
            "ovn-encap-ip": encap_ip,
            "hostname": hostname or before.get("hostname") or socket.gethostname(),
            KEY_NB: nb,
        }
        if choose_datapath(datapath) == "netdev":
            # Without the kernel module, br-int must use the userspace datapath.
            wanted["ovn-bridge-datapath-type"] = "netdev"

        def settings() -> bool:
            def build(txn):  # noqa: ANN001, ANN202
                root = session.root()
                cur = dict(root.external_ids)
                changed = False
                for key, value in wanted.items():
                    if cur.get(key) != value:
                        root.setkey("external_ids", key, value)
                        changed = True
                return changed

            changed, _ = session.transact(build, wait_applied=False, comment="ovsfab: ovn join")
            return changed

        def restore() -> None:
            def build(txn):  # noqa: ANN001, ANN202
                root = session.root()
                for key in wanted:
                    if key in before:
                        root.setkey("external_ids", key, before[key])
                    elif key in root.external_ids:
                        root.delkey("external_ids", key)

            session.transact(build, wait_applied=False, comment="ovsfab: undo ovn join")

        changed = plan.step("ovn-settings", settings, undo=restore)
        started = False
        if controller.pid() is None:
            plan.step("ovn-controller", lambda: controller.start(timeout), undo=controller.stop)
            started = True
        else:
            plan.checkpoint("ovn-controller")

        def chassis() -> None:
            # Joined means: ovn-controller created br-int here and registered
            # this chassis (with its encapsulation) in the southbound DB.
            sbs = OvnSession(sb, SB_DB, {"Chassis": ["name", "encaps"], "Encap": ["type", "ip"]}, timeout)
            try:
                def registered() -> bool:
                    for ch in sbs.rows("Chassis"):
                        if ch.name == sid:
                            return any(e.type == encap and e.ip == encap_ip for e in ch.encaps)
                    return False

                def has_br_int() -> bool:
                    return any(b.name == INTEGRATION_BRIDGE for b in session.table("Bridge").values())

                # ovn-controller programs br-int through ovs-vswitchd's
                # OpenFlow socket in OVS_RUNDIR; a vswitchd started with
                # another rundir leaves every port unbound, silently.
                mgmt = os.path.join(ovs_dir, f"{INTEGRATION_BRIDGE}.mgmt")
                deadline = time.monotonic() + timeout
                while not (registered() and has_br_int() and os.path.exists(mgmt)):
                    if time.monotonic() >= deadline:
                        if registered() and has_br_int():
                            raise OperationFailed(
                                f"ovs-vswitchd has no OpenFlow socket {mgmt} for ovn-controller",
                                "set OVS_RUNDIR to the directory ovs-vswitchd runs in")
                        raise OperationFailed(
                            f"ovn-controller did not register chassis {sid} with {sb} within {timeout:.0f} s",
                            f"see {controller.rundir}/ovn-controller.log")
                    sbs.wait_for(registered, 0.05, "chassis registration")
                    session.idl.run()
            finally:
                sbs.close()

        plan.step("ovn-chassis", chassis)
        session.close()
    return JoinResult(system_id=sid, settings=wanted, controller_pid=controller.pid(),
                      started_controller=started, changed=changed or started,
                      seconds=time.monotonic() - t0)
