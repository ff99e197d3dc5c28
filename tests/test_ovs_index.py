"""The OVS backend's lookups (backends/ovs/index.py) against a real ovsdb-server.

The index is kept in step by IDL notifications instead of walking the tables,
so these tests change the database behind the backend's back with ovs-vsctl
(the oracle) and check that every lookup follows: renames of recorded keys,
moves between bridges, deletions, and an ovsdb-server restart during which
rows were deleted (the IDL clears its replica without notifications then).
"""

from __future__ import annotations

import time

import testbed as tb
from ovsfab.backends.ovs.backend import OvsBackend
from ovsfab.backends.base import KEY_ROLE


def _owned(host: tb.OvsHost, bridge: str, port: str, **ids: str) -> None:
    """Add an internal port with ovsfab's tags, as another client would."""
    args = ["--may-exist", "add-br", bridge, "--", "set", "Bridge", bridge, "datapath_type=netdev",
            "--", "add-port", bridge, port, "--", "set", "Interface", port, "type=internal"]
    keys = {"ovsfab-owner": "ovsfab", **{k.replace("_", "-"): v for k, v in ids.items()}}
    for k, v in keys.items():
        args += ["--", "set", "Port", port, f'external_ids:"{k}"="{v}"']
    host.vsctl(*args)


def _until(backend: OvsBackend, cond, what: str, timeout: float = 10.0) -> None:
    backend.session.run_until(cond, time.monotonic() + timeout, what)


def test_lookups_follow_changes_made_by_other_clients(ovs_host):
    backend = OvsBackend(remote=ovs_host.db_url)
    try:
        _owned(ovs_host, "br0", "p1", ovsfab_container_id="c1", ovsfab_ifname="eth1")
        _until(backend, lambda: backend.port_exists("p1") == "br0", "p1 on br0")
        att = backend.find_attachment("c1", "eth1")
        assert att is not None and (att.bridge, att.port) == ("br0", "p1")
        assert backend.find_attachment("c1", "eth2") is None
        assert backend.port_exists("nosuch") is None

        # A recorded key changes: the old lookup key must stop answering.
        ovs_host.vsctl("set", "Port", "p1", 'external_ids:"ovsfab-ifname"="eth2"')
        _until(backend, lambda: backend.find_attachment("c1", "eth2") is not None, "the new ifname")
        assert backend.find_attachment("c1", "eth1") is None

        # Moved to another bridge.
        ovs_host.vsctl("del-port", "p1")
        _owned(ovs_host, "br1", "p1", ovsfab_container_id="c1", ovsfab_ifname="eth2")
        _until(backend, lambda: backend.port_exists("p1") == "br1", "p1 on br1")
        assert backend.find_attachment("c1", "eth2").bridge == "br1"
        assert backend.bridge_ports("br1") and "p1" in backend.bridge_ports("br1")
        assert "p1" not in backend.bridge_ports("br0")

        # Roles (tunnels/uplinks) per bridge.
        _owned(ovs_host, "br1", "t1", **{KEY_ROLE.replace("-", "_"): "tunnel"})
        _until(backend, lambda: [r.port for r in backend.owned_ports("tunnel", "br1")] == ["t1"], "t1")
        assert backend.owned_ports("tunnel", "br0") == []
        ovs_host.vsctl("remove", "Port", "t1", "external_ids", KEY_ROLE)
        _until(backend, lambda: backend.owned_ports("tunnel") == [], "t1 no longer a tunnel")

        ovs_host.vsctl("del-port", "p1")
        _until(backend, lambda: backend.port_exists("p1") is None, "p1 gone")
        assert backend.find_attachment("c1", "eth2") is None
        assert backend.port_names() == {"br0", "br1", "t1"}
    finally:
        backend.close()


def test_lookups_after_ovsdb_server_restart_with_rows_deleted_meanwhile(ovs_host):
    _owned(ovs_host, "br0", "p1", ovsfab_container_id="c1", ovsfab_ifname="eth1")
    _owned(ovs_host, "br0", "p2", ovsfab_container_id="c2", ovsfab_ifname="eth1")
    backend = OvsBackend(remote=ovs_host.db_url)
    try:
        assert backend.port_exists("p1") == "br0"
        assert backend.find_attachment("c1", "eth1") is not None

        # The server goes away; while the backend is not looking, p1 is
        # deleted and p3 added; then the backend reconnects and re-syncs.
        tb._kill_and_wait(ovs_host._pid("ovsdb-server"))  # noqa: SLF001 - the test bed's own daemon
        r = ovs_host.rundir
        tb.run(["ip", "netns", "exec", ovs_host.name, "ovsdb-server", f"{r}/conf.db",
                f"--remote=punix:{ovs_host.db_sock}"] + ovs_host._daemon_args("ovsdb-server"))  # noqa: SLF001
        ovs_host.vsctl("--no-wait", "del-port", "p1")
        _owned(ovs_host, "br0", "p3", ovsfab_container_id="c3", ovsfab_ifname="eth1")

        _until(backend, lambda: backend.port_exists("p3") == "br0", "the re-sync after the restart", 20)
        assert backend.port_exists("p1") is None
        assert backend.find_attachment("c1", "eth1") is None
        assert backend.find_attachment("c2", "eth1").port == "p2"
        assert backend.find_attachment("c3", "eth1").port == "p3"
        assert backend.port_names() == {"br0", "p2", "p3"}
        assert sorted(backend.bridge_ports("br0")) == ["br0", "p2", "p3"]
    finally:
        backend.close()


def test_a_port_gone_from_ovsdb_after_the_commit_is_blamed_on_ovsdb_not_vswitchd(ovs_host):
    """add_many commits, then waits for ovs-vswitchd; if the row is gone when it reads back, say so honestly.

    ovs-vswitchd never deletes rows: a port missing after a successful commit
    means ovsdb-server restarted mid-way or another client removed it.  Here
    the other client does it while ovs-vswitchd is stopped (SIGSTOP), so the
    commit has landed and the wait for cur_cfg is still running.
    """
    import os
    import signal
    import threading

    from ovsfab.backends.base import NOT_IN_OVSDB, NewPort, add_failed

    ovs_host.vsctl("add-br", "br0", "--", "set", "Bridge", "br0", "datapath_type=netdev")
    backend = OvsBackend(remote=ovs_host.db_url)
    vswitchd = ovs_host._pid("ovs-vswitchd")
    out = {}
    try:
        os.kill(vswitchd, signal.SIGSTOP)
        try:
            worker = threading.Thread(target=lambda: out.update(backend.add_many(
                [NewPort("br0", "gone1", {"ovsfab-owner": "ovsfab"}, "netdev", None, "internal")])))
            worker.start()
            deadline = time.monotonic() + 10
            while "gone1" not in ovs_host.vsctl("list-ports", "br0").stdout.split():
                assert time.monotonic() < deadline, "the commit never reached OVSDB"
                time.sleep(0.05)
            ovs_host.vsctl("--no-wait", "del-port", "br0", "gone1")
        finally:
            os.kill(vswitchd, signal.SIGCONT)
        worker.join(30)
        assert not worker.is_alive()
    finally:
        backend.close()
    assert out == {"gone1": (None, NOT_IN_OVSDB)}
    err = add_failed("gone1", "br0", NOT_IN_OVSDB, 19)
    assert "OVSDB lost gone1 on br0" in err.message and "(and 19 more)" in err.message, err.message
    assert "vswitchd" not in err.message and "again" in err.remedy
    assert add_failed("p", "br0", "could not open network device p").message.startswith("ovs-vswitchd could not add p")
