"""ovsfab tunnel: VXLAN/GRE/Geneve between simulated hosts, MTU auto, isolation,
full mesh, refusals, and fault injection at every step of `tunnel add`.

Two hosts (netns + private OVS each) joined by a veth wire; each host's eth1 is
the uplink of br-ul, which holds the underlay address (192.168.77.5/.6) -- what
the userspace datapath needs.  Containers are named netns.
"""
from __future__ import annotations

import json

import pytest

import testbed as tb
from _crosshost_helpers import Switch, attach, mtu_of, ovs_routes, ping_df, wait_for, wire

from ovsfab.errors import Conflict, InvalidInput
from ovsfab.ops.tunnel import (TUNNEL_ADD_STEPS, TunnelRequest, check_underlay, mtu_for, overhead,
                               tunnel_port_name)

U1, U2 = "192.168.77.5", "192.168.77.6"


# ---------------------------------------------------------------- pure logic
@pytest.mark.unprivileged
def test_port_name_is_deterministic_and_short():
    a = tunnel_port_name("br0", U2, "vxlan", 5001)
    assert a == tunnel_port_name("br0", U2, "vxlan", 5001)
    assert len(a) <= 15 and a.startswith("vx-")
    others = {tunnel_port_name("br0", U2, "vxlan", 5002), tunnel_port_name("br1", U2, "vxlan", 5001),
              tunnel_port_name("br0", U2, "gre", 5001), tunnel_port_name("br0", "192.168.77.7", "vxlan", 5001)}
    assert a not in others and len(others) == 4
    assert len(tunnel_port_name("a-long-bridge-x", "2001:db8::1234:5678", "geneve", 16777215)) == 15


@pytest.mark.unprivileged
def test_overheads():
    assert overhead("vxlan", False) == 50
    assert overhead("vxlan", True) == 70
    assert overhead("geneve", False) == 50 and overhead("geneve", False, geneve_options=8) == 58
    assert overhead("gre", False) == 38 and overhead("gre", True) == 58
    assert overhead("gre", False, key=5) == 42 and overhead("gre", False, key=5, csum=True) == 46
    assert mtu_for([("vxlan", U2, 1, False, 1500)]) == 1450
    assert mtu_for([("vxlan", U2, 1, False, 1500), ("gre", "2001:db8::6", 0, False, 1500)]) == 1442
    assert mtu_for([("vxlan", U2, 1, False, None)]) == 1450  # unknown underlay: 1500 assumed
    assert mtu_for([]) is None


@pytest.mark.unprivileged
def test_request_validation():
    r = TunnelRequest.parse("br0", U2, "vxlan", "5001", dstport="4790", csum=False)
    assert r.options() == {"remote_ip": U2, "key": "5001", "dst_port": "4790", "csum": "false"}
    for bad in (dict(remote="nope"), dict(remote="224.0.0.1"), dict(tun_type="ipip"),
                dict(key="16777216"), dict(key="x"), dict(tun_type="gre", dstport="4789"),
                dict(dstport="0"), dict(local_ip="2001:db8::5"), dict(name="way-too-long-name")):
        kwargs = dict(bridge="br0", remote=U2)
        kwargs.update(bad)
        with pytest.raises(InvalidInput):
            TunnelRequest.parse(**kwargs)
    assert TunnelRequest.parse("br0", U2, "gre", str(2**32 - 1)).key == 2**32 - 1


@pytest.mark.unprivileged
def test_check_underlay_logic():
    owners = {U1: "br-ul", "10.9.0.5": "eth2"}
    internal = {"br-ul": ("br-ul", "netdev"), "br0": ("br0", "netdev"), "brs": ("brs", "system")}
    via_ul = {"ifname": "br-ul", "prefsrc": U1, "mtu": 1500}
    via_eth2 = {"ifname": "eth2", "prefsrc": "10.9.0.5", "mtu": 1500}
    # own address: refused on every datapath
    for dp in ("netdev", "system"):
        with pytest.raises(InvalidInput, match="address of this host"):
            check_underlay(dp, U1, None, via_ul, owners, internal)
    assert check_underlay("netdev", U2, None, via_ul, owners, internal) is None
    with pytest.raises(Conflict, match="ovsfab uplink add br-eth2 eth2"):
        check_underlay("netdev", U2, None, via_eth2, owners, internal)
    with pytest.raises(Conflict, match="no route"):
        check_underlay("netdev", U2, None, None, owners, internal)
    with pytest.raises(Conflict, match="ovsfab uplink add br-eth2 eth2"):
        check_underlay("netdev", U2, "10.9.0.5", via_ul, owners, internal)
    with pytest.raises(InvalidInput, match="not an address of this host"):
        check_underlay("netdev", U2, "10.9.9.9", via_ul, owners, internal)
    # system: the kernel routes the underlay; no OVS-held address needed
    assert check_underlay("system", U2, None, via_eth2, owners, internal) is None
    assert check_underlay("system", U2, "10.9.0.5", via_eth2, owners, internal) is None
    assert "no route" in check_underlay("system", U2, None, None, owners, internal)


