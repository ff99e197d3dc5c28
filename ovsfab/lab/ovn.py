"""``ovsfab lab up --mode ovn``: a central plus simulated hosts, each with ovn-controller.

Topology: the lab's switch namespace (a Linux bridge "wire") connects the
central's namespace (``ovsfab-lab-central``, 192.168.77.4, NB/SB ovsdb-servers
and ovn-northd, no OVS) and the hosts (192.168.77.5, .6, ...).  On each host:
``uplink add br-ul eth1`` (the userspace datapath sends tunnel packets
itself, so the underlay address must sit on an OVS bridge), ``ovn join``,
then the container is attached to the OVN network ``lab`` (10.78.0.0/24).

TX checksum offload is turned off on every lab veth: the userspace datapath
forwards partial checksums as they are, which kills TCP -- including
ovn-controller's own connection to the SB database, which crosses eth1.
"""

from __future__ import annotations

import os
import shutil
from typing import Callable, Dict, List

from ovsfab.lab import lab as labmod
from ovsfab.lab.daemons import OvsDaemons
from ovsfab.ovn.daemons import CentralDaemons, ControllerDaemon
from ovsfab.plumbing.netns import Namespace, named_path

CENTRAL_IP = labmod.CENTRAL_UNDERLAY.split("/")[0]
SUBNET = "10.78.0.0/24"


def central_rundir() -> str:
    """Where the lab's central keeps sockets, pidfiles, logs and databases."""
    return os.path.join(labmod.LAB_DIR, "central")


def build_central(state: "labmod.LabState", sw, progress: Callable[[str], None]) -> None:  # noqa: ANN001
    """The central's namespace on the wire, and its daemons."""
    from ovsfab.model import parse_address  # noqa: PLC0415
    from ovsfab.ops.ovn_control import central  # noqa: PLC0415
    from ovsfab.plumbing.links import NetlinkHandle  # noqa: PLC0415

    progress(f"central {labmod.CENTRAL_NS}: namespace, eth1 {labmod.CENTRAL_UNDERLAY}, OVN NB/SB + ovn-northd")
    ns = labmod._create_netns(state, labmod.CENTRAL_NS)  # noqa: SLF001 - the lab's own building block
    try:
        sw.create_veth("wire0", "eth1", ns, None, None)
        sw.ipr.link("set", index=sw.index("wire0"), master=sw.index(labmod.WIRE))
        sw.disable_tx_checksum("wire0")
        sw.set_up(sw.index("wire0"))
        inner = NetlinkHandle(ns)
        try:
            inner.disable_tx_checksum("eth1")
            idx = inner.index("eth1")
            inner.add_address(idx, parse_address(labmod.CENTRAL_UNDERLAY))
            inner.set_up(idx)
        finally:
            inner.close()
        rundir = central_rundir()
        state.ovn_rundirs.append(rundir)
        state.save()
        with ns.entered():
            central(CENTRAL_IP, rundir=rundir, dbdir=rundir)
    finally:
        ns.close()


def connect_host(state: "labmod.LabState", host: "labmod.LabHost", progress: Callable[[str], None]) -> None:
    """Uplink, ovn join, attach --network: ovsfab's own operations, as that host."""
    from ovsfab.backends.ovs.backend import OvsBackend  # noqa: PLC0415
    from ovsfab.ops.uplink import uplink_add  # noqa: PLC0415
    from ovsfab.ops.ovn_control import join  # noqa: PLC0415
    from ovsfab.ops.ovn_network import attach_network  # noqa: PLC0415

    with Namespace.open(named_path(host.netns)) as ns, ns.entered():
        progress(f"{host.name}: ovsfab uplink add br-ul eth1")
        uplink_add("br-ul", "eth1", False, "auto", lambda: OvsBackend(host.remote))
        progress(f"{host.name}: ovsfab ovn join {CENTRAL_IP}")
        if host.rundir not in state.ovn_rundirs:
            state.ovn_rundirs.append(host.rundir)
            state.save()
        join(CENTRAL_IP, system_id=host.name, hostname=host.name, ovs_remote=host.remote, rundir=host.rundir)
        progress(f"{host.name}: ovsfab attach --network {labmod.OVN_NETWORK} {host.container} {host.address}")
        attach_network(labmod.OVN_NETWORK, host.container, [host.address], ovs_remote=host.remote,
                       subnet=SUBNET)


def stop_ovn(state: "labmod.LabState") -> List[str]:
    """Stop every OVN daemon the lab started (hosts first, the central last)."""
    removed = []
    for rundir in reversed(state.ovn_rundirs):
        if rundir == central_rundir():
            CentralDaemons(rundir, rundir).stop()
            shutil.rmtree(rundir, ignore_errors=True)  # not an OVS rundir: down does not remove it
            removed.append("OVN central")
        else:
            ControllerDaemon(rundir, "", rundir).stop()
            removed.append(f"ovn-controller of {os.path.basename(rundir)}")
            # The host's OVS goes right after its controller (lab.down then
            # finds it stopped and only removes the rundir).
            OvsDaemons(rundir).stop()
    return removed


def ovn_status(state: "labmod.LabState") -> Dict[str, object]:
    """PIDs of the lab's OVN daemons."""
    cd = CentralDaemons(central_rundir(), central_rundir())
    return {
        "central": {"address": CENTRAL_IP, "netns": labmod.CENTRAL_NS,
                    "nb": f"unix:{cd.sock('nb')}", "sb": f"unix:{cd.sock('sb')}",
                    "pids": {n: cd.pid(n) for n in ("ovnnb_db", "ovnsb_db", "ovn-northd")}},
        "controllers": {h.name: ControllerDaemon(h.rundir, "", h.rundir).pid() for h in state.hosts},
        "network": labmod.OVN_NETWORK,
    }
