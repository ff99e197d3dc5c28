"""ovsfab apply: one fabric file, each simulated host applies its own part.

File errors (with file and line, nothing changed), deterministic IPAM, and on
real simulated hosts (netns + private OVS each, on a switch namespace):
every pair of containers pings, a re-apply changes nothing, and editing the
file (move a container, change the key, drop an attachment with --prune)
makes only the minimal changes.  Containers are named netns.
"""
from __future__ import annotations

import ipaddress
import json

import pytest

import testbed as tb
from _crosshost_helpers import Switch

from ovsfab.errors import InvalidInput
from ovsfab.fabric.desired import host_part
from ovsfab.fabric.spec import FabricError, parse_fabric

HEAD = """hosts:
  h1: {underlay: 192.168.77.5, uplink: eth1}
  h2: {underlay: 192.168.77.6, uplink: eth1}
networks:
  blue: {bridge: br0, mode: vxlan, key: 5001, subnet: 10.77.0.0/16}
"""


@pytest.mark.unprivileged
# ---------------------------------------------------------------- file errors
@pytest.mark.parametrize("body, line, words", [
    ("attachments:\n  - {container: web, network: red, host: h1}\n", 7, "network 'red' is not in networks"),
    ("attachments:\n  - {container: web, network: blue, host: h9}\n", 7, "host 'h9' is not in hosts"),
    ("attachments:\n  - {container: web, network: blue, host: h1,\n     address: 10.78.0.1}\n", 8, "outside"),
    ("attachments:\n  - {container: a, network: blue, host: h1, address: 10.77.0.9}\n"
     "  - {container: b, network: blue, host: h2, address: 10.77.0.9}\n", 8, "also the address of attachment 1"),
    ("attachments:\n  - {container: a, network: blue, host: h1}\n"
     "  - {container: a, network: blue, host: h1}\n", 8, "also attachment 1"),
    ("  red: {bridge: br1, mode: vxlan, key: 5001, subnet: 10.78.0.0/16}\n", 6, "key 5001 is also the key"),
    ("  red: {bridge: br0, mode: vxlan, key: 5002, subnet: 10.78.0.0/16}\n", 6, "bridge br0 is also the bridge"),
    ("attachments:\n  - {container: web, network: blue host: h1}\n", 7, "bad YAML"),
    ("attachments:\n  - container: web\n    network: blue\n    network: blue\n", 9, "given twice"),
    ("attachments:\n  - {container: web, network: blue, host: h1, address: 10.77.255.255}\n", 7, "broadcast"),
    ("attachments:\n  - {container: web, network: blue, host: h1, adress: 10.77.0.3}\n", 7, "unknown field 'adress'"),
])
def test_file_errors_name_file_and_line(body, line, words):
    with pytest.raises(FabricError) as exc:
        parse_fabric(HEAD + body, "f.yaml")
    assert str(exc.value).startswith(f"f.yaml:{line}: "), str(exc.value)
    assert words in str(exc.value)


def test_unknown_host_and_cli_error_changes_nothing(ovs_host, tmp_path):
    with pytest.raises(InvalidInput, match="--host"):
        host_part(parse_fabric(HEAD, "f.yaml"), "nope")
    bad = tmp_path / "fabric.yaml"
    bad.write_text(HEAD + "attachments:\n  - {container: 'netns:x', network: blue, host: h1, address: 10.99.0.1}\n")
    before = tb.snapshot(ovs_host)
    cp = ovs_host.ovsfab("apply", bad, "--host", "h1")
    tb.assert_clean_error(cp, codes=(2,))
    assert f"{bad}:7:" in cp.stderr and "outside" in cp.stderr
    cp = ovs_host.ovsfab("apply", bad.parent / "missing.yaml", "--host", "h1")
    tb.assert_clean_error(cp, codes=(2,))
    tb.assert_no_residue(ovs_host, before)