# ---------------------------------------------------------------- two hosts
class Pair:
    def __init__(self):
        self.h1, self.h2 = tb.OvsHost(), tb.OvsHost()
        self.targets = []
        wire(self.h1, self.h2)
        for h, a in ((self.h1, U1), (self.h2, U2)):
            h.ip("addr", "add", f"{a}/24", "dev", "eth1")
            h.ovsfab("uplink", "add", "br-ul", "eth1", check=True)

    def container(self):
        t = tb.make_netns()
        self.targets.append(t)
        return t

    def close(self):
        for t in self.targets:
            tb.delete_netns(t.name)
        self.h2.close()
        self.h1.close()


@pytest.fixture(scope="module")
def pair():
    p = Pair()
    yield p
    p.close()


def udp_no_ports(host) -> int:
    """The host's Udp NoPorts counter (datagrams to a UDP port nobody listens on)."""
    lines = [ln.split() for ln in tb.ns_run(host.name, "cat", "/proc/net/snmp").stdout.splitlines()
             if ln.startswith("Udp:")]
    return int(lines[1][lines[0].index("NoPorts")])


def _tunnels(pair, bridge, tun_type, key=None):
    opts = ["--type", tun_type] + (["--key", str(key)] if key is not None else [])
    pair.h1.ovsfab("tunnel", "add", bridge, U2, *opts, check=True)
    pair.h2.ovsfab("tunnel", "add", bridge, U1, *opts, check=True)


def _overlay_check(pair, bridge, tun_type, net):
    c1, c2 = pair.container(), pair.container()
    a1 = attach(pair.h1, bridge, c1, f"{net}.10/24")
    attach(pair.h2, bridge, c2, f"{net}.20/24")
    expect = 1500 - overhead(tun_type, False)
    assert a1["mtu"] == expect and mtu_of(c1) == expect and mtu_of(c2) == expect
    assert tb.ping(c1, f"{net}.20")
    assert tb.tcp_transfer(c1, c2, f"{net}.20", nbytes=2_000_000, timeout=15)
    # the MTU-filling DF ping passes; one byte more fails at the sender
    assert ping_df(c1, f"{net}.20", expect - 28).returncode == 0
    cp = ping_df(c1, f"{net}.20", expect - 27, count=1)
    assert cp.returncode != 0 and "message too long" in (cp.stdout + cp.stderr)
    return c1, c2


def test_vxlan_overlay(pair):
    _tunnels(pair, "br0", "vxlan", 5001)
    # the OVS userspace stack routes the underlay through br-ul (oracle)
    assert "192.168.77.0/24 dev br-ul" in ovs_routes(pair.h1)
    c1, c2 = _overlay_check(pair, "br0", "vxlan", "10.10.0")
    # The underlay frames are OVS's alone: the receiving host's kernel must not
    # also take them up through the NIC (netdev reads it with AF_PACKET), or
    # every VXLAN packet lands on a closed UDP port too (docs/performance.md).
    before = udp_no_ports(pair.h1)
    assert tb.tcp_transfer(c2, c1, "10.10.0.10", nbytes=2_000_000, timeout=15)
    assert udp_no_ports(pair.h1) - before < 50
    # idempotent: same tunnel again is a no-op
    cp = pair.h1.ovsfab("tunnel", "add", "br0", U2, "--key", "5001", "--json", check=True)
    assert json.loads(cp.stdout)["changed"] is False
    listed = json.loads(pair.h1.ovsfab("tunnel", "list", "br0", "--json", check=True).stdout)["tunnels"]
    assert [(t["type"], t["remote"], t["key"]) for t in listed] == [("vxlan", U2, 5001)]
    name = listed[0]["name"]
    row = tb.ovs_row(pair.h1, "Interface", name)
    assert row["type"] == "vxlan" and row["options"]["remote_ip"] == U2 and row["options"]["key"] == "5001"
    ids = tb.ovs_row_external_ids(pair.h1, "Port", name)
    assert ids["ovsfab-owner"] == "ovsfab" and ids["ovsfab-role"] == "tunnel"
    # same identity with other settings: conflict, nothing changed
    cp = pair.h1.ovsfab("tunnel", "add", "br0", U2, "--key", "5001", "--dstport", "4790")
    tb.assert_clean_error(cp, codes=(4,))
    assert "tunnel del" in cp.stderr


