"""The ``ovsfab-cni`` executable: one CNI command per process, handed whole to a running agent.

A runtime starts the plugin once per ADD or DEL; a Go plugin is running in a
few milliseconds, a Python process that imports python-ovs, pyroute2 and
the request parsing takes tens.  So this module, like the CLI's lean client
(ovsfab/cli/fast.py), imports only the standard library (:mod:`os`, :mod:`sys`, the C ``_socket``
and ``_json``: JSON through :mod:`ovsfab.agent.wire`, since :mod:`json` imports
:mod:`re` and :mod:`enum`) until it knows which path it takes:

1. it reads stdin and finds, in the configuration, the OVSDB remote and
   ovs-vswitchd's namespace (:func:`ovsfab.ops.cni_where.lookup`, the same
   choice the checked parse makes);
2. when the agent of that OVSDB listens (its socket beside ``db.sock``), it
   sends the raw request -- the configuration text and the environment -- as
   the operation ``cni.request`` (ovsfab/ops/cni_request.py), and prints the
   exit code and document the agent sends back; the agent parses, runs the
   IPAM plugin and the attachment with its warm OVSDB session;
3. otherwise (no agent, ``OVSFAB_NO_AGENT=1``, a decline, an agent error, no
   answer) the same :func:`ovsfab.ops.cni_request.handle` runs in this
   process.

Success: the result on stdout, exit 0.  Failure: the error object on stdout,
exit 1.  Log lines go to stderr only (the runtime keeps stdout).
"""

from __future__ import annotations

import os
import sys

from ovsfab.agent import protocol
from ovsfab.agent import wire
from ovsfab.ops.cni_where import lookup

TYPE_CHECKING = False
if TYPE_CHECKING:  # no typing import at run time (start-up cost)
    from typing import Any, Dict, List, Mapping, Optional, Tuple

#: Whether the plugin tries an agent first (docs/cni.md).
AGENT_HANDOFF = True


def _netns_of(ovs_netns: "Optional[str]") -> "List[int]":
    """The namespace the request acts in: ovs-vswitchd's when the configuration names one, else this
    thread's.  The agent serves only its own; a missing one is left to the in-process run to report."""
    if ovs_netns:
        try:
            st = os.stat(ovs_netns)
        except OSError:
            return protocol.netns_id()
        return [st.st_dev, st.st_ino]
    return protocol.netns_id()


def message(stdin: bytes, environ: "Mapping[str, str]") -> "Optional[Dict[str, Any]]":
    """The ``cni.request`` message for the agent, and its socket; None when the configuration is not a
    JSON object (the in-process run says what is wrong)."""
    try:
        conf = wire.loads(stdin)
    except ValueError:  # also UnicodeDecodeError
        return None
    if not isinstance(conf, dict):
        return None
    db, ovs_netns = lookup(conf, lambda fh: wire.loads(fh.read()))
    return {"v": protocol.PROTOCOL, "op": "cni.request",
            "params": {"stdin": stdin.decode("utf-8", "surrogateescape"),
                       "env": [f"{k}={v}" for k, v in environ.items()]},
            "context": {"db": db, "backend": "auto", "fault": environ.get("OVSFAB_INJECT_FAULT") or None,
                        "docker_host": None},
            "netns": _netns_of(ovs_netns)}


def via_agent(stdin: bytes, environ: "Mapping[str, str]") -> "Optional[Tuple[int, Optional[Dict[str, Any]]]]":
    """(exit code, document) from the agent that serves the request's OVSDB; None when none did.

    An agent that took the request and died gives None too: the run here
    repeats it, as ADD and DEL are idempotent (the attachment's names derive
    from the container ID; host-local hands the same container its address
    again).
    """
    msg = message(stdin, environ)
    if msg is None:
        return None
    reply = protocol.call(msg, protocol.socket_for_db(msg["context"]["db"]), wire.dumps, wire.loads)
    result = reply.get("result") if reply is not None else None
    if not isinstance(result, dict) or not isinstance(result.get("code"), int):
        return None  # declined, refused, an error of the operation itself: run it here
    out = result.get("out")
    return result["code"], out if isinstance(out, dict) else None


def run_here(stdin: bytes, environ: "Mapping[str, str]") -> "Tuple[int, Optional[Dict[str, Any]]]":
    """The request in this process (imports the operations: python-ovs and pyroute2 when it attaches)."""
    import logging  # noqa: PLC0415 - only on this path

    logging.basicConfig(stream=sys.stderr, level=logging.DEBUG if environ.get("OVSFAB_CNI_DEBUG") else
                        logging.WARNING, format="ovsfab-cni: %(message)s")
    from ovsfab.ops.cni_request import handle  # noqa: PLC0415

    return handle(stdin, environ)


def handle(stdin: bytes, environ: "Mapping[str, str]") -> "Tuple[int, Optional[Dict[str, Any]]]":
    """One request, by the agent when one takes it, else here: (exit code, what to print)."""
    done = None if environ.get("OVSFAB_NO_AGENT") else via_agent(stdin, environ)
    return done if done is not None else run_here(stdin, environ)


def main() -> int:
    """The console entry point ``ovsfab-cni``."""
    code, out = handle(sys.stdin.buffer.read(), os.environ)
    if out is not None:
        sys.stdout.write(wire.dumps(out) + "\n")
        sys.stdout.flush()
    return code
