"""Choose a backend by name, importing it only when chosen."""

from __future__ import annotations

from typing import Optional

from ovsfab.backends.base import Backend
from ovsfab.errors import InvalidInput


def get_backend(kind: str = "ovs", *, db: Optional[str] = None, timeout: float = 10.0) -> Backend:
    """Return a connected backend of the given kind ("ovs")."""
    if kind == "ovs":
        from ovsfab.backends.ovs.backend import OvsBackend

        return OvsBackend(db, timeout=timeout)
    raise InvalidInput(f"backend {kind!r} is unknown", "use ovs")
