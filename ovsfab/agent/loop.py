"""The agent's main loop: one process, one IDL session, one thread for Docker events.

* At start, and every ``interval`` seconds, it reconciles everything
  (:meth:`Reconciler.all`).
* A container event (start, restart, die, destroy) queues that container; the
  loop wakes at once and reconciles it (:meth:`Reconciler.containers`).
* When the Docker event stream (re)connects it reconciles everything: events
  may have been missed while it was away (dockerd restart, agent down).
* When OVSDB goes away (ovsdb-server restart) the session is dropped; a fresh
  one is made with backoff, then everything is reconciled.
* SIGTERM / SIGINT: the action in progress is finished, then exit 0.

Idle, the loop sleeps in one ``poll()`` over the IDL socket, the events
thread's wake-up pipe and a timer (the next periodic pass or retry).
"""

from __future__ import annotations

import logging
import queue
import signal
import time
from typing import Any, Optional, Set

from ovsfab.agent.events import DockerEvents, Item, Waker
from ovsfab.errors import OvsfabError, Unavailable

LOG = logging.getLogger("ovsfab.agent")

DEFAULT_INTERVAL = 30.0
#: Retry delays when OVSDB is unreachable (seconds): quick first, then capped.
RETRY_MIN, RETRY_MAX = 0.2, 5.0
#: With dockerd unreachable, Docker attachments are re-checked this often
#: (the events thread's reconnect usually triggers a pass sooner).
DOCKER_RETRY = 5.0


