"""The lean client path: hand ``attach`` / ``detach`` / ``show`` / ``inspect`` to a running agent.

A shell loop of ``ovsfab attach`` pays, per call, for importing typer, python-ovs,
pyroute2 and the docker SDK (~0.5 s together) and for a fresh OVSDB sync;
``show`` and ``inspect`` pay the same, plus decoding every Port and Interface
row.  A running ``ovsfab agent`` has all of that warm.  So the console entry
first checks, with standard-library imports only, whether the command line is
one of these commands the agent can run and whether an agent socket exists;
if so it sends the raw argv and the relevant environment over the agent's
root-only control socket and prints what comes back: stdout, stderr and the
exit code, exactly what the in-process CLI would have printed (the agent runs
the same typer command, see :mod:`ovsfab.agent.server`).

Anything else, no socket, no answer within a short connect timeout, a
refusal or a protocol error: the command runs in-process -- for a plain
``show`` / ``inspect`` command line without typer
(:func:`ovsfab.cli.inspect_view.direct`), else through the typer CLI.  The
fallback is invisible except for the time it takes.

This module must import nothing outside the standard library: it runs before
the CLI is imported.  It is also the start-up cost of every ``ovsfab``
command handed to the agent, so it imports no more than it needs: the C
``_socket`` module rather than :mod:`socket` (which imports :mod:`enum`
and :mod:`selectors`), JSON through :mod:`ovsfab.cli.wire` rather than
:mod:`json` (whose decoder imports :mod:`re`), and :mod:`typing` only for
type checkers.  Measured here: ~45 ms less per call.
"""

from __future__ import annotations

import _socket
import os
import sys

from ovsfab.cli import wire

TYPE_CHECKING = False
if TYPE_CHECKING:  # no typing import at run time (start-up cost)
    from typing import Dict, List, Mapping, Optional

#: Protocol version; the agent declines requests of another version.
PROTOCOL = 1
#: The socket when neither OVSFAB_AGENT_SOCK nor OVS_RUNDIR is set.
DEFAULT_SOCK = "/run/ovsfab/agent.sock"
SOCK_ENV = "OVSFAB_AGENT_SOCK"
#: Environment the in-process CLI would read; forwarded so the agent runs
#: the command as this process would have.
FORWARD_ENV = ("OVSFAB_DB", "OVS_RUNDIR", "OVS_DBDIR", "OVSFAB_INJECT_FAULT", "OVSFAB_BACKEND",
               "OVSFAB_CONFIG", "DOCKER_HOST",
               # how typer renders a usage error for this terminal (width, colour)
               "COLUMNS", "TERM", "NO_COLOR", "FORCE_COLOR")
#: Connecting is local and instant when an agent listens; a missing or hung
#: one must not cost the user noticeable time before the fallback.
CONNECT_TIMEOUT = 0.25
#: An attach waits for OVSDB and dockerd (10 s deadlines each), and the agent
#: may be finishing a reconcile pass first.
REPLY_TIMEOUT = 120.0
#: Largest reply accepted (outputs are a few hundred bytes).
MAX_REPLY = 1 << 20

FAST_COMMANDS = ("attach", "detach", "show", "inspect")
#: Global options that may precede the command (each takes a value).
_GLOBAL_VALUE_OPTS = ("--db", "--backend")


def socket_path(env: Mapping[str, str] = os.environ) -> str:
    """The agent's control socket: OVSFAB_AGENT_SOCK, else per OVS_RUNDIR, else /run/ovsfab.

    Per OVS_RUNDIR because each Open vSwitch (a simulated host in the tests
    and the lab) has its own agent.
    """
    explicit = env.get(SOCK_ENV)
    if explicit:
        return explicit
    rundir = env.get("OVS_RUNDIR")
    if rundir:
        return os.path.join(rundir, "ovsfab-agent.sock")
    return DEFAULT_SOCK


def netns_id() -> List[int]:
    """(device, inode) of this thread's network namespace: the agent serves only its own."""
    st = os.stat("/proc/thread-self/ns/net")
    return [st.st_dev, st.st_ino]


