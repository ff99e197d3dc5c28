"""rtnetlink messages, built from pyroute2's public message classes (imported on first use).

:class:`~ovsfab.netlink.rtnl.Rtnl` sends what these build; the header
(type, flags, sequence) is filled in there.  ``fields`` are the fixed
header fields of the family's struct (``index``, ``flags``, ``family``,
...), ``attrs`` the NLA list as pyroute2 names them (``IFLA_IFNAME``, ...).
"""

from __future__ import annotations

from typing import Any, Sequence, Tuple

Attrs = Sequence[Tuple[str, Any]]


def _fill(msg: Any, attrs: Attrs, fields: "dict[str, Any]") -> Any:
    for key, value in fields.items():
        msg[key] = value
    if attrs:
        msg["attrs"] = list(attrs)
    return msg


def link(attrs: Attrs = (), **fields: Any) -> Any:
    """An ifinfmsg (RTM_*LINK)."""
    from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg  # noqa: PLC0415

    return _fill(ifinfmsg(), attrs, fields)


def addr(attrs: Attrs = (), **fields: Any) -> Any:
    """An ifaddrmsg (RTM_*ADDR)."""
    from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg  # noqa: PLC0415

    return _fill(ifaddrmsg(), attrs, fields)


def route(attrs: Attrs = (), **fields: Any) -> Any:
    """An rtmsg (RTM_*ROUTE)."""
    from pyroute2.netlink.rtnl.rtmsg import rtmsg  # noqa: PLC0415

    return _fill(rtmsg(), attrs, fields)


def neigh(attrs: Attrs = (), **fields: Any) -> Any:
    """An ndmsg (RTM_*NEIGH; with family AF_BRIDGE, a bridge FDB entry)."""
    from pyroute2.netlink.rtnl.ndmsg import ndmsg  # noqa: PLC0415

    return _fill(ndmsg(), attrs, fields)