class Agent:
    """``ovsfab agent``: keeps recorded attachments restored."""

    def __init__(self, remote: Optional[str] = None, interval: float = DEFAULT_INTERVAL,
                 timeout: float = 10.0) -> None:
        self.remote = remote
        self.interval = interval
        self.timeout = timeout
        self.stopping = False
        self.waker = Waker()
        self.queue: "queue.Queue[Item]" = queue.Queue()
        self.backend: Any = None
        self.reconciler: Any = None
        self.docker: Any = None
        self._seqno: Optional[int] = None
        self._ovsdb_down_logged = False
        #: The next full pass is a catch-up (start, reconnect): check Docker
        #: containers deeply.  Periodic passes are cheap (see Reconciler.all).
        self.catch_up = True

    # -- signals -----------------------------------------------------------
    def _on_signal(self, signum: int, _frame: Any) -> None:
        # Only a flag and a wake-up: the action in progress finishes first.
        self.stopping = True
        self.waker.wake()

    def _should_stop(self) -> bool:
        return self.stopping

    # -- OVSDB session -----------------------------------------------------
    def _connect(self) -> bool:
        from ovsfab.backends.factory import get_backend  # noqa: PLC0415
        from ovsfab.ops.reconcile import DockerView, Reconciler  # noqa: PLC0415

        try:
            backend = get_backend("ovs", db=self.remote, timeout=self.timeout)
        except OvsfabError as exc:
            if not self._ovsdb_down_logged:
                LOG.warning("OVSDB unavailable (%s); retrying", exc)
                self._ovsdb_down_logged = True
            return False
        self.backend = backend
        if self.docker is None:
            self.docker = DockerView()
        self.reconciler = Reconciler(backend, self.docker, should_stop=self._should_stop)
        self._seqno = self._session().get_seqno()
        LOG.info("connected to OVSDB at %s", backend.remote)
        self._ovsdb_down_logged = False
        return True

    def _session(self) -> Any:
        return self.backend.session.idl._session  # noqa: SLF001 - no public accessor

    def _drop_backend(self, why: str) -> None:
        LOG.warning("lost OVSDB (%s); reconnecting", why)
        self._ovsdb_down_logged = True
        try:
            self.backend.close()
        except Exception:  # the connection is already broken
            pass
        self.backend = None
        self.reconciler = None

    def _ovsdb_ok(self) -> bool:
        """Process what OVSDB sent; False when the session is no longer usable."""
        self.backend.session.idl.run()
        sess = self._session()
        return bool(sess.is_connected())

    # -- logging -------------------------------------------------------------
    @staticmethod
    def _log(result: Any, quiet_ok: bool = True, log_stopped: bool = False) -> None:
        from ovsfab.ops.reconcile_view import FAILED, OK, STOPPED  # noqa: PLC0415

        for act in result.actions:
            if act.result == FAILED:
                LOG.error("%s", act.text(False))
            elif act.changed or (act.result == STOPPED and log_stopped):
                LOG.info("%s", act.text(False))
            elif act.result != OK or not quiet_ok:
                LOG.debug("%s", act.text(False))

    # -- the loop ------------------------------------------------------------
    def run(self) -> int:
        """Run until SIGTERM/SIGINT; returns the exit code (0)."""
        import ovs.poller  # noqa: PLC0415 - lazy: only the agent loop polls

        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        events = DockerEvents(self.queue, self.waker)
        events.start()
        server = self._open_server()  # -- control socket (agent/server.py) --
        LOG.info("started: reconciling at start, on Docker events and every %gs", self.interval)
        now = time.monotonic()
        full_due = now
        retry_at = now
        delay = RETRY_MIN
        pending: Set[str] = set()
        try:
            while not self.stopping:
                self.waker.drain()
                while True:
                    try:
                        item = self.queue.get_nowait()
                    except queue.Empty:
                        break
                    if item.kind == "event":
                        LOG.debug("docker event %s %s", item.action, item.container_id[:12])
                        pending.add(item.container_id)
                    elif item.kind == "connected":
                        LOG.info("dockerd %s: reconciling everything", item.detail)
                        full_due = time.monotonic()
                        self.catch_up = True
                    elif item.kind == "lost":
                        LOG.warning("lost dockerd (%s); waiting for it", item.detail)
                if self.stopping:
                    break

                now = time.monotonic()
                if self.backend is not None and not self._ovsdb_ok():
                    self._drop_backend("connection closed")
                    retry_at, delay = now + RETRY_MIN, RETRY_MIN
                if self.backend is None and now >= retry_at:
                    if self._connect():
                        full_due, delay = now, RETRY_MIN
                        self.catch_up = True
                    else:
                        retry_at, delay = now + delay, min(RETRY_MAX, delay * 2)
                if server is not None:  # CLI requests first: a user is waiting on each
                    server.serve_pending()
                if self.backend is not None:
                    seqno = self._session().get_seqno()
                    if seqno != self._seqno:  # the IDL reconnected by itself: re-sync
                        self._seqno = seqno
                        full_due = now
                        self.catch_up = True
                    full_due = self._work(now, full_due, pending)
                    if self.backend is None:  # lost OVSDB during the pass
                        retry_at, delay = time.monotonic() + RETRY_MIN, RETRY_MIN

                if self.stopping:
                    break
                now = time.monotonic()
                wake_at = full_due if self.backend is not None else retry_at
                poller = ovs.poller.Poller()
                if self.backend is not None:
                    self.backend.session.idl.wait(poller)
                poller.fd_wait(self.waker.read_fd, ovs.poller.POLLIN)
                if server is not None:
                    poller.fd_wait(server.fileno(), ovs.poller.POLLIN)
                poller.timer_wait(max(0, int((wake_at - now) * 1000)))
                poller.block()
        finally:
            if server is not None:
                server.close()
            events.stop()
            if self.backend is not None:
                self.backend.close()
            if self.docker is not None:
                self.docker.close()
            for sig, handler in old.items():
                signal.signal(sig, handler)
            self.waker.close()
            LOG.info("stopped")
        return 0

    def _open_server(self) -> Any:
        """The control socket for `ovsfab attach/detach` (None, with a warning, if it cannot be had).

        Without it the agent still does its main job; the CLI then works in-process.
        """
        from ovsfab.agent.server import ControlServer  # noqa: PLC0415

        server = ControlServer(lambda: self.backend)
        try:
            server.open()
        except (OvsfabError, OSError) as exc:
            LOG.warning("not serving the CLI: %s", exc)
            return None
        return server

    def _work(self, now: float, full_due: float, pending: Set[str]) -> float:
        """One full pass when due, else the queued containers; returns the next full_due."""
        try:
            if now >= full_due:
                pending.clear()  # a full pass covers them
                deep, self.catch_up = self.catch_up, False
                result = self.reconciler.all(deep=deep)
                self._log(result)
                if result.docker == "unavailable":
                    return time.monotonic() + DOCKER_RETRY
                return time.monotonic() + self.interval
            if pending:
                ids = set(pending)
                pending.clear()
                self._log(self.reconciler.containers(ids), log_stopped=True)
        except Unavailable as exc:
            if self.backend is not None and not self._ovsdb_ok():
                self._drop_backend(str(exc))
                self.catch_up = True
                return time.monotonic()  # full pass once reconnected
            # dockerd went away mid-pass: try again soon (and on reconnect).
            LOG.warning("%s", exc)
            self.catch_up = True
            return min(full_due, time.monotonic() + DOCKER_RETRY)
        except OvsfabError as exc:
            LOG.error("reconcile failed: %s", exc)
            return min(full_due, time.monotonic() + DOCKER_RETRY)
        except Exception as exc:  # a bug: log it and keep the agent alive (systemd would restart it anyway)
            LOG.error("internal error during reconcile: %s: %s (report it)", type(exc).__name__, exc,
                      exc_info=LOG.isEnabledFor(logging.DEBUG))
            return min(full_due, time.monotonic() + DOCKER_RETRY)
        return full_due
