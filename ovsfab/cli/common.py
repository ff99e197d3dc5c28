"""What every command shares: global options, backend factory, error handling, output."""

from __future__ import annotations

import json
import traceback
from typing import Any, Callable, Optional

import typer

from ovsfab.errors import OvsfabError


class State:
    """Global options, shared by all commands."""

    db: Optional[str] = None
    debug: bool = False
    #: --backend (None: OVSFAB_BACKEND, the config file, or "ovs").
    backend: Optional[str] = None


STATE = State()


def ovs_factory(bridge: Optional[str] = None) -> Callable[[], Any]:
    """The backend factory of the chosen kind (name kept: it predates --backend).

    ``bridge`` lets ``--backend auto`` follow the kind of an existing bridge.
    """

    def factory() -> Any:
        from ovsfab.backends.factory import choose, configured_kind  # noqa: PLC0415

        backend, note = choose(configured_kind(STATE.backend), db=STATE.db, bridge=bridge)
        if note:
            typer.echo(f"ovsfab: note: {note}", err=True)
        return backend

    return factory



def run(fn: Callable[[], Any]) -> Any:
    """Run an operation; turn errors into one line and an exit code."""
    try:
        return fn()
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
