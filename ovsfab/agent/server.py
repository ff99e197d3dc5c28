"""The agent's control socket: any operation of the operations API, run by the warm agent.

The client side is :mod:`ovsfab.cli.fast`; the wire format is
:mod:`ovsfab.agent.protocol` (protocol 2): the client sends an operation,
its parameters and its context (OVSDB remote, backend, fault hook), and gets
the operation's result JSON or its error back, which it renders with
:mod:`ovsfab.cli.render` exactly as the in-process CLI does.  Nothing is
swapped per request: the request's context is an argument of
:func:`ovsfab.ops.api.execute`, with two providers added here so that the
operation uses the agent's warm connections: the agent's own IDL session as
the backend when the request names the agent's OVSDB and the OVS backend
(:func:`_barrier` first makes it as fresh as a new session would be), and a
warm read-only session for ``show`` / ``inspect`` (:class:`InspectSessions`).

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
import logging
import json
import os
import socket
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from ovsfab.agent.intake import Intake, send_reply
from ovsfab.agent.protocol import PROTOCOL, netns_id, socket_path
from ovsfab.errors import Conflict, OperationFailed, OvsfabError

LOG = logging.getLogger("ovsfab.agent")



#: Group commit during a burst (see ControlServer._linger): after a group of
#: two or more attaches ended less than BURST_WINDOW s ago, the next group
#: takes in the attaches that keep arriving, doing each one's link work as
#: it comes, until none has arrived for LINGER_QUIET s (LINGER_MAX s and
#: LINGER_CAP requests at most).  Why (bench/bench_group.py, 100 attaches
#: from xargs -P 16): each transaction costs ovs-vswitchd a reconfiguration
#: of every port on netdev (measured in-process: 0.21 s of its CPU for 100
#: ports in one transaction, 0.75 s in groups of 8), and the link work
#: overlaps the start-up of the burst's next clients instead of waiting for
#: it.  In the bench's wall time it halves the transactions but is a wash on
#: this shared machine (docs/performance.md, ``bench_group.py --ab``).  A
#: lone attach, or a shell loop (its groups are of one), never waits.
BURST_WINDOW = 0.5
LINGER_QUIET = 0.025
LINGER_MAX = 0.5
LINGER_CAP = 64

#: sd_listen_fds(3): passed sockets start at this descriptor.
SD_LISTEN_FDS_START = 3


def listen_fd_from_systemd(environ: Dict[str, str]) -> Optional[int]:
    """The listening socket systemd passed by socket activation, or None (stdlib only: sd_listen_fds(3)).

    Only when ``LISTEN_PID`` is this process (the variables are inherited
    by children otherwise) and ``LISTEN_FDS`` is at least 1; the variables
    are then removed, as sd_listen_fds(unset_environment=1) does, so a
    child never takes the socket for its own.
    """
    try:
        if int(environ.get("LISTEN_PID", "0")) != os.getpid() or int(environ.get("LISTEN_FDS", "0")) < 1:
            return None
    except ValueError:
        return None
    for key in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        environ.pop(key, None)
    os.set_inheritable(SD_LISTEN_FDS_START, False)
    return SD_LISTEN_FDS_START


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


class _Group:
    """Attaches of one context being gathered for one transaction, and their connections."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.conns: List[Any] = []
        self.phases: Dict[str, float] = {}
        self.attach: Any = None  # ovsfab.ops.api.AttachGroup, once opened
        self.error: Optional[BaseException] = None
        #: It uses the agent's own session (then later requests sync it first).
        self.lent = False


