"""Starting OVN's daemons: the only processes the ``ovn`` room runs.

* central: two ovsdb-servers (OVN_Northbound, OVN_Southbound) and ovn-northd
  from Debian's ``ovn-central``;
* every host: ovn-controller from Debian's ``ovn-host``.

Nothing here configures anything: the database files are written directly
(an empty standalone OVSDB file is a schema record), listeners are read from
the ``connections`` column (``--remote=db:...``) which ovsfab fills through
the IDL, and ovn-controller reads its settings from the local
``Open_vSwitch`` external_ids.

Directories: ``OVN_RUNDIR`` (sockets, pidfiles, logs) is taken from the
environment, else the private ``OVS_RUNDIR`` when one is set (a simulated
host keeps its OVN state next to its OVS), else ``/var/run/ovn``.  ovn-controller
23.03 refuses ``--unixctl``: its control socket lands in ``OVN_RUNDIR``, which
is why every host needs its own.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Dict, Optional

from ovsfab.errors import Unavailable
# The lab room owns starting and stopping processes; OVN's daemons are more of them.
from ovsfab.plumbing.daemons import binary, pid_of, spawn, stop_pid
from ovsfab.plumbing.daemons import write_db as lab_write_db  # the OVSDB file format, any schema

LOG = logging.getLogger(__name__)

SCHEMA_DIRS = ("/usr/share/ovn", "/usr/local/share/ovn")


def ovn_rundir() -> str:
    """Where OVN sockets and pidfiles live for this host (see the module docstring)."""
    return os.environ.get("OVN_RUNDIR") or os.environ.get("OVS_RUNDIR") or "/var/run/ovn"


def ovn_dbdir() -> str:
    """Where the central keeps its database files."""
    if os.environ.get("OVN_DBDIR"):
        return os.environ["OVN_DBDIR"]
    # A private rundir (a simulated host) keeps its databases there too.
    private = os.environ.get("OVN_RUNDIR") or os.environ.get("OVS_RUNDIR")
    return private or "/var/lib/ovn"


def ovs_rundir() -> str:
    """The local Open vSwitch's rundir (ovn-controller finds br-int.mgmt there)."""
    return os.environ.get("OVS_RUNDIR") or "/var/run/openvswitch"


def write_db(path: str, schema_file: str) -> None:
    """Create an empty standalone OVSDB file for ``schema_file`` (what ovsdb-tool create does)."""
    for d in SCHEMA_DIRS:
        src = os.path.join(d, schema_file)
        if os.path.exists(src):
            break
    else:
        raise Unavailable(f"the OVN schema {schema_file} is missing", "apt-get install ovn-common")
    with open(src, "rb") as fh:
        lab_write_db(path, fh.read())


def _env(rundir: str, logdir: Optional[str] = None, ovs_dir: Optional[str] = None) -> Dict[str, str]:
    env = dict(os.environ, OVN_RUNDIR=rundir, OVN_LOGDIR=logdir or rundir)
    if ovs_dir:
        env["OVS_RUNDIR"] = ovs_dir
    return env


@dataclass
class CentralDaemons:
    """NB + SB ovsdb-servers and ovn-northd of the central host."""

    rundir: str
    dbdir: str

    def sock(self, which: str) -> str:
        """unix socket of ``nb`` or ``sb`` (Debian's names, so an ovn-central install is adopted)."""
        return os.path.join(self.rundir, f"ovn{which}_db.sock")

    def remote(self, which: str) -> str:
        """unix: remote of ``nb`` or ``sb``."""
        return f"unix:{self.sock(which)}"

    def pidfile(self, name: str) -> str:
        """Pidfile of ``ovnnb_db``, ``ovnsb_db`` or ``ovn-northd``."""
        return os.path.join(self.rundir, f"{name}.pid")

    def pid(self, name: str) -> Optional[int]:
        """PID of a running central daemon, or None."""
        return pid_of(self.pidfile(name))

    def start_db(self, which: str, timeout: float = 10.0) -> None:
        """Start the ``nb`` or ``sb`` ovsdb-server; listeners come from its connections column."""
        os.makedirs(self.rundir, mode=0o750, exist_ok=True)
        os.makedirs(self.dbdir, mode=0o750, exist_ok=True)
        name = f"ovn{which}_db"
        dbname = "OVN_Northbound" if which == "nb" else "OVN_Southbound"
        table = "NB_Global" if which == "nb" else "SB_Global"
        db = os.path.join(self.dbdir, f"{name}.db")
        if not os.path.exists(db):
            write_db(db, f"ovn-{which}.ovsschema")
        argv = [binary("ovsdb-server", "openvswitch-common"), db,
                f"--remote=punix:{self.sock(which)}",
                # TCP listeners are rows of the connections column, written by
                # ovsfab through the IDL: the same path for adopted servers.
                f"--remote=db:{dbname},{table},connections",
                f"--pidfile={self.pidfile(name)}",
                f"--unixctl={os.path.join(self.rundir, name + '.ctl')}",
                f"--log-file={os.path.join(self.rundir, name + '.log')}",
                "--detach", "--no-chdir"]
        spawn(argv, _env(self.rundir), timeout)

    def start_northd(self, timeout: float = 10.0) -> None:
        """Start ovn-northd between the two local databases."""
        argv = [binary("ovn-northd", "ovn-central"),
                f"--ovnnb-db={self.remote('nb')}", f"--ovnsb-db={self.remote('sb')}",
                f"--pidfile={self.pidfile('ovn-northd')}",
                f"--log-file={os.path.join(self.rundir, 'ovn-northd.log')}",
                "--detach", "--no-chdir"]
        spawn(argv, _env(self.rundir), timeout)

    def stop(self) -> None:
        """Stop northd, then the databases."""
        for name in ("ovn-northd", "ovnsb_db", "ovnnb_db"):
            pid = self.pid(name)
            if pid is not None:
                stop_pid(pid, name)


@dataclass
class ControllerDaemon:
    """ovn-controller of one host."""

    rundir: str          # OVN_RUNDIR: pidfile, log, control socket
    ovs_remote: str      # the local Open_vSwitch database
    ovs_dir: str         # OVS_RUNDIR: ovn-controller opens br-int.mgmt there

    @property
    def pidfile(self) -> str:
        """ovn-controller's pidfile."""
        return os.path.join(self.rundir, "ovn-controller.pid")

    def pid(self) -> Optional[int]:
        """PID of the running ovn-controller, or None."""
        return pid_of(self.pidfile)

    def start(self, timeout: float = 10.0) -> None:
        """Start ovn-controller (in the caller's network namespace)."""
        os.makedirs(self.rundir, mode=0o750, exist_ok=True)
        argv = [binary("ovn-controller", "ovn-host"), self.ovs_remote,
                f"--pidfile={self.pidfile}",
                f"--log-file={os.path.join(self.rundir, 'ovn-controller.log')}",
                "--detach", "--no-chdir"]
        spawn(argv, _env(self.rundir, ovs_dir=self.ovs_dir), timeout)

    def stop(self) -> None:
        """Stop ovn-controller (its flows stay in OVS: the data plane keeps working)."""
        pid = self.pid()
        if pid is not None:
            stop_pid(pid, "ovn-controller")
