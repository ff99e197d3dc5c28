"""Starting and stopping daemons: the one place where ovsfab runs processes.

Used by the lab (private ovsdb-server + ovs-vswitchd per simulated host,
ovsfab/lab/daemons.py) and by ``ovsfab ovn central``/``join`` (OVN's
databases, ovn-northd, ovn-controller; ovsfab/ovn/daemons.py).  Database
files are written directly (the OVSDB standalone format is a schema record:
``OVSDB JSON <length> <sha1>`` + the schema), so no configuration tool runs.
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
from typing import Dict, List, Optional

from ovsfab.errors import OperationFailed, Unavailable

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


def spawn_background(argv: List[str], env: Dict[str, str], log_path: str, pidfile: str) -> int:
    """Start a daemon that does not detach itself (e.g. ``ovsfab docker-driver`` for the lab).

    Its own session (it outlives the caller), stdout and stderr to ``log_path``,
    its PID written to ``pidfile`` for :func:`pid_of`; returns the PID.  The
    caller waits for readiness in the daemon's own terms (a socket appearing).
    """
    name = os.path.basename(argv[0])
    with open(log_path, "ab") as log:
        try:
            proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    start_new_session=True, cwd="/")
        except OSError as exc:
            raise OperationFailed(f"{name} failed to start: {exc.strerror}", f"see {log_path}") from None
    tmp = pidfile + ".tmp"
    with open(tmp, "w", encoding="ascii") as fh:
        fh.write(f"{proc.pid}\n")
    os.replace(tmp, pidfile)
    return proc.pid


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


