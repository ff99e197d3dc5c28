"""Serve the remote driver API: JSON over HTTP/1.1 on a unix socket, and the plugin's discovery files.

Docker finds a plugin NAME by ``/run/docker/plugins/NAME.sock``, or by a spec
file (``/etc/docker/plugins/NAME.spec``, one line ``unix://PATH``) when the
socket lives elsewhere.  The server removes what it made when it stops; a
socket file left by a killed server is replaced at the next start.
"""

from __future__ import annotations

import http.server
import json
import logging
import os
import signal
import socketserver
import threading
from pathlib import Path
from typing import Any, List, Optional

from ovsfab.driver.handlers import Driver
from ovsfab.errors import Conflict, PermissionDenied

LOG = logging.getLogger(__name__)

PLUGINS_DIR = "/run/docker/plugins"
SPEC_DIR = "/etc/docker/plugins"
CONTENT_TYPE = "application/vnd.docker.plugins.v1.2+json"
#: Largest request body read (Docker's are a few hundred bytes).
MAX_BODY = 1 << 20


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # Docker's client keeps connections open
    server: "DriverServer"

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._reply(413, {"Err": "request too large"})
            return
        raw = self.rfile.read(length) if length else b""
        try:
            body: Any = json.loads(raw) if raw.strip() else {}
        except ValueError:
            self._reply(200, {"Err": f"{self.path}: the body is not JSON"})
            return
        method = self.path.lstrip("/")
        answer = self.server.driver.handle(method, body)
        self._reply(200, answer)

    def _reply(self, status: int, data: Any) -> None:
        out = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def address_string(self) -> str:  # a unix socket has no client address
        return "docker"

    def log_message(self, fmt: str, *args: Any) -> None:
        LOG.debug(fmt, *args)


class DriverServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """A thread per connection (idle keep-alive connections must not block others); the
    driver serialises the work itself."""

    daemon_threads = True

    def __init__(self, path: str, driver: Driver) -> None:
        self.driver = driver
        super().__init__(path, _Handler)


def _claim_socket(path: str) -> None:
    """Remove a socket file left by a killed server; refuse to take a live one."""
    if not os.path.exists(path):
        return
    import socket  # noqa: PLC0415

    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)
        return
    finally:
        probe.close()
    raise Conflict(f"another process serves {path}", "stop it, or give this driver another --name/--socket")


class Serving:
    """A running driver: its socket, its spec file, and the thread (or caller) serving it."""

    def __init__(self, name: str, driver: Driver, socket_path: Optional[str] = None,
                 spec_dir: str = SPEC_DIR) -> None:
        self.name = name
        self.socket_path = socket_path or os.path.join(PLUGINS_DIR, f"{name}.sock")
        self.spec_path: Optional[str] = None
        self._made: List[str] = []
        Path(self.socket_path).parent.mkdir(parents=True, exist_ok=True)
        _claim_socket(self.socket_path)
        try:
            self.server = DriverServer(self.socket_path, driver)
        except PermissionError as exc:
            raise PermissionDenied(f"cannot create {self.socket_path}: {exc.strerror}", "run it as root") from None
        self._made.append(self.socket_path)
        try:
            if os.path.abspath(self.socket_path) != os.path.join(PLUGINS_DIR, f"{name}.sock"):
                # Docker finds sockets only under PLUGINS_DIR by name: tell it where this one is.
                Path(spec_dir).mkdir(parents=True, exist_ok=True)
                self.spec_path = os.path.join(spec_dir, f"{name}.spec")
                tmp = self.spec_path + ".tmp"
                Path(tmp).write_text(f"unix://{os.path.abspath(self.socket_path)}\n")
                os.replace(tmp, self.spec_path)
                self._made.append(self.spec_path)
        except BaseException:
            self.close()
            raise

    def serve_forever(self) -> None:
        """Serve until SIGTERM/SIGINT (main thread) or :meth:`close`."""
        if threading.current_thread() is threading.main_thread():
            stop = lambda *_: threading.Thread(target=self.server.shutdown, daemon=True).start()  # noqa: E731
            signal.signal(signal.SIGTERM, stop)
            signal.signal(signal.SIGINT, stop)
        LOG.info("serving Docker plugin %s on %s", self.name, self.socket_path)
        try:
            self.server.serve_forever(poll_interval=0.5)
        finally:
            self.close()

    def close(self) -> None:
        """Stop listening and remove the socket and spec file this server made."""
        self.server.server_close()
        for path in reversed(self._made):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        self._made.clear()
