"""ovsfab uplink: the two-host walkthrough over a plugged-in eth1, exact
restore on `uplink del`, refusals, and fault injection at every step.

Hosts are netns with private OVS daemons joined by a veth wire (eth1 each);
containers are named netns.  `ip -j` and `ovs-vsctl` are the oracles.
"""
from __future__ import annotations

import json
import re

import pytest

import testbed as tb
from _crosshost_helpers import attach, configure_uplink_nic, l3_state, wire

from ovsfab.ops.uplink import UPLINK_ADD_STEPS, UPLINK_DEL_STEPS, nic_hwaddr


def nic_sysctls(host: tb.OvsHost, nic: str = "eth1") -> dict:
    """The sysctls uplink add changes on a netdev NIC, read with sysctl(8) as the oracle."""
    keys = {"arp_ignore": f"net.ipv4.conf.{nic}.arp_ignore", "arp_announce": f"net.ipv4.conf.{nic}.arp_announce",
            "disable_ipv6": f"net.ipv6.conf.{nic}.disable_ipv6"}
    return {k: tb.ns_run(host.name, "sysctl", "-n", v).stdout.strip() for k, v in keys.items()}


def arp_replies(host: tb.OvsHost, address: str) -> list:
    """The MACs that answer an ARP request for ``address`` sent from ``host``'s br0 (busybox arping as the oracle)."""
    cp = tb.ns_run(host.name, "busybox", "arping", "-b", "-c", "3", "-w", "3", "-I", "br0", address, check=False)
    macs = re.findall(r"\[([0-9a-fA-F:]{17})\]", cp.stdout)
    return sorted({m.lower() for m in macs})


def test_walkthrough_and_exact_restore(ovs_hosts, netns_targets):
    h1, h2 = ovs_hosts(2)
    wire(h1, h2)
    configure_uplink_nic(h1, "192.168.77.5/24", "2001:db8:77::5/64")
    h2.ip("addr", "add", "192.168.77.6/24", "dev", "eth1")
    before = l3_state(h1, "eth1")
    before_all = l3_state(h1)
    sysctls_before = nic_sysctls(h1)

    # eth1 carries the default route: refused without --force, nothing changed
    cp = h1.ovsfab("uplink", "add", "br0", "eth1")
    tb.assert_clean_error(cp, codes=(4,))
    assert "default route" in cp.stderr and "--force" in cp.stderr
    assert l3_state(h1) == before_all and tb.ovs_bridges(h1) == []

    h1.ovsfab("uplink", "add", "br0", "eth1", "--force", check=True)
    h2.ovsfab("uplink", "add", "br0", "eth1", check=True)
    # addresses and routes moved to br0; the NIC keeps only its link-local
    addrs = tb.addrs_in(h1.name)
    assert addrs["eth1"] == [] and set(addrs["br0"]) == {"192.168.77.5/24", "2001:db8:77::5/64"}
    assert tb.default_route(h1.name)["dev"] == "br0"
    assert {r["dst"]: r["dev"] for r in tb.routes_in(h1.name)}["10.200.0.0/16"] == "br0"
    assert {r["dst"]: r["dev"] for r in tb.routes_in(h1.name, v6=True)}["2001:db8:99::/48"] == "br0"
    br = tb.ovs_row(h1, "Bridge", "br0")
    # netdev: the bridge takes the NIC's MAC (neighbours' caches stay valid);
    # the NIC, still a kernel interface, takes a derived one and answers nothing.
    nic_mac = before["addr"][0]["address"]
    assert br["other_config"]["hwaddr"] == nic_mac
    links = tb.links_in(h1.name)
    assert links["br0"]["address"] == nic_mac
    assert links["eth1"]["address"] == nic_hwaddr(nic_mac) != nic_mac
    assert nic_sysctls(h1) == {"arp_ignore": "8", "arp_announce": "2", "disable_ipv6": "1"}
    assert tb.addrs_in(h1.name, include_link_local=True)["eth1"] == []
    ids = tb.ovs_row_external_ids(h1, "Port", "eth1")
    assert ids["ovsfab-owner"] == "ovsfab" and ids["ovsfab-role"] == "uplink"
    # idempotent, and listed
    cp = h1.ovsfab("uplink", "add", "br0", "eth1", "--force", "--json", check=True)
    assert json.loads(cp.stdout)["changed"] is False
    ups = json.loads(h1.ovsfab("uplink", "list", "--json", check=True).stdout)["uplinks"]
    assert [(u["bridge"], u["nic"]) for u in ups] == [("br0", "eth1")]
    assert "default via 192.168.77.1" in ups[0]["routes"]

    # the walkthrough: containers on br0 of both hosts talk across the wire
    c1, c2 = netns_targets(), netns_targets()
    attach(h1, "br0", c1, "192.168.77.10/24")
    attach(h2, "br0", c2, "192.168.77.20/24")
    assert tb.ping(c1, "192.168.77.20")
    assert tb.ping(c1, "192.168.77.6")  # and the other host itself
    assert tb.tcp_transfer(c1, c2, "192.168.77.20", nbytes=2_000_000, timeout=15)
    assert tb.tcp_transfer(h2.name, h1.name, "192.168.77.5", nbytes=2_000_000, timeout=15)

    # another bridge cannot take the same NIC
    cp = h1.ovsfab("uplink", "add", "br1", "eth1", "--force")
    tb.assert_clean_error(cp, codes=(4,))
    assert "uplink del br0 eth1" in cp.stderr

    # one answerer: h2 learned h1's address with the NIC's (= the bridge's) MAC
    # only, and a fresh ARP from h2 gets exactly one reply
    assert arp_replies(h2, "192.168.77.5") == [nic_mac]

    # (e) uplink del restores addresses, routes, MAC and sysctls exactly
    h1.ovsfab("uplink", "del", "br0", "eth1", check=True)
    tb.wait_dad(h1.name)
    after = l3_state(h1, "eth1")
    assert after == before
    assert l3_state(h1)["route4"] == before_all["route4"]
    assert l3_state(h1)["route6"] == before_all["route6"]
    assert "hwaddr" not in tb.ovs_row(h1, "Bridge", "br0")["other_config"]
    assert "eth1" not in tb.ovs_ports(h1)
    assert nic_sysctls(h1) == sysctls_before
    h1.ovsfab("uplink", "del", "br0", "eth1", "--if-exists", check=True)
    cp = h1.ovsfab("uplink", "del", "br0", "eth1")
    tb.assert_clean_error(cp, codes=(3,))


