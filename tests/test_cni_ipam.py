"""ovsfab's own IPAM for the CNI plugin (``"ipam": {"type": "ovsfab"}``): ops/cni_ipam.py.

The pure part (parsing a pool, choosing addresses) is checked in-process, with
a property test; the rest drives the installed plugin on a simulated host:
distinct addresses, the record in OVSDB (``ovs-vsctl`` as the oracle), the
address free again after DEL, a retried ADD keeping its address, a full range
failing cleanly, concurrent ADDs never sharing an address, and a ping.
"""
from __future__ import annotations

import concurrent.futures
import ipaddress
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import testbed as tb
from ovsfab.errors import InvalidInput, OperationFailed
from ovsfab.ops import cni_ipam
from test_cni_conformance import added, plugin


# ----------------------------------------------------------------- pure logic
@pytest.mark.unprivileged
def test_defaults_are_host_locals():
    pool = cni_ipam.parse_pool({"subnet": "10.90.0.0/24"})
    (rng,), = pool.sets
    assert (str(rng.gateway), str(rng.start), str(rng.end)) == ("10.90.0.1", "10.90.0.1", "10.90.0.254")
    assert cni_ipam.choose(pool, set()) == ["10.90.0.2/24"]  # the gateway is skipped
    assert pool.result(["10.90.0.2/24"], "1.0.0") == {"cniVersion": "1.0.0",
                                                       "ips": [{"address": "10.90.0.2/24", "gateway": "10.90.0.1"}]}


@pytest.mark.unprivileged
def test_one_address_per_range_set_and_the_held_one_is_kept():
    pool = cni_ipam.parse_pool({"ranges": [[{"subnet": "10.90.0.0/30"}, {"subnet": "10.91.0.0/24",
                                                                          "rangeStart": "10.91.0.50"}],
                                           [{"subnet": "fd00:90::/64", "rangeEnd": "fd00:90::ff"}]],
                                "routes": [{"dst": "0.0.0.0/0"}]})
    used = {ipaddress.ip_address("10.90.0.2"), ipaddress.ip_address("fd00:90::2")}
    # 10.90.0.0/30 holds only .2 besides the gateway: the second range of the set gives one
    assert cni_ipam.choose(pool, used) == ["10.91.0.50/24", "fd00:90::3/64"]
    assert cni_ipam.choose(pool, used, mine=["fd00:90::2/64", "10.90.0.2/30"]) == ["10.90.0.2/30", "fd00:90::2/64"]
    with pytest.raises(OperationFailed, match="no free address"):
        cni_ipam.choose(cni_ipam.parse_pool({"subnet": "10.90.0.0/30"}), used)


@pytest.mark.unprivileged
@pytest.mark.parametrize("ipam", [
    {}, {"ranges": []}, {"ranges": [[]]}, {"ranges": [{"subnet": "10.0.0.0/24"}]}, {"subnet": "nonsense"},
    {"subnet": "10.0.0.0/31"}, {"subnet": "10.0.0.0/24", "rangeStart": "10.0.1.5"},
    {"subnet": "10.0.0.0/24", "rangeStart": "10.0.0.9", "rangeEnd": "10.0.0.8"},
    {"subnet": "10.0.0.0/24", "gateway": 7}, {"subnet": "10.0.0.0/24", "rangeEnd": "10.0.0.255"},
    {"ranges": [[{"subnet": "10.0.0.0/24"}, {"subnet": "fd00::/64"}]]},
    {"subnet": "10.0.0.0/24", "routes": [{"gw": "10.0.0.1"}]}, {"subnet": "10.0.0.0/24", "routes": {}},
])
def test_a_bad_pool_is_invalid_input(ipam):
    with pytest.raises(InvalidInput):
        cni_ipam.parse_pool(ipam)


@pytest.mark.unprivileged
@settings(max_examples=200, deadline=None)
@given(prefix=st.integers(24, 29), start=st.integers(1, 6), width=st.integers(0, 40),
       used=st.sets(st.integers(0, 255), max_size=60))
def test_choose_gives_a_free_address_of_the_range_or_says_none_is_left(prefix, start, width, used):
    net = ipaddress.ip_network(f"10.77.0.0/{prefix}")
    last = int(net.broadcast_address) - 1
    lo = min(int(net.network_address) + start, last)
    hi = min(lo + width, last)
    pool = cni_ipam.parse_pool({"subnet": str(net), "rangeStart": str(ipaddress.ip_address(lo)),
                                "rangeEnd": str(ipaddress.ip_address(hi))})
    taken = {ipaddress.ip_address(int(net.network_address) + u) for u in used}
    free = [a for a in map(ipaddress.ip_address, range(lo, hi + 1)) if a not in taken and a != net.network_address + 1]
    if not free:
        with pytest.raises(OperationFailed):
            cni_ipam.choose(pool, taken)
        return
    assert cni_ipam.choose(pool, taken) == [f"{free[0]}/{prefix}"]


