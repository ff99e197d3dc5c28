"""The agent's control socket: ``ovsfab attach`` / ``detach`` / ``show`` / ``inspect`` run by the warm agent.

The client side is :mod:`ovsfab.cli.fast`.  One request per connection: the
client sends one JSON object (argv, the environment the CLI reads, its cwd
and network namespace) and shuts down its sending side; the agent answers
with one JSON object ``{"v", "code", "stdout", "stderr"}`` and closes.

Identical behaviour by construction: the agent runs the very typer command
the client would have run (same validation, same messages, same exit codes,
same ``--json``), with the client's environment in place (``OVSFAB_DB``,
``OVS_RUNDIR``, ``OVSFAB_INJECT_FAULT``, ...) and its stdout/stderr captured.
The one difference is where the time goes: the IDL session is the agent's
own, already synced (a one-round-trip barrier first makes it as fresh as a
new session would be), and python-ovs, pyroute2 and the docker SDK are
already imported.

``show`` and ``inspect`` read OVSDB through :data:`ovsfab.ops.inspect.WARM_SESSION`:
the agent's own session when it monitors every column they read, else a
second read-only session the server keeps warm (:class:`InspectSessions`),
each brought up to date by the same barrier.  They colour their tree for the
client's stdout, which the request says is a terminal or not
(:data:`ovsfab.cli.inspect_view.CLIENT_STDOUT_TTY`).

Security: the socket is created mode 0600 owned by root, in a directory only
root can write; every peer's credentials are checked with SO_PEERCRED and a
peer that is not uid 0 gets a refusal (its CLI then runs in-process and
fails with "needs root" exactly as without an agent).

Requests are read by the intake thread (agent/intake.py), so idle or slow
clients never hold anyone up, and run on the agent's main loop (python-ovs is
not thread safe), one at a time, between reconcile actions.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import socket
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from ovsfab.agent.intake import Intake, send_reply
from ovsfab.cli.fast import FORWARD_ENV, PROTOCOL, eligible, netns_id, socket_path
from ovsfab.errors import Conflict, OperationFailed, OvsfabError

LOG = logging.getLogger("ovsfab.agent")



class Borrowed:
    """The agent's backend lent to one command: everything but close() passes through.

    The ops close their backend when done; the agent's session must outlive them.
    """

    def __init__(self, backend: Any) -> None:
        self._backend = backend

    def close(self) -> None:
        """Keep the agent's session open (the agent closes it when it stops)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)


class ControlServer:
    """The listening socket and the request handler (run from the main loop)."""

    def __init__(self, get_backend: Callable[[], Any], path: Optional[str] = None) -> None:
        self.path = path or socket_path()
        self.get_backend = get_backend
        self.sock: Optional[socket.socket] = None
        self._file: Tuple[int, int] = (-1, -1)
        self._netns = netns_id()
        self.inspect_sessions = InspectSessions()
        self.intake: Optional[Intake] = None

    # -- lifecycle -------------------------------------------------------
    def open(self) -> None:
        """Create the socket (mode 0600, root:root), replacing a stale one.

        Raises Conflict when another agent answers on the path.
        """
        directory = os.path.dirname(self.path) or "."
        os.makedirs(directory, mode=0o755, exist_ok=True)
        st = os.stat(directory)
        if st.st_uid != 0 or st.st_mode & 0o022:
            # Anyone who can write the directory could swap the socket.
            raise OperationFailed(f"directory {directory} of the agent socket is writable by others",
                                  "make it owned by root and not group/world-writable, or set OVSFAB_AGENT_SOCK")
        if os.path.lexists(self.path):
            if self._answers():
                raise Conflict(f"another agent is listening on {self.path}",
                               "stop it first, or set OVSFAB_AGENT_SOCK to another path")
            os.unlink(self.path)  # stale: left by an agent that was killed
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
        old = os.umask(0o177)  # born 0600: no window in which others could connect
        try:
            sock.bind(self.path)
        except OSError:
            sock.close()
            raise
        finally:
            os.umask(old)
        os.chown(self.path, 0, 0)
        os.chmod(self.path, 0o600)
        st = os.stat(self.path)
        self._file = (st.st_dev, st.st_ino)  # to remove only our own file at close
        sock.listen(128)
        self.sock = sock
        self.intake = Intake(sock)
        self.intake.start()
        LOG.info("serving attach/detach/show/inspect on %s", self.path)

    def _answers(self) -> bool:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(0.5)
        try:
            probe.connect(self.path)
            return True
        except OSError:
            return False
        finally:
            probe.close()

    def close(self) -> None:
        """Stop listening and remove the socket (only if it is still ours)."""
        self.inspect_sessions.close()
        if self.intake is not None:
            self.intake.halt()
            self.intake = None
        if self.sock is None:
            return
        try:
            st = os.stat(self.path)
            mine = (st.st_dev, st.st_ino) == self._file
        except OSError:
            mine = False
        self.sock.close()
        self.sock = None
        if mine:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)

    def fileno(self) -> int:
        """For the main loop's poll(): readable when a complete request waits."""
        assert self.intake is not None
        return self.intake.fileno

    # -- serving ---------------------------------------------------------
    def serve_pending(self) -> int:
        """Serve every complete request the intake has read; returns how many were served.

        Reading happened in the intake thread (agent/intake.py); running the
        request happens here, on the main loop, one at a time.
        """
        self.inspect_sessions.drain()
        if self.intake is None:
            return 0
        self.intake.waker.drain()
        served = 0
        while True:
            item = self.intake.take()
            if item is None:
                return served
            conn, req = item
            try:
                reply = self.handle(req)
            except Exception as exc:  # noqa: BLE001 - a bug must not end the agent; the client falls back
                LOG.error("control socket: request failed: %s: %s", type(exc).__name__, exc)
                reply = {"v": PROTOCOL, "declined": "the agent failed on this request"}
            send_reply(conn, reply)
            served += 1

    def handle(self, req: Dict[str, Any]) -> Dict[str, Any]:
        """Run one request; a reply without ``code`` makes the client fall back."""
        argv, env = req.get("argv"), req.get("env")
        if (req.get("v") != PROTOCOL or not isinstance(argv, list) or not all(isinstance(a, str) for a in argv)
                or not isinstance(env, dict) or not eligible(argv)):
            return {"v": PROTOCOL, "declined": "not a request this agent serves"}
        if req.get("netns") != self._netns:
            # The veth's host end is created in the caller's namespace: only
            # a caller in the agent's own can be served by it.
            return {"v": PROTOCOL, "declined": "the client is in another network namespace"}
        backend = self.get_backend()
        if backend is None:
            return {"v": PROTOCOL, "declined": "the agent has no OVSDB session right now"}
        t0 = time.monotonic()
        code, out, err = run_cli(argv, {k: v for k, v in env.items() if k in FORWARD_ENV and isinstance(v, str)},
                                 backend, stdout_tty=req.get("stdout_tty") is True,
                                 sessions=self.inspect_sessions)
        LOG.info("cli: ovsfab %s -> exit %d (%.0f ms)", " ".join(argv), code, (time.monotonic() - t0) * 1000)
        return {"v": PROTOCOL, "code": code, "stdout": out, "stderr": err}


