"""JSON for the agent protocol without importing :mod:`json` (the client's start-up budget).

``import json`` costs the lean client more than anything else it does:
its decoder imports :mod:`re`, which imports :mod:`enum`, ... -- about 20 ms
per ``ovsfab attach`` when first measured, 8-12 ms re-measured at load ~6
(``bench/bench_wire_import.py``, medians; tests/test_wire_private.py guards
the private use), where the whole agent-side attach takes ~25 ms.  CPython's own accelerator module ``_json`` (what :mod:`json`
uses underneath) is a C extension with no Python imports: its scanner and
encoder are driven here with the same settings :class:`json.JSONDecoder` and
:class:`json.JSONEncoder` give them, so the bytes are standard JSON and the
agent side reads and writes them with plain :mod:`json`.  Where ``_json``
is missing (another Python implementation), :mod:`json` is used.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # no typing import at run time (start-up cost)
    from typing import Any, Callable, Tuple

try:
    import _json
except ImportError:  # pragma: no cover - CPython always has it
    _json = None  # type: ignore[assignment]


class _DecodeContext:
    """The attributes ``_json.make_scanner`` reads, as :class:`json.JSONDecoder` sets them."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int

    @staticmethod
    def parse_constant(name: str) -> float:
        return {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}[name]


def _bad(obj: "Any") -> "Any":
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


if _json is not None:
    _scan: "Callable[[str, int], Tuple[Any, int]]" = _json.make_scanner(_DecodeContext())


def dumps(obj: "Any", sort_keys: bool = False) -> str:
    """``json.dumps(obj, sort_keys=sort_keys)``."""
    if _json is None:  # pragma: no cover
        import json  # noqa: PLC0415

        return json.dumps(obj, sort_keys=sort_keys)
    # markers, default, encoder, indent, key_separator, item_separator,
    # sort_keys, skipkeys, allow_nan: what json.dumps passes by default.
    encode = _json.make_encoder({}, _bad, _json.encode_basestring_ascii, None, ": ", ", ", sort_keys, False, True)
    return "".join(encode(obj, 0))


def loads(data: "bytes | str") -> "Any":
    """``json.loads(data)``; ValueError when it is not one JSON value."""
    text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
    if _json is None:  # pragma: no cover
        import json  # noqa: PLC0415

        return json.loads(text)
    start = len(text) - len(text.lstrip(" \t\n\r"))
    try:
        value, end = _scan(text, start)
    except StopIteration as exc:  # the C scanner's "no value here"
        raise ValueError(f"no JSON value at {exc.value}") from None
    if text[end:].strip(" \t\n\r"):
        raise ValueError(f"extra data at {end}")
    return value
