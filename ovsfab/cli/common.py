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


STATE = State()


def ovs_factory() -> Callable[[], Any]:
    def factory() -> Any:
        from ovsfab.backends.factory import get_backend  # noqa: PLC0415

        return get_backend("ovs", db=STATE.db)

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
