"""`ovsfab reconcile`: restore recorded attachments after restarts, clean up after removals.

Real dockerd, real OVS (one simulated host), oracles `ip` / `ovs-vsctl` only.
"""
from __future__ import annotations

import json
import time

import pytest

import testbed as tb

pytestmark = pytest.mark.docker


def start(name=None, restart_always=False, image=tb.IMAGE) -> tb.Container:
    """A container that stops at once on SIGTERM (--init), so restarts are quick."""
    name = name or tb.unique("c")
    args = ["run", "-d", "--init", "--network", "none", "--stop-timeout", "2", "--name", name]
    if restart_always:
        args.append("--restart=always")
    cid = tb.docker(*args, image, "sleep", "1000000").stdout.strip()
    pid = int(tb.docker("inspect", "-f", "{{.State.Pid}}", cid).stdout.strip())
    return tb.Container(name=name, id=cid, pid=pid)


@pytest.fixture
def ctrs(docker_image):
    """Factory: ctrs(restart_always=False) -> Container; removed one at a time at teardown."""
    made = []

    def make(**kw):
        c = start(**kw)
        made.append(c)
        return c

    yield make
    tb.remove_containers(c.name for c in made)


def eth_facts(c: tb.Container, ifname: str = "eth1") -> dict:
    """What must survive a restore: MAC, MTU, addresses, default routes, state."""
    c.refresh_pid()
    links = tb.links_in(c)
    if ifname not in links:
        return {}
    rec = links[ifname]
    return {
        "mac": rec["address"], "mtu": rec["mtu"], "up": "UP" in rec["flags"],
        "addrs": sorted(tb.addrs_in(c)[ifname]),
        "gw4": (tb.default_route(c) or {}).get("gateway"),
        "gw6": (tb.default_route(c, v6=True) or {}).get("gateway"),
    }


def port_facts(host: tb.OvsHost, c: tb.Container, ifname: str = "eth1") -> dict:
    row = tb.ovs_port_for(host, container_id=c.id, ifname=ifname)
    if row is None:
        return {}
    iface = tb.ovs_row(host, "Interface", row["name"])
    return {"name": row["name"], "tag": row["tag"], "ids": row["external_ids"],
            "ofport": iface["ofport"], "error": iface["error"]}


def reconcile(host: tb.OvsHost, *args: str) -> dict:
    cp = host.ovsfab("reconcile", "--json", *args)
    tb.assert_no_traceback(cp)
    assert cp.returncode == 0, cp.stderr
    return json.loads(cp.stdout)


def results(doc: dict) -> dict:
    return {(a["container"], a["ifname"]): a["result"] for a in doc["attachments"]}


def test_restart_restores_exactly_and_is_idempotent(ovs_host, ctrs):
    c1, c2 = ctrs(), ctrs()
    ovs_host.ovsfab("attach", "br0", c1.name, "10.7.0.11/24@10.7.0.1", "2001:db8:7::11/64",
                    "--mac", "02:00:00:07:00:11", "--mtu", "1400", "--vlan", "7", check=True)
    ovs_host.ovsfab("attach", "br0", c2.name, "10.7.0.12/24", "2001:db8:7::12/64",
                    "--mtu", "1400", "--vlan", "7", check=True)
    ovs_host.ovsfab("attach", "br0", c1.name, "10.8.0.11/24", "--ifname", "eth2", check=True)
    before = eth_facts(c1)
    before2 = eth_facts(c1, "eth2")
    port_before = port_facts(ovs_host, c1)
    assert before["mac"] == "02:00:00:07:00:11" and before["gw4"] == "10.7.0.1"

    # Nothing to do on a healthy host.
    doc = reconcile(ovs_host)
    assert not doc["changed"] and set(results(doc).values()) == {"ok"}

    tb.docker("restart", "-t", "1", c1.name)
    assert eth_facts(c1) == {}, "docker restart should have lost eth1"

    dry = reconcile(ovs_host, "--dry-run")
    assert dry["dry_run"] and not dry["changed"]
    assert results(dry)[(c1.name, "eth1")] == "restored"
    assert eth_facts(c1) == {}, "--dry-run changed something"

    doc = reconcile(ovs_host)
    assert doc["changed"]
    res = results(doc)
    assert res[(c1.name, "eth1")] == "restored" and res[(c1.name, "eth2")] == "restored"
    assert res[(c2.name, "eth1")] == "ok"
    assert eth_facts(c1) == before
    assert eth_facts(c1, "eth2") == before2
    after = port_facts(ovs_host, c1)
    assert after["ofport"] not in (-1, None) and not after["error"]
    assert (after["name"], after["tag"], after["ids"]) == \
           (port_before["name"], port_before["tag"], port_before["ids"])
    c2.refresh_pid()
    tb.wait_dad(c1)
    tb.wait_dad(c2)
    assert tb.ping(c2, "10.7.0.11")
    assert tb.ping(c2, "2001:db8:7::11")
    assert tb.tcp_transfer(c2, c1, "10.7.0.11", nbytes=1_000_000)

    # Idempotent: a second run changes nothing and says so.
    again = reconcile(ovs_host)
    assert not again["changed"] and set(results(again).values()) == {"ok"}
    text = ovs_host.ovsfab("reconcile", check=True).stdout
    assert text.strip().splitlines()[-1] == "3 attachment(s): 3 ok"


