"""The agent's control protocol, shared by the agent and its clients (standard library only).

One request per connection, one JSON object each way; the client shuts its
sending side down after the request.

Request (protocol 2)::

    {"v": 2, "op": "attach", "params": {...}, "context": {"db": ..., "backend": ..., "fault": ...,
     "docker_host": ...}, "netns": [dev, inode]}

``op`` and ``params`` are an operation of :mod:`ovsfab.ops.api` and its
parameters; ``context`` is a :class:`ovsfab.ops.context.Context` on the wire.
Replies: ``{"v": 2, "result": {...}}`` (the operation's ``to_json()``),
``{"v": 2, "error": {"type", "message", "line", "exit_code"}}`` (``line`` is
exactly what the CLI prints on stderr), ``{"v": 2, "declined": WHY}`` or
``{"refused": WHY}`` (the client runs the operation itself).
"""

from __future__ import annotations

import _socket
import os

TYPE_CHECKING = False
if TYPE_CHECKING:  # no typing import at run time (the lean client's start-up cost)
    from typing import Any, Callable, Dict, List, Mapping, Optional

PROTOCOL = 2
#: Connecting is local and instant when an agent listens; a missing or hung
#: one must not cost the caller noticeable time before its fallback.
CONNECT_TIMEOUT = 0.25
#: An attach waits for OVSDB and dockerd (10 s deadlines each), and the agent
#: may be finishing a reconcile pass first.
REPLY_TIMEOUT = 120.0
#: Largest reply accepted (show of a big host is a few hundred KiB).
MAX_REPLY = 16 << 20
#: The socket when neither OVSFAB_AGENT_SOCK nor OVS_RUNDIR is set.
DEFAULT_SOCK = "/run/ovsfab/agent.sock"
SOCK_ENV = "OVSFAB_AGENT_SOCK"


def socket_path(env: "Mapping[str, str]") -> str:
    """The agent's control socket: OVSFAB_AGENT_SOCK, else per OVS_RUNDIR, else /run/ovsfab.

    Per OVS_RUNDIR because each Open vSwitch (a simulated host in the tests
    and the lab) has its own agent.
    """
    explicit = env.get(SOCK_ENV)
    if explicit:
        return explicit
    rundir = env.get("OVS_RUNDIR")
    if rundir:
        return os.path.join(rundir, "ovsfab-agent.sock")
    return DEFAULT_SOCK


def netns_id() -> "List[int]":
    """(device, inode) of this thread's network namespace: the agent serves only its own."""
    st = os.stat("/proc/thread-self/ns/net")
    return [st.st_dev, st.st_ino]


def socket_for_db(db: str) -> str:
    """The agent socket that goes with an OVSDB remote: ``RUNDIR/ovsfab-agent.sock`` beside
    ``unix:RUNDIR/db.sock`` (each Open vSwitch has its own agent), else the default."""
    if db.startswith("unix:") and db.endswith("/db.sock"):
        return os.path.join(os.path.dirname(db[len("unix:"):]), "ovsfab-agent.sock")
    return DEFAULT_SOCK


#: The key of :func:`call`'s answer when the agent took a request and never replied.
LOST = "lost"


def call(message: "Dict[str, Any]", path: str, dumps: "Callable[[Any], str]",
         loads: "Callable[[bytes], Any]", lost: bool = False) -> "Optional[Dict[str, Any]]":
    """Send one request to the agent at ``path``; its reply when it ran the operation, else None.

    None means: no agent (no socket, a stale one), not allowed (non-root), a
    refusal or a decline, no answer in time, or not our protocol -- the
    caller runs the operation itself.  ``dumps``/``loads`` are the caller's
    JSON codec (the lean client avoids importing :mod:`json`).

    With ``lost``, a request that was sent whole and then got not one byte
    back (the connection closed or was reset: the agent died or was stopped
    while it held the request; or no reply within REPLY_TIMEOUT) gives
    ``{"lost": WHY}`` instead of None: the agent may have run part of it.
    """
    if not os.path.exists(path):
        return None
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    sent = False
    chunks = []
    try:
        sock.settimeout(CONNECT_TIMEOUT)
        sock.connect(path)
        sock.settimeout(REPLY_TIMEOUT)
        sock.sendall(dumps(message).encode())
        sock.shutdown(_socket.SHUT_WR)  # end of request: the agent reads to EOF
        sent = True
        size = 0
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            size += len(chunk)
            if size > MAX_REPLY:
                return None
            chunks.append(chunk)
    except OSError as exc:
        if lost and sent and not chunks:
            return {LOST: f"gave no reply within {REPLY_TIMEOUT:g} s" if isinstance(exc, TimeoutError)
                    else "reset the connection without a reply"}
        return None
    finally:
        sock.close()
    if lost and sent and not chunks:
        return {LOST: "closed the connection without a reply"}
    try:
        reply = loads(b"".join(chunks))
    except ValueError:  # also UnicodeDecodeError
        return None
    if not isinstance(reply, dict) or reply.get("v") != PROTOCOL:
        return None
    if isinstance(reply.get("result"), dict) or isinstance(reply.get("error"), dict):
        return reply
    return None

