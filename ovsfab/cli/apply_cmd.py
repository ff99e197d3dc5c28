"""``ovsfab apply FILE``: this host's part of a fabric file, printed like a diff, then applied.

Thin like the rest of the CLI: parse, call :func:`ovsfab.ops.apply.apply`,
render.  Heavy imports happen inside the command.
"""

from __future__ import annotations

import json
import socket
import sys
from typing import Any, Optional

import typer

from ovsfab.cli.common import context, ovs_factory, run


class _Bar:
    """A one-line progress bar on stderr, only when stderr is a terminal."""

    def __init__(self) -> None:
        self.enabled = sys.stderr.isatty()
        self.shown = False

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled or total < 2:
            return
        width = 30
        filled = width * done // total
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} attachments")
        sys.stderr.flush()
        self.shown = True

    def end(self) -> None:
        if self.shown:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self.shown = False


def apply_cmd(
    path: str = typer.Argument(..., metavar="FILE", help="The fabric file (YAML; see docs/fabric.md)."),
    host: Optional[str] = typer.Option(None, "--host", help="This host's name in the file (default: hostname)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan; change nothing."),
    prune: bool = typer.Option(False, "--prune", help="Also remove this fabric's objects the file no longer names."),
    wait: float = typer.Option(0.0, "--wait", help="Then wait up to this many seconds for `ovsfab check` to "
                               "pass (BFD up, neighbour caches right); exit 8 if it does not."),
    as_json: bool = typer.Option(False, "--json", help="Print the plan and the result as JSON."),
) -> None:
    """Apply this host's part of a fabric: bridges, uplinks, tunnels, attachments."""

    def op() -> None:
        from ovsfab.errors import InvalidInput, NotConverged  # noqa: PLC0415
        from ovsfab.ops.apply import apply  # noqa: PLC0415

        if not 0 <= wait <= 3600:
            raise InvalidInput(f"--wait {wait} is outside 0..3600 seconds")

        name = host or socket.gethostname()
        ctx = context()
        bar = _Bar() if not as_json else None

        def show_plan(plan: Any) -> None:
            if as_json:
                return
            typer.echo(f"{plan.fabric.path}: fabric {plan.fabric.name}, host {name}")
            for note in plan.notes:
                typer.echo(f"ovsfab: note: {note}", err=True)
            for change in plan.changes:
                typer.echo(change.line())
            for kept in plan.kept:
                typer.echo(f"  kept {kept}")
            if plan.empty:
                typer.echo("nothing to do")

        try:
            result = apply(path, name, ovs_factory(), dry_run=dry_run, prune=prune, progress=bar, on_plan=show_plan,
                           wait=wait, db_remote=ctx.db, fault=ctx.fault)
        finally:
            if bar is not None:
                bar.end()
        checked = result.check
        if as_json:
            typer.echo(json.dumps(result.to_json(), sort_keys=True))
        else:
            n = len(result.plan.changes)
            if dry_run:
                typer.echo(f"dry run: {n} change(s) planned, nothing changed")
            elif result.changed:
                typer.echo(f"applied {n} change(s) in {result.timings.get('total_s', 0):.2f} s")
            if checked is not None:
                for problem in checked.problems:
                    typer.echo(f"problem: {problem.line()}")
                if checked.ok:
                    typer.echo(f"converged in {checked.elapsed:.2f} s ({len(checked.tunnels)} tunnel(s) checked)")
        if checked is not None and not checked.ok:
            raise NotConverged(f"not converged after {wait:g} s: {len(checked.problems)} problem(s)",
                               "each is listed with its remedy (ovsfab check shows them again)")

    run(op)


def register(app: typer.Typer) -> None:
    """Add ``apply`` to the CLI (one line in cli/main.py)."""
    app.command("apply")(apply_cmd)