@contextlib.contextmanager
def _environment(env: Dict[str, str]) -> Iterator[None]:
    """The client's values of the forwarded variables, for the duration of one command."""
    saved = {k: os.environ.get(k) for k in FORWARD_ENV}
    try:
        for key in FORWARD_ENV:
            if key in env:
                os.environ[key] = env[key]
            else:
                os.environ.pop(key, None)
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _logging_as_cli() -> Iterator[None]:
    """Logging as in a fresh CLI process; the agent's own set-up put back afterwards.

    The CLI's callback reconfigures the root logger (force=True) onto the
    captured stderr; the agent's ``ovsfab`` logger level (INFO) would add
    lines a CLI does not print.
    """
    root = logging.getLogger()
    ours = logging.getLogger("ovsfab")
    handlers, level, our_level = list(root.handlers), root.level, ours.level
    ours.setLevel(logging.NOTSET)
    try:
        yield
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
        for h in handlers:
            root.addHandler(h)
        root.setLevel(level)
        ours.setLevel(our_level)


def run_cli(argv: List[str], env: Dict[str, str], backend: Any, stdout_tty: bool = False,
            sessions: Optional["InspectSessions"] = None) -> Tuple[int, str, str]:
    """Run ``ovsfab ARGV`` in this process as the CLI would; (exit code, stdout, stderr).

    The command's backend is the agent's warm one when the command would
    have connected to the same OVSDB with the OVS backend; otherwise (another
    --db, --backend linux/auto, a config file) the command makes its own,
    exactly as in-process.  Likewise ``show`` / ``inspect`` get a warm
    session from ``sessions`` for the agent's own OVSDB only.
    ``stdout_tty``: the client's stdout is a terminal (colour the tree).
    """
    from ovsfab.backends.factory import configured_kind  # noqa: PLC0415
    from ovsfab.backends.ovs.idl import default_remote  # noqa: PLC0415
    from ovsfab.cli import inspect_view  # noqa: PLC0415
    from ovsfab.cli import main as climain  # noqa: PLC0415
    from ovsfab.cli.common import STATE  # noqa: PLC0415
    from ovsfab.ops import inspect as inspect_ops  # noqa: PLC0415

    original = climain.ovs_factory

    def factory_for(bridge: Optional[str] = None) -> Callable[[], Any]:
        cold = original(bridge)

        def factory() -> Any:
            if configured_kind(STATE.backend) == "ovs" and (STATE.db or default_remote()) == backend.remote:
                _barrier(backend)
                return Borrowed(backend)
            return cold()

        return factory

    out, err = io.StringIO(), io.StringIO()
    saved_state = (STATE.db, STATE.debug, STATE.backend)
    code = 1
    # cli.main imports ovs_factory by name; swapping it there for one command
    # is safe because the agent serves one request at a time in one thread.
    climain.ovs_factory = factory_for
    # The same one-command-at-a-time reasoning for the two module-level hooks.
    inspect_view.CLIENT_STDOUT_TTY = stdout_tty
    if sessions is not None:
        inspect_ops.WARM_SESSION = lambda remote: sessions.get(backend, remote)
    try:
        with _environment(env), _logging_as_cli(), \
                contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                _command(climain.app).main(args=argv, prog_name="ovsfab", standalone_mode=True)
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except Exception as exc:  # a bug in the path: say it as the CLI would
                err.write(f"ovsfab: internal error: {type(exc).__name__}: {exc} (rerun with --debug and report it)\n")
                code = 1
    finally:
        climain.ovs_factory = original
        inspect_view.CLIENT_STDOUT_TTY = None
        inspect_ops.WARM_SESSION = None
        STATE.db, STATE.debug, STATE.backend = saved_state
    return code, out.getvalue(), err.getvalue()


