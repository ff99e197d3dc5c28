"""plumbing/ethtool.py (the one ethtool implementation) against the ethtool program, on a real veth."""

from __future__ import annotations

import re

import pytest
import testbed as tb

from ovsfab.plumbing.links import TX_CSUM_FEATURES, NetlinkHandle
from ovsfab.plumbing.netns import Namespace


def ethtool_k(ns: str, ifname: str) -> dict:
    """{feature: on} as ``ethtool -k`` prints it (the kernel's names)."""
    out = tb.ns_run(ns, "ethtool", "-k", ifname).stdout
    return {m[1]: m[2] == "on" for m in re.finditer(r"^\s*([\w-]+): (on|off)", out, re.M)}


@pytest.fixture
def veth():
    target = tb.make_netns()
    tb.run(["ip", "-n", target.name, "link", "add", "va", "type", "veth", "peer", "name", "vb"])
    ns = Namespace.open(target.netns_path)
    nl = NetlinkHandle(ns)
    yield target.name, nl
    nl.close()
    ns.close()
    tb.delete_netns(target.name)


def test_features_read_as_ethtool_prints_them(veth):
    name, nl = veth
    mine, theirs = nl.ethtool.features("va"), ethtool_k(name, "va")
    common = set(mine) & set(theirs)
    assert len(common) >= 30, sorted(theirs)
    assert {f: mine[f] for f in common} == {f: theirs[f] for f in common}


def test_tx_checksum_off_and_back_on(veth):
    name, nl = veth
    before = ethtool_k(name, "va")
    off = nl.disable_tx_checksum("va")
    assert off and set(off) <= set(TX_CSUM_FEATURES)
    after = ethtool_k(name, "va")
    assert not any(after[f] for f in off)
    assert after["tx-tcp-segmentation"] is False  # the kernel turns TSO off with them
    assert nl.disable_tx_checksum("va") == []  # nothing left to turn off
    nl.enable_features("va", off)
    again = ethtool_k(name, "va")
    assert {f: again[f] for f in off} == {f: before[f] for f in off} == dict.fromkeys(off, True)


def test_an_unknown_interface_is_not_found(veth):
    _, nl = veth
    from ovsfab.errors import OvsfabError

    with pytest.raises(OvsfabError):
        nl.disable_tx_checksum("nosuch0")
