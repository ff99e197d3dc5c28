"""Private Open vSwitch daemons for a lab host (started through ovsfab/plumbing/daemons.py).

The ``Open_vSwitch`` row is created through the IDL, so no configuration tool runs.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from typing import Optional

from ovsfab.plumbing.daemons import binary, pid_of, spawn, stop_pid, write_db
from ovsfab.plumbing.netns import Namespace


@dataclass
class OvsDaemons:
    """ovsdb-server + ovs-vswitchd of one lab host."""

    rundir: str

    @property
    def db_sock(self) -> str:
        return os.path.join(self.rundir, "db.sock")

    @property
    def remote(self) -> str:
        return f"unix:{self.db_sock}"

    def _pidfile(self, name: str) -> str:
        return os.path.join(self.rundir, f"{name}.pid")

    def pid(self, name: str) -> Optional[int]:
        """PID of a running daemon (ovsdb-server / ovs-vswitchd), or None."""
        return pid_of(self._pidfile(name))

    def start(self, ns: Namespace, timeout: float = 10.0) -> None:
        """Start both daemons inside ``ns`` and initialise the database."""
        os.makedirs(self.rundir, mode=0o750, exist_ok=True)
        db = os.path.join(self.rundir, "conf.db")
        if not os.path.exists(db):
            write_db(db)
        common = lambda name: [f"--pidfile={self._pidfile(name)}",  # noqa: E731
                               f"--unixctl={os.path.join(self.rundir, name + '.ctl')}",
                               f"--log-file={os.path.join(self.rundir, name + '.log')}",
                               "--detach", "--no-chdir"]
        server = [binary("ovsdb-server"), db, f"--remote=punix:{self.db_sock}"] + common("ovsdb-server")
        switch = [binary("ovs-vswitchd"), self.remote] + common("ovs-vswitchd")
        env = dict(os.environ, OVS_RUNDIR=self.rundir, OVS_DBDIR=self.rundir, OVS_LOGDIR=self.rundir)
        # A forked child inherits the namespace of the thread that forks it.
        with ns.entered():
            spawn(server, env, timeout)
            self._init_db(timeout)
            spawn(switch, env, timeout)

    def _init_db(self, timeout: float) -> None:
        """Insert the Open_vSwitch row (what ``ovs-vsctl init`` does), via the IDL."""
        from ovsfab.backends.ovs.idl import IdlSession  # noqa: PLC0415

        session = IdlSession(self.remote, {"Open_vSwitch": ["bridges"]}, timeout=timeout)
        try:
            if not session.table("Open_vSwitch"):
                session.transact(lambda txn: txn.insert(session.idl.tables["Open_vSwitch"]),
                                 wait_applied=False, comment="ovsfab lab: init")
        finally:
            session.close()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop vswitchd, then ovsdb-server; SIGKILL what does not exit in time."""
        for name in ("ovs-vswitchd", "ovsdb-server"):
            pid = self.pid(name)
            if pid is not None:
                stop_pid(pid, name, timeout)

    def remove(self) -> None:
        """Stop the daemons and delete the rundir."""
        self.stop()
        shutil.rmtree(self.rundir, ignore_errors=True)
