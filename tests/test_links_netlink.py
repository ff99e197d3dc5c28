"""NetlinkHandle's reads on the rtnl socket agree with ``ip``, in a fresh network namespace."""

from __future__ import annotations

import json

import pytest
import testbed as tb

from ovsfab.plumbing.links import NetlinkHandle
from ovsfab.plumbing.netns import Namespace


@pytest.fixture
def two_links():
    target = tb.make_netns()
    ip = ["ip", "-n", target.name]
    tb.run(ip + ["link", "add", "va", "type", "veth", "peer", "name", "vb"])
    for dev, addr in (("va", "10.9.0.1/24"), ("va", "10.9.1.1/16"), ("va", "fd00:9::1/64"), ("vb", "10.9.0.2/24")):
        tb.run(ip + ["addr", "add", addr, "dev", dev])
    tb.run(ip + ["link", "set", "va", "up"])
    tb.run(ip + ["link", "set", "vb", "up"])
    ns = Namespace.open(target.netns_path)
    nl = NetlinkHandle(ns)
    yield target.name, nl
    nl.close()
    ns.close()
    tb.delete_netns(target.name)


def test_addresses_of_one_link_as_ip_lists_them(two_links):
    name, nl = two_links
    shown = json.loads(tb.run(["ip", "-n", name, "-j", "addr", "show", "dev", "va", "scope", "global"]).stdout)
    # ip prints {} for each address its filter left out.
    want = sorted(f"{a['local']}/{a['prefixlen']}" for a in shown[0]["addr_info"] if "local" in a)
    assert want == ["10.9.0.1/24", "10.9.1.1/16", "fd00:9::1/64"]
    assert sorted(nl.addresses(int(nl.index("va")))) == want
    assert nl.addresses(int(nl.index("vb"))) == ["10.9.0.2/24"]
    assert nl._ipr is None  # no IPRoute was made for it


def test_set_mac_on_a_link_that_is_up(two_links):
    name, nl = two_links
    index = int(nl.index("va"))
    nl.set_mac(index, "02:00:00:00:09:01")
    shown = json.loads(tb.run(["ip", "-n", name, "-j", "link", "show", "dev", "va"]).stdout)[0]
    assert shown["address"] == "02:00:00:00:09:01" and "UP" in shown["flags"]
