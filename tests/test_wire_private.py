"""Guard tests: CPython's private ``_json`` still works the way agent/wire.py drives it.

agent/wire.py gives the lean client JSON without ``import json`` (~20 ms of
imports per command, see its docstring) by calling ``_json.make_scanner``
and ``_json.make_encoder`` itself, with the settings :mod:`json` gives them.
``_json`` is private: an upgrade may rename it, make the scanner read a new
attribute of its context, or change the encoder's positional arguments.
wire.py would then fail at import, mis-encode, or fall back to ``json``
without a word (the fallback keeps it correct but brings the 20 ms back).
Each test below fails first, naming what changed, so the upgrade is noticed.
Rather than pinning signatures from memory, they watch :mod:`json` itself
call ``_json`` and require wire.py's calls to be the same.
Pure logic (no namespaces); well under a second.
"""

from __future__ import annotations

import json
import json.decoder
import json.encoder
import json.scanner
import math
from types import SimpleNamespace
from typing import Any, Dict, List, Set

import pytest

from ovsfab.agent import wire

pytestmark = pytest.mark.unprivileged

REMEDY = "agent/wire.py must follow (or import json instead, ~20 ms per command)"

try:
    import _json
except ImportError:  # pragma: no cover - CPython always has it
    _json = None  # type: ignore[assignment]

SAMPLE: Any = {"action": "attach", "changed": True, "ofport": 3, "mtu": 1450.5, "none": None,
               "addresses": ["10.0.0.1/24", "2001:db8::1/64"], "notes": [], "uni": "caf\u00e9 \u2603 \U0001f600",
               "nested": {"b": [1, -2, 3.25e-7, False], "a": {"deep": [[], {}]}}, "big": 2 ** 70}


def test_wire_uses_the_c_accelerator_not_the_fallback():
    assert _json is not None, f"this Python has no _json module: wire.py is on its json fallback; {REMEDY}"
    assert wire._json is _json, f"wire.py did not import _json (it is on the json fallback); {REMEDY}"
    for name in ("make_scanner", "make_encoder", "encode_basestring_ascii"):
        assert callable(getattr(_json, name, None)), f"_json.{name} is gone; {REMEDY}"


def test_json_still_uses_the_same_scanner_and_encoder():
    """json's own C hooks are the ones wire.py calls (if json stopped using them, so should wire.py)."""
    assert json.scanner.c_make_scanner is _json.make_scanner, \
        f"json.scanner no longer uses _json.make_scanner ({json.scanner.c_make_scanner!r}); {REMEDY}"
    assert json.encoder.c_make_encoder is _json.make_encoder, \
        f"json.encoder no longer uses _json.make_encoder ({json.encoder.c_make_encoder!r}); {REMEDY}"
    assert json.encoder.c_encode_basestring_ascii is _json.encode_basestring_ascii, \
        f"json.encoder no longer uses _json.encode_basestring_ascii; {REMEDY}"


def _attributes_read(ctx_class: type, *args: Any) -> Set[str]:
    """The attributes ``_json.make_scanner`` reads from an instance of ``ctx_class``."""
    seen: Set[str] = set()

    class Watched(ctx_class):  # type: ignore[misc, valid-type]
        def __getattribute__(self, name: str) -> Any:
            seen.add(name)
            return super().__getattribute__(name)

    _json.make_scanner(Watched(*args))
    return seen


def test_scanner_reads_exactly_what_wire_context_sets():
    """make_scanner reads the same attributes from json's JSONDecoder as from wire's _DecodeContext,
    and they hold the same values (json's defaults)."""
    from_json = _attributes_read(json.decoder.JSONDecoder)
    from_wire = _attributes_read(wire._DecodeContext)
    assert from_json == from_wire, (f"_json.make_scanner now reads {sorted(from_json)} from json's decoder "
                                    f"but {sorted(from_wire)} from wire._DecodeContext; {REMEDY}")
    ref, ours = json.decoder.JSONDecoder(), wire._DecodeContext()
    for name in sorted(from_json - {"parse_constant"}):
        assert getattr(ours, name) == getattr(ref, name), \
            f"wire._DecodeContext.{name} = {getattr(ours, name)!r}, json's default is {getattr(ref, name)!r}"
    for const in ("Infinity", "-Infinity"):
        assert ours.parse_constant(const) == ref.parse_constant(const)
    assert math.isnan(ours.parse_constant("NaN")) and math.isnan(ref.parse_constant("NaN"))


def test_scanner_signals_no_value_with_stopiteration_and_the_index():
    """wire.loads turns the C scanner's StopIteration(index) into ValueError: that contract must hold."""
    scan = _json.make_scanner(wire._DecodeContext())
    assert scan('  {"a": [1, 2.5, "x"]}', 2) == ({"a": [1, 2.5, "x"]}, 22)
    with pytest.raises(StopIteration) as info:
        scan("  ]", 2)
    assert info.value.value == 2, f"the scanner's StopIteration carries {info.value.value!r}, not the index"
    with pytest.raises(ValueError):
        wire.loads("  ]")


def _recorded_encoder_calls(monkeypatch: pytest.MonkeyPatch) -> Dict[str, List[tuple]]:
    calls: Dict[str, List[tuple]] = {"json": [], "wire": []}

    def recorder(key: str) -> Any:
        def make(*args: Any) -> Any:
            calls[key].append(args)
            return _json.make_encoder(*args)
        return make

    monkeypatch.setattr(json.encoder, "c_make_encoder", recorder("json"))
    monkeypatch.setattr(wire, "_json", SimpleNamespace(make_encoder=recorder("wire"),
                                                       encode_basestring_ascii=_json.encode_basestring_ascii))
    return calls


@pytest.mark.parametrize("sort_keys", [False, True])
def test_encoder_is_called_with_json_dumps_arguments(monkeypatch, sort_keys):
    """wire.dumps passes make_encoder what json.dumps passes it, position by position."""
    calls = _recorded_encoder_calls(monkeypatch)
    # a fresh JSONEncoder (json.dumps' cached default one may skip the call): the one-shot C path
    want = json.JSONEncoder(sort_keys=sort_keys).encode(SAMPLE)
    got = wire.dumps(SAMPLE, sort_keys=sort_keys)
    assert len(calls["json"]) == 1, f"json no longer builds its encoder through c_make_encoder: {calls['json']}"
    assert len(calls["wire"]) == 1
    ref, ours = calls["json"][0], calls["wire"][0]
    assert len(ref) == len(ours), (f"_json.make_encoder now gets {len(ref)} arguments from json, "
                                   f"{len(ours)} from wire.py; {REMEDY}")
    # markers (a dict: circular check on), default (raises TypeError), then plain values
    assert type(ref[0]) is type(ours[0]) and not ours[0], f"markers: json {ref[0]!r}, wire {ours[0]!r}; {REMEDY}"
    for default in (ref[1], ours[1]):
        with pytest.raises(TypeError):
            default(object())
    assert ref[2:] == ours[2:], f"make_encoder arguments: json {ref[2:]!r}, wire {ours[2:]!r}; {REMEDY}"
    assert got == want


def test_results_are_json_bytes_for_bytes():
    for sort_keys in (False, True):
        assert wire.dumps(SAMPLE, sort_keys=sort_keys) == json.dumps(SAMPLE, sort_keys=sort_keys)
    text = json.dumps(SAMPLE)
    assert wire.loads(text.encode()) == json.loads(text) == SAMPLE
    with pytest.raises(TypeError):
        wire.dumps({"x": object()})
