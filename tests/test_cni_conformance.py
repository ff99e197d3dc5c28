"""ovsfab-cni driven as a runtime drives it: the executable, CNI_* and stdin.

The plugin is the wrapper scripts/setup.sh installs in /usr/lib/cni; IPAM is
Debian's host-local; OVS is a simulated host's (tests/testbed.py), reached
with the ``ovsdb`` and ``ovs_netns`` keys.  Oracles are ``ip -j``,
``ovs-vsctl`` and host-local's files; every result is checked against the
schemas in tests/cni_schema.py.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile

import jsonschema
import pytest

import cni_schema
import testbed as tb

PLUGIN = "/usr/lib/cni/ovsfab"
CNI_PATH = "/usr/lib/cni"


@pytest.fixture(scope="module", autouse=True)
def _plugin_installed():
    if not os.access(PLUGIN, os.X_OK) or not os.access(os.path.join(CNI_PATH, "host-local"), os.X_OK):
        pytest.fail(f"{PLUGIN} or host-local missing: run scripts/setup.sh", pytrace=False)


@pytest.fixture
def cni(shared_host):
    """A bridge made by the admin (as ovs-cni expects), a host-local data dir, a config factory."""
    br = "brcni"
    shared_host.vsctl("--may-exist", "add-br", br, "--", "set", "bridge", br, "datapath_type=netdev")
    data = tempfile.mkdtemp(prefix="ovsfab-ipam-")

    def conf(version="1.0.0", **extra):
        doc = {"cniVersion": version, "name": "cnitest", "type": "ovsfab", "bridge": br,
               "ovsdb": shared_host.db_url, "ovs_netns": shared_host.name,
               "ipam": {"type": "host-local", "dataDir": data,
                        "ranges": [[{"subnet": "10.81.0.0/24", "gateway": "10.81.0.1"}]],
                        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "10.82.0.0/16", "gw": "10.81.0.254"}]}}
        doc.update(extra)
        return {k: v for k, v in doc.items() if v is not None}

    yield shared_host, br, data, conf
    shutil.rmtree(data, ignore_errors=True)


def plugin(command, conf, netns="", container_id="ctr1", ifname="eth0", extra_env=None, raw=None):
    """Run the plugin once: (exit code, parsed stdout or None)."""
    env = {"PATH": os.environ["PATH"], "CNI_COMMAND": command, "CNI_CONTAINERID": container_id,
           "CNI_NETNS": netns, "CNI_IFNAME": ifname, "CNI_PATH": CNI_PATH}
    env.update(extra_env or {})
    env = {k: v for k, v in env.items() if v is not None}
    stdin = raw if raw is not None else json.dumps(conf)
    cp = subprocess.run([PLUGIN], input=stdin, env=env, capture_output=True, text=True, timeout=60)
    out = json.loads(cp.stdout) if cp.stdout.strip() else None
    if cp.returncode != 0:
        jsonschema.validate(out, cni_schema.ERROR)
        assert cp.stdout.count("\n") == 1, f"the error is not one JSON line: {cp.stdout!r}"
    return cp.returncode, out


def added(conf, netns, **kw):
    code, res = plugin("ADD", conf, netns, **kw)
    assert code == 0, res
    jsonschema.validate(res, cni_schema.success_schema(conf["cniVersion"]))
    assert cni_schema.semantic_errors(res) == []
    return res


def allocations(data):
    """host-local's allocation files (IP address -> container id), all networks."""
    out = {}
    for root, _, files in os.walk(data):
        for f in files:
            if f[0].isdigit() or ":" in f:
                with open(os.path.join(root, f)) as fh:
                    out[f] = fh.read().split()[0]
    return out


def test_version_lists_the_spec_versions():
    code, out = plugin("VERSION", None, raw='{"cniVersion": "1.0.0"}')
    assert code == 0
    jsonschema.validate(out, cni_schema.VERSION)
    assert {"0.4.0", "1.0.0", "1.1.0"} <= set(out["supportedVersions"])


def test_add_check_del_twice_leaves_nothing(cni, netns_targets):
    host, br, data, conf = cni
    t = netns_targets()
    before = tb.snapshot(host, [t])
    res = added(conf(vlan=12, mtu=1400), t.netns_path)
    # The container end: IPAM's address and routes, on the named interface.
    assert tb.addrs_in(t)["eth0"] == ["10.81.0.2/24"]
    assert tb.default_route(t)["gateway"] == "10.81.0.1"
    assert any(r["dst"] == "10.82.0.0/16" and r.get("gateway") == "10.81.0.254" for r in tb.routes_in(t))
    assert tb.links_in(t)["eth0"]["mtu"] == 1400
    host_end = res["interfaces"][0]["name"]
    assert res["interfaces"][1] == {"name": "eth0", "mac": tb.links_in(t)["eth0"]["address"],
                                    "sandbox": t.netns_path}
    assert res["ips"] == [{"address": "10.81.0.2/24", "gateway": "10.81.0.1", "interface": 1}]
    # The host end is a port of the bridge, with its VLAN and ownership recorded.
    port = tb.ovs_row(host, "Port", host_end)
    assert port["tag"] == 12
    assert port["external_ids"]["ovsfab-cni-network"] == "cnitest"
    assert port["external_ids"]["ovsfab-container-id"] == "cni:ctr1"
    assert tb.link_kind(host.links()[host_end]) == "veth"
    assert allocations(data) == {"10.81.0.2": "ctr1"}

    code, out = plugin("CHECK", conf(vlan=12, mtu=1400, prevResult=res), t.netns_path)
    assert (code, out) == (0, None)

    for _ in range(2):  # DEL is idempotent
        code, out = plugin("DEL", conf(vlan=12, mtu=1400), t.netns_path)
        assert (code, out) == (0, None)
    assert tb.snapshot(host, [t]).diff(before) == []
    assert allocations(data) == {}