# ---------------------------------------------------------------- IPAM
def _file(atts, net="subnet: 10.77.0.0/24, gateway: 10.77.0.1"):
    lines = [f"  - {{container: {c}, network: blue, host: {h}" + (f", address: {a}" if a else "") + "}"
             for c, h, a in atts]
    return ("hosts:\n  h1: {underlay: 192.168.77.5}\n  h2: {underlay: 192.168.77.6}\n"
            f"networks:\n  blue: {{bridge: br0, mode: vxlan, key: 7, {net}}}\nattachments:\n" + "\n".join(lines) + "\n")


@pytest.mark.unprivileged
def test_ipam_is_deterministic_and_avoids_reserved():
    atts = [(f"c{i}", "h1" if i % 2 else "h2", None) for i in range(200)] + [("fixed", "h1", "10.77.0.77")]
    f1, f2 = parse_fabric(_file(atts), "a"), parse_fabric(_file(list(reversed(atts))), "b")
    assert f1.addresses == f2.addresses                      # same file (any order): same addresses
    ips = list(f1.addresses.values())
    assert len(set(ips)) == len(ips)                         # no duplicates
    bad = {ipaddress.ip_address(x) for x in ("10.77.0.0", "10.77.0.255", "10.77.0.1")}
    assert not bad & set(ips)                                # network, broadcast, gateway never
    assert [ip for k, ip in f1.addresses.items() if k[2] == "fixed"] == [ipaddress.ip_address("10.77.0.77")]
    assert all(ip in ipaddress.ip_network("10.77.0.0/24") for ip in ips)
    # adding one attachment moves nobody else's address (no collision in a /16)
    big = "subnet: 10.77.0.0/16"
    g1 = parse_fabric(_file(atts[:50], big), "a").addresses
    g2 = parse_fabric(_file(atts[:50] + [("newcomer", "h2", None)], big), "a").addresses
    assert all(g2[k] == v for k, v in g1.items())
    # moving a container to another host keeps its address
    moved = [("c3", "h2", None) if c == "c3" else (c, h, a) for c, h, a in atts[:50]]
    g3 = parse_fabric(_file(moved, big), "a").addresses
    assert g3[("blue", "h2", "c3", "eth1")] == g1[("blue", "h1", "c3", "eth1")]
    # a subnet that is full says so, with the line
    with pytest.raises(FabricError, match="no free address"):
        parse_fabric(_file([(f"c{i}", "h1", None) for i in range(3)], "subnet: 10.77.0.0/30"), "a")


# ---------------------------------------------------------------- real hosts
class Fabric3:
    """Three simulated hosts on a switch; eth1 holds each underlay address (no bridge yet)."""

    def __init__(self, n: int = 3):
        self.hosts = [tb.OvsHost() for _ in range(n)]
        self.sw = Switch()
        self.names = [f"docker-test{i + 1}" for i in range(n)]
        self.underlays = [f"192.168.77.{5 + i}" for i in range(n)]
        for h, ip in zip(self.hosts, self.underlays):
            self.sw.plug(h)
            h.ip("addr", "add", f"{ip}/24", "dev", "eth1")
        self.cs = [tb.make_netns() for _ in range(2 * n)]

    def text(self, atts, key=5001):
        hosts = "".join(f"  {n}: {{underlay: {u}, uplink: eth1}}\n" for n, u in zip(self.names, self.underlays))
        lines = "".join(f"  - {{container: '{self.cs[c].target}', network: blue, host: {self.names[h]}"
                        + (f", address: {a}" if a else "") + "}\n" for c, h, a in atts)
        return (f"hosts:\n{hosts}networks:\n  blue: {{bridge: br0, mode: vxlan, key: {key}, "
                f"subnet: 10.77.0.0/16}}\nattachments:\n{lines}")

    def apply(self, path, i, *extra, ok=True):
        cp = self.hosts[i].ovsfab("apply", path, "--host", self.names[i], "--json", *extra, timeout=90)
        if ok:
            assert cp.returncode == 0, cp.stderr
            return json.loads(cp.stdout)
        return cp

    def close(self):
        for c in self.cs:
            tb.delete_netns(c.name)
        for h in self.hosts:
            h.close()
        self.sw.close()


