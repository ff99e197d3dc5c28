"""Choose a backend by name, importing it only when chosen (os-vif style).

The kind comes from ``--backend``, else ``OVSFAB_BACKEND``, else
``backend = "..."`` in the config file (``OVSFAB_CONFIG`` or
``/etc/ovsfab/config.toml``), else ``ovs``.  ``auto`` picks, per bridge:
the kind of an existing bridge of that name, else OVS when OVSDB answers,
else Linux (with a note saying so).
"""

from __future__ import annotations

import logging
import os
from typing import Callable, Optional, Tuple

from ovsfab.backends.base import Backend
from ovsfab import defaults
from ovsfab.errors import InvalidInput, Unavailable

LOG = logging.getLogger(__name__)

KINDS = defaults.KINDS
check_kind = defaults.check_kind


def configured_kind(option: Optional[str] = None) -> str:
    """The backend kind from the option, the environment, the config file, or ``ovs`` (CLI process only)."""
    return defaults.backend_kind(os.environ, option)


def existing_bridge_kind(bridge: str) -> Optional[str]:
    """"linux" or "ovs" if a bridge of that name exists in this namespace (netlink), else None."""
    from pyroute2 import IPRoute  # noqa: PLC0415

    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=bridge)
        if not found:
            return None
        info = ipr.get_links(found[0])[0].get_attr("IFLA_LINKINFO")
        kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
    if kind == "bridge":
        return "linux"
    if kind == "openvswitch":
        return "ovs"
    return None  # an OVS netdev bridge's tap, or not a bridge: OVSDB decides


def choose(kind: str, *, db: Optional[str] = None, timeout: float = 10.0,
           bridge: Optional[str] = None) -> Tuple[Backend, Optional[str]]:
    """A connected backend and, for ``auto``, a note on what was chosen when it was not obvious."""
    check_kind(kind)
    if kind != "auto":
        return get_backend(kind, db=db, timeout=timeout), None
    if bridge is not None:
        found = existing_bridge_kind(bridge)
        if found is not None:
            return get_backend(found, db=db, timeout=timeout), None
    try:
        return get_backend("ovs", db=db, timeout=timeout), None
    except Unavailable as exc:
        LOG.debug("auto backend: OVSDB unavailable (%s)", exc)
        return get_backend("linux", timeout=timeout), \
            f"OVSDB does not answer ({exc.message}): using the Linux-bridge backend"


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
