"""Private Open vSwitch daemons for a lab host.

This is the one place where ovsfab runs processes: it *starts daemons*
(ovsdb-server, ovs-vswitchd) inside a lab host's namespace.  The database
file is written directly (the OVSDB standalone format is a schema record:
``OVSDB JSON <length> <sha1>`` + the schema), and the ``Open_vSwitch`` row is
created through the IDL, so no configuration tool runs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import Dict, List, Optional

from ovsfab.errors import OperationFailed, Unavailable
from ovsfab.plumbing.netns import Namespace

LOG = logging.getLogger(__name__)

SCHEMA_PATHS = ("/usr/share/openvswitch/vswitch.ovsschema", "/usr/local/share/openvswitch/vswitch.ovsschema")


def binary(name: str, package: str = "openvswitch-switch") -> str:
    """Absolute path of an installed daemon, or Unavailable naming the package."""
    for path in (shutil.which(name), f"/usr/bin/{name}", f"/usr/sbin/{name}",
                 f"/usr/local/bin/{name}", f"/usr/local/sbin/{name}"):
        if path and os.access(path, os.X_OK):
            return path
    raise Unavailable(f"{name} is not installed", f"apt-get install {package}")


def _schema() -> bytes:
    for path in SCHEMA_PATHS:
        if os.path.exists(path):
            with open(path, "rb") as fh:
                return fh.read()
    raise Unavailable("the Open vSwitch schema (vswitch.ovsschema) is missing",
                      "apt-get install openvswitch-switch")


def write_db(path: str, schema: Optional[bytes] = None) -> None:
    """Create an empty standalone OVSDB file holding ``schema`` (default: Open_vSwitch's).

    What ``ovsdb-tool create`` does, without running it; written to a
    temporary name first, so a crash leaves no half file behind.
    """
    # The schema is re-serialised compactly: the record's length and SHA-1
    # are of exactly the bytes written.
    text = json.dumps(json.loads(schema if schema is not None else _schema()), separators=(",", ":")).encode()
    header = f"OVSDB JSON {len(text)} {hashlib.sha1(text).hexdigest()}\n".encode()  # noqa: S324 - format-mandated
    tmp = path + ".tmp"
    with open(tmp, "wb") as fh:
        fh.write(header + text + b"\n")
    os.replace(tmp, path)


def process_exited(pid: int) -> bool:
    """True when ``pid`` is gone or a zombie.

    A --detach daemon is reparented to PID 1, which may reap it only seconds
    later (measured: ~2 s per daemon here); ``kill(pid, 0)`` succeeds on a
    zombie, so the state letter is what tells.
    """
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            stat = fh.read()
    except OSError:
        return True
    # "PID (comm) S ...": comm may contain spaces and parentheses.
    return stat.rpartition(")")[2].split()[:1] in (["Z"], ["X"])


def pid_of(pidfile: str) -> Optional[int]:
    """PID of a running daemon from its pidfile, or None (gone, or a zombie)."""
    try:
        with open(pidfile, encoding="ascii") as fh:
            pid = int(fh.read().strip())
        os.kill(pid, 0)
        return None if process_exited(pid) else pid
    except (OSError, ValueError):
        return None


def spawn(argv: List[str], env: Dict[str, str], timeout: float) -> None:
    """Run a ``--detach`` daemon; returns once it is ready (it forks and the parent exits)."""
    name = os.path.basename(argv[0])
    try:
        done = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise OperationFailed(f"{name} did not start within {timeout:.0f} s", "see its log file") from None
    if done.returncode != 0:
        err = done.stderr.decode(errors="replace").strip().splitlines()
        raise OperationFailed(f"{name} failed to start: {err[-1] if err else done.returncode}",
                              "see its log file")


def stop_pid(pid: int, name: str, timeout: float = 10.0) -> None:
    """SIGTERM, wait (zombie-aware), SIGKILL what does not exit in time."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process_exited(pid):
            return
        time.sleep(0.02)
    LOG.warning("%s (pid %d) ignored SIGTERM; killing it", name, pid)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


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
