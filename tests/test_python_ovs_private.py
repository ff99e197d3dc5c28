"""Guard tests: the python-ovs internals in backends/ovs/python_ovs_private.py still work.

Each test fails when an upgrade of python-ovs changes what that module
relies on (a global no longer looked up, ``Row._data`` gone or reshaped, the
IDL's session renamed), rather than ovsfab silently taking a slow path or
misreading rows.  Against a real ovsdb-server (tests/testbed.py OvsHost).
"""

from __future__ import annotations

import time

import ovs.json
import ovs.jsonrpc
import ovs.poller
import ovs.stream
import pytest

from ovsfab.backends.ovs import python_ovs_private as private
from ovsfab.backends.ovs.fastjson import StreamParser
from ovsfab.backends.ovs.idl import IdlSession
from ovsfab.ops.inspect import OVSDB_COLUMNS


def _needs_swap() -> None:
    if ovs.json.PARSER != ovs.json.PARSER_PY:
        pytest.skip("this python-ovs has its C parser: use_fast_parser() replaces nothing")


def test_jsonrpc_looks_the_parser_up_by_name_for_each_message(ovs_host, monkeypatch):
    """use_fast_parser() only works while Connection.recv asks ovs.json.Parser for every message."""
    _needs_swap()
    made = []

    class Counting(StreamParser):
        def __init__(self, *args, **kwargs):
            made.append(self)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(ovs.json, "Parser", Counting)
    err, stream = ovs.stream.Stream.open_block(ovs.stream.Stream.open(ovs_host.db_url), 5000)
    assert not err, err
    rpc = ovs.jsonrpc.Connection(stream)
    try:
        replies = []
        for method in ("list_dbs", "echo"):
            request = ovs.jsonrpc.Message.create_request(method, [] if method == "list_dbs" else ["x"])
            assert not rpc.send(request)
            deadline = time.monotonic() + 5
            while True:
                rpc.run()
                err, msg = rpc.recv()
                if msg is not None:
                    replies.append(msg)
                    break
                assert time.monotonic() < deadline, "no reply from ovsdb-server"
                poller = ovs.poller.Poller()
                rpc.wait(poller)
                rpc.recv_wait(poller)
                poller.timer_wait(100)
                poller.block()
    finally:
        rpc.close()
    assert "Open_vSwitch" in replies[0].result and replies[1].result == ["x"]
    # One parser per message, each one looked up by name: the swap reaches every message.
    assert len(made) >= 2, f"python-ovs made {len(made)} parsers through ovs.json.Parser for 2 messages"


def test_use_fast_parser_is_explicit_and_idempotent(ovs_host):
    _needs_swap()
    assert private.use_fast_parser() is True
    assert ovs.json.Parser is StreamParser
    assert private.use_fast_parser() is True  # twice: python-ovs's own class is still remembered
    assert private.python_ovs_parser() is not StreamParser
    assert private.python_ovs_parser().__module__ == "ovs.json"
    session = IdlSession(ovs_host.db_url, {"Open_vSwitch": ["cur_cfg"]}, timeout=10)
    try:
        assert isinstance(session.root().cur_cfg, int)  # synced through StreamParser
    finally:
        session.close()


def test_row_readers_read_the_synced_datum_and_agree_with_getattr(ovs_host):
    """scalar/map_of/refs must take the Row._data path (not the fallback) and give getattr's values."""
    ovs_host.vsctl("add-br", "br0", "--", "set", "bridge", "br0", "datapath_type=netdev",
                   "external_ids:ovsfab=yes")
    for i, tag in ((1, "10"), (2, "")):
        ovs_host.vsctl("add-port", "br0", f"p{i}", "--", "set", "interface", f"p{i}", "type=internal",
                       "external_ids:k=v", "options:x=y", *(["--", "set", "port", f"p{i}", f"tag={tag}"]
                                                            if tag else []))
    session = IdlSession(ovs_host.db_url, OVSDB_COLUMNS, timeout=10)
    try:
        checked = 0
        for table, columns in OVSDB_COLUMNS.items():
            for row in session.table(table).values():
                for column in columns:
                    datum = private._datum(row, column)
                    assert datum is not None, f"{table}.{column}: Row._data is gone or reshaped"
                    public = getattr(row, column)
                    ctype = session.idl.tables[table].columns[column].type
                    if ctype.is_map():
                        assert private.map_of(row, column) == dict(public), (table, column)
                    elif ctype.is_set() and ctype.key.ref_table_name:
                        assert private.refs(row, column) == [r.uuid for r in public], (table, column)
                    else:
                        want = (public[0] if public else None) if isinstance(public, list) else public
                        assert private.scalar(row, column) == want, (table, column)
                    checked += 1
        assert checked >= 20
        br = next(iter(session.table("Bridge").values()))
        assert private.map_of(br, "external_ids") == {"ovsfab": "yes"}
        assert len(private.refs(br, "ports")) == 3  # p1, p2 and the bridge's own port
        tags = {private.scalar(p, "name"): private.scalar(p, "tag") for p in session.table("Port").values()}
        assert tags == {"br0": None, "p1": 10, "p2": None}
    finally:
        session.close()


def test_session_alive_reads_the_idl_session(ovs_host):
    """Fails (AttributeError) when python-ovs renames the Idl's session or its is_alive()."""
    session = IdlSession(ovs_host.db_url, {"Open_vSwitch": ["cur_cfg"]}, timeout=10)
    try:
        assert private.session_alive(session.idl) is True
    finally:
        session.close()