class ControlServer:
    """The listening socket and the request handler (run from the main loop)."""

    def __init__(self, get_backend: Callable[[], Any], path: Optional[str] = None) -> None:
        self.path = path or socket_path(os.environ)
        self.get_backend = get_backend
        self.sock: Optional[socket.socket] = None
        self._file: Tuple[int, int] = (-1, -1)
        self._netns = netns_id()
        self.inspect_sessions = InspectSessions()
        self.intake: Optional[Intake] = None
        #: When the last group of >= 2 attaches ended (monotonic s): a burst is on.
        self._burst_at = -1.0

    # -- lifecycle -------------------------------------------------------
    def open(self) -> None:
        """Listen: on the socket systemd passed (``ovsfab-agent.socket``), else on a new one.

        A new one is created mode 0600, root:root, replacing a stale file;
        raises Conflict when another agent answers on the path.
        """
        passed = listen_fd_from_systemd(os.environ)
        if passed is not None:
            sock = socket.socket(fileno=passed)
            if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
                sock.detach()
                raise OperationFailed("the socket systemd passed (LISTEN_FDS) is not a unix stream socket",
                                      "check ListenStream= in ovsfab-agent.socket")
            sock.setblocking(False)
            self.path = sock.getsockname() or self.path
            self._file = (-1, -1)  # systemd's: never unlinked by us
            self.sock = sock
            self.intake = Intake(sock)
            self.intake.start()
            LOG.info("serving attach/detach/show/inspect on %s (socket from systemd)", self.path)
            return
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
        requests happens here, on the main loop.  Attaches that arrived
        together in the same context share one OVSDB transaction (group
        commit: :class:`ovsfab.ops.api.AttachGroup`), and during a burst the
        group takes in the attaches that keep arriving (:meth:`_linger`);
        everything else runs one at a time, in order, after the groups.
        """
        self.inspect_sessions.drain()
        if self.intake is None:
            return 0
        self.intake.waker.drain()
        items = []
        while True:
            item = self.intake.take()
            if item is None:
                break
            items.append(item)
        burst = time.monotonic() - self._burst_at < BURST_WINDOW
        keys = [self._group_key(req) for _, req in items]
        groups: Dict[str, _Group] = {}
        rest: List[Tuple[Any, Dict[str, Any]]] = []
        for key, (conn, req) in zip(keys, items):
            if key is not None and (burst or keys.count(key) > 1):
                self._add(groups, key, conn, req)
            else:
                rest.append((conn, req))
        served = len(items)
        if groups and burst:
            served += self._linger(groups, rest)
        for group in groups.values():
            self._commit(group)
        if any(len(g.conns) > 1 for g in groups.values()):
            self._burst_at = time.monotonic()
        for conn, req in rest:
            try:
                reply = self.handle(req)
            except Exception as exc:  # noqa: BLE001 - a bug must not end the agent; the client falls back
                LOG.error("control socket: request failed: %s: %s", type(exc).__name__, exc)
                reply = {"v": PROTOCOL, "declined": "the agent failed on this request"}
            send_reply(conn, reply)
        return served

    def _linger(self, groups: Dict[str, "_Group"], rest: List[Tuple[Any, Dict[str, Any]]]) -> int:
        """During a burst: add the attaches that keep arriving to the open groups; how many were taken.

        Each is added (its link work done) as it arrives, so the agent works
        while the burst's next clients start; the groups close when none
        has arrived for LINGER_QUIET s, after LINGER_MAX s, at LINGER_CAP
        requests, or when any other request arrives (it then runs after the
        groups, as it would have).
        """
        assert self.intake is not None
        taken = 0
        end = time.monotonic() + LINGER_MAX
        while sum(len(g.conns) for g in groups.values()) < LINGER_CAP:
            left = end - time.monotonic()
            if left <= 0:
                break
            item = self.intake.take(min(LINGER_QUIET, left))
            if item is None:
                break
            arrived = [item]
            while True:  # all that came while the last ones were added: one OVSDB barrier for them
                more = self.intake.take()
                if more is None:
                    break
                arrived.append(more)
            taken += len(arrived)
            for k, (conn, req) in enumerate(arrived):
                key = self._group_key(req)
                if key is None:
                    rest.extend(arrived[k:])  # they run after the groups, in order
                    return taken
                self._add(groups, key, conn, req, sync=k == 0)
        return taken

    def _add(self, groups: Dict[str, "_Group"], key: str, conn: Any, req: Dict[str, Any],
             sync: bool = False) -> None:
        """Add an attach to the group of its context (opened, with the warm backend, by the first).

        ``sync``: the request arrived after the group was opened; the
        agent's OVSDB view is first brought up to date (the barrier), so it
        reads OVSDB as fresh as a request served alone would.
        """
        from dataclasses import replace  # noqa: PLC0415

        from ovsfab.ops import api  # noqa: PLC0415
        from ovsfab.ops.context import Context  # noqa: PLC0415

        group = groups.get(key)
        if group is None:
            group = groups[key] = _Group()
            backend = self.get_backend()
            lent: List[Any] = []

            def provide(remote: str) -> Optional[Any]:
                warm = self._warm_backend(backend)(remote)
                if warm is not None:
                    lent.append(warm)
                return warm

            try:
                ctx = replace(Context.from_json(req["context"]), warm_backend=provide)
                group.attach = api.AttachGroup(ctx, group.phases)  # the barrier ran in provide()
                group.lent = bool(lent)
            except Exception as exc:  # noqa: BLE001 - the context itself is bad: each request says so
                group.error = exc
        elif sync and group.lent:
            try:
                _barrier(self.get_backend())
            except Exception as exc:  # noqa: BLE001 - a broken session: the transaction will say so too
                LOG.debug("group commit: OVSDB barrier: %s", exc)
        group.conns.append(conn)
        if group.attach is not None:
            group.attach.add(req["params"])

    def _commit(self, group: "_Group") -> None:
        """One transaction for a group's ports, one reply each."""
        results: List[Any]
        if group.attach is None:
            results = [group.error] * len(group.conns)
        else:
            try:
                results = group.attach.commit()
            except Exception as exc:  # noqa: BLE001 - a bug: every request of the group says so
                LOG.exception("op: attach group failed")
                group.attach.abort(exc)
                results = [exc] * len(group.conns)
        LOG.info("op: attach x%d in one transaction (%.0f ms%s)", len(group.conns),
                 (time.monotonic() - group.t0) * 1000,
                 "".join(f", {k} {v * 1000:.0f}" for k, v in group.phases.items()))
        for conn, res in zip(group.conns, results):
            send_reply(conn, self._reply("attach", res, group.t0))

    def _group_key(self, req: Dict[str, Any]) -> Optional[str]:
        """The group commit key of a plain attach (its context), None for anything else."""
        params = req.get("params")
        if (req.get("v") != PROTOCOL or req.get("op") != "attach" or not isinstance(params, dict)
                or params.get("network") is not None or req.get("netns") != self._netns
                or not isinstance(req.get("context"), dict)):
            return None
        return json.dumps(req["context"], sort_keys=True)

    @staticmethod
    def _reply(op: str, res: Any, t0: float) -> Dict[str, Any]:
        """The wire reply for a result (``to_json()``) or an exception, logged as ``op: NAME -> exit N``."""
        ms = (time.monotonic() - t0) * 1000
        if isinstance(res, OvsfabError):
            LOG.info("op: %s -> exit %d (%.0f ms)", op, res.exit_code, ms)
            return {"v": PROTOCOL, "error": {"type": type(res).__name__, "message": str(res),
                                             "line": f"ovsfab: error: {res}", "exit_code": res.exit_code}}
        if isinstance(res, BaseException):
            LOG.error("op: %s failed: %s: %s", op, type(res).__name__, res)
            return {"v": PROTOCOL, "error": {
                "type": type(res).__name__, "message": str(res), "exit_code": 1,
                "line": f"ovsfab: internal error: {type(res).__name__}: {res} (rerun with --debug and report it)"}}
        LOG.info("op: %s -> exit 0 (%.0f ms)", op, ms)
        return {"v": PROTOCOL, "result": res.to_json()}

    def handle(self, req: Dict[str, Any]) -> Dict[str, Any]:
        """Run one request; a reply without ``result`` or ``error`` makes the client run it itself."""
        from dataclasses import replace  # noqa: PLC0415

        from ovsfab.ops import api  # noqa: PLC0415
        from ovsfab.ops.context import Context  # noqa: PLC0415

        if req.get("v") != PROTOCOL:
            return {"v": PROTOCOL, "declined": f"this agent speaks protocol {PROTOCOL}"}
        op, params = req.get("op"), req.get("params")
        if not isinstance(op, str) or not api.known(op) or not isinstance(params, dict):
            return {"v": PROTOCOL, "declined": "not an operation this agent serves"}
        if req.get("netns") != self._netns:
            # The veth's host end is created in the caller's namespace: only
            # a caller in the agent's own can be served by it.
            return {"v": PROTOCOL, "declined": "the client is in another network namespace"}
        backend = self.get_backend()
        t0 = time.monotonic()
        try:
            ctx = replace(Context.from_json(req.get("context")), warm_backend=self._warm_backend(backend),
                          warm_session=lambda remote: self.inspect_sessions.get(backend, remote))
            res: Any = api.execute(op, params, ctx)
        except Exception as exc:  # noqa: BLE001 - an error, or a bug said as the CLI says it: the agent lives on
            if not isinstance(exc, OvsfabError):
                LOG.exception("op: %s failed", op)
            res = exc
        return self._reply(op, res, t0)

    @staticmethod
    def _warm_backend(backend: Any) -> Callable[[str], Optional[Any]]:
        """The provider of the agent's own session for a request that names its OVSDB."""

        def provide(remote: str) -> Optional[Any]:
            if backend is None or remote != backend.remote:
                return None  # another OVSDB (--db): the operation connects itself, as in-process
            _barrier(backend)
            return Borrowed(backend)

        return provide


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
