"""The python-ovs internals ovsfab relies on, each for a measured reason.

Everything else goes through python-ovs's public API.  Each is checked
against the installed python-ovs by tests/test_python_ovs_private.py, which
fails when an upgrade changes what it relies on.

Measured with bench/bench_private.py on a simulated host with 300
attachments (python-ovs 4.0.0 from PyPI, CPython 3.11, 2 shared vCPUs;
medians of 9, CPU time):

* :func:`use_fast_parser` -- one IDL sync of the columns ``show`` reads:
  ~179 ms with python-ovs's pure-Python JSON lexer (one character at a
  time; PyPI's python-ovs has no C extension) against ~54 ms with
  :class:`~ovsfab.backends.ovs.fastjson.StreamParser`.  ~125 ms of every
  command that opens an OVSDB session on such a host, and the agent parses
  vswitchd's updates after every attach with it.  python-ovs has no hook
  for a parser: it looks ``ovs.json.Parser`` up by name for each message,
  so that module global is what is replaced -- once, by an explicit call
  (:class:`~ovsfab.backends.ovs.idl.IdlSession` and ``fetch_schema`` make
  it), never as a side effect of an import.
* :func:`scalar`, :func:`map_of`, :func:`refs` -- reading the rows ``show``
  reads (``ops.inspect.ovs_bridges``, 300 ports): ~8 ms from the synced
  Datum (``Row._data``) against ~37 ms through ``Row.__getattr__``, which
  rebuilds and re-validates a Datum for every set and map column on every
  access.  They fall back to ``getattr`` for a row with uncommitted changes
  or without ``_data``.
* :func:`session_alive` -- whether the IDL's connection is up, for a
  deadline loop that must not wait out its timeout on a dead connection;
  python-ovs has no public accessor (``Idl._session.is_alive()``).
"""

from __future__ import annotations

from typing import Any, Dict, List

#: python-ovs's own parser class, once :func:`use_fast_parser` replaced it.
PYTHON_OVS_PARSER: Any = None


def use_fast_parser() -> bool:
    """Make python-ovs parse JSON-RPC with fastjson if it has no C parser; True if it now does.

    Idempotent and cheap: called wherever a JSON-RPC connection to OVSDB
    is about to be opened.  A no-op where ``ovs._json`` (C) is there: it is
    as fast and needs no help.
    """
    global PYTHON_OVS_PARSER  # noqa: PLW0603 - one swap per process
    import ovs.json  # noqa: PLC0415 - only where OVSDB is used

    from ovsfab.backends.ovs.fastjson import StreamParser  # noqa: PLC0415

    if ovs.json.PARSER != ovs.json.PARSER_PY:
        return False
    if ovs.json.Parser is not StreamParser:
        PYTHON_OVS_PARSER = ovs.json.Parser
    # Looked up by name at each message (jsonrpc.Connection.recv).  The pure
    # Python class also names itself through this global (see python_ovs_parser()).
    ovs.json.Parser = StreamParser
    return True


def python_ovs_parser() -> Any:
    """python-ovs's own parser class, whether or not :func:`use_fast_parser` replaced it.

    Its pure-Python class refers to itself through ``ovs.json.Parser``, so a
    caller that runs it must put that global back while it does (tests).
    """
    import ovs.json  # noqa: PLC0415

    return PYTHON_OVS_PARSER if PYTHON_OVS_PARSER is not None else ovs.json.Parser


def _datum(row: Any, column: str) -> Any:
    """The row's synced Datum of ``column``, or None where the public path must be taken."""
    attrs = getattr(row, "__dict__", {})
    data = attrs.get("_data")
    if data is None or attrs.get("_changes") or column not in data:
        return None
    return data[column]


def _opt(value: object) -> Any:
    """python-ovs returns optional columns as [] or [x]."""
    if isinstance(value, list):
        return value[0] if value else None
    return value


def scalar(row: Any, column: str) -> Any:
    """A scalar or optional column's value (None when empty)."""
    datum = _datum(row, column)
    if datum is None:
        return _opt(getattr(row, column))
    for atom in datum.values:
        return atom.value
    return None


def map_of(row: Any, column: str) -> Dict[Any, Any]:
    """A map column as a dict."""
    datum = _datum(row, column)
    if datum is None:
        return dict(getattr(row, column))
    return {key.value: value.value for key, value in datum.values.items()}


def refs(row: Any, column: str) -> List[Any]:
    """The UUIDs a reference (set) column points to."""
    datum = _datum(row, column)
    if datum is None:
        return [ref.uuid for ref in getattr(row, column)]
    return [atom.value for atom in datum.values]


def session_alive(idl: Any) -> bool:
    """Whether an ``ovs.db.idl.Idl``'s connection (or its reconnection) is alive."""
    return bool(idl._session.is_alive())  # noqa: SLF001 - no public accessor