def _lines(res):
    return sorted(c["line"] for c in res["changes"])


def _addr(c):
    return tb.addrs_in(c.name).get("eth1", [""])[0].split("/")[0]


def _all_ping(fab, idx):
    for i in idx:
        for j in idx:
            if i != j:
                assert tb.ping(fab.cs[i], _addr(fab.cs[j]), count=1), (i, j)


@pytest.fixture
def fab3():
    f = Fabric3(3)
    yield f
    f.close()


@pytest.mark.slow
def test_three_hosts_apply_edit_prune(fab3, tmp_path):
    fab = fab3
    path = tmp_path / "fabric.yaml"
    # c0,c1 on host1 (c0 fixed address), c2,c3 on host2, c4 on host3
    atts = [(0, 0, "10.77.0.10"), (1, 0, None), (2, 1, None), (3, 1, None), (4, 2, None)]
    path.write_text(fab.text(atts))
    # dry run: the plan, nothing changed
    before = tb.snapshot(fab.hosts[0])
    dry = fab.apply(path, 0, "--dry-run")
    assert dry["dry_run"] is True and "+ attach" in " ".join(_lines(dry))
    tb.assert_no_residue(fab.hosts[0], before)

    results = [fab.apply(path, i) for i in range(3)]
    assert all(r["changed"] for r in results)
    r0 = _lines(results[0])
    assert sum(line.startswith("+ tunnel br0") for line in r0) == 2
    assert "+ uplink eth1 → br-eth1 (underlay of the vxlan mesh on the userspace datapath)" in r0
    assert any(line.startswith(f"+ attach {fab.cs[0].name} eth1 10.77.0.10/16 → br0") for line in r0)
    # every pair of containers pings, across all three hosts
    _all_ping(fab, range(5))
    # the same addresses as the file gives everywhere; MTU left for VXLAN
    assert tb.links_in(fab.cs[4].name)["eth1"]["mtu"] == 1450
    # re-apply: nothing to do, OVSDB untouched (same Port rows)
    ports = tb.ovs_table(fab.hosts[0], "Port", ["_uuid", "name"])
    again = fab.hosts[0].ovsfab("apply", path, "--host", fab.names[0], check=True)
    assert "nothing to do" in again.stdout
    assert tb.ovs_table(fab.hosts[0], "Port", ["_uuid", "name"]) == ports

    # -- move c3 from host2 to host3: host2 loses it, host3 gains it, host1 nothing
    atts[3] = (3, 2, None)
    path.write_text(fab.text(atts))
    old_addr = _addr(fab.cs[3])
    res = [fab.apply(path, i) for i in range(3)]
    assert res[0]["changes"] == []
    assert [c["op"] + c["kind"] for c in res[1]["changes"]] == ["-attach"]
    assert "moved to docker-test3" in res[1]["changes"][0]["line"]
    assert [c["op"] + c["kind"] for c in res[2]["changes"]] == ["+attach"]
    assert _addr(fab.cs[3]) == old_addr                      # IPAM: same address on the new host
    _all_ping(fab, range(5))

    # -- change the key: only the tunnels change, attachments untouched
    ports = {i: tb.ovs_table(fab.hosts[i], "Port", ["_uuid", "name"]) for i in range(3)}
    path.write_text(fab.text(atts, key=5002))
    res = [fab.apply(path, i) for i in range(3)]
    for i in range(3):
        kinds = [(c["op"], c["kind"]) for c in res[i]["changes"]]
        assert kinds == [("~", "tunnel"), ("~", "tunnel")], res[i]["changes"]
        assert "was key 5001" in res[i]["changes"][0]["line"]
        now = {p["name"]: p["_uuid"] for p in tb.ovs_table(fab.hosts[i], "Port", ["_uuid", "name"])}
        assert all(now.get(p["name"]) == p["_uuid"] for p in ports[i] if p["name"].startswith("ovf"))
    keys = {r["options"]["key"] for r in tb.ovs_table(fab.hosts[0], "Interface", ["type", "options"])
            if r["type"] == "vxlan"}
    assert keys == {"5002"}
    _all_ping(fab, range(5))

    # -- drop c1: kept without --prune, removed with it; nothing else changes
    del atts[1]
    path.write_text(fab.text(atts, key=5002))
    kept = fab.apply(path, 0)
    assert kept["changes"] == [] and len(kept["kept"]) == 1 and "--prune" in kept["kept"][0]
    pruned = fab.apply(path, 0, "--prune")
    assert [(c["op"], c["kind"]) for c in pruned["changes"]] == [("-", "attach")]
    assert "eth1" not in tb.links_in(fab.cs[1].name)
    assert fab.apply(path, 1, "--prune")["changes"] == []
    _all_ping(fab, [0, 2, 3, 4])


