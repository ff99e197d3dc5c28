"""OVN networks (ovsfab ovn, attach --network, lab --mode ovn) on real OVN daemons.

One lab for the module: a central (NB/SB ovsdb-servers + ovn-northd in its
own namespace) and three simulated hosts, each with its private OVS, its own
ovn-controller and a Docker container on the OVN network "lab".  Oracles are
independent of the product: ovn-nbctl/ovn-sbctl/ovs-vsctl on the daemons'
sockets, ip/ping from the host's iputils, TCP data with sha256
(testbed.tcp_transfer).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

import testbed as tb

pytestmark = [pytest.mark.docker, pytest.mark.slow]

try:
    from ovsfab.ops.ovn_control import CENTRAL_STEPS, JOIN_STEPS
    from ovsfab.ops.ovn_network import ATTACH_STEPS, DETACH_STEPS
except Exception:  # noqa: BLE001 - the tests below fail on it, loudly
    CENTRAL_STEPS = JOIN_STEPS = ATTACH_STEPS = DETACH_STEPS = ("<import-failed>",)

HOSTS = ("docker-test1", "docker-test2", "docker-test3")
CENTRAL = "192.168.77.4"
SWITCH_NS = "ovsfab-lab-switch"


def have_ovn() -> bool:
    return all(shutil.which(b) for b in ("ovn-northd", "ovn-controller", "ovn-nbctl"))


def lab(env, *args, timeout=180):
    return subprocess.run([sys.executable, "-m", "ovsfab", "lab", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


def lab_exec(env, host, *args, timeout=60, extra=None):
    e = dict(env, **(extra or {}))
    return subprocess.run([sys.executable, "-m", "ovsfab", "lab", "exec", host, "--", "ovsfab", *args],
                          env=e, capture_output=True, text=True, timeout=timeout)


def as_host(env, host, *args, extra=None, timeout=60):
    """ovsfab as a lab host, like `ovsfab lab exec` but one Python start-up fewer."""
    d = f"{env['OVSFAB_LAB_DIR']}/{host}"
    e = dict(env, OVS_RUNDIR=d, OVN_RUNDIR=d, **(extra or {}))
    return subprocess.run(["ip", "netns", "exec", host, sys.executable, "-m", "ovsfab", *args],
                          env=e, capture_output=True, text=True, timeout=timeout)


class Lab:
    """The running lab: paths and oracles."""

    def __init__(self, env):
        self.env = env
        self.dir = env["OVSFAB_LAB_DIR"]
        self.status = json.loads(lab(env, "status", "--json").stdout)
        self.pids = {h["name"]: int(tb.docker("inspect", "-f", "{{.State.Pid}}", h["container"]).stdout)
                     for h in self.status["hosts"]}
        self.addr = {h["name"]: h["address"].split("/")[0] for h in self.status["hosts"]}

    def ns(self, host):
        return f"/proc/{self.pids[host]}/ns/net"

    def nbctl(self, *args):
        return tb.run(["ovn-nbctl", f"--db=unix:{self.dir}/central/ovnnb_db.sock", "--timeout=10", *args]).stdout

    def sbctl(self, *args):
        return tb.run(["ovn-sbctl", f"--db=unix:{self.dir}/central/ovnsb_db.sock", "--timeout=10", *args]).stdout

    def vsctl(self, host, *args):
        return tb.run(["ovs-vsctl", f"--db=unix:{self.dir}/{host}/db.sock", "--timeout=10", *args]).stdout

    def controller_pid(self, host):
        try:
            return int(open(f"{self.dir}/{host}/ovn-controller.pid").read())
        except (OSError, ValueError):
            return None

    def lsp_names(self):
        return set(self.nbctl("--bare", "--columns=name", "list", "Logical_Switch_Port").split())


@pytest.fixture(scope="module")
def ovn_lab(docker_image):
    """`ovsfab lab up --mode ovn --hosts 3`, shared by the module; always taken down."""
    if not have_ovn():
        pytest.skip("OVN is not installed (scripts/setup.sh installs ovn-central and ovn-host)")
    lab_dir = tempfile.mkdtemp(prefix="ovsfab-ovnlab-")
    os.rmdir(lab_dir)  # the lab creates it (and removes it at down)
    env = tb.clean_env({"OVSFAB_LAB_DIR": lab_dir})
    t0 = time.monotonic()
    cp = lab(env, "up", "--mode", "ovn", "--hosts", "3")
    up_seconds = time.monotonic() - t0
    try:
        assert cp.returncode == 0, cp.stdout + cp.stderr
        the_lab = Lab(env)
        the_lab.up_seconds = up_seconds
        the_lab.up_output = cp.stdout
        yield the_lab
    finally:
        down = lab(env, "down")
        assert down.returncode == 0, down.stderr
        assert not os.path.exists(lab_dir)
        left = tb.run(["pgrep", "-af", lab_dir], check=False).stdout
        assert [l for l in left.splitlines() if "pgrep" not in l] == []


# ---------------------------------------------------------------------------
# (1) three hosts plus a central: ping and TCP between every pair
# ---------------------------------------------------------------------------
def test_ovn_lab_every_pair_ping_and_tcp(ovn_lab):
    st = ovn_lab.status
    assert st["mode"] == "ovn" and len(st["hosts"]) == 3
    assert len(st["ping"]) == 6 and all(v is not None for v in st["ping"].values()), st["ping"]
    assert st["ovn"]["central"]["pids"]["ovn-northd"] and all(st["ovn"]["controllers"].values())
    # The inspect tree of the first host shows br-int with Geneve tunnels (built by ovn-controller).
    assert "br-int" in ovn_lab.up_output and "geneve" in ovn_lab.up_output
    for src in HOSTS:
        for dst in HOSTS:
            if src != dst:
                assert tb.ping(ovn_lab.ns(src), ovn_lab.addr[dst], count=1), (src, dst)
                assert tb.tcp_transfer(ovn_lab.ns(src), ovn_lab.ns(dst), ovn_lab.addr[dst],
                                       nbytes=500_000), (src, dst)
    # Geneve overhead: 1442 on the lab's 1500-byte underlay.
    assert tb.links_in(ovn_lab.ns("docker-test1"))["eth1"]["mtu"] == 1442
    # Oracles: three chassis with their Geneve endpoints; each port bound on its own host.
    encaps = ovn_lab.sbctl("--bare", "--columns=ip", "list", "Encap").split()
    assert sorted(encaps) == ["192.168.77.5", "192.168.77.6", "192.168.77.7"]
    for host in HOSTS:
        ifaces = json.loads(ovn_lab.vsctl(host, "--format=json", "--columns=name,external_ids", "list", "Interface"))
        ids = [dict(row[1][1]) for row in ifaces["data"]]
        iface_ids = [i["iface-id"] for i in ids if "iface-id" in i]
        assert len(iface_ids) == 1 and iface_ids[0].startswith(f"lab.{host}.")
        chassis = ovn_lab.sbctl("--bare", "--columns=chassis", "find", "Port_Binding",
                                f"logical_port={iface_ids[0]}").strip()
        assert ovn_lab.sbctl("--bare", "--columns=name", "list", "Chassis", chassis).strip() == host
        port_sec = ovn_lab.nbctl("lsp-get-port-security", iface_ids[0]).strip()
        assert ovn_lab.addr[host] in port_sec
    # The product's own view agrees.
    cp = lab_exec(ovn_lab.env, "docker-test2", "ovn", "status", "--json")
    assert cp.returncode == 0, cp.stderr
    data = json.loads(cp.stdout)
    assert [c["name"] for c in data["chassis"]] == list(HOSTS)
    assert data["local"]["joined"] and data["local"]["controller_pid"]
    (sw,) = [s for s in data["switches"] if s["name"] == "lab"]
    assert sorted(p["chassis"] for p in sw["ports"]) == list(HOSTS)
    # Test addresses live only in the lab's namespaces.
    assert "192.168.77." not in tb.run(["ip", "-br", "addr"]).stdout
    assert "10.78.0." not in tb.run(["ip", "-br", "addr"]).stdout


def test_ovn_join_is_idempotent(ovn_lab):
    before = ovn_lab.controller_pid("docker-test1")
    cp = as_host(ovn_lab.env, "docker-test1", "ovn", "join", CENTRAL, "--system-id", "docker-test1",
                 "--hostname", "docker-test1", "--json")
    assert cp.returncode == 0, cp.stderr
    out = json.loads(cp.stdout)
    assert out["changed"] is False and out["controller_pid"] == before
    bad = as_host(ovn_lab.env, "docker-test1", "ovn", "join", "192.168.77.6")  # a host: no OVN there
    tb.assert_clean_error(bad, codes=(5,))
    assert "ovn central" in bad.stderr
    assert ovn_lab.vsctl("docker-test1", "get", "Open_vSwitch", ".", "external_ids:ovn-remote").strip() \
        == '"tcp:192.168.77.4:6642"'


# ---------------------------------------------------------------------------
# (2) port security, ovn-controller killed, a host that joins later
# ---------------------------------------------------------------------------
def test_ovn_port_security_drops_a_changed_ip(ovn_lab):
    src = ovn_lab.ns("docker-test1")
    mine = ovn_lab.addr["docker-test1"]
    dst = ovn_lab.addr["docker-test2"]
    assert tb.ping(src, dst, count=1)
    tb.ns_run(src, "ip", "addr", "del", f"{mine}/24", "dev", "eth1")
    tb.ns_run(src, "ip", "addr", "add", "10.78.0.99/24", "dev", "eth1")
    try:
        assert not tb.ping(src, dst, count=2, deadline=2)
        assert not tb.tcp_transfer(src, ovn_lab.ns("docker-test2"), dst, nbytes=100_000, timeout=3)
    finally:
        tb.ns_run(src, "ip", "addr", "del", "10.78.0.99/24", "dev", "eth1", check=False)
        tb.ns_run(src, "ip", "addr", "add", f"{mine}/24", "dev", "eth1")
        tb.ns_run(src, "ip", "neigh", "flush", "dev", "eth1")
    # Its own address works again: port security is what dropped the traffic.
    assert tb.ping(src, dst, count=1)


def test_ovn_controller_killed_dataplane_survives_and_catches_up(ovn_lab, netns_targets):
    env = ovn_lab.env
    pid = ovn_lab.controller_pid("docker-test2")
    os.kill(pid, signal.SIGKILL)
    try:
        # The flows stay in OVS: traffic keeps flowing without the controller.
        assert tb.ping(ovn_lab.ns("docker-test1"), ovn_lab.addr["docker-test2"], count=2)
        assert tb.tcp_transfer(ovn_lab.ns("docker-test2"), ovn_lab.ns("docker-test3"),
                               ovn_lab.addr["docker-test3"], nbytes=1_000_000)
        # A port that appears meanwhile on docker-test3 is unknown to docker-test2 ...
        t = netns_targets()
        cp = as_host(env, "docker-test3", "attach", "--network", "lab", t.target, "10.78.0.77/24")
        assert cp.returncode == 0, cp.stderr
        assert tb.ping(ovn_lab.ns("docker-test1"), "10.78.0.77", count=1)
        assert not tb.ping(ovn_lab.ns("docker-test2"), "10.78.0.77", count=1, deadline=1)
    finally:
        # ... until `ovn join` (idempotent) finds the controller dead and starts it.
        cp = as_host(env, "docker-test2", "ovn", "join", CENTRAL, "--system-id", "docker-test2",
                     "--hostname", "docker-test2", "--json")
    assert cp.returncode == 0, cp.stderr
    assert json.loads(cp.stdout)["started_controller"] is True
    deadline = time.monotonic() + 5
    while not tb.ping(ovn_lab.ns("docker-test2"), "10.78.0.77", count=1, deadline=1):
        assert time.monotonic() < deadline, "docker-test2 did not catch up after ovn-controller restarted"
    cp = as_host(env, "docker-test3", "detach", "--network", "lab", t.target)
    assert cp.returncode == 0, cp.stderr


class OvnHost(tb.OvsHost):
    """An OvsHost whose ovs-vswitchd has OVS_RUNDIR set: ovn-controller finds br-int.mgmt there.

    (tb.OvsHost's vswitchd would put its OpenFlow sockets in the compiled-in
    /var/run/openvswitch, shared by every test host, or nowhere.)
    """

    def _start(self) -> None:
        env = tb.clean_env({"OVS_RUNDIR": str(self.rundir)})
        tb.run(["ip", "netns", "add", self.name])
        tb.run(["ip", "-n", self.name, "link", "set", "lo", "up"])
        r = self.rundir
        tb.run(["ovsdb-tool", "create", f"{r}/conf.db", tb.SCHEMA])
        tb.run(["ip", "netns", "exec", self.name, "ovsdb-server", f"{r}/conf.db",
                f"--remote=punix:{self.db_sock}"] + self._daemon_args("ovsdb-server"), env=env)
        self.vsctl("--no-wait", "init")
        tb.run(["ip", "netns", "exec", self.name, "ovs-vswitchd", self.db_url]
               + self._daemon_args("ovs-vswitchd"), env=env)


@pytest.fixture
def late_host(ovn_lab):
    """A fourth host wired onto the lab's switch: testbed OVS, joined by the test itself."""
    host = OvnHost()
    try:
        tb.run(["ip", "-n", SWITCH_NS, "link", "add", "wire9", "type", "veth", "peer", "name", "eth1",
                "netns", host.name])
        tb.run(["ip", "-n", SWITCH_NS, "link", "set", "wire9", "master", "wire", "up"])
        tb.ns_run(SWITCH_NS, "ethtool", "-K", "wire9", "tx", "off")
        tb.disable_tx_offload(host.name, "eth1")
        host.ip("addr", "add", "192.168.77.9/24", "dev", "eth1")
        host.ip("link", "set", "eth1", "up")
        yield host
    finally:
        try:
            pid = int((host.rundir / "ovn-controller.pid").read_text())
            tb._kill_and_wait(pid)  # noqa: SLF001
        except (OSError, ValueError):
            pass
        host.close()


