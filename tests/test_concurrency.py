"""Two writers attach 50 netns targets each to the same not-yet-existing
bridge at the same time: all succeed, no duplicate rows."""
import collections
import threading
import time

import pytest

import testbed as tb

N_PER_WORKER = 50


@pytest.mark.slow
def test_two_concurrent_writers_100_attachments(ovs_host, netns_targets):
    targets = [netns_targets() for _ in range(2 * N_PER_WORKER)]
    assert "brc" not in tb.ovs_bridges(ovs_host)
    results = {}

    def worker(chunk):
        for i, t in chunk:
            addr = f"10.50.{i // 200}.{i % 200 + 1}/16"
            results[i] = ovs_host.ovsfab("attach", "brc", t.target, addr, timeout=120)

    chunks = [list(enumerate(targets))[w::2] for w in range(2)]
    threads = [threading.Thread(target=worker, args=(c,)) for c in chunks]
    t0 = time.monotonic()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    elapsed = time.monotonic() - t0
    print(f"100 attaches by 2 concurrent writers: {elapsed:.1f}s")

    failed = {i: (r.returncode, r.stderr.strip()) for i, r in results.items() if r.returncode != 0}
    assert len(results) == 100
    assert not failed, f"{len(failed)} attaches failed: {dict(list(failed.items())[:5])}"
    for r in results.values():
        tb.assert_no_traceback(r)

    assert tb.ovs_bridges(ovs_host) == ["brc"]
    ports = [r["name"] for r in tb.ovs_table(ovs_host, "Port", ["name"])]
    ifaces = [r["name"] for r in tb.ovs_table(ovs_host, "Interface", ["name"])]
    dup_p = [n for n, k in collections.Counter(ports).items() if k > 1]
    dup_i = [n for n, k in collections.Counter(ifaces).items() if k > 1]
    assert not dup_p and not dup_i, (dup_p, dup_i)
    assert len(ports) == 101 and "brc" in ports, len(ports)
    assert len(ifaces) == 101, len(ifaces)
    on_bridge = ovs_host.vsctl("list-ports", "brc").stdout.split()
    assert len(on_bridge) == 100
    # each Bridge.ports set references each port once (no orphan/duplicate refs)
    br = tb.ovs_table(ovs_host, "Bridge", ["name", "ports"])[0]
    assert len(br["ports"]) == 101
    owned = [r for r in tb.ovs_table(ovs_host, "Port", ["external_ids"])
             if r["external_ids"].get("ovsfab-owner") == "ovsfab"]
    assert len(owned) == 100
    host_links = ovs_host.links()
    for p in on_bridge:
        assert p in host_links, f"port {p} has no host link"
    for i, t in enumerate(targets):
        assert f"10.50.{i // 200}.{i % 200 + 1}/16" in tb.addrs_in(t).get("eth1", []), t
    # and the fabric works end to end
    assert tb.ping(targets[0], f"10.50.0.{99 % 200 + 1}")
    assert tb.tcp_transfer(targets[0], targets[99], f"10.50.0.{99 % 200 + 1}", nbytes=1_000_000)