def test_runtime_failure_leaves_nothing_behind(ovs_hosts, tmp_path):
    """A container that already has eth1: the whole apply is undone (uplink, tunnel, bridge, veths)."""
    h1, h2 = ovs_hosts(2)
    sw = Switch()
    good, busy = tb.make_netns(), tb.make_netns()
    try:
        for h, ip in ((h1, "192.168.77.5"), (h2, "192.168.77.6")):
            sw.plug(h)
            h.ip("addr", "add", f"{ip}/24", "dev", "eth1")
        tb.ns_run(busy.name, "ip", "link", "add", "eth1", "type", "veth", "peer", "name", "x1")
        path = tmp_path / "fabric.yaml"
        path.write_text(HEAD.replace("h1:", "docker-test1:").replace("h2:", "docker-test2:")
                        + f"attachments:\n  - {{container: '{good.target}', network: blue, host: docker-test1}}\n"
                        f"  - {{container: '{busy.target}', network: blue, host: docker-test1}}\n"
                        f"  - {{container: 'netns:{busy.name}x', network: blue, host: docker-test2}}\n")
        before = tb.snapshot(h1, [good, busy])
        l3 = tb.addrs_in(h1.name)
        cp = h1.ovsfab("apply", path, "--host", "docker-test1")
        assert cp.returncode == 4 and "Traceback" not in cp.stderr
        errors = [line for line in cp.stderr.splitlines() if "note:" not in line]  # the datapath note is fine
        assert len(errors) == 1 and errors[0].startswith("ovsfab: error: "), cp.stderr
        assert "already has an interface named eth1" in cp.stderr
        tb.assert_no_residue(h1, before, [good, busy])
        assert tb.addrs_in(h1.name) == l3                      # the underlay address is back on eth1
        # a target that does not exist: refused while planning, before any change
        cp = h2.ovsfab("apply", path, "--host", "docker-test2")
        tb.assert_clean_error(cp, codes=(3,))
        assert tb.ovs_bridges(h2) == []
    finally:
        tb.delete_netns(good.name)
        tb.delete_netns(busy.name)
        sw.close()


#: The three-host mesh of issue 16 (each host `uplink: eth1`, two VXLAN
#: networks), repeated; bench/bench_converge.py runs it 20 times.
MESH_RUNS = 3


def mesh_text(names, underlays, targets) -> str:
    """The three-host, two-network VXLAN fabric (also bench/bench_converge.py's): container 2h+k is on
    host h, network k."""
    hosts = "".join(f"  {n}: {{underlay: {u}, uplink: eth1}}\n" for n, u in zip(names, underlays))
    atts = "".join(f"  - {{container: '{targets[2 * h + k]}', network: {net}, host: {names[h]}}}\n"
                   for h in range(3) for k, net in enumerate(("blue", "green")))
    return (f"hosts:\n{hosts}networks:\n"
            "  blue: {bridge: br0, mode: vxlan, key: 5001, subnet: 10.77.0.0/16}\n"
            "  green: {bridge: br1, mode: vxlan, key: 5002, subnet: 10.78.0.0/16}\n"
            f"attachments:\n{atts}")