@pytest.mark.parametrize("step", ["restore-relink", "restore-up"])
def test_batch_restore_fault_keeps_records_and_leaves_no_veth(ovs_host, ctrs, step):
    """A restore of several attachments failing half-way: every record stays, no stray veth; then it works."""
    c, peer = ctrs(), ctrs()
    ovs_host.ovsfab("attach", "br0", c.name, "10.7.5.1/24", check=True)
    ovs_host.ovsfab("attach", "br0", c.name, "10.7.6.1/24", "--ifname", "eth2", check=True)
    ovs_host.ovsfab("attach", "br0", peer.name, "10.7.5.2/24", check=True)
    ports = {port_facts(ovs_host, c)["name"], port_facts(ovs_host, c, "eth2")["name"]}
    before = (eth_facts(c), eth_facts(c, "eth2"))
    tb.docker("restart", "-t", "0", c.name)
    c.refresh_pid()
    cp = ovs_host.ovsfab("reconcile", env={"OVSFAB_INJECT_FAULT": step})
    tb.assert_clean_error(cp)
    assert ports <= set(tb.ovs_ports(ovs_host)), "a record was lost"
    host_links = ovs_host.links()
    if step == "restore-relink":
        # Made (host end down) but never brought up: deleted, container ends included.
        assert not ports & set(host_links), host_links
        assert eth_facts(c) == {} and eth_facts(c, "eth2") == {}
    # Either way, nothing half-made stays behind: the next pass finishes the job.
    doc = reconcile(ovs_host)
    assert set(results(doc).values()) <= {"restored", "ok"}
    assert (eth_facts(c), eth_facts(c, "eth2")) == before
    assert tb.tcp_transfer(peer, c, "10.7.5.1", nbytes=300_000)
    assert not reconcile(ovs_host)["changed"]
    # Every veth on the host is a port of the bridge, and every port but the bridge's own has one.
    veths = {name for name, link in ovs_host.links().items() if tb.link_kind(link) == "veth"}
    assert veths == set(tb.ovs_ports(ovs_host)) - {"br0"}, (veths, tb.ovs_ports(ovs_host))


def test_rm_removes_port_and_veth(ovs_host, ctrs):
    keep, gone = ctrs(), ctrs()
    ovs_host.ovsfab("attach", "br0", keep.name, "10.7.1.1/24", check=True)
    snap = tb.snapshot(ovs_host)
    ovs_host.ovsfab("attach", "br0", gone.name, "10.7.1.2/24", check=True)
    port = port_facts(ovs_host, gone)["name"]
    tb.docker("rm", "-f", gone.name)
    doc = reconcile(ovs_host)
    assert results(doc) == {(keep.name, "eth1"): "ok", (gone.name, "eth1"): "removed"}
    assert port not in tb.ovs_ports(ovs_host)
    assert port not in ovs_host.links()
    tb.assert_no_residue(ovs_host, snap)
    assert not reconcile(ovs_host)["changed"]


def test_stopped_keeps_record_then_restores_on_start(ovs_host, ctrs):
    c = ctrs()
    ovs_host.ovsfab("attach", "br0", c.name, "10.7.2.1/24", "--mac", "02:00:00:07:02:01", check=True)
    before = eth_facts(c)
    port = port_facts(ovs_host, c)
    tb.docker("stop", "-t", "1", c.name)
    doc = reconcile(ovs_host)
    assert results(doc) == {(c.name, "eth1"): "stopped"}
    kept = port_facts(ovs_host, c)
    assert kept["name"] == port["name"] and kept["ids"] == port["ids"], "record must be kept"
    # The kernel dismantles a stopped container's netns (and so the veth pair)
    # from a work queue after `docker stop` returns: give it a few seconds.
    deadline = time.monotonic() + 10
    while kept["name"] in ovs_host.links() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert kept["name"] not in ovs_host.links(), "the host end must go with the stopped container's netns"
    tb.docker("start", c.name)
    doc = reconcile(ovs_host)
    assert results(doc) == {(c.name, "eth1"): "restored"}
    assert eth_facts(c) == before


def test_no_persist_is_never_restored(ovs_host, ctrs):
    c = ctrs()
    cp = ovs_host.ovsfab("attach", "br0", c.name, "10.7.3.1/24", "--no-persist", check=True)
    assert cp.returncode == 0
    port = port_facts(ovs_host, c)
    assert port["ids"]["ovsfab-persist"] == "false"
    tb.docker("restart", "-t", "1", c.name)
    doc = reconcile(ovs_host)
    assert results(doc) == {(c.name, "eth1"): "removed"}
    assert eth_facts(c) == {}
    assert port["name"] not in tb.ovs_ports(ovs_host)


def test_netns_and_pid_targets_gone_are_removed(ovs_host, netns_targets, pid_targets):
    ns = netns_targets()
    pt = pid_targets()
    ovs_host.ovsfab("attach", "br0", ns.target, "10.7.4.1/24", check=True)
    ovs_host.ovsfab("attach", "br0", pt.target, "10.7.4.2/24", check=True)
    snap_ports = tb.ovs_ports(ovs_host)
    # A netns whose link was deleted by hand: restored (the target still exists).
    tb.ns_run(ns, "ip", "link", "del", "eth1")
    doc = reconcile(ovs_host)
    assert sorted(results(doc).values()) == ["ok", "restored"]
    assert "eth1" in tb.links_in(ns)
    assert tb.ovs_ports(ovs_host) == snap_ports
    # Gone targets cannot come back: removed.
    tb.delete_netns(ns.name)
    pt.close()
    doc = reconcile(ovs_host)
    assert sorted(results(doc).values()) == ["removed", "removed"]
    assert tb.ovs_ports(ovs_host) == ["br0"]
    assert not [n for n, rec in ovs_host.links().items() if tb.link_kind(rec) == "veth"]


def test_reconcile_without_ovsdb_fails_cleanly(ovs_host):
    cp = ovs_host.ovsfab("--db", f"unix:{ovs_host.rundir}/nope.sock", "reconcile")
    tb.assert_clean_error(cp, codes=(5,))
