"""Why bridged traffic on a Linux bridge may be dropped, and the one-line remedy.

With br_netfilter loaded, frames bridged between two ports of a Linux bridge
traverse iptables FORWARD, whose policy Docker sets to DROP.  ovsfab runs no
iptables; it reads the chains over nfnetlink and says what to run.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Optional, Tuple

LOG = logging.getLogger(__name__)


def br_netfilter_loaded() -> bool:
    """True when br_netfilter is loaded: its sysctls exist."""
    return os.path.isdir("/proc/sys/net/bridge")


def bridged_traffic_hits_iptables() -> bool:
    """True when bridged IPv4 frames in this namespace traverse iptables FORWARD.

    The per-namespace switch ``bridge-nf-call-iptables`` is OR-ed with each
    bridge's own ``nf_call_iptables`` by the kernel, so a bridge cannot opt
    out by itself once the namespace-wide switch is on.
    """
    try:
        with open("/proc/sys/net/bridge/bridge-nf-call-iptables", encoding="ascii") as fh:
            return fh.read().strip() == "1"
    except OSError:
        return False


def iptables_forward_policy() -> Tuple[Optional[str], bool]:
    """(policy of the iptables FORWARD chain, whether a DOCKER-USER chain exists), read over nfnetlink.

    Policy is "drop", "accept", or None when it cannot be read (iptables-legacy,
    no nf_tables, no filter table).
    """
    try:
        from pyroute2.nftables.main import NFTables  # noqa: PLC0415

        nft = NFTables(nfgen_family=socket.AF_INET)
        try:
            chains = [(c.get_attr("NFTA_CHAIN_TABLE"), c.get_attr("NFTA_CHAIN_NAME"),
                       c.get_attr("NFTA_CHAIN_POLICY")) for c in nft.get_chains()]
        finally:
            nft.close()
    except Exception as exc:  # best effort: a warning must never fail an operation
        LOG.debug("cannot read nf_tables chains: %s", exc)
        return None, False
    policy = None
    for table, name, pol in chains:
        if table == "filter" and name == "FORWARD" and pol is not None:
            policy = "drop" if int(pol) == 0 else "accept"
    docker_user = any(table == "filter" and name == "DOCKER-USER" for table, name, _p in chains)
    return policy, docker_user


def forward_drop_note(bridge: str) -> Optional[str]:
    """A one-line warning with the exact remedy when bridged traffic on ``bridge`` would be dropped.

    With br_netfilter loaded and ``bridge-nf-call-iptables`` on (its default),
    frames bridged between two ports of a Linux bridge traverse iptables
    FORWARD; Docker sets that chain's policy to DROP.  A bridge cannot opt
    out by itself (the kernel ORs its nf_call_iptables with the namespace
    switch), and ovsfab runs no iptables, so it says what to run.
    """
    if not br_netfilter_loaded() or not bridged_traffic_hits_iptables():
        return None
    policy, docker_user = iptables_forward_policy()
    if policy != "drop":
        return None
    chain = "DOCKER-USER" if docker_user else "FORWARD"
    return (f"br_netfilter passes bridged traffic on {bridge} through iptables FORWARD, whose policy is DROP "
            f"(Docker sets it), so it is dropped; allow it with: iptables -I {chain} -i {bridge} -o {bridge} "
            f"-j ACCEPT (and remove it with -D when {bridge} goes)")
