"""``ovsfab inspect`` and ``ovsfab show``: the typer commands.

The facts come from :mod:`ovsfab.ops.inspect` through the operations API;
the rendering lives in :mod:`ovsfab.cli.inspect_view` (called by
:mod:`ovsfab.cli.render`) so that every path prints the same text.
"""

from __future__ import annotations

from typing import Optional

import typer

from ovsfab.cli.common import execute, run
# Re-exported: other commands (lab) render with these.
from ovsfab.cli.inspect_view import Painter, render_inspect, render_show, tree, use_colour  # noqa: F401

__all__ = ["Painter", "inspect", "register", "render_inspect", "render_show", "show", "tree", "use_colour"]


def inspect(
    container: str = typer.Argument(..., help="Docker container name or ID, netns:NAME or pid:N."),
    as_json: bool = typer.Option(False, "--json", help="Print the facts as JSON (docs/json.md)."),
) -> None:
    """Show a container's interfaces, their host peers and the bridges behind them."""
    run(lambda: execute("inspect", {"container": container}, as_json))


def show(
    bridge: Optional[str] = typer.Argument(None, help="Only this bridge."),
    as_json: bool = typer.Option(False, "--json", help="Print the facts as JSON (docs/json.md)."),
) -> None:
    """Show every bridge on this host with its ports, owners, uplinks, tunnels and stale ports."""
    run(lambda: execute("show", {"bridge": bridge}, as_json))


def register(app: typer.Typer) -> None:
    """Add ``inspect`` and ``show`` to the CLI (called once from ovsfab.cli.main)."""
    app.command("inspect")(inspect)
    app.command("show")(show)
