"""The Linux-bridge backend: the OVS scenarios again, parametrised over both
backends where the behaviour is the same, plus what only Linux has (alias
records, kernel VXLAN with FDB head-end replication, br_netfilter vs Docker's
FORWARD DROP, backend selection).

A simulated Linux host is a plain netns (no OVS daemons); the product runs
inside it with ``--backend linux``.  `ip -j -d`, `bridge fdb` and `iptables`
are the oracles.
"""
from __future__ import annotations

import json
import os
import subprocess

import pytest

import test_fastpath
import testbed as tb
from _crosshost_helpers import configure_uplink_nic, l3_state, ping_df, wire

from ovsfab.backends.linux import decode_record, encode_record
from ovsfab.ops.attach import ATTACH_STEPS
from ovsfab.ops.detach import DETACH_STEPS
from ovsfab.ops.tunnel import TUNNEL_ADD_STEPS
from ovsfab.ops.uplink import NETDEV_ONLY_STEPS, UPLINK_ADD_STEPS, UPLINK_DEL_STEPS

BACKENDS = ["ovs", "linux"]
U1, U2 = "192.168.77.5", "192.168.77.6"


class LinuxHost:
    """A simulated host without OVS: a netns; ovsfab runs in it with --backend linux."""

    def __init__(self, backend_args=("--backend", "linux")) -> None:
        self.name = tb.unique("l")
        self.netns_path = f"/run/netns/{self.name}"
        self.backend_args = list(backend_args)
        tb.run(["ip", "netns", "add", self.name])
        tb.run(["ip", "-n", self.name, "link", "set", "lo", "up"])

    def ip(self, *args, check=True):
        return tb.run(["ip", "-n", self.name, *args], check=check)

    def links(self):
        return tb.links_in(self.name)

    def ovsfab(self, *args, check=False, env=None, timeout=60):
        # OVS_RUNDIR points nowhere: no OVSDB answers on this host.
        cmd = ["ip", "netns", "exec", self.name, "env", "OVS_RUNDIR=/nonexistent-ovsfab",
               tb.PYTHON, "-m", "ovsfab", *self.backend_args, *map(str, args)]
        cp = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                            env=tb.clean_env(env), cwd=str(tb.REPO))
        if check and cp.returncode != 0:
            raise AssertionError(f"ovsfab {' '.join(map(str, args))} -> {cp.returncode}\n"
                                 f"stdout: {cp.stdout}\nstderr: {cp.stderr}")
        return cp

    def close(self):
        tb.delete_netns(self.name)


def make_host(kind):
    return tb.OvsHost() if kind == "ovs" else LinuxHost()


@pytest.fixture
def hosts():
    made = []

    def make(kind, n=1):
        out = [make_host(kind) for _ in range(n)]
        made.extend(out)
        return out

    yield make
    for h in reversed(made):
        h.close()


def _snap(host, targets=()):
    """Backend-neutral "no residue" snapshot: links with kind/mtu/up/master/alias, plus OVSDB on OVS."""
    links = {n: (tb.link_kind(r), r.get("mtu"), "UP" in r.get("flags", []), r.get("master"), r.get("ifalias"))
             for n, r in host.links().items()}
    tg = {getattr(t, "name", str(t)): (sorted(tb.links_in(t)), tb.addrs_in(t)) for t in targets}
    ovs = tb.snapshot(host) if isinstance(host, tb.OvsHost) else None
    return links, tg, ovs


def _attach(host, bridge, target, *addrs, opts=()):
    cp = host.ovsfab("attach", bridge, target.target, *addrs, *opts, "--json", check=True)
    return json.loads(cp.stdout)


def kernel_has_bridge_vlan_filtering() -> bool:
    ns = tb.make_netns()
    try:
        cp = tb.ns_run(ns.name, "ip", "link", "add", "vfprobe", "type", "bridge", "vlan_filtering", "1",
                       check=False)
        return cp.returncode == 0
    finally:
        tb.delete_netns(ns.name)


def kernel_has(kind: str) -> bool:
    ns = tb.make_netns()
    try:
        args = {"gretap": ["remote", "192.0.2.1"], "geneve": ["id", "1", "remote", "192.0.2.1"]}[kind]
        return tb.ns_run(ns.name, "ip", "link", "add", "kprobe", "type", kind, *args, check=False).returncode == 0
    finally:
        tb.delete_netns(ns.name)


