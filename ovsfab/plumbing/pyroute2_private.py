"""The two pyroute2 internals ovsfab relies on, each for a measured reason.

Everything else goes through pyroute2's public message classes.  Both are
used by ``show``/``inspect`` only, and both are checked against the
installed pyroute2 by tests/test_pyroute2_private.py, which fails when an
upgrade changes what they rely on (the code itself then falls back to the
public path: slower, never wrong).

Measured with bench/bench_private.py on a simulated host with 300
attachments (pyroute2 0.9.7, CPython 3.11, 2 shared vCPUs; medians of 9,
CPU time):

* :func:`defer_package_init` -- a fresh interpreter importing the rtnetlink
  message classes show/inspect use: ~180 ms after ``import pyroute2`` (its
  package ``__init__`` imports every family: conntrack, IPDB, NDB,
  nftables, wireguard, ...) against ~50 ms with the package initialised
  lazily.  ~130 ms of every ``show``/``inspect`` run without the agent.
* :func:`lean_link_message` -- one link dump of 300+ links into LinkFacts:
  ~27 ms decoding only the attributes read, against ~113 ms with pyroute2's
  own ifinfmsg (which builds an object for each of the ~40 attributes of
  each link; asking the kernel to leave out statistics does not change it).
  ~85 ms per ``show``, and up to twice that for ``inspect`` (two namespaces).
"""

from __future__ import annotations

import importlib
import importlib.util
import struct
import sys
import threading
import types
from typing import AbstractSet, Any, Dict, Optional

PACKAGE = "pyroute2"


def defer_package_init() -> bool:
    """Register ``pyroute2`` in ``sys.modules`` with its ``__init__`` not run yet.

    Called explicitly (by show/inspect) before the first pyroute2 import of a
    process; a no-op once pyroute2 is imported.  The real ``__init__`` runs,
    once, the first time anyone asks the package for a name (``from
    pyroute2 import X``, ``pyroute2.X``: PEP 562 module ``__getattr__``), so
    the rest of the program sees the usual package.  Submodule imports work
    throughout: the package's ``__path__`` is set.  Returns True if the
    package was deferred.
    """
    if PACKAGE in sys.modules:
        return False
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.loader is None or not spec.submodule_search_locations:
        return False  # not an ordinary package: it is imported the ordinary way
    pkg = importlib.util.module_from_spec(spec)
    loader = spec.loader
    lock = threading.Lock()  # the agent has a second thread (Docker events)

    def __getattr__(attr: str) -> Any:  # noqa: N807 - PEP 562
        if importlib.util.find_spec(f"{PACKAGE}.{attr}") is not None:
            # ``from pyroute2 import config`` asks for the attribute first:
            # a submodule is imported as such, not a reason for the __init__.
            return importlib.import_module(f"{PACKAGE}.{attr}")
        with lock:
            # First use of a package-level name: run the real __init__ now, once.
            if pkg.__dict__.pop("__getattr__", None) is not None:
                loader.exec_module(pkg)
        try:
            return pkg.__dict__[attr]
        except KeyError:
            raise AttributeError(f"module {PACKAGE!r} has no attribute {attr!r}") from None

    pkg.__getattr__ = __getattr__  # type: ignore[attr-defined]
    sys.modules[PACKAGE] = pkg
    return True


_LEAN: Dict[AbstractSet[str], Any] = {}


def lean_link_message(attrs: AbstractSet[str]) -> Optional[type]:
    """A subclass of pyroute2's ifinfmsg that decodes only the attributes named in ``attrs``.

    It walks the attribute chain as pyroute2's ``nlmsg_base.decode_nlas``
    does, with the class's own decoding table (the name-mangled
    ``_nlmsg_base__t_nla_map``), and builds objects only for the wanted
    attributes; the others are skipped unread.  Returns None when pyroute2's
    internals are not the expected ones (use pyroute2's ifinfmsg then).
    """
    attrs = frozenset(attrs)
    if attrs in _LEAN:
        return _LEAN[attrs]
    try:
        from pyroute2.netlink import NLA_F_NESTED, NLA_F_NET_BYTEORDER, nla_slot  # noqa: PLC0415
        from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg  # noqa: PLC0415

        ifinfmsg()  # compiles the class's decoding table (pyroute2 does it at first use)
        table = ifinfmsg._nlmsg_base__t_nla_map  # type: ignore[attr-defined]
        wanted = {key for key, prime in table.items()
                  if isinstance(key, int) and prime.get("name") in attrs}
        if len(wanted) != len(attrs) or not all({"class", "init", "nla_array"} <= set(table[k]) for k in wanted):
            raise TypeError("pyroute2's ifinfmsg table is not what lean_link_message knows")
    except (ImportError, AttributeError, TypeError):
        _LEAN[attrs] = None
        return None
    flag_bits = NLA_F_NESTED | NLA_F_NET_BYTEORDER

    class LeanLinkMsg(ifinfmsg):  # type: ignore[misc, valid-type]
        """An ifinfmsg with only some attributes decoded."""

        def decode_nlas(self, offset: int) -> None:
            # pyroute2's nlmsg_base.decode_nlas, skipping unwanted attributes
            # before an object is made for them.
            end = self.offset + self.length
            data = self.data
            while offset <= end - 4:
                length, base_type = struct.unpack_from("HH", data, offset)
                length = min(max(length, 4), end - offset)
                msg_type = base_type & ~flag_bits
                if msg_type in wanted:
                    prime = table[msg_type]
                    msg_class = prime["class"]
                    if isinstance(msg_class, types.FunctionType):
                        msg_class = msg_class(self, data=data, offset=offset)
                    nla = msg_class(data=data, offset=offset, parent=self, length=length, init=prime["init"])
                    nla._nla_array = prime["nla_array"]
                    nla._nla_flags = base_type & flag_bits
                    self["attrs"].append(nla_slot(prime["name"], nla))
                offset += (length + 3) & ~3

    _LEAN[attrs] = LeanLinkMsg
    return LeanLinkMsg
