"""Core job: attach Docker containers to an OVS bridge and get real traffic.

Everything runs the CLI as a subprocess inside a simulated host (netns with
private OVS daemons) and checks the result with independent oracles.
"""
import json
import os

import pytest

import testbed as tb

pytestmark = pytest.mark.docker

OWNER_KEYS = ("ovsfab-container-id", "ovsfab-container-name", "ovsfab-ifname",
              "container_id", "container_iface")


def attach(host, bridge, target, *addrs, check=True, **opts):
    args = ["attach", bridge, getattr(target, "name", target), *addrs]
    for k, v in opts.items():
        flag = f"--{k.replace('_', '-')}"
        args += [flag] if v is True else [flag, str(v)]
    return host.ovsfab(*args, check=check)


def host_end(host, c, ifname="eth1"):
    """(port row, host-side link record) of c's attachment, via the oracles."""
    port = tb.ovs_port_for(host, container_name=c.name, ifname=ifname)
    assert port is not None, f"no ovsfab-tagged Port for {c.name}/{ifname}: {tb.ovs_table(host, 'Port')}"
    links = host.links()
    assert port["name"] in links, f"port {port['name']} has no link in the host netns"
    return port, links[port["name"]]


def check_attachment(host, c, bridge, addrs, ifname="eth1", mtu=None):
    port, hlink = host_end(host, c, ifname)
    name = port["name"]
    assert len(name) <= 15
    assert tb.link_kind(hlink) == "veth"
    assert "UP" in hlink["flags"]
    # the host end is a bridge port without IPv6: no link-local address ever
    # (ovs-vswitchd re-reads routes and addresses on every change of them)
    assert not tb.addrs_in(host.name, include_link_local=True).get(name), tb.addrs_in(host.name, True)
    assert tb.ns_run(host.name, "cat", f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6").stdout.strip() == "1"
    # port is on the right bridge
    assert host.vsctl("port-to-br", name).stdout.strip() == bridge
    # ownership + ovs-docker tags on both Port and Interface rows
    for table in ("Port", "Interface"):
        ext = tb.ovs_row_external_ids(host, table, name)
        assert ext.get("ovsfab-owner") == "ovsfab", (table, ext)
        for k in OWNER_KEYS:
            assert k in ext, (table, k, ext)
        assert ext["ovsfab-container-id"] == c.id or c.id.startswith(ext["ovsfab-container-id"]), ext
        assert ext["container_id"] in (c.id, c.name, c.id[:12]), ext
        assert ext["ovsfab-container-name"] == c.name, ext
        assert ext["ovsfab-ifname"] == ifname, ext
        assert ext["container_iface"] == ifname, ext
    # container side
    clinks = tb.links_in(c)
    assert ifname in clinks, f"{ifname} missing in container: {list(clinks)}"
    cl = clinks[ifname]
    assert tb.link_kind(cl) == "veth"
    assert "UP" in cl["flags"]
    assert cl["mtu"] == hlink["mtu"], f"MTU differs: container {cl['mtu']} host {hlink['mtu']}"
    if mtu is not None:
        assert cl["mtu"] == mtu
    got = tb.addrs_in(c)[ifname]
    for a in addrs:
        assert a.split("@")[0] in got, f"{a} not on {ifname}: {got}"
    return port, hlink, cl


def test_two_containers_ping_and_tcp(ovs_host, containers):
    c1, c2 = containers(), containers()
    r1 = attach(ovs_host, "br0", c1, "10.1.0.10/24")
    r2 = attach(ovs_host, "br0", c2, "10.1.0.20/24")
    tb.assert_no_traceback(r1)
    tb.assert_no_traceback(r2)
    # bridge was created, netdev datapath (no kernel module here)
    assert tb.ovs_bridges(ovs_host) == ["br0"]
    assert ovs_host.vsctl("get", "bridge", "br0", "datapath_type").stdout.strip().strip('"') == "netdev"
    check_attachment(ovs_host, c1, "br0", ["10.1.0.10/24"])
    check_attachment(ovs_host, c2, "br0", ["10.1.0.20/24"])
    assert sorted(tb.links_in(c1)) == ["eth1", "lo"]
    assert tb.ping(c1, "10.1.0.20")
    assert tb.ping(c2, "10.1.0.10")
    assert tb.tcp_transfer(c1, c2, "10.1.0.20"), "TCP c1->c2 failed (ping works?)"
    assert tb.tcp_transfer(c2, c1, "10.1.0.10"), "TCP c2->c1 failed"
    # the root namespace never gets test addresses / veths
    root_addrs = " ".join(a for v in tb.addrs_in(f"/proc/{os.getpid()}/ns/net").values() for a in v)
    assert "10.1.0." not in root_addrs


def test_options_ifname_mac_mtu_gateway(ovs_host, containers):
    c1, c2 = containers(), containers()
    attach(ovs_host, "br0", c1, "10.1.0.5/24@10.1.0.1",
           ifname="eth2", mac="02:00:00:00:00:05", mtu=1450)
    attach(ovs_host, "br0", c2, "10.1.0.6/24", ifname="eth2", mtu=1450)
    _, hlink, cl = check_attachment(ovs_host, c1, "br0", ["10.1.0.5/24"], ifname="eth2", mtu=1450)
    assert hlink["mtu"] == 1450
    assert cl["address"] == "02:00:00:00:00:05"
    assert "eth1" not in tb.links_in(c1)
    r = tb.default_route(c1)
    assert r is not None, tb.routes_in(c1)
    assert r.get("gateway") == "10.1.0.1" and r.get("dev") == "eth2", r
    assert tb.default_route(c2) is None
    assert tb.ping(c2, "10.1.0.5")
    assert tb.tcp_transfer(c1, c2, "10.1.0.6")
    assert tb.tcp_transfer(c2, c1, "10.1.0.5")


def test_ipv6_and_dual_stack(ovs_host, containers):
    c1, c2 = containers(), containers()
    attach(ovs_host, "br0", c1, "2001:db8::10/64", "10.1.0.10/24")
    attach(ovs_host, "br0", c2, "2001:db8::20/64")
    check_attachment(ovs_host, c1, "br0", ["2001:db8::10/64", "10.1.0.10/24"])
    check_attachment(ovs_host, c2, "br0", ["2001:db8::20/64"])
    tb.wait_dad(c1)
    tb.wait_dad(c2)
    assert tb.ping(c1, "2001:db8::20", v6=True)
    assert tb.ping(c2, "2001:db8::10", v6=True)
    assert tb.tcp_transfer(c1, c2, "2001:db8::20")


def test_json_output(ovs_host, containers):
    c1 = containers()
    cp = attach(ovs_host, "br0", c1, "10.1.0.10/24", json=True)
    doc = json.loads(cp.stdout)
    assert isinstance(doc, dict)
    for k in ("changed", "bridge", "port", "container", "ifname"):
        assert k in doc, doc
    assert doc["changed"] is True
    assert doc["bridge"] == "br0" and doc["ifname"] == "eth1"
    port, _ = host_end(ovs_host, c1)
    assert doc["port"] == port["name"]
    again = json.loads(attach(ovs_host, "br0", c1, "10.1.0.10/24", json=True).stdout)
    assert again["changed"] is False and again["port"] == port["name"]
    det = ovs_host.ovsfab("detach", "br0", c1.name, "--json", check=True)
    d = json.loads(det.stdout)
    assert d["changed"] is True
    d2 = json.loads(ovs_host.ovsfab("detach", "br0", c1.name, "--if-exists", "--json", check=True).stdout)
    assert d2["changed"] is False


def test_vlan_separation(ovs_host, containers):
    c1, c2, c3 = containers(), containers(), containers()
    attach(ovs_host, "br0", c1, "10.1.0.10/24", vlan=100)
    attach(ovs_host, "br0", c2, "10.1.0.20/24", vlan=200)
    attach(ovs_host, "br0", c3, "10.1.0.30/24", vlan=100)
    tags = {c.name: tb.ovs_port_for(ovs_host, container_name=c.name)["tag"] for c in (c1, c2, c3)}
    assert tags == {c1.name: 100, c2.name: 200, c3.name: 100}
    assert not tb.ping(c1, "10.1.0.20", count=1, deadline=2)
    assert not tb.ping(c2, "10.1.0.30", count=1, deadline=2)
    assert tb.ping(c1, "10.1.0.30")
    assert tb.tcp_transfer(c1, c3, "10.1.0.30")
    assert not tb.tcp_transfer(c1, c2, "10.1.0.20", nbytes=1000, timeout=3)