@pytest.mark.slow
def test_three_host_apply_mesh_converges_every_time(tmp_path):
    """Apply on three hosts, one after the other, then `apply --wait`/`check --wait` on each:
    every host's tunnel neighbour cache holds each peer's bridge MAC, BFD is up on all
    eight tunnels, and every pair of containers in each network talks, every run."""
    for run in range(MESH_RUNS):
        fab = Fabric3(3)
        try:
            path = tmp_path / f"mesh{run}.yaml"
            path.write_text(mesh_text(fab.names, fab.underlays, [c.target for c in fab.cs]))
            for i in range(3):
                fab.apply(path, i)
            for i, h in enumerate(fab.hosts):
                res = fab.apply(path, i, "--wait", "20")  # re-apply: nothing to change, then converge
                assert res["changes"] == [] and res["check"]["ok"] is True, (run, i, res["check"])
            macs = {u: tb.links_in(h.name)["br-eth1"]["address"] for h, u in zip(fab.hosts, fab.underlays)}
            for h, me in zip(fab.hosts, fab.underlays):
                neigh = h.tnl_neighbours()
                assert {ip: neigh.get(ip) for ip in macs if ip != me} == {ip: m for ip, m in macs.items() if ip != me}
                tunnels = [r["name"] for r in tb.ovs_table(h, "Interface", ["name", "type"]) if r["type"] == "vxlan"]
                assert len(tunnels) == 4 and all(h.bfd_status(t).get("state") == "up" for t in tunnels), run
            for net in (0, 1):
                _all_ping(fab, [2 * h + net for h in range(3)])
            assert tb.tcp_transfer(fab.cs[0], fab.cs[4], _addr(fab.cs[4]), nbytes=1_000_000)
        finally:
            fab.close()


# ------------------------------------------------- planning many Docker targets
@pytest.mark.unprivileged
def test_targets_resolve_in_parallel_and_fail_in_file_order():
    """Docker lookups overlap, yet the error is the one a one-by-one plan would raise (pure logic)."""
    import threading
    import time

    from ovsfab.errors import NotFound
    from ovsfab.ops import apply_plan

    calls, in_flight, peak = [], [0], [0]
    lock = threading.Lock()

    class Lookup:  # stands in for plumbing.containers: only resolve() is used
        @staticmethod
        def resolve(spec):
            with lock:
                calls.append(spec)
                in_flight[0] += 1
                peak[0] = max(peak[0], in_flight[0])
            try:
                time.sleep(0.2 if spec == "slow-missing" else 0.05)
                if spec.endswith("missing"):
                    raise NotFound(f"no Docker container named {spec!r}", "check docker ps -a")
                return f"target of {spec}"
            finally:
                with lock:
                    in_flight[0] -= 1

    specs = [f"c{i}" for i in range(8)] + ["c0", "netns:n1"]
    found = apply_plan._resolve_all(specs, Lookup)
    assert found == {s: f"target of {s}" for s in specs}
    assert sorted(calls) == sorted(set(specs))              # each target looked up once
    assert peak[0] > 1                                       # dockerd's answers overlapped
    with pytest.raises(NotFound, match="slow-missing"):      # earlier in the file, though it fails later
        apply_plan._resolve_all(["a", "slow-missing", "b", "quick-missing"], Lookup)


@pytest.mark.unprivileged
def test_batch_deadline_grows_with_the_ports_it_adds():
    """A fixed 10 s failed apply of 1,000 attachments while ovs-vswitchd was only slow (docs/performance.md)."""
    from ovsfab.backends.ovs.idl import BATCH_SECONDS_PER_PORT, batch_timeout

    assert batch_timeout(10.0, 0) == 10.0
    assert batch_timeout(10.0, 1000) == pytest.approx(10.0 + 1000 * BATCH_SECONDS_PER_PORT)
    assert batch_timeout(10.0, 1000) >= 50.0   # 250 ports took 9.7 s to commit at 1,000 (loaded 2-core machine)
