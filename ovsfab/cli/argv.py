"""One definition of each command's arguments, two parsers: typer's, and this one.

The typer commands (ovsfab/cli/main.py and friends) are the definition.
:func:`write_table` reads their click parameters and writes
``ovsfab/cli/argtable.py``; tests/test_fastpath.py fails when that file is
stale.  :func:`parse` reads a command line with that table and the standard
library only, so the lean client (ovsfab/cli/fast.py) can build an operation
request without importing typer (~70 ms).  It takes only what it is sure of:
anything unusual (help, an unknown option, a missing argument, a bad number)
returns None and the command runs through typer, which says what is wrong.

:func:`params_for` turns a command's parsed values into the operation's
parameters; the typer commands call it too, so both paths send the same
request.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:  # no typing import at run time (the lean client's start-up cost)
    from typing import Any, Dict, List, Optional, Tuple

#: Global options that may come before (or after) the command, each with a value.
GLOBAL_VALUE_OPTS = ("--db", "--backend")
#: Command lines with these stay with typer: help is rendered for the
#: terminal, --debug prints this process's tracebacks.
TYPER_ONLY = ("-h", "--help", "--debug", "--version")


class Parsed:
    """A command line the lean parser understood."""

    def __init__(self, op: str, params: "Dict[str, Any]", as_json: bool, db: "Optional[str]",
                 backend: "Optional[str]") -> None:
        self.op = op
        self.params = params
        self.as_json = as_json
        self.db = db
        self.backend = backend


def params_for(op: str, values: "Dict[str, Any]") -> "Dict[str, Any]":
    """The operation's parameters from a command's values (``as_json`` is the renderer's, not the op's).

    ``attach --network NAME CONTAINER ADDR...`` and ``detach --network NAME
    CONTAINER``: the first positional is the container and the bridge is
    OVN's (the operation knows which).
    """
    params = {k: v for k, v in values.items() if k != "as_json"}
    if op in ("attach", "detach") and params.get("network") is not None:
        first = params.get("bridge")
        params["bridge"] = None
        if op == "attach":
            rest = [params["container"]] if params.get("container") is not None else []
            params["addresses"] = rest + list(params.get("addresses") or [])
        params["container"] = first
    if op == "attach":
        params["addresses"] = list(params.get("addresses") or [])
    return params


def hoist_globals(argv: "List[str]", keep: "Optional[set]" = None) -> "List[str]":
    """``argv`` with the global options (``--db X``, ``--backend X``, ``--debug``) moved before the command.

    click takes them only before the command; users type them anywhere
    (``ovsfab attach br0 web 10.1.0.5/24 --backend linux``).  Nothing after
    ``--`` moves, and neither do options in ``keep``: the command's own
    options of the same name (``ovsfab lab up --backend linux``).
    """
    keep = keep or set()
    front: "List[str]" = []
    rest: "List[str]" = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest.extend(argv[i:])
            break
        name = arg.partition("=")[0]
        if name in keep:
            rest.append(arg)
        elif name in GLOBAL_VALUE_OPTS and "=" not in arg and i + 1 < len(argv):
            front.extend(argv[i:i + 2])
            i += 2
            continue
        elif name in GLOBAL_VALUE_OPTS or arg == "--debug":
            front.append(arg)
        else:
            rest.append(arg)
        i += 1
    return front + rest


def parse(argv: "List[str]") -> "Optional[Parsed]":
    """An operation request from ``argv`` (without the program name), or None: leave it to typer."""
    try:
        from ovsfab.cli.argtable import COMMANDS  # noqa: PLC0415 - generated
    except ImportError:
        return None
    if any(a in TYPER_ONLY for a in argv):
        return None
    glob: "Dict[str, str]" = {}
    rest: "List[str]" = []
    i = 0
    while i < len(argv):  # global options anywhere before "--"
        arg = argv[i]
        if arg == "--":
            rest.extend(argv[i:])
            break
        name, eq, value = arg.partition("=")
        if name in GLOBAL_VALUE_OPTS:
            if not eq:
                if i + 1 >= len(argv):
                    return None
                value = argv[i + 1]
                i += 1
            glob[name] = value
        else:
            rest.append(arg)
        i += 1
    for words in (2, 1):
        spec = COMMANDS.get(" ".join(rest[:words]))
        if spec is not None and len(rest) >= words:
            values = _parse_command(spec, rest[words:])
            if values is None:
                return None
            as_json = bool(values.get("as_json"))
            return Parsed(spec["op"], params_for(spec["op"], values), as_json, glob.get("--db"),
                          glob.get("--backend"))
    return None


def _parse_command(spec: "Dict[str, Any]", argv: "List[str]") -> "Optional[Dict[str, Any]]":
    values: "Dict[str, Any]" = dict(spec["defaults"])
    positional: "List[str]" = []
    opts = spec["opts"]
    i = 0
    only_args = False
    while i < len(argv):
        arg = argv[i]
        i += 1
        if only_args or not arg.startswith("-") or arg == "-":
            positional.append(arg)
            continue
        if arg == "--":
            only_args = True
            continue
        name, eq, value = arg.partition("=")
        entry = opts.get(name)
        if entry is None:
            return None  # unknown (or a short option): typer says what is wrong
        dest, kind = entry
        if kind == "value":
            if not eq:
                if i >= len(argv):
                    return None
                value = argv[i]
                i += 1
            if dest in spec["floats"]:
                try:
                    values[dest] = float(value)
                except ValueError:
                    return None
            else:
                values[dest] = value
        elif eq:
            return None  # a flag with a value
        else:
            values[dest] = kind == "on"
    for dest, nargs, required in spec["args"]:
        if nargs == -1:
            values[dest] = positional
            positional = []
            if required and not values[dest]:
                return None
        elif positional:
            values[dest] = positional.pop(0)
        elif required:
            return None
    if positional:
        return None  # extra arguments
    return values


# ---------------------------------------------------------------------------
# Generating the table from the typer app (needs typer; never on the lean path)
# ---------------------------------------------------------------------------
def table() -> "Dict[str, Dict[str, Any]]":
    """{command words: spec} for every CLI command that is an operation of ovsfab.ops.api."""
    import click  # noqa: PLC0415
    import typer.main  # noqa: PLC0415

    from ovsfab.cli.main import app  # noqa: PLC0415
    from ovsfab.ops.api import OPERATIONS  # noqa: PLC0415

    out: "Dict[str, Dict[str, Any]]" = {}

    def walk(cmd: "Any", words: "Tuple[str, ...]") -> None:
        if isinstance(cmd, click.Group):
            for name, sub in sorted(cmd.commands.items()):
                walk(sub, words + (name,))
            return
        op = ".".join(words)
        if op not in OPERATIONS:
            return
        spec: "Dict[str, Any]" = {"op": op, "args": [], "opts": {}, "defaults": {}, "floats": []}
        for param in cmd.params:
            if isinstance(param, click.Argument):
                spec["args"].append([param.name, param.nargs, bool(param.required)])
                spec["defaults"][param.name] = [] if param.nargs == -1 else None
                continue
            if param.name in ("help",):
                continue
            default = param.default
            spec["defaults"][param.name] = None if callable(default) else default
            if param.is_flag:
                for opt in param.opts:
                    spec["opts"][opt] = [param.name, "on"]
                for opt in param.secondary_opts:
                    spec["opts"][opt] = [param.name, "off"]
            else:
                for opt in param.opts:
                    spec["opts"][opt] = [param.name, "value"]
                if isinstance(param.type, click.types.FloatParamType):
                    spec["floats"].append(param.name)
        out[" ".join(words)] = spec

    walk(typer.main.get_command(app), ())
    return out


def write_table() -> None:
    """Regenerate ovsfab/cli/argtable.py: python -c 'from ovsfab.cli.argv import write_table; write_table()'."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "argtable.py")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write('"""The CLI\'s operation commands for the lean parser, generated by '
                 'ovsfab.cli.argv.write_table(); do not edit."""\n\n'
                 f"COMMANDS = {table()!r}\n")
