"""Naming and lookups for the fabric file's OVN part (the operation is :mod:`ovsfab.ops.ovn_fabric`).

A router is an OVN logical router with one port per network, on that
network's ``gateway`` address; each network's switch gets the matching
``type=router`` port.  Everything carries ``ovsfab-owner=ovsfab`` and
``ovsfab-fabric=<name>``.
"""

from __future__ import annotations

import hashlib
from typing import Optional

from ovsfab.model import OWNER_KEY, OWNER_VALUE
from ovsfab.ovn.idl import OvnSession
from ovsfab.ovn.network import KEY_ROUTER



def router_mac(router: str, network: str) -> str:
    """A stable, locally administered MAC for a router port."""
    digest = hashlib.sha256(f"{router}\0{network}".encode()).digest()
    return "0a:01:" + ":".join(f"{b:02x}" for b in digest[:4])


def lrp_name(router: str, network: str) -> str:
    """The logical router port of ``router`` on ``network``."""
    return f"{router}-{network}"


def rsp_name(router: str, network: str) -> str:
    """The switch's ``type=router`` port that patches ``network`` to ``router``."""
    return f"{network}-{router}"


def _find_router(nbs: OvnSession, name: str):  # noqa: ANN202
    for lr in nbs.rows("Logical_Router"):
        if lr.external_ids.get(OWNER_KEY) == OWNER_VALUE and lr.external_ids.get(KEY_ROUTER) == name:
            return lr
    return None


def nb_for(nb: Optional[str]) -> str:
    """The NB remote: given, else this host's join settings, else the local central."""
    from ovsfab.ovn.control import remotes  # noqa: PLC0415

    return nb or remotes()[0]
