"""ovsfab-cni on an OVN network (``"network": NAME``): ops/cni_ovn.py, driven through the executable.

One simulated host is a whole OVN deployment: the central (NB/SB
ovsdb-servers, ovn-northd: ``ovsfab ovn central``) and a chassis
(``ovsfab ovn join``, its tunnel endpoint on a veth inside the host) -- the cheapest
lab in which ovn-controller binds ports and builds the logical switch's
flows.  Oracles: ovn-nbctl on the NB socket, ovs-vsctl, ip, ping.
"""
from __future__ import annotations

import pytest

import testbed as tb
from test_cni_conformance import added, plugin
from test_ovn import OvnHost, have_ovn

pytestmark = pytest.mark.slow

UNDERLAY = "192.168.79.1"


@pytest.fixture(scope="module")
def chassis():
    if not have_ovn():
        pytest.skip("OVN is not installed (scripts/setup.sh installs ovn-central and ovn-host)")
    host = OvnHost()
    try:
        # The underlay: a veth pair inside the host (no dummy module here), 1500 bytes.
        host.ip("link", "add", "ul0", "type", "veth", "peer", "name", "ul1")
        host.ip("addr", "add", f"{UNDERLAY}/24", "dev", "ul0")
        host.ip("link", "set", "ul0", "up")
        host.ip("link", "set", "ul1", "up")
        host.ovsfab("ovn", "central", "--address", UNDERLAY, check=True)
        host.ovsfab("ovn", "join", UNDERLAY, "--encap-ip", UNDERLAY, "--system-id", "cnichassis", check=True)
        yield host
    finally:
        for name in ("ovn-controller", "ovn-northd", "ovnnb_db", "ovnsb_db"):
            try:
                tb._kill_and_wait(int((host.rundir / f"{name}.pid").read_text()))  # noqa: SLF001
            except (OSError, ValueError):
                pass
        host.close()


def nbctl(host, *args):
    return tb.run(["ovn-nbctl", f"--db=unix:{host.rundir}/ovnnb_db.sock", "--timeout=10", *args]).stdout


def test_add_puts_the_container_on_the_logical_switch_and_del_removes_its_port(chassis, netns_targets):
    host = chassis
    conf = {"cniVersion": "1.0.0", "name": "ovnnet", "type": "ovsfab", "network": "cnils",
            "ovsdb": host.db_url, "ovs_netns": host.name, "ipam": {"type": "ovsfab", "subnet": "10.94.0.0/24"}}
    a, b = netns_targets(), netns_targets()
    ra = added(conf, a.netns_path, container_id="ovn-a")
    rb = added(conf, b.netns_path, container_id="ovn-b")
    port_a = ra["interfaces"][0]["name"]
    ids = tb.ovs_row_external_ids(host, "Interface", port_a)
    lsps = nbctl(host, "lsp-list", "cnils")
    assert ids["iface-id"] in lsps and len(lsps.strip().splitlines()) == 2, lsps
    assert tb.ovs_row_external_ids(host, "Port", port_a)["ovsfab-cni-network"] == "ovnnet"
    assert "10.94.0.2" in nbctl(host, "lsp-get-addresses", ids["iface-id"])
    # Geneve over IPv4 on a 1500-byte underlay: 58 bytes less
    assert tb.links_in(a)["eth0"]["mtu"] == 1442
    assert tb.ping(a, rb["ips"][0]["address"].split("/")[0])
    assert plugin("DEL", conf, a.netns_path, container_id="ovn-a")[0] == 0
    assert ids["iface-id"] not in nbctl(host, "lsp-list", "cnils")
    assert port_a not in tb.ovs_ports(host) and "eth0" not in tb.links_in(a)
    assert plugin("DEL", conf, a.netns_path, container_id="ovn-a")[0] == 0  # twice
    assert plugin("DEL", conf, b.netns_path, container_id="ovn-b")[0] == 0
    assert nbctl(host, "lsp-list", "cnils").strip() == ""


def test_a_failed_add_leaves_no_logical_port_and_gc_removes_stale_ones(chassis, netns_targets):
    host = chassis
    conf = {"cniVersion": "1.1.0", "name": "ovngc", "type": "ovsfab", "network": "cnigc",
            "ovsdb": host.db_url, "ovs_netns": host.name, "ipam": {"type": "ovsfab", "subnet": "10.95.0.0/24"}}
    a, b = netns_targets(), netns_targets()
    before = tb.snapshot(host, [a])
    code, out = plugin("ADD", conf, a.netns_path, container_id="gc-a", extra_env={"OVSFAB_INJECT_FAULT": "extras"})
    assert code == 1 and "extras" in out["msg"], out
    assert tb.snapshot(host, [a]).diff(before) == []
    assert "cnigc" not in nbctl(host, "ls-list")  # the switch it made went too
    added(conf, a.netns_path, container_id="gc-a")
    rb = added(conf, b.netns_path, container_id="gc-b")
    code, out = plugin("GC", {**conf, "cni.dev/valid-attachments": [{"containerID": "gc-a", "ifname": "eth0"}]},
                       container_id=None, ifname=None)
    assert (code, out) == (0, None)
    assert len(nbctl(host, "lsp-list", "cnigc").strip().splitlines()) == 1
    assert rb["interfaces"][0]["name"] not in tb.ovs_ports(host) and "eth0" not in tb.links_in(b)
    assert plugin("DEL", conf, a.netns_path, container_id="gc-a")[0] == 0
    assert nbctl(host, "lsp-list", "cnigc").strip() == ""


