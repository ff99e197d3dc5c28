"""ovs-vswitchd's own view, over its unixctl socket (python-ovs's public UnixctlClient).

What OVSDB does not hold lives here: the tunnel neighbour cache
(``tnl/neigh/show``) that decides which MAC a VXLAN/Geneve/GRE frame is sent
to on the userspace datapath.
"""

from __future__ import annotations

import os
import re
from typing import Dict, Optional, Tuple

from ovsfab.errors import Unavailable

#: One ``tnl/neigh/show`` row: IP, MAC, bridge (the header and rule are skipped).
_ROW = re.compile(r"^(\S+)\s+([0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5})\s+(\S+)")


def ctl_path(db_remote: str) -> str:
    """The vswitchd control socket beside ``db_remote`` (``unix:RUNDIR/db.sock``).

    ``RUNDIR/ovs-vswitchd.ctl`` when the daemon was started with that name
    (ovsfab's lab does), else ``RUNDIR/ovs-vswitchd.PID.ctl`` as packaged OVS
    names it.
    """
    rundir = os.path.dirname(db_remote[len("unix:"):]) if db_remote.startswith("unix:") else (
        os.environ.get("OVS_RUNDIR") or "/var/run/openvswitch")
    plain = os.path.join(rundir, "ovs-vswitchd.ctl")
    if os.path.exists(plain):
        return plain
    try:
        with open(os.path.join(rundir, "ovs-vswitchd.pid"), encoding="ascii") as fh:
            pid = int(fh.read().strip())
    except (OSError, ValueError):
        raise Unavailable(f"cannot find ovs-vswitchd's control socket in {rundir}",
                          "is ovs-vswitchd running? (its pidfile is missing)") from None
    return os.path.join(rundir, f"ovs-vswitchd.{pid}.ctl")


def call(path: str, command: str, *args: str) -> str:
    """Run one unixctl command; its text output."""
    import ovs.unixctl.client  # noqa: PLC0415

    err, client = ovs.unixctl.client.UnixctlClient.create(path)
    if err:
        raise Unavailable(f"cannot reach ovs-vswitchd at {path}: {os.strerror(err)}",
                          "is ovs-vswitchd running?")
    try:
        err, failure, result = client.transact(command, list(args))
    finally:
        client.close()
    if err:
        raise Unavailable(f"ovs-vswitchd did not answer {command}: {os.strerror(err)}", "is it overloaded?")
    if failure:
        raise Unavailable(f"ovs-vswitchd refused {command}: {failure.strip()}")
    return result or ""


def parse_neighbours(text: str) -> Dict[str, Tuple[str, str]]:
    """``tnl/neigh/show`` output as {IP: (MAC, bridge)}."""
    out = {}
    for line in text.splitlines():
        m = _ROW.match(line.strip())
        if m:
            out[m.group(1)] = (m.group(2).lower(), m.group(3))
    return out


def tunnel_neighbours(db_remote: str, path: Optional[str] = None) -> Dict[str, Tuple[str, str]]:
    """vswitchd's tunnel neighbour cache: {remote IP: (MAC, bridge)}."""
    return parse_neighbours(call(path or ctl_path(db_remote), "tnl/neigh/show"))
