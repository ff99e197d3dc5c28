"""agent/wire.py (the lean client's JSON) against the stdlib json module, and the client's imports.

Pure logic: for any JSON value the agent protocol could carry, wire.dumps
gives json.dumps' bytes and wire.loads reads back what json.loads reads;
text that is not exactly one JSON value is refused, as json refuses it.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ovsfab.agent import wire

pytestmark = pytest.mark.unprivileged

_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=5)
                       | st.dictionaries(st.text(), inner, max_size=5), max_leaves=30)


@settings(max_examples=300, deadline=None)
@given(_values)
def test_dumps_and_loads_agree_with_json(value):
    assert wire.dumps(value) == json.dumps(value)
    text = json.dumps(value)
    assert wire.loads(text) == json.loads(text)
    assert wire.loads(("  " + text + "\n").encode()) == json.loads(text)


@pytest.mark.parametrize("bad", ["", "   ", "{", "[1,]", "1 2", "nul", '{"a": 1}x', '"\\x"', b"\xff"])
def test_not_one_json_value_is_refused(bad):
    with pytest.raises(ValueError):
        json.loads(bad)
    with pytest.raises(ValueError):
        wire.loads(bad)


def test_the_lean_client_imports_no_heavy_stdlib_module():
    """json (re, enum), socket (selectors, enum) and typing cost ~45 ms per command here: the
    lean path -- parse, context, request, render of a result and of a tree -- imports none."""
    code = ("import sys\nimport ovsfab.cli.fast as f\nfrom ovsfab.cli.argv import parse\n"
            "from ovsfab.cli.render import render\n"
            "p = parse(['attach', 'br0', 'netns:x', '10.0.0.1/24'])\nf.request(p, f.context_of(p))\n"
            "render('attach', p.params, {'action': 'attach', 'changed': True, 'container': 'x', 'ifname': 'eth1',"
            " 'addresses': [], 'bridge': 'br0', 'port': 'p', 'ofport': 3, 'notes': []}, False)\n"
            "render('show', {}, {'bridges': [], 'notes': [], 'ovs': {'status': 'ok', 'error': None},"
            " 'docker': {'status': 'not-needed', 'error': None}}, False)\n"
            "print(sorted({'json', 're', 'enum', 'socket', 'selectors', 'typing', 'typer', 'ovs', 'pyroute2'}"
            " & {m.split('.')[0] for m in sys.modules}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out
