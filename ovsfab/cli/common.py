"""What every command shares: global options, the request context, error handling, output."""

from __future__ import annotations

import json
import os
import traceback
from typing import Any, Callable, Dict, Optional

import typer

from ovsfab.errors import OvsfabError

#: The test hook's variable: the CLI puts its value into each request's context.
FAULT_ENV = "OVSFAB_INJECT_FAULT"


class State:
    """Global options, shared by all commands."""

    db: Optional[str] = None
    debug: bool = False
    #: --backend (None: OVSFAB_BACKEND, the config file, or "ovs").
    backend: Optional[str] = None


STATE = State()


def ovs_factory(bridge: Optional[str] = None) -> Callable[[], Any]:
    """The backend factory of this process's context (name kept: it predates --backend).

    ``bridge`` lets ``--backend auto`` follow the kind of an existing bridge;
    what ``auto`` chose when it was not obvious is printed as a note.
    """
    return context().backend_factory(bridge, notes=lambda note: typer.echo(f"ovsfab: note: {note}", err=True))


def context() -> Any:  # -> ovsfab.ops.context.Context
    """This process's request context: --db/--backend, else the environment and the config file.

    Only the CLI front end reads the environment; operations get what it
    found as arguments (ovsfab/ops/context.py).
    """
    from ovsfab.backends.factory import configured_kind  # noqa: PLC0415
    from ovsfab.backends.ovs.idl import default_remote  # noqa: PLC0415
    from ovsfab.ops.context import Context  # noqa: PLC0415

    return Context(db=STATE.db or default_remote(), backend=configured_kind(STATE.backend),
                   fault=os.environ.get(FAULT_ENV) or None, docker_host=os.environ.get("DOCKER_HOST") or None)


def execute(op: str, params: Dict[str, Any], as_json: bool) -> None:
    """Run one operation through the operations API and print its result as every front end does."""
    from ovsfab.cli.inspect_view import use_colour  # noqa: PLC0415
    from ovsfab.cli.render import render, verdict  # noqa: PLC0415
    from ovsfab.ops import api  # noqa: PLC0415

    data = api.execute(op, params, context()).to_json()
    colour = not as_json and op in ("show", "inspect") and use_colour()
    out = render(op, params, data, as_json, colour)
    for line in out.stderr:
        typer.echo(line, err=True)
    # click strips ANSI codes from a stream that is not a terminal; use_colour() decided already.
    typer.echo(out.stdout, color=True if colour else None)
    line, code = verdict(params, data)
    if code:
        typer.echo(line, err=True)
        raise typer.Exit(code)


def run(fn: Callable[[], Any]) -> Any:
    """Run an operation; turn errors into one line and an exit code."""
    try:
        return fn()
    except typer.Exit:  # an exit code decided by the command itself (a failed check)
        raise
    except OvsfabError as exc:
        if STATE.debug:
            traceback.print_exc()
        typer.echo(f"ovsfab: error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        typer.echo("ovsfab: interrupted; the change was rolled back", err=True)
        raise typer.Exit(130) from None
    except Exception as exc:  # a bug: say so in one line, details with --debug
        if STATE.debug:
            traceback.print_exc()
        typer.echo(f"ovsfab: internal error: {type(exc).__name__}: {exc} (rerun with --debug and report it)",
                   err=True)
        raise typer.Exit(1) from None


def emit(data: dict, as_json: bool, text: str) -> None:
    if as_json:
        typer.echo(json.dumps(data, sort_keys=True))
    else:
        typer.echo(text)