def _bfd_up(host, iface, timeout=15.0) -> bool:
    return wait_for(lambda: host.bfd_status(iface).get("state") == "up", timeout=timeout, interval=0.2)


def test_bfd_and_check_catch_a_broken_tunnel(pair):
    """BFD is on by default and visible; `ovsfab check` proves the tunnel and catches a dead underlay."""
    _tunnels(pair, "brb", "vxlan", 5201)
    c1, c2 = pair.container(), pair.container()
    attach(pair.h1, "brb", c1, "10.21.0.10/24")
    attach(pair.h2, "brb", c2, "10.21.0.20/24")
    name = json.loads(pair.h1.ovsfab("tunnel", "list", "brb", "--json", check=True).stdout)["tunnels"][0]["name"]
    assert tb.ovs_row(pair.h1, "Interface", name)["bfd"] == {"enable": "true"}  # oracle: the column itself
    assert _bfd_up(pair.h1, name), pair.h1.bfd_status(name)
    listed = json.loads(pair.h1.ovsfab("tunnel", "list", "brb", "--json", check=True).stdout)["tunnels"][0]
    assert listed["bfd"]["enabled"] is True and listed["bfd"]["state"] == "up"
    assert listed["bfd"]["remote_state"] == "up"
    assert tb.tcp_transfer(c1, c2, "10.21.0.20", nbytes=1_000_000, timeout=15)

    # check passes, and what it read is what the oracles say: the neighbour
    # cache holds h2's bridge MAC (br-ul, which took eth1's own MAC)
    cp = pair.h1.ovsfab("check", "--json")
    assert cp.returncode == 0, cp.stdout + cp.stderr
    res = json.loads(cp.stdout)
    assert res["ok"] is True and res["problems"] == []
    rep = next(t for t in res["tunnels"] if t["name"] == name)
    h2_bridge_mac = tb.links_in(pair.h2.name)["br-ul"]["address"]
    assert rep["neighbour_mac"] == pair.h1.tnl_neighbours()[U2] == h2_bridge_mac
    assert rep["arp_answers"] == [h2_bridge_mac] and rep["path_mtu"] == 1450

    # break it: the remote's underlay address goes away
    pair.h2.ip("addr", "del", f"{U2}/24", "dev", "br-ul")
    try:
        assert wait_for(lambda: pair.h1.bfd_status(name).get("state") != "up", timeout=15, interval=0.2)
        cp = pair.h1.ovsfab("check")
        assert cp.returncode == 8, cp.stdout + cp.stderr
        problems = [ln for ln in cp.stdout.splitlines() if ln.startswith("problem:") and name in ln]
        assert any(f"{U2} does not answer" in ln for ln in problems), cp.stdout
        assert any("BFD is down" in ln for ln in problems), cp.stdout
        assert cp.stderr.startswith("ovsfab: error:") and len(cp.stderr.strip().splitlines()) == 1
    finally:
        pair.h2.ip("addr", "add", f"{U2}/24", "dev", "br-ul")
    cp = pair.h1.ovsfab("check", "--wait", "20", "--json")
    assert cp.returncode == 0 and json.loads(cp.stdout)["ok"], cp.stdout

    # opt-out in place (BFD is liveness, not identity), and back
    cp = pair.h1.ovsfab("tunnel", "add", "brb", U2, "--key", "5201", "--no-bfd", "--json", check=True)
    assert json.loads(cp.stdout)["changed"] is True
    assert tb.ovs_row(pair.h1, "Interface", name)["bfd"] == {}
    listed = json.loads(pair.h1.ovsfab("tunnel", "list", "brb", "--json", check=True).stdout)["tunnels"][0]
    assert listed["bfd"]["enabled"] is False
    cp = pair.h1.ovsfab("tunnel", "add", "brb", U2, "--key", "5201", "--json", check=True)
    assert json.loads(cp.stdout)["changed"] is True and _bfd_up(pair.h1, name)


