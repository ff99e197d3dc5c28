"""The one place the CNI plugin runs an operation: the running agent when there is one, else here.

As the CLI does: the operation, its parameters and its context go to the
agent that serves this OVSDB (its socket sits beside the database socket,
:func:`ovsfab.agent.protocol.socket_for_db`), which runs
:func:`ovsfab.ops.api.execute` with its warm OVSDB session.  No agent, a
refusal, a decline or no answer: the same call runs in this process.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict

from ovsfab.agent import protocol
from ovsfab.errors import OvsfabError
from ovsfab.ops.context import Context

#: Whether :func:`run_operation` tries an agent first (reported by VERSION's debug output and docs/cni.md).
AGENT_HANDOFF = True


class AgentError(OvsfabError):
    """An error the agent reported for the operation (its exit code kept)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _netns_of(ovs_netns: Any) -> Any:
    """The namespace the operation acts in: the host's OVS netns when the config names one
    (the operation enters it), else this thread's.  The agent serves only its own."""
    if isinstance(ovs_netns, str) and ovs_netns:
        try:
            st = os.stat(os.path.join("/run/netns", ovs_netns))
        except OSError:
            return protocol.netns_id()  # the operation says what is wrong
        return [st.st_dev, st.st_ino]
    return protocol.netns_id()


def run_operation(name: str, params: Dict[str, Any], ctx: Context) -> Dict[str, Any]:
    """Run operation ``name`` and return its ``to_json()``; raises OvsfabError."""
    if not os.environ.get("OVSFAB_NO_AGENT"):
        message = {"v": protocol.PROTOCOL, "op": name, "params": params, "context": ctx.to_json(),
                   "netns": _netns_of(params.get("ovs_netns"))}
        reply = protocol.call(message, protocol.socket_for_db(ctx.db), json.dumps, json.loads)
        if reply is not None:
            if "error" in reply:
                err = reply["error"]
                raise AgentError(str(err.get("message", "the agent failed")), int(err.get("exit_code", 1)))
            return reply["result"]
    from ovsfab.ops import api  # noqa: PLC0415 - pyroute2 and python-ovs: only without an agent

    return api.execute(name, params, ctx).to_json()
