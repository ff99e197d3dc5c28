"""The docs cannot drift from the CLI: cli.md is generated, and every command they show exists."""
from __future__ import annotations

import glob
import os
import re
import shlex
import subprocess
import sys

import click
import pytest
import typer

from ovsfab.cli.main import app

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# cli.md is generated from the CLI itself (checked above), so it is not parsed here.
DOC_FILES = [os.path.join(ROOT, "README.md")] + sorted(
    p for p in glob.glob(os.path.join(ROOT, "docs", "*.md")) if not p.endswith("cli.md"))
GLOBAL_WITH_VALUE = {"--db", "--backend"}


def test_cli_reference_is_generated_from_the_cli():
    cp = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "gen_cli_doc.py"), "--check"],
                        capture_output=True, text=True, timeout=60)
    assert cp.returncode == 0, cp.stderr


def shown_commands():
    """(file, line) of every `ovsfab …` command line inside code blocks of the docs."""
    found = []
    for path in DOC_FILES:
        in_block = False
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if line.lstrip().startswith("```"):
                    in_block = not in_block
                    continue
                if not in_block:
                    continue
                text = line.split("#", 1)[0].strip()
                for part in re.split(r";|&&", text):
                    m = re.match(r"^(?:\$\s+)?(?:sudo\s+)?(?:\S*/)?(ovsfab\s[^|]*)$", part.strip())
                    if m:
                        found.append((os.path.relpath(path, ROOT), m.group(1).strip()))
    return found


def resolve(words):
    """Walk the click tree; return (command, remaining words) or raise AssertionError."""
    cmd = typer.main.get_command(app)
    ctx = click.Context(cmd)
    i = 0
    while i < len(words) and words[i].startswith("-"):
        opt = words[i].split("=")[0]
        assert any(opt in p.opts for p in cmd.params), f"unknown global option {opt}"
        i += 2 if opt in GLOBAL_WITH_VALUE and "=" not in words[i] else 1
    while isinstance(cmd, click.Group) and i < len(words):
        sub = cmd.get_command(ctx, words[i])
        assert sub is not None, f"no command {words[i]!r}"
        cmd, i = sub, i + 1
    return cmd, words[i:]


def test_docs_show_at_least_the_main_verbs():
    text = " ".join(line for _, line in shown_commands())
    for verb in ("attach", "detach", "uplink add", "tunnel add", "inspect", "show", "lab up"):
        assert f"ovsfab {verb}" in text or f" {verb} " in text, verb


def check_command(where, line, words):
    cmd, rest = resolve(words)
    if "--" in rest:  # ovsfab lab exec HOST -- ovsfab ...: check the inner command too
        inner = rest[rest.index("--") + 1:]
        rest = rest[:rest.index("--")]
        if inner and inner[0] == "ovsfab":
            check_command(where, line, inner[1:])
    assert not isinstance(cmd, click.Group), f"{where}: `{line}` names a group, not a command"
    opts = {o for p in cmd.params for o in p.opts + p.secondary_opts}
    for word in rest:
        if word.startswith("--"):
            assert word.split("=")[0] in opts, f"{where}: `{line}`: {word} is not an option of this command"


@pytest.mark.parametrize("where,line", shown_commands())
def test_every_command_in_the_docs_exists(where, line):
    cleaned = re.sub(r"[\[\]()|…]", " ", line).replace("...", " ")
    check_command(where, line, shlex.split(cleaned)[1:])