# ---------------------------------------------------------------- pure logic
def test_alias_record_roundtrip_and_limit():
    ids = {"ovsfab-owner": "ovsfab", "ovsfab-container-id": "a" * 64, "ovsfab-container-name": "web",
           "ovsfab-ifname": "eth1", "ovsfab-target": "a" * 64, "ovsfab-addresses": "10.1.0.5/24@10.1.0.1",
           "container_id": "a" * 64, "container_iface": "eth1", "ovsfab-mac": "02:00:00:00:00:05",
           "ovsfab-mtu": "1450", "ovsfab-vlan": "100", "ovsfab-bridge": "br0"}
    text = encode_record(ids)
    assert text.startswith("ovsfab:") and len(text.encode()) <= 255
    assert decode_record(text) == ids
    assert decode_record("something else") is None and decode_record(None) is None
    up = {"ovsfab-owner": "ovsfab", "ovsfab-role": "uplink",
          "ovsfab-uplink-addresses": json.dumps([{"family": 4, "address": "192.168.77.5", "prefixlen": 24,
                                                  "flags": 0, "broadcast": "192.168.77.255"}], sort_keys=True),
          "ovsfab-uplink-routes": json.dumps([{"family": 4, "dst": "0.0.0.0", "dst_len": 0, "table": 254,
                                               "proto": 3, "scope": 0, "type": 1, "flags": 0,
                                               "gateway": "192.168.77.1"}], sort_keys=True)}
    assert decode_record(encode_record(up)) == up
    with pytest.raises(Exception, match="does not fit"):
        encode_record(dict(ids, **{"ovsfab-container-name": "x" * 200}))


# ---------------------------------------------------------------- one host
@pytest.mark.parametrize("backend", BACKENDS)
def test_ping_tcp_idempotency_and_no_residue(backend, hosts, netns_targets):
    h, = hosts(backend)
    c1, c2 = netns_targets(), netns_targets()
    before = _snap(h, [c1, c2])
    a1 = _attach(h, "br0", c1, "10.1.0.10/24")
    _attach(h, "br0", c2, "10.1.0.20/24", opts=("--mac", "02:00:00:00:00:20", "--mtu", "1400"))
    assert a1["changed"] is True
    assert tb.ping(c1, "10.1.0.20")
    assert tb.tcp_transfer(c1, c2, "10.1.0.20", nbytes=1_000_000, timeout=15)
    # idempotent; a different request conflicts and changes nothing
    assert _attach(h, "br0", c1, "10.1.0.10/24")["changed"] is False
    mid = _snap(h, [c1, c2])
    cp = h.ovsfab("attach", "br0", c1.target, "10.1.0.11/24")
    tb.assert_clean_error(cp, codes=(4,))
    assert _snap(h, [c1, c2]) == mid
    if backend == "linux":
        links = h.links()
        port = links[a1["port"]]
        assert tb.link_kind(port) == "veth" and port["master"] == "br0"
        rec = decode_record(port["ifalias"])
        assert rec["ovsfab-container-id"] == c1.target and rec["ovsfab-ifname"] == "eth1"
        assert rec["ovsfab-addresses"] == "10.1.0.10/24"
        assert decode_record(links["br0"]["ifalias"])["ovsfab-role"] == "bridge"
        assert tb.link_kind(links["br0"]) == "bridge"
        assert tb.links_in(c2)["eth1"]["address"] == "02:00:00:00:00:20"
        # inspect/show reads the alias: the ports are ovsfab's
        show = json.loads(h.ovsfab("show", "--json", check=True).stdout)
        br = [b for b in show["bridges"] if b["name"] == "br0"][0]
        assert br["ovsfab_owned"] is True and br["kind"] == "linux"
        owners = {p["owner"]["container"] for p in br["ports"] if p["class"] == "attachment"}
        assert owners == {c1.name, c2.name}, br
    for c in (c1, c2):
        h.ovsfab("detach", "br0", c.target, check=True)
    h.ovsfab("detach", "br0", c1.target, "--if-exists", check=True)
    after = _snap(h, [c1, c2])
    if backend == "linux":
        # detach keeps the bridge (as on OVS); nothing else is left
        assert {n for n in after[0]} - {n for n in before[0]} == {"br0"}
        assert after[1] == before[1]
    else:
        assert after[1] == before[1]