def test_ipam_type_ovn_takes_northds_dynamic_addresses_and_del_frees_them(chassis, netns_targets):
    host = chassis
    conf = {"cniVersion": "1.0.0", "name": "ovndyn", "type": "ovsfab", "network": "cnidyn",
            "ovsdb": host.db_url, "ovs_netns": host.name,
            "ipam": {"type": "ovn", "subnet": "10.97.0.0/24", "gateway": "10.97.0.1",
                     "routes": [{"dst": "10.98.0.0/16"}]}}
    a, b = netns_targets(), netns_targets()
    ra = added(conf, a.netns_path, container_id="dyn-a")
    rb = added(conf, b.netns_path, container_id="dyn-b")
    assert nbctl(host, "get", "Logical_Switch", "cnidyn", "other_config:subnet").strip().strip('"') == "10.97.0.0/24"
    by_ip = {}
    for r, ns in ((ra, a), (rb, b)):
        iface_id = tb.ovs_row_external_ids(host, "Interface", r["interfaces"][0]["name"])["iface-id"]
        assert nbctl(host, "lsp-get-addresses", iface_id).split()[-1] == "dynamic"
        mac, ip = nbctl(host, "get", "Logical_Switch_Port", iface_id, "dynamic_addresses").strip().strip('"').split()
        # the result, the veth and port_security all say what northd assigned
        assert r["ips"] == [{"address": f"{ip}/24", "gateway": "10.97.0.1", "interface": 1}], r
        assert r["interfaces"][1]["mac"] == mac and tb.links_in(ns)["eth0"]["address"] == mac
        assert nbctl(host, "lsp-get-port-security", iface_id).split() == [mac, ip]
        assert r["routes"] == [{"dst": "10.98.0.0/16", "gw": "10.97.0.1"}]
        by_ip[ip] = iface_id
    assert len(by_ip) == 2 and "10.97.0.1" not in by_ip, by_ip  # distinct, and not the gateway
    ip_b = rb["ips"][0]["address"].split("/")[0]
    assert tb.ping(a, ip_b)
    assert tb.tcp_transfer(a, b, ip_b, nbytes=200_000)
    # DEL removes the port; northd gives its address to the next one
    ip_a = ra["ips"][0]["address"].split("/")[0]
    assert plugin("DEL", conf, a.netns_path, container_id="dyn-a")[0] == 0
    assert by_ip[ip_a] not in nbctl(host, "lsp-list", "cnidyn")
    rc = added(conf, a.netns_path, container_id="dyn-c")
    assert rc["ips"][0]["address"] == f"{ip_a}/24"
    for cid, ns in (("dyn-c", a), ("dyn-b", b)):
        assert plugin("DEL", conf, ns.netns_path, container_id=cid)[0] == 0
    assert nbctl(host, "lsp-list", "cnidyn").strip() == ""


def test_ipam_type_ovn_refuses_without_a_subnet_and_a_failed_add_leaves_nothing(chassis, netns_targets):
    host = chassis
    conf = {"cniVersion": "1.0.0", "name": "ovnnosub", "type": "ovsfab", "network": "cninosub",
            "ovsdb": host.db_url, "ovs_netns": host.name, "ipam": {"type": "ovn"}}
    a = netns_targets()
    before = tb.snapshot(host, [a])
    code, out = plugin("ADD", conf, a.netns_path, container_id="nosub")
    assert code == 1 and out["code"] == 7 and "no subnet" in out["msg"], out
    assert tb.snapshot(host, [a]).diff(before) == [] and "cninosub" not in nbctl(host, "ls-list")
    code, out = plugin("ADD", {**conf, "ipam": {"type": "ovn", "subnet": "10.99.0.0/24"}}, a.netns_path,
                       container_id="nosub", extra_env={"OVSFAB_INJECT_FAULT": "ovn-dynamic"})
    assert code == 1 and "ovn-dynamic" in out["msg"], out
    assert tb.snapshot(host, [a]).diff(before) == [] and "cninosub" not in nbctl(host, "ls-list")


def test_ipam_type_ovn_with_a_full_subnet_fails_after_the_wait_and_leaves_nothing(chassis, netns_targets):
    """A /30 has one address northd hands out (.1 it keeps): the second ADD waits ASSIGN_WAIT (10 s), then
    fails in one line with the remedy; its logical port goes, the first container's stays."""
    host = chassis
    conf = {"cniVersion": "1.0.0", "name": "ovnfull", "type": "ovsfab", "network": "cnifull",
            "ovsdb": host.db_url, "ovs_netns": host.name, "ipam": {"type": "ovn", "subnet": "10.91.0.0/30"}}
    a, b = netns_targets(), netns_targets()
    ra = added(conf, a.netns_path, container_id="full-a")
    assert ra["ips"][0]["address"] == "10.91.0.2/30"
    before = tb.snapshot(host, [b])
    code, out = plugin("ADD", conf, b.netns_path, container_id="full-b")
    assert code == 1 and "no address within 10 s" in out["msg"] and "free addresses" in out["details"], out
    assert tb.snapshot(host, [b]).diff(before) == []
    assert len(nbctl(host, "lsp-list", "cnifull").strip().splitlines()) == 1
    assert plugin("DEL", conf, a.netns_path, container_id="full-a")[0] == 0
