"""Choose a backend by name, importing it only when chosen (os-vif style).

The kind comes from ``--backend``, else ``OVSFAB_BACKEND``, else
``backend = "..."`` in the config file (``OVSFAB_CONFIG`` or
``/etc/ovsfab/config.toml``), else ``auto``.  :func:`resolve_kind` is the
one rule: every request whose context says ``auto`` (the CLI's, the lean
client's, the agent's, a front end's) is resolved here, when its backend is
made: ``linux`` when a Linux bridge (kind ``bridge``) of the request's name
exists in this network namespace, else ``ovs``.  ``auto`` never creates
a Linux bridge: without OVSDB and without such a bridge the OVS error stands,
its remedy naming ``--backend linux``.
"""

from __future__ import annotations

import os
from typing import Callable, Optional

from ovsfab.backends.base import Backend
from ovsfab import defaults
from ovsfab.errors import InvalidInput, Unavailable, from_errno

KINDS = defaults.KINDS
check_kind = defaults.check_kind

#: Appended to OVSDB's remedy when ``auto`` chose OVS for want of a Linux bridge.
LINUX_HINT = "or --backend linux for a Linux bridge (created if missing)"


def configured_kind(option: Optional[str] = None) -> str:
    """The backend kind from the option, the environment, the config file, or ``auto`` (CLI process only)."""
    return defaults.backend_kind(os.environ, option)


def is_linux_bridge(bridge: str) -> bool:
    """Whether a Linux bridge (kind ``bridge``; not an OVS bridge's port) named ``bridge`` exists here.

    One RTM_GETLINK on a bare rtnetlink socket of the calling thread's
    namespace: ~0.1 ms, against ~0.7 ms with a pyroute2 IPRoute
    (bench/bench_backend_auto.py).
    """
    from ovsfab.netlink.rtnl import Rtnl, get_link, link_kind  # noqa: PLC0415

    try:
        with Rtnl() as sock:
            msg = get_link(sock, bridge)
    except OSError as exc:
        raise from_errno(exc, f"cannot look up interface {bridge}") from exc
    return msg is not None and link_kind(msg) == "bridge"


def resolve_kind(kind: str, bridge: Optional[str] = None) -> str:
    """``ovs`` or ``linux``: an explicit kind as given, ``auto`` by the rule above.

    A request without a bridge (show, check, reconcile, ...) under ``auto`` is
    an OVS request, as it was before ``auto`` was the default.
    """
    check_kind(kind)
    if kind != "auto":
        return kind
    return "linux" if bridge is not None and is_linux_bridge(bridge) else "ovs"


def choose(kind: str, *, db: Optional[str] = None, timeout: float = 10.0,
           bridge: Optional[str] = None) -> Backend:
    """A connected backend of ``kind`` (``auto`` resolved for ``bridge``)."""
    return connect(resolve_kind(kind, bridge), db=db, timeout=timeout, auto=kind == "auto")


def connect(kind: str, *, db: Optional[str] = None, timeout: float = 10.0, auto: bool = False) -> Backend:
    """A connected backend of a resolved kind; ``auto``: OVSDB's error names the Linux backend too."""
    try:
        return get_backend(kind, db=db, timeout=timeout)
    except Unavailable as exc:
        if auto and kind == "ovs":
            raise auto_unavailable(exc) from exc
        raise


def auto_unavailable(exc: Unavailable) -> Unavailable:
    """OVSDB's error under ``auto``, with a remedy that names the Linux-bridge backend too."""
    remedy = f"{exc.remedy}, {LINUX_HINT}" if exc.remedy else f"start Open vSwitch, {LINUX_HINT}"
    return Unavailable(exc.message, remedy)


def get_backend(kind: str = "ovs", *, db: Optional[str] = None, timeout: float = 10.0) -> Backend:
    """Return a connected backend of the given kind ("ovs" or "linux")."""
    if kind == "ovs":
        from ovsfab.backends.ovs.backend import OvsBackend  # noqa: PLC0415

        return OvsBackend(db, timeout=timeout)
    if kind == "linux":
        from ovsfab.backends.linux import LinuxBackend  # noqa: PLC0415

        return LinuxBackend(timeout=timeout)
    raise InvalidInput(f"backend {kind!r} is unknown", "use ovs or linux")


BackendFactory = Callable[[], Backend]
