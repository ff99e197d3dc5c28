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

import os

TYPE_CHECKING = False
if TYPE_CHECKING:  # no typing import at run time (the lean client's start-up cost)
    from typing import List, Mapping

PROTOCOL = 2
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
