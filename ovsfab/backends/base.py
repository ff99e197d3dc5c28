"""The small interface every backend implements.

A backend knows bridges and ports, not plans: the operations in
:mod:`ovsfab.ops` decide *what* to do and in which order, and undo on
failure; a backend makes one change at a time, atomically, and raises an
:class:`ovsfab.errors.OvsfabError` when the switch refuses it.  Verbs follow
ovs-vsctl (``add_port``, ``del_port``) with ``may_exist`` / ``if_exists``.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Dict, List, Optional

from ovsfab.model import Attachment


@dataclass
class PortResult:
    """What ``add_port`` did."""

    ofport: Optional[int]
    created_bridge: bool
    datapath: str


class Backend(abc.ABC):
    """A switch ovsfab plugs host-side interfaces into."""

    #: "ovs" or "linux".
    kind: str = ""

    @abc.abstractmethod
    def bridge_datapath(self, bridge: str) -> Optional[str]:
        """The bridge's datapath ("system", "netdev", "linux"), or None if it does not exist."""

    @abc.abstractmethod
    def find_attachment(self, container_key: str, ifname: str) -> Optional[Attachment]:
        """The recorded attachment of (container, ifname), if any, on any bridge."""

    @abc.abstractmethod
    def list_attachments(self, bridge: Optional[str] = None) -> List[Attachment]:
        """Every attachment ovsfab owns (on one bridge, or all)."""

    @abc.abstractmethod
    def port_exists(self, port: str) -> Optional[str]:
        """The bridge holding a port of that name, or None."""

    @abc.abstractmethod
    def add_port(self, bridge: str, port: str, *, external_ids: Dict[str, str],
                 tag: Optional[int] = None, datapath: str = "netdev",
                 may_exist: bool = False) -> PortResult:
        """Plug an existing interface into ``bridge``, creating the bridge (with
        ``datapath``) in the same change when it is missing."""

    @abc.abstractmethod
    def del_port(self, port: str, *, if_exists: bool = False) -> bool:
        """Remove a port; returns False if it was not there (and if_exists)."""

    @abc.abstractmethod
    def del_br(self, bridge: str, *, if_exists: bool = False, only_if_empty: bool = True) -> bool:
        """Remove a bridge; with only_if_empty, keep one that still has ports."""

    def close(self) -> None:
        """Release connections."""