@pytest.mark.docker
def test_linux_docker_containers(hosts, containers):
    h, = hosts("linux")
    c1, c2 = containers(), containers()
    for c, a in ((c1, "10.1.0.10/24"), (c2, "10.1.0.20/24")):
        h.ovsfab("attach", "br0", c.name, a, check=True)
    assert tb.ping(c1, "10.1.0.20")
    assert tb.tcp_transfer(c2, c1, "10.1.0.10", nbytes=1_000_000, timeout=15)
    h.ovsfab("detach", "br0", c1.name, check=True)
    assert "eth1" not in tb.links_in(c1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_vlan_isolation(backend, hosts, netns_targets):
    if backend == "linux" and not kernel_has_bridge_vlan_filtering():
        pytest.skip("this kernel has no CONFIG_BRIDGE_VLAN_FILTERING (`ip link add type bridge vlan_filtering 1` "
                    "fails): see test_vlan_without_kernel_support_fails_cleanly")
    h, = hosts(backend)
    c1, c2, c3 = netns_targets(), netns_targets(), netns_targets()
    _attach(h, "br0", c1, "10.1.0.10/24", opts=("--vlan", "100"))
    _attach(h, "br0", c2, "10.1.0.20/24", opts=("--vlan", "200"))
    _attach(h, "br0", c3, "10.1.0.30/24", opts=("--vlan", "100"))
    assert tb.ping(c1, "10.1.0.30")
    assert not tb.ping(c1, "10.1.0.20", count=1, deadline=2)


def test_vlan_without_kernel_support_fails_cleanly(hosts, netns_targets):
    if kernel_has_bridge_vlan_filtering():
        pytest.skip("the kernel has bridge VLAN filtering: test_vlan_isolation[linux] covers --vlan")
    h, = hosts("linux")
    c = netns_targets()
    before = _snap(h, [c])
    cp = h.ovsfab("attach", "br0", c.target, "10.1.0.10/24", "--vlan", "100")
    tb.assert_clean_error(cp, codes=(6,))
    assert "CONFIG_BRIDGE_VLAN_FILTERING" in cp.stderr
    assert _snap(h, [c]) == before


# ---------------------------------------------------------------- faults (Linux; OVS: test_faults.py)
@pytest.mark.parametrize("step", ATTACH_STEPS)
def test_linux_attach_fault_leaves_no_residue(step, hosts, netns_targets):
    h, = hosts("linux")
    other, t = netns_targets(), netns_targets()
    before = _snap(h, [other, t])
    cp = h.ovsfab("attach", "br0", t.target, "10.1.0.10/24@10.1.0.1", "--mtu", "1400",
                  env={"OVSFAB_INJECT_FAULT": step})
    tb.assert_clean_error(cp)
    assert _snap(h, [other, t]) == before  # the bridge created by this attach went too
    # with an existing bridge and another attachment on it
    h.ovsfab("attach", "br0", other.target, "10.1.0.20/24", check=True)
    before = _snap(h, [other, t])
    cp = h.ovsfab("attach", "br0", t.target, "10.1.0.10/24", env={"OVSFAB_INJECT_FAULT": step})
    tb.assert_clean_error(cp)
    assert _snap(h, [other, t]) == before
    h.ovsfab("attach", "br0", t.target, "10.1.0.10/24", check=True)
    assert tb.ping(t, "10.1.0.20")


@pytest.mark.parametrize("step", DETACH_STEPS)
def test_linux_detach_fault_keeps_attachment(step, hosts, netns_targets):
    h, = hosts("linux")
    c, peer = netns_targets(), netns_targets()
    h.ovsfab("attach", "br0", c.target, "10.1.0.10/24", check=True)
    h.ovsfab("attach", "br0", peer.target, "10.1.0.20/24", check=True)
    attached = _snap(h, [c, peer])
    cp = h.ovsfab("detach", "br0", c.target, env={"OVSFAB_INJECT_FAULT": step})
    tb.assert_clean_error(cp)
    assert _snap(h, [c, peer]) == attached
    assert tb.ping(peer, "10.1.0.10")
    again = h.ovsfab("attach", "br0", c.target, "10.1.0.10/24")
    assert again.returncode == 0 and "already" in again.stdout, again.stderr


# ---------------------------------------------------------------- two hosts: uplinks
def test_linux_uplink_two_hosts_and_exact_restore(hosts, netns_targets):
    h1, h2 = hosts("linux", 2)
    wire(h1, h2)
    configure_uplink_nic(h1, f"{U1}/24", "2001:db8:77::5/64")
    h2.ip("addr", "add", f"{U2}/24", "dev", "eth1")
    before, before_all = l3_state(h1, "eth1"), l3_state(h1)
    h1.ovsfab("uplink", "add", "br0", "eth1", "--force", check=True)
    h2.ovsfab("uplink", "add", "br0", "eth1", check=True)
    links = h1.links()
    assert links["eth1"]["master"] == "br0" and tb.link_kind(links["br0"]) == "bridge"
    assert links["br0"]["address"] == before["addr"][0]["address"]
    assert decode_record(links["eth1"]["ifalias"])["ovsfab-role"] == "uplink"
    addrs = tb.addrs_in(h1.name)
    assert addrs["eth1"] == [] and set(addrs["br0"]) == {f"{U1}/24", "2001:db8:77::5/64"}
    assert tb.default_route(h1.name)["dev"] == "br0"
    cp = h1.ovsfab("uplink", "add", "br0", "eth1", "--force", "--json", check=True)
    assert json.loads(cp.stdout)["changed"] is False
    ups = json.loads(h1.ovsfab("uplink", "list", "--json", check=True).stdout)["uplinks"]
    assert [(u["bridge"], u["nic"]) for u in ups] == [("br0", "eth1")]
    c1, c2 = netns_targets(), netns_targets()
    _attach(h1, "br0", c1, "192.168.77.10/24")
    _attach(h2, "br0", c2, "192.168.77.20/24")
    assert tb.ping(c1, "192.168.77.20") and tb.ping(c1, U2)
    assert tb.tcp_transfer(c1, c2, "192.168.77.20", nbytes=1_000_000, timeout=15)
    h1.ovsfab("detach", "br0", c1.target, check=True)
    h1.ovsfab("uplink", "del", "br0", "eth1", check=True)
    tb.wait_dad(h1.name)
    assert l3_state(h1, "eth1") == before
    assert l3_state(h1)["route4"] == before_all["route4"]
    assert l3_state(h1)["route6"] == before_all["route6"]
    assert "br0" not in h1.links()  # created by uplink add, empty again: gone


@pytest.fixture(scope="module")
def linux_fault_host():
    h, peer = LinuxHost(), LinuxHost()
    try:
        wire(h, peer)
        configure_uplink_nic(h, f"{U1}/24", "2001:db8:77::5/64")
        yield h
    finally:
        peer.close()
        h.close()


@pytest.mark.parametrize("step", [s for s in UPLINK_ADD_STEPS if s not in NETDEV_ONLY_STEPS])
def test_linux_uplink_add_fault(linux_fault_host, step):
    h = linux_fault_host
    snap, l3 = _snap(h), l3_state(h)
    cp = h.ovsfab("uplink", "add", "br0", "eth1", "--force", env={"OVSFAB_INJECT_FAULT": step})
    tb.assert_clean_error(cp, codes=(6,))
    tb.wait_dad(h.name)
    assert _snap(h) == snap
    assert l3_state(h) == l3


@pytest.mark.parametrize("step", [s for s in UPLINK_DEL_STEPS if s not in NETDEV_ONLY_STEPS])
def test_linux_uplink_del_fault(linux_fault_host, step):
    h = linux_fault_host
    original = l3_state(h)
    h.ovsfab("uplink", "add", "br0", "eth1", "--force", check=True)
    try:
        # Moved IPv6 addresses go through DAD again: compare settled states.
        tb.wait_dad(h.name)
        snap, l3 = _snap(h), l3_state(h)
        cp = h.ovsfab("uplink", "del", "br0", "eth1", env={"OVSFAB_INJECT_FAULT": step})
        tb.assert_clean_error(cp, codes=(6,))
        tb.wait_dad(h.name)
        assert _snap(h) == snap and l3_state(h) == l3
    finally:
        h.ovsfab("uplink", "del", "br0", "eth1", check=True)
    tb.wait_dad(h.name)
    assert l3_state(h) == original


# ---------------------------------------------------------------- two hosts: VXLAN
def _underlay(backend, hosts):
    h1, h2 = hosts(backend, 2)
    wire(h1, h2)
    for h, a in ((h1, U1), (h2, U2)):
        h.ip("addr", "add", f"{a}/24", "dev", "eth1")
        if backend == "ovs":  # OVS userspace needs the underlay on a bridge; the kernel does not
            h.ovsfab("uplink", "add", "br-ul", "eth1", check=True)
    return h1, h2


@pytest.mark.parametrize("backend", BACKENDS)
def test_vxlan_two_hosts_df_ping(backend, hosts, netns_targets):
    h1, h2 = _underlay(backend, hosts)
    h1.ovsfab("tunnel", "add", "br0", U2, "--key", "5001", check=True)
    h2.ovsfab("tunnel", "add", "br0", U1, "--key", "5001", check=True)
    c1, c2 = netns_targets(), netns_targets()
    a1 = _attach(h1, "br0", c1, "10.10.0.10/24")
    _attach(h2, "br0", c2, "10.10.0.20/24")
    assert a1["mtu"] == 1450 and tb.links_in(c2)["eth1"]["mtu"] == 1450
    assert tb.ping(c1, "10.10.0.20")
    assert tb.tcp_transfer(c1, c2, "10.10.0.20", nbytes=1_000_000, timeout=15)
    assert ping_df(c1, "10.10.0.20", 1450 - 28).returncode == 0
    cp = ping_df(c1, "10.10.0.20", 1450 - 27, count=1)
    assert cp.returncode != 0 and "message too long" in (cp.stdout + cp.stderr)
    cp = h1.ovsfab("tunnel", "add", "br0", U2, "--key", "5001", "--json", check=True)
    assert json.loads(cp.stdout)["changed"] is False
    if backend == "linux":
        listed = json.loads(h1.ovsfab("tunnel", "list", "--json", check=True).stdout)["tunnels"]
        assert [(t["type"], t["remote"], t["key"]) for t in listed] == [("vxlan", U2, 5001)]
        vx = h1.links()[listed[0]["name"]]
        assert tb.link_kind(vx) == "vxlan" and vx["master"] == "br0" and vx["mtu"] == 1450
        info = vx["linkinfo"]["info_data"]
        assert info["id"] == 5001 and info["learning"] is True
        assert vx["linkinfo"]["info_slave_data"]["isolated"] is True
        # a second remote on the same key: one more all-zeros FDB entry, same device
        h1.ovsfab("tunnel", "add", "br0", "192.168.77.7", "--key", "5001", check=True)
        fdb = tb.run(["bridge", "-n", h1.name, "fdb", "show", "dev", listed[0]["name"]]).stdout
        zeros = sorted(l.split(" dst ")[1].split()[0] for l in fdb.splitlines() if l.startswith("00:00:00:00:00:00"))
        assert zeros == [U2, "192.168.77.7"], fdb
        h1.ovsfab("tunnel", "del", "br0", "192.168.77.7", "--key", "5001", check=True)
        assert listed[0]["name"] in h1.links()
        # deleting the last remote deletes the device
        h1.ovsfab("detach", "br0", c1.target, check=True)
        h1.ovsfab("tunnel", "del", "br0", U2, check=True)
        assert listed[0]["name"] not in h1.links()


@pytest.mark.parametrize("step", TUNNEL_ADD_STEPS)
def test_linux_tunnel_add_fault(step, hosts):
    h1, h2 = _underlay("linux", hosts)
    before = _snap(h1)
    cp = h1.ovsfab("tunnel", "add", "brf", U2, "--key", "7", env={"OVSFAB_INJECT_FAULT": step})
    tb.assert_clean_error(cp, codes=(6,))
    assert _snap(h1) == before
    # and with the device already there (a second remote only adds an FDB entry)
    h1.ovsfab("tunnel", "add", "brf", "192.168.77.9", "--key", "7", check=True)
    before = _snap(h1)
    fdb = tb.run(["bridge", "-n", h1.name, "fdb", "show"]).stdout
    cp = h1.ovsfab("tunnel", "add", "brf", U2, "--key", "7", env={"OVSFAB_INJECT_FAULT": step})
    tb.assert_clean_error(cp, codes=(6,))
    assert _snap(h1) == before and tb.run(["bridge", "-n", h1.name, "fdb", "show"]).stdout == fdb


def test_linux_gre(hosts, netns_targets):
    h1, h2 = _underlay("linux", hosts)
    if not kernel_has("gretap"):
        before = _snap(h1)
        cp = h1.ovsfab("tunnel", "add", "brg", U2, "--type", "gre")
        tb.assert_clean_error(cp, codes=(6,))
        assert "modprobe ip_gre" in cp.stderr
        assert _snap(h1) == before
        pytest.skip("this kernel has no gretap (CONFIG_NET_IPGRE unset, no modules): "
                    "checked the clean refusal only")
    for h, r in ((h1, U2), (h2, U1)):
        h.ovsfab("tunnel", "add", "brg", r, "--type", "gre", check=True)
    c1, c2 = netns_targets(), netns_targets()
    assert _attach(h1, "brg", c1, "10.30.0.10/24")["mtu"] == 1462
    _attach(h2, "brg", c2, "10.30.0.20/24")
    assert tb.ping(c1, "10.30.0.20")
    assert ping_df(c1, "10.30.0.20", 1462 - 28).returncode == 0


def test_linux_ip6gre_without_a_source_address_is_refused(hosts):
    """An ip6gretap without a local address sends nothing (proven in tests/vm): with no IPv6 route to
    the remote there is no source to give it, so tunnel add refuses in one line and makes nothing."""
    (h,) = hosts("linux")
    before = _snap(h)
    cp = h.ovsfab("tunnel", "add", "brg6", "fd77::9", "--type", "gre", "--key", "7")
    tb.assert_clean_error(cp, codes=(6,))
    assert "--local-ip" in cp.stderr and "fd77::9" in cp.stderr, cp.stderr
    assert _snap(h) == before


def test_linux_vxlan_ipv6_remote_and_one_family_per_device(hosts):
    """A VXLAN device for an IPv6 remote is made IPv6 (the kernel refused its FDB entry before; traffic
    is proven in tests/vm); an IPv4 remote on that device (same key) is refused in one line."""
    (h,) = hosts("linux")
    res = json.loads(h.ovsfab("tunnel", "add", "brv", "fd77::9", "--key", "9", "--json", check=True).stdout)
    fdb = tb.run(["bridge", "-n", h.name, "fdb", "show", "dev", res["name"]]).stdout
    assert "00:00:00:00:00:00 dst fd77::9" in fdb, fdb
    before = _snap(h)
    cp = h.ovsfab("tunnel", "add", "brv", "192.0.2.9", "--key", "9")
    tb.assert_clean_error(cp, codes=(4,))
    assert "--key" in cp.stderr and "192.0.2.9" in cp.stderr, cp.stderr
    assert _snap(h) == before
    assert tb.run(["bridge", "-n", h.name, "fdb", "show", "dev", res["name"]]).stdout == fdb


# ---------------------------------------------------------------- backend choice
def test_backend_selection(hosts, netns_targets, tmp_path):
    h, = hosts("linux")
    h.backend_args = []  # default (auto), environment and config file
    c = netns_targets()
    # auto, no Linux bridge br0, no OVSDB: the OVS error, naming --backend linux; nothing created
    before = _snap(h)
    cp = h.ovsfab("attach", "br0", c.target, "10.1.0.10/24")
    tb.assert_clean_error(cp, codes=(5,))
    assert "--backend linux" in cp.stderr
    assert _snap(h) == before and "br0" not in h.links()
    # the same through the typer CLI (the lean client does not take show)
    cp = h.ovsfab("show")
    tb.assert_clean_error(cp, codes=(5,))
    assert "--backend linux" in cp.stderr
    # explicit: the environment variable and the config file choose
    h.ovsfab("attach", "br0", c.target, "10.1.0.10/24", env={"OVSFAB_BACKEND": "linux"}, check=True)
    assert tb.link_kind(h.links()["br0"]) == "bridge"
    h.ovsfab("detach", "br0", c.target, env={"OVSFAB_BACKEND": "linux"}, check=True)
    cfg = tmp_path / "config.toml"
    cfg.write_text('backend = "linux"\n')
    h.ovsfab("attach", "br0", c.target, "10.1.0.10/24", env={"OVSFAB_CONFIG": str(cfg)}, check=True)
    cfg.write_text('backend = "bogus"\n')
    tb.assert_clean_error(h.ovsfab("detach", "br0", c.target, env={"OVSFAB_CONFIG": str(cfg)}), codes=(2,))
    tb.assert_clean_error(h.ovsfab("--backend", "nope", "detach", "br0", c.target), codes=(2,))
    # explicit ovs keeps its meaning next to a Linux bridge of that name
    tb.assert_clean_error(h.ovsfab("--backend", "ovs", "detach", "br0", c.target), codes=(5,))
    # the default follows the existing Linux bridge: no option, no note
    cp = h.ovsfab("detach", "br0", c.target, check=True)
    assert cp.stderr == ""
    assert list(tb.links_in(c)) == ["lo"]


def test_auto_uses_a_bridge_made_by_ip_without_ovsdb(hosts, netns_targets):
    """A Linux bridge someone else made (ip link add, the oracle) is used by a plain
    attach on a host without OVS: attach, repeat (no-op), show, detach."""
    h, = hosts("linux")
    h.backend_args = []
    h.ip("link", "add", "brx", "type", "bridge")
    c = netns_targets()
    out = _attach(h, "brx", c, "10.1.0.11/24")
    assert out["datapath"] == "linux" and h.links()[out["port"]].get("master") == "brx"
    assert "already" in h.ovsfab("attach", "brx", c.target, "10.1.0.11/24", check=True).stdout
    shown = json.loads(h.ovsfab("show", "brx", "--json", check=True).stdout)
    assert [b["name"] for b in shown["bridges"]] == ["brx"] and len(shown["bridges"][0]["ports"]) == 1
    h.ovsfab("detach", "brx", c.target, check=True)
    assert out["port"] not in h.links() and "brx" in h.links()  # a bridge ovsfab did not make stays


def test_auto_picks_ovs_when_ovsdb_answers(hosts, netns_targets):
    h, = hosts("ovs")
    c, d = netns_targets(), netns_targets()
    h.ovsfab("attach", "br0", c.target, "10.1.0.10/24", check=True)  # the default: auto
    assert tb.ovs_bridges(h) == ["br0"]
    # an OVS bridge's own interface (a tap on netdev) is not a Linux bridge: still OVS
    assert "already" in h.ovsfab("attach", "br0", c.target, "10.1.0.10/24", check=True).stdout
    # a Linux bridge beside OVS is used as one
    tb.run(["ip", "-n", h.name, "link", "add", "brl", "type", "bridge"])
    out = _attach(h, "brl", d, "10.2.0.10/24")
    assert out["datapath"] == "linux" and tb.links_in(h.name)[out["port"]].get("master") == "brl"
    assert tb.ovs_bridges(h) == ["br0"] and h.vsctl("port-to-br", out["port"], check=False).returncode != 0
    h.ovsfab("detach", "brl", d.target, check=True)
    h.ovsfab("detach", "br0", c.target, check=True)


agent_host = test_fastpath.agent_host  # a fixture, shared (an import of it reads as unused to pyflakes)


def test_auto_through_the_agent_follows_a_linux_bridge(agent_host, netns_targets):
    """The agent resolves auto by the same rule: the lean client's plain attach to a Linux
    bridge is served by the agent on that bridge, one to an OVS bridge on its warm session."""
    h, agent = agent_host
    served = lambda: agent.text().count(" op: ")  # noqa: E731 - its log: ``op: NAME -> exit N``
    h.ip("link", "add", "brl", "type", "bridge")
    c, d = netns_targets(), netns_targets()
    n = served()
    lin = _attach(h, "brl", c, "10.2.0.10/24")
    assert lin["datapath"] == "linux" and tb.links_in(h.name)[lin["port"]].get("master") == "brl"
    ovs = _attach(h, "br0", d, "10.1.0.10/24")
    assert ovs["datapath"] != "linux" and tb.ovs_bridges(h) == ["br0"]
    assert served() == n + 2, agent.text()[-2000:]
    h.ovsfab("detach", "brl", c.target, check=True)
    links = tb.links_in(h.name)
    assert lin["port"] not in links and ovs["port"] in links and "brl" in links


def test_auto_in_the_agents_group_commit(hosts, netns_targets):
    """The agent's group commit shares one OVS transaction; under auto an attach to a Linux
    bridge in the same group is served on its own (in order), not pushed into OVS."""
    h, = hosts("ovs")
    h.ip("link", "add", "brl", "type", "bridge")
    c, d = netns_targets(), netns_targets()
    code = ("import json, sys\n"
            "from ovsfab.ops.api import AttachGroup\n"
            "from ovsfab.ops.context import Context\n"
            "g = AttachGroup(Context(db=sys.argv[1], backend='auto'))\n"
            "g.add({'bridge': 'brl', 'container': sys.argv[2], 'addresses': ['10.2.0.10/24']})\n"
            "g.add({'bridge': 'br0', 'container': sys.argv[3], 'addresses': ['10.1.0.10/24']})\n"
            "print(json.dumps([r.to_json() for r in g.commit()]))\n")
    cp = tb.run(["ip", "netns", "exec", h.name, tb.PYTHON, "-c", code, h.db_url, c.target, d.target], timeout=60)
    lin, ovs = json.loads(cp.stdout)
    links = tb.links_in(h.name)
    assert lin["datapath"] == "linux" and links[lin["port"]].get("master") == "brl"
    assert ovs["datapath"] != "linux" and tb.ovs_bridges(h) == ["br0"]
    assert h.vsctl("port-to-br", ovs["port"]).stdout.strip() == "br0"


def test_cni_follows_auto_and_refuses_a_linux_bridge_cleanly(hosts, netns_targets):
    """The CNI plugin's requests are auto too: a network naming a Linux bridge is refused in one
    line (the Linux backend cannot carry CNI's extras), not shadowed by an OVS bridge of that name."""
    h, = hosts("ovs")
    h.ip("link", "add", "brl", "type", "bridge")
    c = netns_targets()
    before = _snap(h, [c])
    conf = {"cniVersion": "1.0.0", "name": "n", "type": "ovsfab", "bridge": "brl", "ovsdb": h.db_url,
            "ovs_netns": h.name}
    env = {"PATH": os.environ["PATH"], "CNI_COMMAND": "ADD", "CNI_CONTAINERID": "ctrl1", "CNI_NETNS": c.netns_path,
           "CNI_IFNAME": "eth0", "CNI_PATH": "/usr/lib/cni", "OVSFAB_NO_AGENT": "1"}
    cp = subprocess.run(["/usr/lib/cni/ovsfab"], input=json.dumps(conf), env=env, capture_output=True, text=True,
                        timeout=60)
    err = json.loads(cp.stdout)
    assert cp.returncode == 1 and "Linux bridge" in err["msg"] + err.get("details", ""), cp.stdout
    assert _snap(h, [c]) == before and tb.ovs_bridges(h) == []


# ---------------------------------------------------------------- Docker's FORWARD DROP
@pytest.mark.docker
def test_forward_drop_with_dockerd_is_detected(docker_image, netns_targets):
    """With dockerd running, br_netfilter loaded and FORWARD policy DROP in the
    root namespace, traffic bridged between two ports is dropped; ovsfab says
    exactly which rule to add, and that rule makes it pass."""
    if not os.path.isdir("/proc/sys/net/bridge"):
        pytest.skip("br_netfilter is not loaded (and cannot be loaded here)")
    policy = tb.run(["iptables", "-S", "FORWARD"]).stdout.splitlines()[0]
    if policy != "-P FORWARD DROP":
        pytest.skip(f"FORWARD policy is not DROP with this dockerd ({policy})")
    bridge = f"ofx{os.getpid() % 100000}"
    c1, c2 = netns_targets(), netns_targets()
    env = tb.clean_env({"OVSFAB_BACKEND": "linux"})
    cmd = [tb.PYTHON, "-m", "ovsfab", "attach", bridge]
    rule = None
    try:
        cp = subprocess.run(cmd + [c1.target, "10.77.0.10/24"], capture_output=True, text=True, env=env,
                            cwd=str(tb.REPO), timeout=60)
        assert cp.returncode == 0, cp.stderr
        assert "policy is DROP" in cp.stderr, cp.stderr
        chain = "DOCKER-USER" if "DOCKER-USER" in cp.stderr else "FORWARD"
        assert f"iptables -I {chain} -i {bridge} -o {bridge} -j ACCEPT" in cp.stderr
        subprocess.run(cmd + [c2.target, "10.77.0.20/24"], capture_output=True, text=True, env=env,
                       cwd=str(tb.REPO), timeout=60, check=True)
        assert not tb.ping(c1, "10.77.0.20", count=1, deadline=2)  # dropped, as the note says
        rule = [chain, "-i", bridge, "-o", bridge, "-j", "ACCEPT"]
        tb.run(["iptables", "-I", *rule])
        assert tb.ping(c1, "10.77.0.20")
    finally:
        if rule is not None:
            tb.run(["iptables", "-D", *rule], check=False)
        for c in (c1, c2):
            subprocess.run([tb.PYTHON, "-m", "ovsfab", "detach", bridge, c.target, "--if-exists"], env=env,
                           cwd=str(tb.REPO), capture_output=True, timeout=60)
        tb.run(["ip", "link", "del", bridge], check=False)