# ------------------------------------------------------------- the plugin
@pytest.fixture
def own(shared_host):
    br = "brcnii"
    shared_host.vsctl("--may-exist", "add-br", br, "--", "set", "bridge", br, "datapath_type=netdev")

    def conf(name="ipamnet", **ipam):
        return {"cniVersion": "1.0.0", "name": name, "type": "ovsfab", "bridge": br, "ovsdb": shared_host.db_url,
                "ovs_netns": shared_host.name, "ipam": {"type": "ovsfab", "subnet": "10.93.0.0/24", **ipam}}

    return shared_host, conf


def recorded(host, port):
    return tb.ovs_row_external_ids(host, "Port", port).get("ovsfab-addresses")


def test_addresses_are_distinct_recorded_in_ovsdb_and_freed_by_del(own, netns_targets):
    host, conf = own
    c = conf(routes=[{"dst": "0.0.0.0/0"}])
    a, b = netns_targets(), netns_targets()
    ra = added(c, a.netns_path, container_id="ipam-a")
    rb = added(c, b.netns_path, container_id="ipam-b")
    assert [ip["address"] for ip in ra["ips"] + rb["ips"]] == ["10.93.0.2/24", "10.93.0.3/24"]
    assert ra["ips"][0]["gateway"] == "10.93.0.1" and ra["routes"] == [{"dst": "0.0.0.0/0"}]
    assert recorded(host, ra["interfaces"][0]["name"]) == "10.93.0.2/24@10.93.0.1"
    assert "10.93.0.2/24" in tb.addrs_in(a)["eth0"] and tb.default_route(a)["gateway"] == "10.93.0.1"
    assert tb.ping(a, "10.93.0.3")
    # a retried ADD keeps its address
    assert added(c, a.netns_path, container_id="ipam-a")["ips"] == ra["ips"]
    assert plugin("DEL", c, a.netns_path, container_id="ipam-a")[0] == 0
    assert ra["interfaces"][0]["name"] not in tb.ovs_ports(host)
    u = netns_targets()
    assert added(c, u.netns_path, container_id="ipam-c")["ips"][0]["address"] == "10.93.0.2/24"
    for cid, t in (("ipam-b", b), ("ipam-c", u)):
        assert plugin("DEL", c, t.netns_path, container_id=cid)[0] == 0


def test_a_full_range_is_a_clean_error(own, netns_targets):
    host, conf = own
    c = conf(name="ipamfull", rangeStart="10.93.0.20", rangeEnd="10.93.0.20")
    a, b = netns_targets(), netns_targets()
    added(c, a.netns_path, container_id="full-a")
    before = tb.snapshot(host, [b])
    code, out = plugin("ADD", c, b.netns_path, container_id="full-b")
    assert code == 1 and out["code"] == 106 and "no free address" in out["msg"] and out["details"]
    assert tb.snapshot(host, [b]).diff(before) == []
    assert plugin("DEL", c, a.netns_path, container_id="full-a")[0] == 0


def test_concurrent_adds_never_share_an_address(own, netns_targets):
    host, conf = own
    c = conf(name="ipamrace")
    targets = [netns_targets() for _ in range(4)]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda it: added(c, it[1].netns_path, container_id=f"race-{it[0]}"),
                                enumerate(targets)))
    addresses = [r["ips"][0]["address"] for r in results]
    assert len(set(addresses)) == 4, addresses
    for i, t in enumerate(targets):
        assert plugin("DEL", c, t.netns_path, container_id=f"race-{i}")[0] == 0
    assert not [r for r in tb.ovs_table(host, "Port", ["external_ids"])
                if r["external_ids"].get("ovsfab-container-id", "").startswith("cni:race-")]


@pytest.mark.unprivileged
def test_the_pool_lock_does_not_depend_on_ovs_rundir(monkeypatch, tmp_path):
    """An agent and an in-process plugin may see different OVS_RUNDIRs: one pool must still mean one lock.

    The lock file is named by the OVSDB remote and the network, under the
    fixed /run/ovsfab directory (made writable here through DEFAULT_DIR).
    """
    seen = []
    real = cni_ipam.attachment_lock

    def spy(port, base=None):
        seen.append(os.path.join(base or "", port) if base else None)
        return real(port, base=str(tmp_path))

    monkeypatch.setattr(cni_ipam, "attachment_lock", spy)
    for rundir in ("/tmp/h1-run", "/tmp/h2-run"):
        monkeypatch.setenv("OVS_RUNDIR", rundir)
        with cni_ipam.pool_lock("unix:/run/h1/db.sock", "blue"):
            pass
    with cni_ipam.pool_lock("unix:/run/h2/db.sock", "blue"):
        pass
    assert seen[0] is not None and seen[0] == seen[1], seen
    assert seen[0].startswith(cni_ipam.DEFAULT_LOCK_BASE), seen
    assert seen[2] != seen[0], "two OVSDBs must not share one pool lock"