def test_key_isolation(pair):
    """Keys 5001 and 5002 between the same hosts: same key talks, different keys do not."""
    _tunnels(pair, "bra", "vxlan", 5101)
    _tunnels(pair, "brb", "vxlan", 5102)
    a1, a2, b2 = pair.container(), pair.container(), pair.container()
    attach(pair.h1, "bra", a1, "10.20.0.10/24")
    attach(pair.h2, "bra", a2, "10.20.0.20/24")
    attach(pair.h2, "brb", b2, "10.20.0.30/24")
    assert tb.ping(a1, "10.20.0.20")
    assert not tb.ping(a1, "10.20.0.30", count=1, deadline=2)
    # two tunnels to one remote on one bridge differ by key; `del` needs to know which
    pair.h1.ovsfab("tunnel", "add", "bra", U2, "--key", "5199", check=True)
    cp = pair.h1.ovsfab("tunnel", "del", "bra", U2)
    tb.assert_clean_error(cp, codes=(4,))
    pair.h1.ovsfab("tunnel", "del", "bra", U2, "--key", "5199", check=True)
    cp = pair.h1.ovsfab("tunnel", "del", "bra", U2, "--key", "5199")
    tb.assert_clean_error(cp, codes=(3,))
    pair.h1.ovsfab("tunnel", "del", "bra", U2, "--key", "5199", "--if-exists", check=True)
    assert tb.ping(a1, "10.20.0.20")


@pytest.mark.slow
@pytest.mark.parametrize("tun_type", ["gre", "geneve"])
def test_gre_and_geneve(pair, tun_type):
    bridge = {"gre": "brg", "geneve": "brn"}[tun_type]
    _tunnels(pair, bridge, tun_type)
    _overlay_check(pair, bridge, tun_type, {"gre": "10.30.0", "geneve": "10.40.0"}[tun_type])


def test_refusals(pair):
    # the remote is one of this host's own addresses
    cp = pair.h1.ovsfab("tunnel", "add", "br9", U1)
    tb.assert_clean_error(cp, codes=(2,))
    assert "address of this host" in cp.stderr
    cp = pair.h1.ovsfab("tunnel", "add", "br9", U2, "--local-ip", "192.168.77.99")
    tb.assert_clean_error(cp, codes=(2,))
    cp = pair.h1.ovsfab("tunnel", "del", "br9", "--name", "nope")
    tb.assert_clean_error(cp, codes=(3,))
    assert "br9" not in tb.ovs_bridges(pair.h1)


def test_netdev_without_uplink_names_the_fix(ovs_hosts):
    h, peer = ovs_hosts(2)
    wire(h, peer)
    h.ip("addr", "add", f"{U1}/24", "dev", "eth1")
    before = tb.snapshot(h)
    cp = h.ovsfab("tunnel", "add", "br0", U2)
    tb.assert_clean_error(cp, codes=(4,))
    assert "ovsfab uplink add br-eth1 eth1" in cp.stderr
    tb.assert_no_residue(h, before)
    # no route at all
    cp = h.ovsfab("tunnel", "add", "br0", "10.99.0.1")
    tb.assert_clean_error(cp, codes=(4,))
    assert "no route" in cp.stderr and "ovsfab uplink add" in cp.stderr
    tb.assert_no_residue(h, before)


@pytest.mark.parametrize("step", TUNNEL_ADD_STEPS)
def test_tunnel_add_fault_leaves_host_as_it_was(pair, step):
    before = tb.snapshot(pair.h1)
    cp = pair.h1.ovsfab("tunnel", "add", "brf", U2, "--type", "geneve", "--key", "7",
                        env={"OVSFAB_INJECT_FAULT": step})
    tb.assert_clean_error(cp, codes=(6,))
    assert step in cp.stderr
    tb.assert_no_residue(pair.h1, before)


@pytest.mark.slow
def test_three_hosts_full_mesh(ovs_hosts, netns_targets):
    """Three hosts on a switch, VXLAN full mesh: every pair talks, no broadcast loop."""
    hosts = ovs_hosts(3)
    sw = Switch()
    try:
        ips = [f"192.168.78.{i + 1}" for i in range(3)]
        for h, ip in zip(hosts, ips):
            sw.plug(h)
            h.ip("addr", "add", f"{ip}/24", "dev", "eth1")
            h.ovsfab("uplink", "add", "br-ul", "eth1", check=True)
        for i, h in enumerate(hosts):
            for j, ip in enumerate(ips):
                if i != j:
                    h.ovsfab("tunnel", "add", "br0", ip, "--key", "42", check=True)
        cs = [netns_targets() for _ in hosts]
        for i, (h, c) in enumerate(zip(hosts, cs)):
            attach(h, "br0", c, f"10.50.0.{i + 10}/24")
        for i in range(3):
            for j in range(3):
                if i != j:
                    assert tb.ping(cs[i], f"10.50.0.{j + 10}", count=1), (i, j)
        assert tb.tcp_transfer(cs[0], cs[2], "10.50.0.12", nbytes=1_000_000, timeout=15)
        # tunnel ports are protected (split horizon): no loop through the triangle
        names = [t["name"] for t in json.loads(hosts[0].ovsfab("tunnel", "list", "--json").stdout)["tunnels"]]
        assert all(tb.ovs_row(hosts[0], "Port", n)["protected"] is True for n in names)
    finally:
        sw.close()