def test_ovn_late_join_reaches_everyone_within_a_second(ovn_lab, late_host, netns_targets):
    h = late_host
    h.ovsfab("uplink", "add", "br-ul", "eth1", check=True)
    # Every step of join undone on failure: no settings, no ovn-controller left.
    for step in JOIN_STEPS:
        cp = h.ovsfab("ovn", "join", CENTRAL, "--system-id", "late", env={"OVSFAB_INJECT_FAULT": step})
        tb.assert_clean_error(cp)
        assert "ovn-remote" not in h.vsctl("get", "Open_vSwitch", ".", "external_ids").stdout, step
        assert not (h.rundir / "ovn-controller.pid").exists() or \
            not tb._pid_alive(int((h.rundir / "ovn-controller.pid").read_text())), step  # noqa: SLF001
    cp = h.ovsfab("ovn", "join", CENTRAL, "--system-id", "late", "--json", check=True)
    joined = json.loads(cp.stdout)
    assert joined["started_controller"] and joined["settings"]["ovn-encap-ip"] == "192.168.77.9"
    ids = h.vsctl("get", "Open_vSwitch", ".", "external_ids").stdout
    for key in ("system-id=late", "ovn-encap-type=geneve", 'ovn-remote="tcp:192.168.77.4:6642"',
                "ovn-bridge-datapath-type=netdev"):
        assert key in ids, ids
    t = netns_targets()
    t0 = time.monotonic()
    cp = h.ovsfab("attach", "--network", "lab", t.target, "10.78.0.90/24", "--json", check=True)
    attached = time.monotonic()
    assert json.loads(cp.stdout)["bound"] is True
    # From the end of attach: the first reply from every other host within a second.
    for host in HOSTS:
        first = None
        while time.monotonic() - attached < 1.0:
            if tb.ns_run(t, "ping", "-c1", "-W0.2", ovn_lab.addr[host], check=False).returncode == 0:
                first = time.monotonic() - attached
                break
        assert first is not None, f"the late host did not reach {host} within 1 s of attach"
    print(f"late join: attach took {attached - t0:.2f} s; all reached {time.monotonic() - attached:.2f} s later")
    assert tb.tcp_transfer(t, ovn_lab.ns("docker-test1"), ovn_lab.addr["docker-test1"], nbytes=1_000_000)
    # Detach removes the logical port, the OVS port and the veth; the others are untouched.
    lsps = ovn_lab.lsp_names()
    cp = h.ovsfab("detach", "--network", "lab", t.target, check=True)
    assert len(ovn_lab.lsp_names()) == len(lsps) - 1
    assert "eth1" not in tb.links_in(t)
    assert not [p for p in tb.ovs_ports(h) if p.startswith("ovf")]
    again = h.ovsfab("detach", "--network", "lab", t.target)
    tb.assert_clean_error(again, codes=(3,))
    assert tb.ping(ovn_lab.ns("docker-test1"), ovn_lab.addr["docker-test3"], count=1)


