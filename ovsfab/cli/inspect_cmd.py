"""``ovsfab inspect`` and ``ovsfab show``: the typer commands.

The facts come from :mod:`ovsfab.ops.inspect`; the rendering, and a
typer-free path the console entry uses for plain command lines, live in
:mod:`ovsfab.cli.inspect_view` so that every path prints the same text.
"""

from __future__ import annotations

from typing import Optional

import typer

from ovsfab.cli.common import STATE, run
# Re-exported: other commands (lab) render with these.
from ovsfab.cli.inspect_view import (Painter, render_inspect, render_show, run_inspect, run_show,  # noqa: F401
                                     tree, use_colour)

__all__ = ["Painter", "inspect", "register", "render_inspect", "render_show", "show", "tree", "use_colour"]


def _echo(text: str, err: bool) -> None:
    """typer.echo, keeping colour codes when colour is on.

    click strips ANSI codes from a stream that is not a terminal; in the
    agent the stream is a buffer while the client's stdout may be a
    terminal (use_colour() then said so), so the codes must stay.
    """
    typer.echo(text, err=err, color=True if not err and use_colour() else None)


def inspect(
    container: str = typer.Argument(..., help="Docker container name or ID, netns:NAME or pid:N."),
    as_json: bool = typer.Option(False, "--json", help="Print the facts as JSON (docs/json.md)."),
) -> None:
    """Show a container's interfaces, their host peers and the bridges behind them."""
    run(lambda: run_inspect(container, as_json, STATE.db, _echo))


def show(
    bridge: Optional[str] = typer.Argument(None, help="Only this bridge."),
    as_json: bool = typer.Option(False, "--json", help="Print the facts as JSON (docs/json.md)."),
) -> None:
    """Show every bridge on this host with its ports, owners, uplinks, tunnels and stale ports."""
    run(lambda: run_show(bridge, as_json, STATE.db, STATE.backend, _echo))


def register(app: typer.Typer) -> None:
    """Add ``inspect`` and ``show`` to the CLI (called once from ovsfab.cli.main)."""
    app.command("inspect")(inspect)
    app.command("show")(show)