def test_refusals_leave_host_as_it_was(ovs_hosts):
    h, peer = ovs_hosts(2)
    wire(h, peer)
    h.ip("addr", "add", "192.168.77.5/24", "dev", "eth1")
    h.ip("link", "add", "eth2", "type", "veth", "peer", "name", "eth3")
    h.ip("link", "set", "eth3", "up")
    h.vsctl("add-br", "brx", "--", "set", "bridge", "brx", "datapath_type=netdev")
    h.vsctl("add-port", "brx", "eth3")
    before = tb.snapshot(h)
    cases = [
        (("uplink", "add", "br0", "eth2"), "down"),             # NIC down
        (("uplink", "add", "br0", "eth3"), "brx"),              # port of another bridge
        (("uplink", "add", "br0", "nosuch"), "no interface"),   # missing
        (("uplink", "add", "eth1", "eth1"), "both named"),
    ]
    for args, words in cases:
        cp = h.ovsfab(*args)
        tb.assert_clean_error(cp)
        assert words in cp.stderr, cp.stderr
        tb.assert_no_residue(h, before)


@pytest.fixture(scope="module")
def fault_host():
    """One host, eth1 wired to a peer, with v4+v6 addresses and routes (default too)."""
    h, peer = tb.OvsHost(), tb.OvsHost()
    try:
        wire(h, peer)
        configure_uplink_nic(h, "192.168.77.5/24", "2001:db8:77::5/64")
        yield h
    finally:
        peer.close()
        h.close()



@pytest.mark.parametrize("step", UPLINK_ADD_STEPS)
def test_uplink_add_fault_leaves_host_as_it_was(fault_host, step):
    h = fault_host
    snap, l3 = tb.snapshot(h), l3_state(h)
    offl = tb.ns_run(h.name, "ethtool", "-k", "eth1").stdout
    cp = h.ovsfab("uplink", "add", "br0", "eth1", "--force", env={"OVSFAB_INJECT_FAULT": step})
    tb.assert_clean_error(cp, codes=(6,))
    assert step in cp.stderr
    tb.wait_dad(h.name)
    tb.assert_no_residue(h, snap)
    assert l3_state(h) == l3
    assert tb.ns_run(h.name, "ethtool", "-k", "eth1").stdout == offl


@pytest.mark.parametrize("step", UPLINK_DEL_STEPS)
def test_uplink_del_fault_keeps_the_uplink(fault_host, step):
    h = fault_host
    original = l3_state(h)
    h.ovsfab("uplink", "add", "br0", "eth1", "--force", check=True)
    try:
        # Moved IPv6 addresses go through DAD again on br0: compare settled states.
        tb.wait_dad(h.name)
        snap, l3 = tb.snapshot(h), l3_state(h)
        cp = h.ovsfab("uplink", "del", "br0", "eth1", env={"OVSFAB_INJECT_FAULT": step})
        tb.wait_dad(h.name)
        tb.assert_clean_error(cp, codes=(6,))
        tb.assert_no_residue(h, snap)
        assert l3_state(h) == l3
    finally:
        h.ovsfab("uplink", "del", "br0", "eth1", check=True)
    tb.wait_dad(h.name)
    assert l3_state(h) == original
