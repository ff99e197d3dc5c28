"""The console entry: an operation from the command line, by the agent or in this process, without typer.

A shell loop of ``ovsfab attach`` pays, per call, for importing typer (~70 ms),
python-ovs, pyroute2 and the docker SDK, and for a fresh OVSDB sync; a
running ``ovsfab agent`` has all of that warm.  So this entry point, with
standard-library imports only, parses the command line with the lean parser
(:mod:`ovsfab.cli.argv`, generated from the typer commands), and:

1. if an agent socket exists, sends the operation, its parameters and its
   context (:mod:`ovsfab.agent.protocol`) and renders the result JSON it
   gets back with :mod:`ovsfab.cli.render`;
2. else (or when the agent declines, refuses or does not answer) runs the
   same operation in this process through :mod:`ovsfab.ops.api` and renders
   it the same way -- still without typer.  When the agent took the request
   and then closed without a reply (it died mid-operation, or was stopped),
   the client says so on stderr and runs it here all the same: attach and
   detach are idempotent and clear what a killed run of the same interface
   left (under the per-interface lock, which the kernel released when the
   agent died), so the re-run converges (tests/test_agent_crash.py).  A
   ``kill:STEP`` fault hook is not carried into that re-run: it fired in the
   agent already; firing it again would make the test hook simulate two
   crashes, and leave a client that died without a word;
3. anything the lean parser does not take (help, other commands, usage
   errors) goes to the typer CLI, which owns the definitions and the messages.

This module imports nothing outside the standard library before it knows
which path it takes.  It uses the C ``_socket`` module rather than
:mod:`socket` (which imports :mod:`enum` and :mod:`selectors`) and JSON
through :mod:`ovsfab.agent.wire` rather than :mod:`json` (whose decoder imports
:mod:`re`): ~45 ms less per call, measured here.
"""

from __future__ import annotations

import os
import sys

from ovsfab.agent.protocol import LOST, PROTOCOL, call, netns_id, socket_path
from ovsfab.agent import wire

TYPE_CHECKING = False
if TYPE_CHECKING:  # no typing import at run time (start-up cost)
    from typing import Dict, List, Optional

    from ovsfab.cli.argv import Parsed

def context_of(parsed: "Parsed") -> "Dict[str, object]":
    """The request's context on the wire: --db/--backend, else this process's environment."""
    from ovsfab import defaults  # noqa: PLC0415 - stdlib only

    return {"db": parsed.db or defaults.default_db(os.environ),
            "backend": defaults.backend_kind(os.environ, parsed.backend),
            "fault": os.environ.get("OVSFAB_INJECT_FAULT") or None,
            "docker_host": os.environ.get("DOCKER_HOST") or None}


def request(parsed: "Parsed", context: "Dict[str, object]") -> "Dict[str, object]":
    """The one JSON message sent to the agent."""
    return {"v": PROTOCOL, "op": parsed.op, "params": parsed.params, "context": context, "netns": netns_id()}


def call_agent(message: "Dict[str, object]", path: "Optional[str]" = None) -> "Optional[Dict[str, object]]":
    """Send one request to the agent; its reply (``result`` or ``error``), None when it did not serve it,
    ``{"lost": WHY}`` when it took the request and never answered."""
    return call(message, path or socket_path(os.environ), wire.dumps, wire.loads, lost=True)


def _print(parsed: "Parsed", data: "Dict[str, object]") -> int:
    """Render a result as the CLI does; the exit code."""
    from ovsfab.cli.inspect_view import use_colour  # noqa: PLC0415 - stdlib only
    from ovsfab.cli.render import render, verdict  # noqa: PLC0415 - stdlib only

    colour = not parsed.as_json and parsed.op in ("show", "inspect") and use_colour()
    out = render(parsed.op, parsed.params, data, parsed.as_json, colour)
    for line in out.stderr:
        sys.stderr.write(line + "\n")
    sys.stderr.flush()
    sys.stdout.write(out.stdout + "\n")
    sys.stdout.flush()
    line, code = verdict(parsed.params, data)
    if code:
        sys.stderr.write(line + "\n")
    return code


def try_agent(parsed: "Parsed", context: "Dict[str, object]") -> "Optional[int]":
    """Run the operation through the agent when one serves it; its exit code, else None.

    When the agent lost the request (see :func:`call_agent`) this says so on
    stderr and returns None, with a ``kill:`` fault hook taken out of
    ``context``: the caller's in-process re-run must not fire it again.  A
    removal (detach, tunnel del, uplink del) re-runs as with ``--if-exists``:
    the agent may have done it all before dying, and "nothing to remove" is
    then the state asked for (exit 0), not an error.
    """
    if os.environ.get("OVSFAB_NO_AGENT"):
        return None
    reply = call_agent(request(parsed, context))
    if reply is None:
        return None
    if LOST in reply:
        sys.stderr.write(f"ovsfab: warning: the agent took the request and {reply[LOST]} (it died or was "
                         f"stopped mid-operation); running {parsed.op} in this process\n")
        if str(context.get("fault") or "").startswith("kill:"):
            context["fault"] = None
        if parsed.params.get("if_exists") is False:
            # The agent may have finished the removal before it died: "nothing
            # attached" is then the state asked for, not a failure.
            parsed.params["if_exists"] = True
        return None
    error = reply.get("error")
    if isinstance(error, dict):
        sys.stderr.write(str(error.get("line", "ovsfab: error: the agent failed")) + "\n")
        return int(error.get("exit_code", 1))  # type: ignore[arg-type]
    return _print(parsed, reply["result"])  # type: ignore[arg-type]