def test_check_fails_when_the_address_is_gone(cni, netns_targets):
    host, br, data, conf = cni
    t = netns_targets()
    res = added(conf(), t.netns_path, container_id="ctr2")
    tb.ns_run(t, "ip", "addr", "del", "10.81.0.2/24", "dev", "eth0")  # fresh data dir per test: .2 again
    code, out = plugin("CHECK", conf(prevResult=res), t.netns_path, container_id="ctr2")
    assert code == 1 and out["code"] == 104 and "10.81.0.2/24" in out["msg"]
    code, out = plugin("CHECK", conf(vlan=7, prevResult=res), t.netns_path, container_id="ctr2")
    assert code == 1 and "VLAN" in out["msg"]
    assert plugin("DEL", conf(), t.netns_path, container_id="ctr2")[0] == 0


def test_del_after_the_netns_is_gone(cni, netns_targets):
    host, br, data, conf = cni
    t = netns_targets()
    before_ports = tb.ovs_ports(host)
    res = added(conf(), t.netns_path, container_id="ctr3")
    host_end = res["interfaces"][0]["name"]
    tb.delete_netns(t.name)  # the container is gone, and its veth with it
    code, out = plugin("DEL", conf(), t.netns_path, container_id="ctr3")
    assert (code, out) == (0, None)
    assert plugin("DEL", conf(), "", container_id="ctr3")[0] == 0  # no CNI_NETNS at all: also fine
    assert tb.ovs_ports(host) == before_ports
    assert host_end not in host.links()
    assert allocations(data) == {}


def test_chained_after_another_plugin_keeps_prev_result(cni, netns_targets):
    host, br, data, conf = cni
    t = netns_targets()
    prev = {"cniVersion": "0.4.0", "interfaces": [{"name": "other0", "mac": "02:00:00:00:00:01",
                                                   "sandbox": t.netns_path}],
            "ips": [{"version": "4", "address": "192.0.2.5/24", "interface": 0}], "dns": {"nameservers": ["192.0.2.53"]}}
    res = added(conf(prevResult=prev), t.netns_path, container_id="ctr4")
    assert res["interfaces"][0]["name"] == "other0" and res["interfaces"][2]["name"] == "eth0"
    assert res["ips"][0] == {"address": "192.0.2.5/24", "interface": 0}  # converted to 1.0.0: no version
    assert res["ips"][1]["interface"] == 2
    assert res["dns"] == {"nameservers": ["192.0.2.53"]}
    assert plugin("DEL", conf(), t.netns_path, container_id="ctr4")[0] == 0


def test_old_versions_get_old_results(cni, netns_targets):
    host, br, data, conf = cni
    t = netns_targets()
    res = added(conf(version="0.3.1"), t.netns_path, container_id="ctr5")
    assert res["ips"][0]["version"] == "4" and res["cniVersion"] == "0.3.1"
    assert plugin("DEL", conf(version="0.3.1"), t.netns_path, container_id="ctr5")[0] == 0


def test_trunk_and_ofport_request_as_in_ovs_cni(cni, netns_targets):
    host, br, data, conf = cni
    t = netns_targets()
    res = added(conf(ipam=None, trunk=[{"id": 42}, {"minID": 100, "maxID": 102}], ofport_request=77),
                t.netns_path, container_id="ctr6")
    host_end = res["interfaces"][0]["name"]
    assert tb.ovs_row(host, "Port", host_end)["trunks"] == [42, 100, 101, 102]
    assert tb.ovs_row(host, "Interface", host_end)["ofport"] == 77
    assert res["ips"] == [] and tb.addrs_in(t)["eth0"] == []  # no IPAM: L2 only
    assert plugin("DEL", conf(ipam=None), t.netns_path, container_id="ctr6")[0] == 0
    assert host_end not in tb.ovs_ports(host)


