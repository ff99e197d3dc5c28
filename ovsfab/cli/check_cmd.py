"""``ovsfab check``: the typer command (the checks live in :mod:`ovsfab.ops.check`)."""

from __future__ import annotations

import typer

from ovsfab.cli.common import execute, run


def check(
    wait: float = typer.Option(0.0, "--wait", help="Repeat until every check passes, for at most this many "
                               "seconds (0: check once)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Prove what this host can: tunnel underlays answer, neighbour caches hold the right MAC,
    BFD is up, MTUs fit the tunnels, no attachment is stale.  Exit 8 when anything is wrong."""
    run(lambda: execute("check", {"wait": wait}, as_json))
