"""Idempotency, conflicts, detach leaving no trace."""
import pytest

import testbed as tb

pytestmark = pytest.mark.docker


def _out(cp):
    return (cp.stdout + cp.stderr).lower()


@pytest.fixture(scope="module")
def attached(module_containers):
    """One host with one container attached to br0 (vlan 10), reused by the
    conflict tests, which must not change anything."""
    host = tb.OvsHost()
    c = module_containers()
    host.ovsfab("attach", "br0", c.name, "10.1.0.10/24", "--vlan", "10", check=True)
    yield host, c
    host.close()


def test_attach_twice_is_idempotent(attached):
    host, c = attached
    before = tb.snapshot(host, [c])
    cp = host.ovsfab("attach", "br0", c.name, "10.1.0.10/24", "--vlan", "10")
    assert cp.returncode == 0, cp.stderr
    assert "already" in _out(cp)
    tb.assert_no_residue(host, before, [c])
    # by container ID too
    cp = host.ovsfab("attach", "br0", c.id, "10.1.0.10/24", "--vlan", "10")
    assert cp.returncode == 0 and "already" in _out(cp), cp.stderr
    tb.assert_no_residue(host, before, [c])


@pytest.mark.parametrize("args", [
    pytest.param(["br0", "{c}", "10.1.0.11/24", "--vlan", "10"], id="other-address"),
    pytest.param(["br1", "{c}", "10.1.0.10/24", "--vlan", "10"], id="other-bridge"),
    pytest.param(["br0", "{c}", "10.1.0.10/24", "--vlan", "20"], id="other-vlan"),
    pytest.param(["br0", "{c}", "10.1.0.10/24"], id="no-vlan"),
    pytest.param(["br0", "{c}", "10.1.0.10/24", "--vlan", "10", "--mtu", "1400"], id="other-mtu"),
    pytest.param(["br0", "{c}", "10.1.0.10/24", "10.1.0.12/24", "--vlan", "10"], id="extra-address"),
])
def test_conflicting_attach_exits_4_and_changes_nothing(attached, args):
    host, c = attached
    before = tb.snapshot(host, [c])
    cp = host.ovsfab("attach", *[a.format(c=c.name) for a in args])
    tb.assert_clean_error(cp, {4})
    tb.assert_no_residue(host, before, [c])


def test_detach_twice_and_if_exists(ovs_host, containers):
    c = containers()
    before = tb.snapshot(ovs_host, [c])
    ovs_host.ovsfab("attach", "br0", c.name, "10.1.0.10/24", check=True)
    port = tb.ovs_port_for(ovs_host, container_name=c.name)["name"]
    cp = ovs_host.ovsfab("detach", "br0", c.name)
    assert cp.returncode == 0, cp.stderr
    cp = ovs_host.ovsfab("detach", "br0", c.name)
    tb.assert_clean_error(cp, {3})
    cp = ovs_host.ovsfab("detach", "br0", c.name, "--if-exists")
    assert cp.returncode == 0, cp.stderr
    # no trace: no veth in host netns or container, no Port/Interface row
    assert port not in ovs_host.links()
    assert "eth1" not in tb.links_in(c)
    assert tb.ovs_port_for(ovs_host, container_name=c.name) is None
    assert port not in tb.ovs_ports(ovs_host)
    assert port not in tb.ovs_interfaces(ovs_host)
    after = tb.snapshot(ovs_host, [c])
    assert after.targets == before.targets
    assert [p for p in after.ports if p[0] != "br0"] == []
    assert [i for i in after.interfaces if i[0] != "br0"] == []
    assert set(after.host_links) - {"br0", "ovs-netdev"} == set(before.host_links)
    # re-attach gives the same deterministic host-side name
    ovs_host.ovsfab("attach", "br0", c.name, "10.1.0.10/24", check=True)
    assert tb.ovs_port_for(ovs_host, container_name=c.name)["name"] == port


def test_detach_other_ifname_and_other_bridge(ovs_host, containers):
    c = containers()
    ovs_host.ovsfab("attach", "br0", c.name, "10.1.0.10/24", check=True)
    before = tb.snapshot(ovs_host, [c])
    tb.assert_clean_error(ovs_host.ovsfab("detach", "br0", c.name, "--ifname", "eth2"), {3})
    cp = ovs_host.ovsfab("detach", "br1", c.name)
    tb.assert_clean_error(cp, {3, 4})
    tb.assert_no_residue(ovs_host, before, [c])


def test_two_ifnames_on_one_container(ovs_host, containers):
    c1, c2 = containers(), containers()
    ovs_host.ovsfab("attach", "br0", c1.name, "10.1.0.10/24", check=True)
    ovs_host.ovsfab("attach", "br0", c1.name, "10.3.0.10/24", "--ifname", "eth2", "--vlan", "30", check=True)
    ovs_host.ovsfab("attach", "br0", c2.name, "10.3.0.20/24", "--vlan", "30", check=True)
    p1 = tb.ovs_port_for(ovs_host, container_name=c1.name, ifname="eth1")["name"]
    p2 = tb.ovs_port_for(ovs_host, container_name=c1.name, ifname="eth2")["name"]
    assert p1 != p2
    assert tb.ping(c2, "10.3.0.10")
    ovs_host.ovsfab("detach", "br0", c1.name, "--ifname", "eth2", check=True)
    assert sorted(tb.links_in(c1)) == ["eth1", "lo"]
    assert tb.ovs_port_for(ovs_host, container_name=c1.name, ifname="eth1")["name"] == p1
    assert not tb.ping(c2, "10.3.0.10", count=1, deadline=2)
