"""A JSON-RPC message parser for python-ovs built on the standard library's C decoder.

python-ovs parses OVSDB's JSON-RPC stream with ``ovs._json`` (C) when it
was built with libopenvswitch, and otherwise with a pure-Python lexer that
walks the input one character at a time (``ovs.json.Parser.feed``).  The
wheel on PyPI has no C extension, and Debian ships none for Python builds
other than its own, so every OVSDB byte cost ~2 µs: the initial sync of a
host with 300 ports took ~0.3 s of parsing alone, and each attach spent
~25 ms parsing vswitchd's updates.

:class:`StreamParser` keeps python-ovs's parser interface (``feed`` returns
how many characters belong to the current message, ``is_done``, ``finish``
returns the value or an error string) and lets ``json.JSONDecoder.raw_decode``
do the work.  It only tries to decode when the input *may* end a message:
every JSON-RPC message is an object, so its end is a ``}`` that is either the
last non-blank character received so far or followed by the ``{`` of the
next message.  A candidate inside a string just fails to decode and waiting
continues, so the result is always what a full parser would give; decoding
is attempted a few times per message, not once per chunk, so the cost stays
linear.

Standard library only; python-ovs is made to use it by
:func:`ovsfab.backends.ovs.python_ovs_private.use_fast_parser` (an explicit
call, where an OVSDB session is opened).
"""

from __future__ import annotations

import json
import re
from typing import Any, List, Union

_DECODER = json.JSONDecoder()
_BOUNDARY = re.compile(r"\}\s*\{")
_BLANK = " \t\r\n"

#: A stream that never forms a message is an error, not a memory leak.
MAX_MESSAGE = 256 * 1024 * 1024


class StreamParser:
    """Drop-in for ``ovs.json.Parser`` (the pure-Python one), same contract."""

    def __init__(self, check_trailer: bool = False) -> None:
        self.check_trailer = check_trailer
        self._chunks: List[str] = []
        self._size = 0
        self._done = False
        self._value: Any = None
        self._error: Union[str, None] = None

    def feed(self, s: str) -> int:
        """Take input; return how many characters of ``s`` were used."""
        if self._done:
            return 0
        prev = self._size
        self._chunks.append(s)
        self._size += len(s)
        if self._size > MAX_MESSAGE:
            self._fail(f"a JSON-RPC message longer than {MAX_MESSAGE} bytes")
            return len(s)
        tail = s.rstrip(_BLANK)
        # A "}" ending one chunk was tried when that chunk came in.
        if not (tail.endswith("}") or _BOUNDARY.search(s)):
            return len(s)
        if self._try_decode():
            return max(0, self._end - prev)
        return len(s)

    def _try_decode(self) -> bool:
        text = "".join(self._chunks)
        self._chunks = [text]
        start = len(text) - len(text.lstrip(_BLANK))
        try:
            value, end = _DECODER.raw_decode(text, start)
        except ValueError:
            return False  # not a message end after all (or not complete yet)
        self._value, self._end, self._done = value, end, True
        return True

    def _fail(self, message: str) -> None:
        self._error = message
        self._done = True
        self._end = self._size

    def is_done(self) -> bool:
        """True once a whole value (or an error) is in."""
        return self._done

    def finish(self) -> Any:
        """The parsed value, or an error message (a ``str``) as python-ovs returns it."""
        if not self._done and not self._try_decode():
            text = "".join(self._chunks)
            if not text.strip(_BLANK):
                return "empty input stream"
            try:
                _DECODER.raw_decode(text, len(text) - len(text.lstrip(_BLANK)))
            except ValueError as exc:
                return f"syntax error: {exc}"
        if self._error is not None:
            return self._error
        if self.check_trailer:
            rest = "".join(self._chunks)[self._end:]
            if rest.strip(_BLANK):
                return "trailing garbage at end of input"
        return self._value
