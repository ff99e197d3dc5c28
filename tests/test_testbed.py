"""Self-checks of the test bed: the oracles must be able to fail.

These use only hand-made wiring (ip + ovs-vsctl), never the product, so they
also tell apart "test bed broken" from "product broken".
"""
import time

import pytest

import testbed as tb


def test_host_starts_fast_and_is_private(ovs_hosts):
    t0 = time.monotonic()
    a, b = ovs_hosts(2)
    elapsed = time.monotonic() - t0
    print(f"two OvsHosts started in {elapsed:.3f}s "
          f"({a.startup_seconds:.3f}s, {b.startup_seconds:.3f}s)")
    assert elapsed < 5
    a.vsctl("add-br", "brx", "--", "set", "bridge", "brx", "datapath_type=netdev")
    assert tb.ovs_bridges(a) == ["brx"]
    assert tb.ovs_bridges(b) == []
    # vswitchd really runs inside the host netns: the bridge tap lives there
    deadline = time.monotonic() + 5
    while "brx" not in a.links() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "brx" in a.links()
    assert "brx" not in tb.links_in(b.name)


def test_host_close_cleans_up(ovs_hosts):
    h = tb.OvsHost()
    pids = [h._pid("ovs-vswitchd"), h._pid("ovsdb-server")]
    assert all(pids)
    h.close()
    assert not any(tb._pid_alive(p) for p in pids)
    assert not h.rundir.exists()
    assert h.name not in tb.run(["ip", "netns", "list"]).stdout


def test_tcp_transfer_passes_with_tx_offload_off(ovs_host, netns_targets):
    a, b = netns_targets(), netns_targets()
    with tb.hand_wired_pair(ovs_host, a, b, "10.99.0.1/24", "10.99.0.2/24", tx_off=True):
        assert tb.ping(a, "10.99.0.2")
        assert tb.tcp_transfer(a, b, "10.99.0.2")
        assert tb.tcp_transfer(b, a, "10.99.0.1")
        tb.ns_run(a, "ip", "addr", "add", "2001:db8:99::1/64", "dev", "eth1", "nodad")
        tb.ns_run(b, "ip", "addr", "add", "2001:db8:99::2/64", "dev", "eth1", "nodad")
        assert tb.ping(a, "2001:db8:99::2")
        assert tb.tcp_transfer(a, b, "2001:db8:99::2")


def test_tcp_transfer_catches_checksum_offload_breakage(ovs_host, netns_targets):
    """Default veth TX csum offload into a netdev bridge: ping ok, TCP dead."""
    a, b = netns_targets(), netns_targets()
    with tb.hand_wired_pair(ovs_host, a, b, "10.99.0.1/24", "10.99.0.2/24", tx_off=False):
        assert tb.ping(a, "10.99.0.2")
        t0 = time.monotonic()
        ok = tb.tcp_transfer(a, b, "10.99.0.2", timeout=6)
        assert time.monotonic() - t0 < 15, "tcp_transfer did not honour its timeout"
        if ok:  # e.g. a newer OVS that completes partial checksums itself
            pytest.skip("this kernel/OVS does not show the TX-checksum stall; "
                        "negative check of the oracle not applicable here")


def test_tcp_transfer_fails_cleanly_without_route(netns_targets):
    a, b = netns_targets(), netns_targets()
    assert not tb.tcp_transfer(a, b, "10.99.0.2", timeout=4)


def test_no_residue_detects_changes(ovs_host, netns_targets):
    a = netns_targets()
    before = tb.snapshot(ovs_host, [a])
    tb.assert_no_residue(ovs_host, before, [a])
    tb.ns_run(a, "ip", "addr", "add", "10.98.0.1/24", "dev", "lo")
    with pytest.raises(AssertionError):
        tb.assert_no_residue(ovs_host, before, [a])
    tb.ns_run(a, "ip", "addr", "del", "10.98.0.1/24", "dev", "lo")
    ovs_host.vsctl("add-br", "bry", "--", "set", "bridge", "bry", "datapath_type=netdev")
    with pytest.raises(AssertionError):
        tb.assert_no_residue(ovs_host, before, [a])
    ovs_host.vsctl("del-br", "bry")
    tb.assert_no_residue(ovs_host, before, [a])


def test_pid_target_has_own_netns(pid_targets):
    t = pid_targets()
    links = tb.links_in(t)
    assert list(links) == ["lo"]


@pytest.mark.docker
def test_container_fixture(containers):
    c = containers()
    assert c.exec("cat", "/proc/1/cmdline").stdout.startswith("sleep")
    assert list(tb.links_in(c)) == ["lo"]
    assert c.exec("sh", "-c", "ip link show eth1 || echo none").stdout.strip().endswith("none")


@pytest.mark.docker
def test_hand_wired_containers_tcp(ovs_host, containers):
    a, b = containers(), containers()
    with tb.hand_wired_pair(ovs_host, a, b, "10.97.0.1/24", "10.97.0.2/24"):
        assert tb.ping(a, "10.97.0.2")
        # busybox ping inside the container works too
        a.exec("ping", "-c", "1", "-W", "2", "10.97.0.2")
        assert tb.tcp_transfer(a, b, "10.97.0.2")