def run_here(parsed: "Parsed", context: "Dict[str, object]") -> int:
    """Run the operation in this process through the operations API (no typer); the exit code."""
    import logging  # noqa: PLC0415

    from ovsfab.cli.render import failure  # noqa: PLC0415
    from ovsfab.ops import api  # noqa: PLC0415
    from ovsfab.ops.context import Context  # noqa: PLC0415

    # A one-shot process: pyroute2's package __init__ (every netlink family,
    # ~130 ms) runs only if something asks the package for a name; the
    # rtnetlink message classes an operation uses load without it.
    from ovsfab.plumbing.pyroute2_private import defer_package_init  # noqa: PLC0415

    defer_package_init()
    # What the typer CLI's callback sets up: library chatter stays at WARNING.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, force=True,
                        format="ovsfab: %(levelname)s: %(message)s")
    try:
        data = api.execute(parsed.op, parsed.params, Context.from_json(context)).to_json()
    except BaseException as exc:  # noqa: BLE001 - every failure is one line and an exit code
        line, code = failure(exc)
        if code is None:
            raise
        sys.stderr.write(line + "\n")
        return code
    return _print(parsed, data)


#: ``ovsfab --help`` is served from text generated from the typer app
#: (ovsfab/cli/help_text.py; tests/test_fastpath.py fails when it is stale):
#: importing typer and building the command tree costs ~150 ms per call.
HELP_ARGS = (["-h"], ["--help"])


def _width() -> int:
    """The terminal width click would wrap to (it uses shutil's rules)."""
    try:
        return int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        pass
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns
    except (AttributeError, ValueError, OSError):
        return 80


def try_help(argv: List[str]) -> bool:
    """Print the top-level help when asked for it and the stored text fits; True if printed."""
    if argv not in HELP_ARGS or _width() < 80:  # click wraps at min(width, 80) - 2
        return False
    try:
        from ovsfab.cli.help_text import HELP  # noqa: PLC0415
    except ImportError:
        return False
    sys.stdout.write(HELP)
    sys.stdout.flush()
    return True


def render_help() -> str:
    """The top-level help as the typer CLI prints it at 80 columns (to regenerate help_text.py)."""
    import contextlib  # noqa: PLC0415
    import io  # noqa: PLC0415

    import typer.main  # noqa: PLC0415

    from ovsfab.cli.main import app  # noqa: PLC0415

    group = typer.main.get_command(app)
    group.rich_markup_mode = None  # type: ignore[attr-defined]
    out = io.StringIO()
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "80"
    try:
        with contextlib.redirect_stdout(out):
            try:
                group.main(args=["--help"], prog_name="ovsfab", standalone_mode=True)
            except SystemExit:
                pass
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old
    return out.getvalue()


def write_help() -> None:
    """Regenerate ovsfab/cli/help_text.py: python -c 'from ovsfab.cli.fast import write_help; write_help()'."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "help_text.py")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write('"""``ovsfab --help``, generated by ovsfab.cli.fast.write_help(); do not edit."""\n\n'
                 f"HELP = {render_help()!r}\n")


def _exit_now(code: int) -> None:
    """Exit after the answer is printed, skipping interpreter teardown (~5 ms here).

    Everything was written and flushed by :func:`_print`.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more to deliver
            pass
    os._exit(code)


def main() -> None:
    """Console entry point: the agent or this process for an operation, else the typer CLI."""
    argv = sys.argv[1:]
    if try_help(argv):
        sys.exit(0)
    from ovsfab.cli.argv import parse  # noqa: PLC0415 - stdlib only

    parsed = parse(argv)
    if parsed is not None:
        from ovsfab.errors import OvsfabError  # noqa: PLC0415 - stdlib only

        try:
            context = context_of(parsed)
        except OvsfabError as exc:  # a bad config file or OVSFAB_BACKEND
            sys.stderr.write(f"ovsfab: error: {exc}\n")
            sys.exit(exc.exit_code)
        code = try_agent(parsed, context)
        if code is not None:
            _exit_now(code)
        # Skips interpreter teardown too: pyroute2's event loop objects,
        # collected at exit after their sockets closed, print tracebacks.
        _exit_now(run_here(parsed, context))
    from ovsfab.cli.main import main as cli_main  # noqa: PLC0415 - the slow path, only when needed

    cli_main()