def eligible(argv: List[str]) -> bool:
    """True for ``[--db X] [--backend X] attach|detach|show|inspect ...`` without --help/--debug/--version."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in _GLOBAL_VALUE_OPTS:
            i += 2
            continue
        if any(arg.startswith(opt + "=") for opt in _GLOBAL_VALUE_OPTS):
            i += 1
            continue
        break
    if i >= len(argv) or argv[i] not in FAST_COMMANDS:
        return False
    rest = argv[i + 1:]
    # Help is rendered by typer for the terminal; --debug prints tracebacks
    # and step logs of this process.  Both stay in-process.
    return not any(a in ("-h", "--help", "--debug", "--version") for a in rest)


def request(argv: List[str]) -> Dict[str, object]:
    """The one JSON message sent to the agent."""
    env = {k: os.environ[k] for k in FORWARD_ENV if k in os.environ}
    if sys.stderr.isatty():
        # The agent renders into a buffer: tell it what this terminal would
        # have given typer's error box (only usage errors are drawn).
        try:
            env.setdefault("COLUMNS", str(os.get_terminal_size(sys.stderr.fileno()).columns))
        except OSError:
            pass
        if "NO_COLOR" not in env:
            env.setdefault("FORCE_COLOR", "1")
    try:
        cwd = os.getcwd()
    except OSError:
        cwd = "/"
    # show/inspect colour their tree only on a terminal: the agent renders for this one.
    return {"v": PROTOCOL, "argv": list(argv), "env": env, "cwd": cwd, "netns": netns_id(),
            "stdout_tty": _isatty(sys.stdout)}


def _isatty(stream: object) -> bool:
    try:
        return bool(stream.isatty())  # type: ignore[attr-defined]
    except (AttributeError, ValueError):  # closed or replaced stdout
        return False


def call_agent(argv: List[str], path: Optional[str] = None) -> Optional[Dict[str, object]]:
    """Send ``argv`` to the agent; its reply, or None when it did not answer properly."""
    path = path or socket_path()
    if not os.path.exists(path):
        return None
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(CONNECT_TIMEOUT)
        sock.connect(path)
        sock.settimeout(REPLY_TIMEOUT)
        sock.sendall(wire.dumps(request(argv)).encode())
        sock.shutdown(_socket.SHUT_WR)  # end of request: the agent reads to EOF
        chunks = []
        size = 0
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            size += len(chunk)
            if size > MAX_REPLY:
                return None
            chunks.append(chunk)
    except OSError:  # no agent (stale socket), not allowed (non-root), hung, reset
        return None
    finally:
        sock.close()
    try:
        reply = wire.loads(b"".join(chunks))
    except ValueError:  # also UnicodeDecodeError
        return None
    if not isinstance(reply, dict) or reply.get("v") != PROTOCOL or not isinstance(reply.get("code"), int):
        return None  # a refusal, a decline, or something that is not our agent
    return reply


def try_agent(argv: List[str]) -> Optional[int]:
    """Run the command through the agent when possible; its exit code, else None."""
    if os.environ.get("OVSFAB_NO_AGENT") or not eligible(argv):
        return None
    reply = call_agent(argv)
    if reply is None:
        return None
    out, err = reply.get("stdout") or "", reply.get("stderr") or ""
    if out:
        sys.stdout.write(str(out))
        sys.stdout.flush()
    if err:
        sys.stderr.write(str(err))
        sys.stderr.flush()
    return int(reply["code"])  # type: ignore[arg-type]


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
    """Exit after the agent's answer is printed, skipping interpreter teardown (~5 ms here).

    Nothing else is buffered or registered on this path: the output was
    written and flushed by :func:`try_agent`, and only stdlib modules are loaded.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more to deliver
            pass
    os._exit(code)


def main() -> None:
    """Console entry point: the agent when it can serve the command, else the typer CLI."""
    if try_help(sys.argv[1:]):
        sys.exit(0)
    code = try_agent(sys.argv[1:])
    if code is not None:
        _exit_now(code)
    if any(a in ("show", "inspect") for a in sys.argv[1:]):
        # show/inspect without the agent: plain command lines skip typer.
        from ovsfab.cli.inspect_view import direct  # noqa: PLC0415 - stdlib-only module

        code = direct(sys.argv[1:])
        if code is not None:
            sys.exit(code)
    from ovsfab.cli.main import main as cli_main  # noqa: PLC0415 - the slow path, only when needed

    cli_main()
