"""The one place the CNI plugin runs an operation: the seam for the agent hand-off.

The issue asks for ADD to be handed to a running ovsfab agent when there is
one, as the CLI does.  The agent's client is being rewritten, so this runs
the operation in-process through :func:`ovsfab.ops.api.execute` -- the same
call the agent makes on the far side.  Wiring the hand-off means changing
this function only: try the agent's socket with (name, params, context), fall
back to in-process.  NOT WIRED YET: every request runs in-process.
"""

from __future__ import annotations

from typing import Any, Dict

from ovsfab.ops import api
from ovsfab.ops.context import Context

#: Whether :func:`run_operation` tries an agent first (reported by VERSION's debug output and docs/cni.md).
AGENT_HANDOFF = False


def run_operation(name: str, params: Dict[str, Any], ctx: Context) -> Dict[str, Any]:
    """Run operation ``name`` and return its ``to_json()``; raises OvsfabError."""
    return api.execute(name, params, ctx).to_json()
