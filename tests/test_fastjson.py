"""backends/ovs/fastjson.py against python-ovs's own pure-Python parser.

Pure logic: the same JSON-RPC byte stream, cut into arbitrary chunks, must
give the same messages in the same order through both parsers, driven the
way ``ovs.jsonrpc.Connection.recv`` drives them (feed the pending input,
keep what was not used for the next message).
"""

from __future__ import annotations

import json

import contextlib

import ovs.json
from hypothesis import given, settings
from hypothesis import strategies as st

from ovsfab.backends.ovs import python_ovs_private
from ovsfab.backends.ovs.fastjson import StreamParser

# python-ovs's own parser (its pure-Python one, or its C one where ovs._json
# exists), whether or not an IDL session of an earlier test swapped it.
_REFERENCE = python_ovs_private.python_ovs_parser()


@contextlib.contextmanager
def python_ovs_parser():
    """python-ovs's own parser, for the length of a comparison.

    Its class refers to itself through the module global that
    use_fast_parser() swaps, so the global is put back while it runs.
    """
    saved, ovs.json.Parser = ovs.json.Parser, _REFERENCE
    try:
        yield _REFERENCE
    finally:
        ovs.json.Parser = saved


def drive(make, chunks):
    """Feed chunks as jsonrpc.Connection.recv does; return the parsed messages."""
    out, pending, parser = [], "", None
    for chunk in chunks:
        pending += chunk
        while pending:
            if parser is None:
                parser = make()
            pending = pending[parser.feed(pending):]
            if parser.is_done():
                out.append(parser.finish())
                parser = None
            else:
                break
    return out


scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**63 - 1),
                    st.text(alphabet=st.sampled_from('ab}{][",:\\ \n\u00e9x'), max_size=12))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(alphabet="abc}{\"", max_size=4), inner, max_size=4)),
    max_leaves=20)
messages = st.lists(st.dictionaries(st.sampled_from(["id", "method", "params", "result", "error"]), values,
                                    min_size=1, max_size=4), min_size=1, max_size=5)


@settings(max_examples=300, deadline=None)
@given(msgs=messages, cuts=st.lists(st.integers(0, 10_000), max_size=12), sep=st.sampled_from(["", " ", "\n"]))
def test_same_messages_as_python_ovs_for_any_chunking(msgs, cuts, sep):
    stream = sep.join(json.dumps(m, separators=(",", ":")) for m in msgs)
    points = sorted({c % (len(stream) + 1) for c in cuts})
    chunks = [stream[a:b] for a, b in zip([0] + points, points + [len(stream)]) if stream[a:b]]
    with python_ovs_parser() as reference:
        expected = drive(reference, chunks)
    assert expected == msgs  # the reference itself agrees with json.dumps
    assert drive(StreamParser, chunks) == msgs


def test_a_brace_pair_inside_a_string_is_not_a_message_end():
    msg = {"id": 1, "result": ["}{", "}", {"k": "}  {"}]}
    text = json.dumps(msg, separators=(",", ":"))
    cut = text.index("}{") + 1  # a chunk ending with "}" inside the string
    assert drive(StreamParser, [text[:cut], text[cut:]]) == [msg]


def test_errors_and_trailer_as_python_ovs_reports_them():
    with python_ovs_parser():
        assert isinstance(ovs.json.from_string("{"), str)  # python-ovs: an error is a str
    assert isinstance(ovs.json.from_string("{"), str)  # and through StreamParser too
    p = StreamParser()
    p.feed('{"a": [1, 2')
    assert not p.is_done() and isinstance(p.finish(), str)
    assert StreamParser().finish() == "empty input stream"
    p = StreamParser(check_trailer=True)
    p.feed('{"a": 1} x')
    assert p.finish() == "trailing garbage at end of input"
    p = StreamParser(check_trailer=True)
    p.feed('"just a string"')
    assert p.finish() == "just a string"