# ---------------------------------------------------------------------------
# (3) routers from the fabric file
# ---------------------------------------------------------------------------
ROUTED_FABRIC = """\
name: routed
hosts:
  docker-test1: {underlay: 192.168.77.5}
  docker-test3: {underlay: 192.168.77.7}
networks:
  red:  {mode: ovn, subnet: 10.80.1.0/24, gateway: 10.80.1.1}
  blue: {mode: ovn, subnet: 10.80.2.0/24, gateway: 10.80.2.1}
routers:
  r1: {networks: [red, blue]}
"""


def test_ovn_router_between_two_networks_across_hosts(ovn_lab, netns_targets, tmp_path):
    path = tmp_path / "fabric.yaml"
    path.write_text(ROUTED_FABRIC)
    dry = as_host(ovn_lab.env, "docker-test1", "ovn", "apply", str(path), "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert "+ router r1" in json.loads(dry.stdout)["changes"]
    assert "r1" not in ovn_lab.nbctl("lr-list")
    cp = as_host(ovn_lab.env, "docker-test1", "ovn", "apply", str(path), "--json")
    assert cp.returncode == 0, cp.stderr
    assert json.loads(cp.stdout)["changed"] is True
    again = as_host(ovn_lab.env, "docker-test1", "ovn", "apply", str(path), "--json")
    assert json.loads(again.stdout)["changed"] is False
    assert sorted(ovn_lab.nbctl("--bare", "--columns=networks", "list", "Logical_Router_Port").split()) == \
        ["10.80.1.1/24", "10.80.2.1/24"]
    red, blue = netns_targets(), netns_targets()
    for host, t, addr in (("docker-test1", red, "10.80.1.10/24@10.80.1.1"),
                          ("docker-test3", blue, "10.80.2.10/24@10.80.2.1")):
        cp = as_host(ovn_lab.env, host, "attach", "--network", addr.startswith("10.80.1") and "red" or "blue",
                     t.target, addr)
        assert cp.returncode == 0, cp.stderr
    assert tb.ping(red, "10.80.2.10", count=2)
    assert tb.tcp_transfer(red, blue, "10.80.2.10", nbytes=1_000_000)
    assert tb.tcp_transfer(blue, red, "10.80.1.10", nbytes=1_000_000)
    # The lab's own network is not routed: no way from red to it.
    assert not tb.ping(red, ovn_lab.addr["docker-test2"], count=1, deadline=1)


# ---------------------------------------------------------------------------
# ovsfab apply with mode: ovn networks (each host applies its part)
# ---------------------------------------------------------------------------
def _ovn_fabric(targets, drop_last=False):
    rows = [f"  - {{container: '{t.target}', network: green, host: docker-test{i + 1}, address: 10.81.0.{i + 10}}}"
            for i, t in enumerate(targets)]
    if drop_last:
        rows = rows[:-1]
    return ("name: ovnfab\nhosts:\n"
            + "".join(f"  docker-test{i}: {{underlay: 192.168.77.{i + 4}}}\n" for i in (1, 2, 3))
            + "networks:\n  green: {mode: ovn, subnet: 10.81.0.0/24}\nattachments:\n" + "\n".join(rows) + "\n")


def _fabric_ports(lab):
    """Logical ports tagged with the test fabric (NB oracle), by name."""
    out = json.loads(lab.nbctl("--format=json", "--columns=name,external_ids", "list", "Logical_Switch_Port"))
    names = []
    for name, ids in out["data"]:
        if dict(ids[1]).get("ovsfab-fabric") == "ovnfab":
            names.append(name)
    return sorted(names)


def test_ovn_apply_fabric_across_hosts_then_prune(ovn_lab, netns_targets, tmp_path):
    """apply on three hosts: logical ports, iface-id, Geneve MTU, TCP everywhere; re-apply no-op; prune."""
    ts = [netns_targets() for _ in range(3)]
    path = tmp_path / "fabric.yaml"
    path.write_text(_ovn_fabric(ts))
    dry = as_host(ovn_lab.env, "docker-test1", "apply", str(path), "--host", "docker-test1", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    lines = [c["line"] for c in json.loads(dry.stdout)["changes"]]
    assert lines[0].startswith("+ network green 10.81.0.0/24") and "→ ovn:green" in lines[1], lines
    assert "green" not in ovn_lab.nbctl("ls-list")
    for i in (1, 2, 3):
        cp = as_host(ovn_lab.env, f"docker-test{i}", "apply", str(path), "--host", f"docker-test{i}", "--json")
        assert cp.returncode == 0, cp.stderr
        att = json.loads(cp.stdout)["attachments"][0]
        assert att["mtu"] == 1442 and att["mac"] == f"0a:58:0a:51:00:{i + 9:02x}", att
    ports = _fabric_ports(ovn_lab)
    assert len(ports) == 3 and all(p.startswith("green.") for p in ports), ports
    # The Interface names its logical port: the oracle is OVS itself.
    ids = ovn_lab.vsctl("docker-test2", "--bare", "--columns=external_ids", "find", "Interface",
                        f"external_ids:iface-id={ports[1]}")
    ids += ovn_lab.vsctl("docker-test1", "--bare", "--columns=external_ids", "find", "Interface",
                         f"external_ids:iface-id={ports[1]}")
    assert "ovsfab-fabric=ovnfab" in ids
    deadline = time.monotonic() + 5
    while not tb.ping(ts[0], "10.81.0.12", count=1, deadline=1):
        assert time.monotonic() < deadline, "the applied ports were not bound"
    for a, b in ((0, 1), (1, 2), (2, 0)):
        assert tb.tcp_transfer(ts[a], ts[b], f"10.81.0.{b + 10}", nbytes=500_000), (a, b)
    again = as_host(ovn_lab.env, "docker-test2", "apply", str(path), "--host", "docker-test2", "--json")
    assert json.loads(again.stdout)["changes"] == []
    # Drop the third host's attachment: without --prune it is kept, with it the port goes.
    path.write_text(_ovn_fabric(ts, drop_last=True))
    kept = as_host(ovn_lab.env, "docker-test3", "apply", str(path), "--host", "docker-test3", "--json")
    assert kept.returncode == 0 and json.loads(kept.stdout)["changes"] == [], kept.stderr
    cp = as_host(ovn_lab.env, "docker-test3", "apply", str(path), "--host", "docker-test3", "--prune", "--json")
    assert cp.returncode == 0, cp.stderr
    assert [(c["op"], c["kind"]) for c in json.loads(cp.stdout)["changes"]] == [("-", "attach")]
    assert len(_fabric_ports(ovn_lab)) == 2 and "eth1" not in tb.links_in(ts[2])
    assert tb.tcp_transfer(ts[0], ts[1], "10.81.0.11", nbytes=200_000)


def test_ovn_apply_faults_leave_nothing_and_unjoined_host_is_refused(ovn_lab, netns_targets, ovs_host, tmp_path):
    """A fault after each step of apply: no logical port, OVS port or veth is left; unjoined: refused."""
    from ovsfab.ops.apply import APPLY_STEPS

    t = netns_targets()
    path = tmp_path / "fabric.yaml"
    path.write_text(_ovn_fabric([t]).replace("address: 10.81.0.10", "address: 10.81.0.99"))
    before = ovn_lab.lsp_names()
    for step in ("prepare", "ovn-ports", "commit", "announce"):
        assert step in APPLY_STEPS
        cp = as_host(ovn_lab.env, "docker-test1", "apply", str(path), "--host", "docker-test1",
                     extra={"OVSFAB_INJECT_FAULT": step})
        tb.assert_clean_error(cp)
        assert ovn_lab.lsp_names() == before, step
        assert "eth1" not in tb.links_in(t), step
        assert t.name not in ovn_lab.vsctl("docker-test1", "--columns=external_ids", "list", "Port"), step
    cp = ovs_host.ovsfab("apply", path, "--host", "docker-test1")
    tb.assert_clean_error(cp, codes=(3,))
    assert "ovsfab ovn join" in cp.stderr and "eth1" not in tb.links_in(t)


# ---------------------------------------------------------------------------
# Failure paths: every step of attach / detach --network undone
# ---------------------------------------------------------------------------
def test_ovn_attach_faults_leave_nothing(ovn_lab, netns_targets):
    """OVSFAB_INJECT_FAULT after each step of attach --network: no logical port, OVS port or veth left."""
    assert ATTACH_STEPS[0] != "<import-failed>"
    t = netns_targets()
    before = ovn_lab.lsp_names()
    for step in ATTACH_STEPS:
        cp = as_host(ovn_lab.env, "docker-test1", "attach", "--network", "lab", t.target, "10.78.0.55/24",
                     extra={"OVSFAB_INJECT_FAULT": step})
        tb.assert_clean_error(cp)
        assert ovn_lab.lsp_names() == before, step
        assert "eth1" not in tb.links_in(t), step
        assert t.name not in ovn_lab.vsctl("docker-test1", "--columns=external_ids", "list", "Port"), step


def test_ovn_attach_refuses_a_taken_address_and_unjoined_host(ovn_lab, netns_targets, ovs_host):
    t = netns_targets()
    taken = ovn_lab.addr["docker-test2"]
    cp = as_host(ovn_lab.env, "docker-test1", "attach", "--network", "lab", t.target, f"{taken}/24")
    tb.assert_clean_error(cp, codes=(4,))
    assert "already used" in cp.stderr and "eth1" not in tb.links_in(t)
    cp = ovs_host.ovsfab("attach", "--network", "lab", t.target, "10.78.0.56/24")
    tb.assert_clean_error(cp, codes=(3,))
    assert "ovsfab ovn join" in cp.stderr


def test_ovn_detach_faults_keep_the_attachment(ovn_lab, netns_targets):
    """A failed detach --network leaves the attachment whole and working; then a plain one works."""
    assert DETACH_STEPS[0] != "<import-failed>"
    t = netns_targets()
    cp = as_host(ovn_lab.env, "docker-test1", "attach", "--network", "lab", t.target, "10.78.0.57/24")
    assert cp.returncode == 0, cp.stderr
    before = ovn_lab.lsp_names()
    for step in DETACH_STEPS:
        cp = as_host(ovn_lab.env, "docker-test1", "detach", "--network", "lab", t.target,
                     extra={"OVSFAB_INJECT_FAULT": step})
        tb.assert_clean_error(cp)
        assert ovn_lab.lsp_names() == before, step
    assert tb.ping(t, ovn_lab.addr["docker-test2"], count=1)
    # A plain detach would leave the logical port behind: refused, naming the right command.
    cp = as_host(ovn_lab.env, "docker-test1", "detach", "br-int", t.target)
    tb.assert_clean_error(cp, codes=(4,))
    assert f"ovsfab detach --network lab {t.target}" in cp.stderr
    assert ovn_lab.lsp_names() == before and "eth1" in tb.links_in(t)
    cp = as_host(ovn_lab.env, "docker-test1", "detach", "--network", "lab", t.target)
    assert cp.returncode == 0, cp.stderr
    assert len(ovn_lab.lsp_names()) == len(before) - 1 and "eth1" not in tb.links_in(t)


# ---------------------------------------------------------------------------
# (4) reconcile restores the binding after a container restart
# ---------------------------------------------------------------------------
def test_ovn_reconcile_restores_binding_after_restart(ovn_lab):
    name = "ovsfab-lab-docker-test2"
    tb.docker("restart", "-t", "0", name)
    ovn_lab.pids["docker-test2"] = int(tb.docker("inspect", "-f", "{{.State.Pid}}", name).stdout)
    assert "eth1" not in tb.links_in(ovn_lab.ns("docker-test2"))
    cp = as_host(ovn_lab.env, "docker-test2", "reconcile", "--json")
    assert cp.returncode == 0, cp.stderr
    eth1 = tb.links_in(ovn_lab.ns("docker-test2"))["eth1"]
    # Same MAC (port security) and MTU; the Interface carries the iface-id again: OVN binds it.
    assert eth1["address"] == "0a:58:0a:4e:00:14" and eth1["mtu"] == 1442
    deadline = time.monotonic() + 3
    while not tb.ping(ovn_lab.ns("docker-test1"), ovn_lab.addr["docker-test2"], count=1, deadline=1):
        assert time.monotonic() < deadline, "the restored port was not bound again"
    assert tb.tcp_transfer(ovn_lab.ns("docker-test2"), ovn_lab.ns("docker-test3"), ovn_lab.addr["docker-test3"],
                           nbytes=500_000)


# ---------------------------------------------------------------------------
# ovn central: every step undone on failure; a second call adopts
# ---------------------------------------------------------------------------
def test_ovn_central_faults_then_start_then_adopt(netns_targets):
    if not have_ovn():
        pytest.skip("OVN is not installed")
    ns = netns_targets()
    rundir = tempfile.mkdtemp(prefix="ovsfab-ovnc-")
    env = tb.clean_env({"OVN_RUNDIR": rundir})

    def central(*extra, fault=None):
        e = dict(env, **({"OVSFAB_INJECT_FAULT": fault} if fault else {}))
        return tb.run(tb.ns_prefix(ns.name) + [sys.executable, "-m", "ovsfab", "ovn", "central",
                                               "--address", "127.0.0.1", *extra], check=False, env=e)

    def running():
        out = tb.run(["pgrep", "-af", rundir], check=False).stdout
        return [l for l in out.splitlines() if "pgrep" not in l]

    try:
        for step in CENTRAL_STEPS:
            cp = central(fault=step)
            tb.assert_clean_error(cp)
            assert running() == [], step
            assert not [f for f in os.listdir(rundir) if f.endswith(".db")], step
        cp = central("--json")
        assert cp.returncode == 0, cp.stderr
        first = json.loads(cp.stdout)
        assert sorted(first["started"]) == ["ovn-northd", "ovnnb_db", "ovnsb_db"]
        assert len(running()) == 3
        cp = central("--json")
        assert cp.returncode == 0, cp.stderr
        second = json.loads(cp.stdout)
        assert second["changed"] is False and second["started"] == []
        nb = tb.ns_run(ns.name, "ovn-nbctl", f"--db={first['nb']}", "--timeout=5", "get-connection").stdout
        assert nb.split() == ["ptcp:6641:127.0.0.1"]
    finally:
        for name in ("ovn-northd", "ovnsb_db", "ovnnb_db"):
            try:
                tb._kill_and_wait(int(open(os.path.join(rundir, f"{name}.pid")).read()))  # noqa: SLF001
            except (OSError, ValueError):
                pass
        shutil.rmtree(rundir, ignore_errors=True)
