#!/usr/bin/env python3
"""Generate docs/cli.md from the CLI itself, so the reference cannot drift.

    .venv/bin/python scripts/gen_cli_doc.py > docs/cli.md       # regenerate
    .venv/bin/python scripts/gen_cli_doc.py --check             # exit 1 if docs/cli.md is stale

tests/test_docs.py runs the check.
"""
from __future__ import annotations

import inspect
import os
import sys
from typing import Dict, List

import click
import typer

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from ovsfab.cli.main import app  # noqa: E402
from ovsfab.errors import __doc__ as ERRORS_DOC  # noqa: E402

DOC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs", "cli.md")


def _declared_help(cmd: click.Command) -> Dict[str, str]:
    """Help texts as declared in the typer function (typer keeps argument help
    for its own rich renderer, not on the click Argument)."""
    func = getattr(cmd.callback, "__wrapped__", None)
    if func is None:
        return {}
    return {name: getattr(p.default, "help", None) or ""
            for name, p in inspect.signature(func).parameters.items()}


def _param_line(param: click.Parameter, declared: Dict[str, str]) -> str:
    if isinstance(param, click.Option):
        names = ", ".join(f"`{o}`" for o in param.opts + param.secondary_opts)
        default = ""
        if not param.is_flag and param.default not in (None, (), []) and not callable(param.default):
            default = f" (default: `{param.default}`)"
        env = f" (env `{param.envvar}`)" if param.envvar else ""
        return f"| {names} | {(param.help or '').strip()}{default}{env} |"
    meta = param.name.upper()
    if getattr(param, "nargs", 1) == -1:
        meta += "..."
    return f"| `{meta}` | {declared.get(param.name or '', '')} |"


def _walk(cmd: click.Command, path: List[str], out: List[str]) -> None:
    ctx = click.Context(cmd, info_name=" ".join(path))
    if path[1:]:
        out.append(f"## `{' '.join(path)}`\n")
        out.append((cmd.help or "").strip().split("\n\n")[0] + "\n")
        pieces = cmd.collect_usage_pieces(ctx)
        out.append("```\n" + " ".join(path + pieces) + "\n```\n")
        params = [p for p in cmd.params if p.name != "help"]
        if params:
            out.append("| argument / option | meaning |\n|---|---|")
            declared = _declared_help(cmd)
            out.extend(_param_line(p, declared) for p in params)
            out.append("")
    if isinstance(cmd, click.Group):
        for name in cmd.list_commands(ctx):
            _walk(cmd.get_command(ctx, name), path + [name], out)


def render() -> str:
    root = typer.main.get_command(app)
    out = ["# ovsfab command reference",
           "",
           "Generated from the CLI by `scripts/gen_cli_doc.py`; `tests/test_docs.py` fails when it is stale.",
           "",
           "## Global options",
           "",
           "```\novsfab [GLOBAL OPTIONS] COMMAND [ARGS]...\n```",
           "",
           "| option | meaning |",
           "|---|---|"]
    out.extend(_param_line(p, {}) for p in root.params if p.name != "help")
    out.append("")
    _walk(root, ["ovsfab"], out)
    out.append("## Exit codes\n")
    table = ERRORS_DOC[ERRORS_DOC.index("===="):].strip()
    rows = [line for line in table.splitlines() if line.strip() and not line.startswith("=")]
    out.append("| code | meaning |\n|---|---|")
    out.extend(f"| {line.split(None, 1)[0]} | {line.split(None, 1)[1].strip()} |" for line in rows)
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    text = render()
    if sys.argv[1:] == ["--check"]:
        with open(DOC, encoding="utf-8") as fh:
            if fh.read() != text:
                print("docs/cli.md is stale: run scripts/gen_cli_doc.py > docs/cli.md", file=sys.stderr)
                sys.exit(1)
        sys.exit(0)
    sys.stdout.write(text)
