"""What every command shares: global options, the request context, error handling, output."""

from __future__ import annotations

import json
import os
import traceback
from typing import Any, Callable, Dict, Optional

import typer




class State:
    """Global options, shared by all commands."""

    db: Optional[str] = None
    debug: bool = False
    #: --backend (None: OVSFAB_BACKEND, the config file, or "auto").
    backend: Optional[str] = None


STATE = State()


def ovs_factory(bridge: Optional[str] = None) -> Callable[[], Any]:
    """The backend factory of this process's context (name kept: it predates --backend).

    ``bridge`` is what ``auto`` (the default) decides by: a Linux bridge of that name, else OVS.
    """
    return context().backend_factory(bridge)


def context() -> Any:  # -> ovsfab.ops.context.Context
    """This process's request context: --db/--backend, else the environment and the config file.

    Only front ends read the environment; operations get what it says as
    arguments (ovsfab/ops/context.py).
    """
    from ovsfab.ops.context import Context  # noqa: PLC0415

    return Context.from_environ(os.environ, db=STATE.db, backend=STATE.backend)


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
    """Run an operation; turn errors into one line and an exit code (ovsfab/cli/render.py ``failure``)."""
    from ovsfab.cli.render import failure  # noqa: PLC0415

    try:
        return fn()
    except typer.Exit:  # an exit code decided by the command itself (a failed check)
        raise
    except BaseException as exc:  # noqa: BLE001 - every failure is one line and an exit code
        line, code = failure(exc)
        if code is None:
            raise
        if STATE.debug and not isinstance(exc, KeyboardInterrupt):
            traceback.print_exc()
        typer.echo(line, err=True)
        raise typer.Exit(code) from None


def emit(data: dict, as_json: bool, text: str) -> None:
    if as_json:
        typer.echo(json.dumps(data, sort_keys=True))
    else:
        typer.echo(text)