_COMMAND: Any = None


def _command(app: Any) -> Any:
    """The click command of the typer app, built once (~10 ms each time typer builds it).

    Its callbacks look ``ovs_factory`` up in cli.main when they run, so the
    swap in run_cli still applies.
    """
    global _COMMAND
    if _COMMAND is None:
        import typer.main  # noqa: PLC0415

        _COMMAND = typer.main.get_command(app)
    return _COMMAND


def _barrier(backend: Any) -> None:
    """One OVSDB round trip, so the IDL has every change committed before the request.

    Replies and updates travel in order on one connection: once the reply
    to a no-op select is in, every update the server sent before it (for
    example an ``ovs-vsctl del-port`` the user just ran) is in the IDL too,
    as it would be in a freshly synced session.
    """
    _sync(backend.session)


def _sync(session: Any) -> None:
    """The barrier of :func:`_barrier` on one IdlSession."""
    session.transact(
        lambda txn: txn.add_op({"op": "select", "table": "Open_vSwitch", "where": [], "columns": ["_uuid"]}),
        wait_applied=False, comment="ovsfab: agent sync")


def _monitors(session: Any, columns: Dict[str, List[str]]) -> bool:
    """Whether an IdlSession monitors every one of ``columns`` ({table: [column]})."""
    try:
        tables = session.idl.tables
        return all(col in tables[table].columns for table, cols in columns.items() for col in cols)
    except (AttributeError, KeyError):
        return False


class InspectSessions:
    """OVSDB sessions for ``show`` / ``inspect``, kept warm between requests.

    Those commands read a few columns the backend's session does not monitor
    (``Interface.link_state``).  When the agent's own session monitors all
    of :data:`ovsfab.ops.inspect.OVSDB_COLUMNS` it is used; otherwise one
    more read-only session, made at the first request, is kept and read on
    every turn of the main loop (so its socket never backs up).  Either is
    brought up to date by a one-round-trip barrier before each command, so
    it answers as a freshly synced session would.  Any failure makes the
    command open its own fresh session, as in-process.
    """

    def __init__(self) -> None:
        self._own: Any = None

    def get(self, backend: Any, remote: str) -> Optional[Any]:
        """A synced session for ``remote`` (its close() keeps it open), or None."""
        from ovsfab.ops.inspect import OVSDB_COLUMNS  # noqa: PLC0415

        if backend is None or remote != backend.remote:
            return None  # another OVSDB (--db): the command connects itself, as in-process
        if _monitors(backend.session, OVSDB_COLUMNS):
            session = backend.session
        else:
            session = self._dedicated(remote, OVSDB_COLUMNS, backend.session.timeout)
            if session is None:
                return None
        try:
            _sync(session)
        except OvsfabError as exc:
            LOG.debug("show/inspect session: %s; using a fresh one", exc)
            if session is self._own:
                self.close()
            return None
        return Borrowed(session)

    def _dedicated(self, remote: str, columns: Dict[str, List[str]], timeout: float) -> Optional[Any]:
        from ovsfab.backends.ovs.idl import IdlSession  # noqa: PLC0415

        own = self._own
        if own is not None and (own.remote != remote or not own.idl._session.is_connected()):  # noqa: SLF001
            self.close()  # reconnecting: a fresh sync is as fast and simpler to reason about
            own = None
        if own is None:
            try:
                own = self._own = IdlSession(remote, columns, timeout=timeout)
            except OvsfabError as exc:
                LOG.debug("show/inspect session: %s", exc)
                return None
        return own

    def drain(self) -> None:
        """Process what OVSDB sent to the kept session (called on every turn of the loop)."""
        if self._own is not None:
            try:
                self._own.idl.run()
            except Exception as exc:  # noqa: BLE001 - a broken session is replaced at the next request
                LOG.debug("show/inspect session: %s", exc)
                self.close()

    def close(self) -> None:
        """Close the kept session, if any."""
        own, self._own = self._own, None
        if own is not None:
            try:
                own.close()
            except Exception:  # noqa: BLE001 - already broken
                pass
