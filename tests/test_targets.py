"""netns:NAME and pid:N targets (no Docker needed)."""
import subprocess

import testbed as tb


def _port_for_target(host, ifname="eth1"):
    return [r for r in tb.ovs_table(host, "Port")
            if r["external_ids"].get("ovsfab-owner") == "ovsfab"
            and r["external_ids"].get("ovsfab-ifname") == ifname]


def test_netns_and_pid_targets(ovs_host, netns_targets, pid_targets):
    n = netns_targets()
    p = pid_targets()
    before = tb.snapshot(ovs_host, [n, p])
    ovs_host.ovsfab("attach", "br0", n.target, "10.2.0.1/24", check=True)
    ovs_host.ovsfab("attach", "br0", p.target, "10.2.0.2/24", check=True)
    assert len(_port_for_target(ovs_host)) == 2
    for t, a in ((n, "10.2.0.1/24"), (p, "10.2.0.2/24")):
        links = tb.links_in(t)
        assert "eth1" in links and "UP" in links["eth1"]["flags"]
        assert a in tb.addrs_in(t)["eth1"]
    assert tb.ping(n, "10.2.0.2")
    assert tb.tcp_transfer(n, p, "10.2.0.2")
    assert tb.tcp_transfer(p, n, "10.2.0.1")
    again = ovs_host.ovsfab("attach", "br0", n.target, "10.2.0.1/24")
    assert again.returncode == 0 and "already" in (again.stdout + again.stderr).lower()
    ovs_host.ovsfab("detach", "br0", n.target, check=True)
    ovs_host.ovsfab("detach", "br0", p.target, check=True)
    after = tb.snapshot(ovs_host, [n, p])
    # the bridge may stay (it was created by attach, detach need not remove it);
    # everything else must be as before
    assert after.targets == before.targets
    assert [x for x in after.ports if x[0] != "br0"] == []
    assert [x for x in after.interfaces if x[0] != "br0"] == []
    assert set(after.host_links) - {"br0", "ovs-netdev"} == set(before.host_links)


def test_pid_of_process_started_with_ip_netns_exec(ovs_host, netns_targets):
    """pid: of a process living in a named netns reaches that netns."""
    n = netns_targets()
    proc = subprocess.Popen(["ip", "netns", "exec", n.name, "sleep", "1000000"])
    try:
        other = netns_targets()
        ovs_host.ovsfab("attach", "br0", f"pid:{proc.pid}", "10.2.0.1/24", check=True)
        ovs_host.ovsfab("attach", "br0", other.target, "10.2.0.2/24", check=True)
        assert "10.2.0.1/24" in tb.addrs_in(n)["eth1"]
        assert tb.tcp_transfer(other, n, "10.2.0.1")
        ovs_host.ovsfab("detach", "br0", f"pid:{proc.pid}", check=True)
        assert "eth1" not in tb.links_in(n)
    finally:
        proc.kill()
        proc.wait()


def test_unknown_netns_and_pid_not_found(shared_host):
    cp = shared_host.ovsfab("attach", "br0", "netns:ovsfab-does-not-exist", "10.2.0.1/24")
    tb.assert_clean_error(cp, {3})
    cp = shared_host.ovsfab("attach", "br0", "pid:4194304", "10.2.0.1/24")
    tb.assert_clean_error(cp, {2, 3})
