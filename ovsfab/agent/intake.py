"""The agent's intake: accepts control connections and reads whole requests, off the main loop.

The main loop runs one request at a time (python-ovs is not thread safe),
but reading a request must not be: a client that connects and sends nothing,
or sends slowly, used to hold the loop for the whole read timeout, and 20
such clients stalled every other request for 30 s.  This thread owns the
listening socket and every connection until its request is complete; only
complete requests reach the main loop, through :meth:`Intake.take`, and
:attr:`Intake.fileno` wakes the loop's poll() when one is ready.

Refusals are decided here and answered at once, each in one JSON object
the client recognises as "not served" (it then runs in-process):
a peer that is not root, a request larger than MAX_REQUEST, one that is not
JSON, one not complete within READ_TIMEOUT, and any connection beyond
MAX_PENDING while that many are being read or waiting.
"""

from __future__ import annotations

import errno
import json
import logging
import queue
import selectors
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from ovsfab.agent.events import Waker

LOG = logging.getLogger("ovsfab.agent")

#: A client sends its whole request right after connecting.
READ_TIMEOUT = 2.0
#: Requests are argv and a few variables: a few KiB.
MAX_REQUEST = 1 << 20
#: Connections being read or waiting for the main loop; more are refused at once.
MAX_PENDING = 64
_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


def peer_uid(conn: socket.socket) -> Tuple[int, int]:
    """(pid, uid) of the process at the other end of a unix socket (SO_PEERCRED)."""
    pid, uid, _gid = _UCRED.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
    return pid, uid


def send_reply(conn: socket.socket, reply: Dict[str, Any]) -> None:
    """Send one JSON reply and close (a client that went away is no error)."""
    try:
        conn.setblocking(True)
        conn.settimeout(5.0)
        conn.sendall(json.dumps(reply).encode())
    except OSError as exc:
        LOG.debug("control socket: %s", exc)
    finally:
        conn.close()


@dataclass
class _Reading:
    conn: socket.socket
    deadline: float
    chunks: List[bytes] = field(default_factory=list)
    size: int = 0
    #: Refused as too large: the rest is read and thrown away until EOF, so
    #: closing does not reset the connection before the client reads why.
    discard: bool = False


class Intake(threading.Thread):
    """Accepts on ``listener`` and hands complete requests to the main loop."""

    def __init__(self, listener: socket.socket) -> None:
        super().__init__(name="ovsfab-intake", daemon=True)
        self.listener = listener
        self.ready: "queue.Queue[Tuple[socket.socket, Dict[str, Any]]]" = queue.Queue()
        self.waker = Waker()
        self._halt = Waker()
        self._stopping = False
        self._reading: Dict[int, _Reading] = {}

    @property
    def fileno(self) -> int:
        """Readable when a request is ready (for the main loop's poll())."""
        return self.waker.read_fd

    def take(self, timeout: float = 0.0) -> Optional[Tuple[socket.socket, Dict[str, Any]]]:
        """The next complete request (its connection and object), waiting up to ``timeout`` s; or None."""
        try:
            if timeout <= 0:
                return self.ready.get_nowait()
            return self.ready.get(timeout=timeout)
        except queue.Empty:
            return None

    def halt(self) -> None:
        """Stop the thread and close what it holds (the listener stays the caller's)."""
        self._stopping = True
        self._halt.wake()
        if self.is_alive():
            self.join(timeout=5)
        while True:
            item = self.take()
            if item is None:
                break
            item[0].close()
        self.waker.close()
        self._halt.close()

    # -- the thread --------------------------------------------------------
    def run(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self.listener, selectors.EVENT_READ, "listen")
        sel.register(self._halt.read_fd, selectors.EVENT_READ, "halt")
        try:
            while not self._stopping:
                timeout = None
                if self._reading:
                    timeout = max(0.0, min(r.deadline for r in self._reading.values()) - time.monotonic())
                for key, _ in sel.select(timeout):
                    if key.data == "listen":
                        self._accept(sel)
                    elif key.data == "read":
                        try:
                            self._read(sel, key.fileobj)  # type: ignore[arg-type]
                        except Exception:  # noqa: BLE001 - one bad connection must not end the intake
                            LOG.exception("control socket: reading a request failed; connection dropped")
                            rd = self._reading.get(key.fileobj.fileno())  # type: ignore[union-attr]
                            if rd is not None:
                                self._drop(sel, rd, None)
                self._expire(sel)
        finally:
            for rd in list(self._reading.values()):
                rd.conn.close()
            self._reading.clear()
            sel.close()

    def _pending(self) -> int:
        return len(self._reading) + self.ready.qsize()

    def _accept(self, sel: selectors.BaseSelector) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in (errno.EINTR, errno.ECONNABORTED):
                    continue
                LOG.warning("control socket: accept failed: %s", exc.strerror)
                return
            try:
                pid, uid = peer_uid(conn)
            except OSError:
                conn.close()
                continue
            if uid != 0:
                LOG.warning("control socket: refused a request from uid %d (pid %d): root only", uid, pid)
                send_reply(conn, {"refused": "root only"})
                continue
            if self._pending() >= MAX_PENDING:
                LOG.warning("control socket: %d requests pending; refused one from pid %d", MAX_PENDING, pid)
                send_reply(conn, {"refused": "busy"})
                continue
            conn.setblocking(False)
            self._reading[conn.fileno()] = _Reading(conn, time.monotonic() + READ_TIMEOUT)
            sel.register(conn, selectors.EVENT_READ, "read")

    def _read(self, sel: selectors.BaseSelector, conn: socket.socket) -> None:
        rd = self._reading.get(conn.fileno())
        if rd is None:
            return
        try:
            chunk = conn.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
            self._drop(sel, rd, None)
            return
        if chunk and rd.discard:
            return
        if chunk:
            rd.size += len(chunk)
            if rd.size > MAX_REQUEST:
                self._refuse_early(rd, {"refused": f"request larger than {MAX_REQUEST} bytes"})
                return
            rd.chunks.append(chunk)
            return
        if rd.discard:
            self._drop(sel, rd, None)
            return
        # EOF: the client shut down its sending side; the request is complete.
        try:
            req = json.loads(b"".join(rd.chunks))
        except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser goes
            req = None
        if not isinstance(req, dict):
            self._drop(sel, rd, {"refused": "not a JSON object"})
            return
        sel.unregister(conn)
        del self._reading[conn.fileno()]
        self.ready.put((conn, req))
        self.waker.wake()

    @staticmethod
    def _refuse_early(rd: _Reading, reply: Dict[str, Any]) -> None:
        """Answer now, then drain what the client still sends (bounded by the deadline)."""
        rd.chunks.clear()
        rd.discard = True
        try:
            rd.conn.send(json.dumps(reply).encode())  # small: fits the socket buffer
            rd.conn.shutdown(socket.SHUT_WR)
        except OSError as exc:
            LOG.debug("control socket: %s", exc)

    def _expire(self, sel: selectors.BaseSelector) -> None:
        now = time.monotonic()
        for rd in [r for r in self._reading.values() if r.deadline <= now]:
            LOG.debug("control socket: no complete request within %.1f s; closed", READ_TIMEOUT)
            self._drop(sel, rd, None)

    def _drop(self, sel: selectors.BaseSelector, rd: _Reading, reply: Optional[Dict[str, Any]]) -> None:
        sel.unregister(rd.conn)
        self._reading.pop(rd.conn.fileno(), None)
        if reply is None:
            rd.conn.close()
        else:
            send_reply(rd.conn, reply)