BAD = [
    ("not json", {}, {}, 6),
    (None, {"cniVersion": "9.9.9"}, {}, 1),
    (None, {"bridge": None}, {}, 7),
    (None, {"vlan": "12"}, {}, 7),
    (None, {"vlan": 5000}, {}, 7),
    (None, {"mtu": 20}, {}, 7),
    (None, {"trunk": [{"id": 1}], "vlan": 3}, {}, 7),
    (None, {"network": "ls1"}, {}, 7),
    (None, {"network": "ls1", "bridge": None}, {}, 103),
    (None, {"ipam": {"type": "no-such-ipam"}}, {}, 7),
    (None, {}, {"CNI_CONTAINERID": None}, 4),
    (None, {}, {"CNI_COMMAND": "FROB"}, 4),
    (None, {"cniVersion": "0.3.1"}, {"CNI_COMMAND": "CHECK"}, 1),
]


@pytest.mark.parametrize("raw,change,env,code", BAD, ids=[
    "bad-json", "version", "no-bridge", "vlan-text", "vlan-range", "mtu-range", "vlan-and-trunk",
    "ovn-network-and-a-bridge", "ovn-network-not-joined", "unknown-ipam", "no-container-id", "unknown-command", "check-on-0.3.1"])
def test_bad_config_gives_the_spec_code_and_changes_nothing(cni, netns_targets, raw, change, env, code):
    host, br, data, conf = cni
    t = netns_targets()
    before = tb.snapshot(host, [t])
    got, out = plugin(env.get("CNI_COMMAND", "ADD"), conf(**change), t.netns_path, container_id="bad1",
                      extra_env={k: v for k, v in env.items() if k != "CNI_COMMAND"} or None, raw=raw)
    assert got == 1 and out["code"] == code, out
    assert tb.snapshot(host, [t]).diff(before) == []
    assert allocations(data) == {}


def test_a_failed_add_leaves_nothing_not_even_the_address(cni, netns_targets):
    host, br, data, conf = cni
    t = netns_targets()
    before = tb.snapshot(host, [t])
    code, out = plugin("ADD", conf(), t.netns_path, container_id="ctr7",
                       extra_env={"OVSFAB_INJECT_FAULT": "extras"})
    assert code == 1 and "extras" in out["msg"]
    assert tb.snapshot(host, [t]).diff(before) == []
    assert allocations(data) == {}


def test_gc_and_status(cni, netns_targets):
    host, br, data, conf = cni
    a, b = netns_targets(), netns_targets()
    ra = added(conf(version="1.1.0"), a.netns_path, container_id="keep")
    rb = added(conf(version="1.1.0"), b.netns_path, container_id="stale")
    code, out = plugin("GC", conf(version="1.1.0", **{"cni.dev/valid-attachments": [
        {"containerID": "keep", "ifname": "eth0"}]}), "", container_id=None, ifname=None)
    assert (code, out) == (0, None)
    ports = tb.ovs_ports(host)
    assert ra["interfaces"][0]["name"] in ports and rb["interfaces"][0]["name"] not in ports
    assert "eth0" not in tb.links_in(b)
    assert plugin("STATUS", conf(version="1.1.0"), container_id=None, ifname=None) == (0, None)
    code, out = plugin("STATUS", conf(version="1.1.0", ovsdb="unix:/nonexistent/db.sock"), container_id=None,
                       ifname=None)
    assert code == 1 and out["code"] == 50
    assert plugin("DEL", conf(version="1.1.0"), a.netns_path, container_id="keep")[0] == 0
    assert plugin("DEL", conf(version="1.1.0"), b.netns_path, container_id="stale")[0] == 0


def test_add_and_del_are_handed_to_a_running_agent(cni, netns_targets):
    """With an agent on the host's OVS, ADD and DEL go to it (its log says so) and give what
    the plugin gives in-process: the same result shape, the same port, nothing left after DEL."""
    from test_agent import AgentProc

    host, br, data, conf = cni
    agent = AgentProc(host)
    try:
        agent.wait_log("serving attach/detach")
        agent.wait_log("connected to OVSDB")
        t, u = netns_targets(), netns_targets()
        via = added(conf(vlan=13), t.netns_path, container_id="ctr-agent")
        assert " op: cni.request -> exit 0" in agent.text() and "cni ADD ctr-agent" in agent.text(), agent.text()
        local = added(conf(vlan=13), u.netns_path, container_id="ctr-local", extra_env={"OVSFAB_NO_AGENT": "1"})
        assert agent.text().count(" op: cni.request") == 1, "OVSFAB_NO_AGENT=1 still went to the agent"
        assert sorted(via) == sorted(local) and len(via["interfaces"]) == len(local["interfaces"])
        assert tb.ovs_row(host, "Port", via["interfaces"][0]["name"])["tag"] == 13
        code, _ = plugin("DEL", conf(vlan=13), t.netns_path, container_id="ctr-agent")
        assert code == 0 and "cni DEL ctr-agent" in agent.text()
        host_end = via["interfaces"][0]["name"]
        assert host_end not in host.links() and tb.ovs_row(host, "Port", host_end) is None
        assert "eth0" not in tb.links_in(t)
        assert plugin("DEL", conf(vlan=13), u.netns_path, container_id="ctr-local")[0] == 0
        assert "Traceback" not in agent.text()
    finally:
        if agent.proc.poll() is None:
            agent.stop()
