"""One Docker Engine API GET over dockerd's unix socket, without the docker SDK.

An attach asks dockerd one question (``GET /containers/REF/json``).  The SDK
and its requests stack cost ~130 ms to import here (``python -X importtime
-c 'import docker'``), more than the rest of an attach; this module answers
the one question with the standard library's socket and json.  The SDK stays
for everything else (events, listings, the lab).  Only ``unix://`` hosts:
for any other ``DOCKER_HOST`` the caller uses the SDK.
"""

from __future__ import annotations

import errno
import json
import socket
from typing import Any, Tuple
from urllib.parse import quote

#: Same bound as the SDK client's timeout in plumbing/containers.py.
TIMEOUT = 10.0
MAX_RESPONSE = 16 << 20


class ApiError(OSError):
    """dockerd could not be asked (no socket, refused, a broken answer)."""


def unix_path(docker_host: str) -> str:
    """The socket path of a ``unix://`` Docker host."""
    return docker_host[len("unix://"):] if docker_host.startswith("unix://") else ""


def get_json(docker_host: str, path: str, timeout: float = TIMEOUT) -> Tuple[int, Any]:
    """``GET path`` (unversioned: dockerd's current API); (HTTP status, decoded JSON body or None)."""
    sock_path = unix_path(docker_host)
    if not sock_path:
        raise ApiError(f"{docker_host} is not a unix socket")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(sock_path)
        sock.sendall(f"GET {quote(path, safe='/?=&')} HTTP/1.1\r\nHost: docker\r\nUser-Agent: ovsfab\r\n"
                     "Connection: close\r\n\r\n".encode("ascii"))
        data = bytearray()
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
            if len(data) > MAX_RESPONSE:
                raise ApiError("dockerd's answer is too large")
    finally:
        sock.close()
    head, sep, body = bytes(data).partition(b"\r\n\r\n")
    if not sep:
        raise ApiError("dockerd's answer has no HTTP header")
    lines = head.decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        raise ApiError(f"dockerd's answer starts oddly: {lines[0][:60]!r}") from None
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = _dechunk(body)
    if not body.strip():
        return status, None
    try:
        return status, json.loads(body)
    except ValueError:
        raise ApiError("dockerd's answer is not JSON") from None


def _dechunk(body: bytes) -> bytes:
    out = bytearray()
    while body:
        size_line, sep, rest = body.partition(b"\r\n")
        if not sep:
            raise ApiError("a chunk of dockerd's answer is cut")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2:]
    return bytes(out)


def unreachable(exc: BaseException, docker_host: str) -> str:
    """Why dockerd at ``docker_host`` could not be reached, in words (not an exception class name).

    The SDK wraps the socket's OSError in requests' exceptions; the first
    OSError in the chain (causes, contexts, arguments) says what happened.
    """
    where = unix_path(docker_host) or docker_host
    seen, todo = set(), [exc]
    while todo:
        e = todo.pop(0)
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, (socket.timeout, TimeoutError)):
            return f"no answer from {where} in time"
        if isinstance(e, OSError) and e.errno == errno.ENOENT:
            return f"no socket at {where}"
        if isinstance(e, OSError) and e.errno == errno.ECONNREFUSED:
            return f"nothing listens at {where}"
        if isinstance(e, OSError) and e.errno is not None:
            return f"{where}: {e.strerror or errno.errorcode.get(e.errno, e.errno)}"
        todo += [x for x in (e.__cause__, e.__context__, *getattr(e, "args", ())) if isinstance(x, BaseException)]
        reason = getattr(e, "reason", None)  # urllib3's wrappers keep the socket error here
        if isinstance(reason, BaseException):
            todo.append(reason)
    return f"{where}: {type(exc).__name__}"
