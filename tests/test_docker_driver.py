"""`ovsfab docker-driver`: ovsfab as a Docker network + IPAM plugin, driven by the real dockerd.

Two simulated hosts (netns + private OVS each), wired and joined by an uplink
on br-ul and a VXLAN mesh on br0 (key 5001), as tests/test_tunnel.py does.
Each host runs its own driver (`ovsfab docker-driver`) inside its netns under
its own plugin name, which one dockerd finds through a spec file in
/etc/docker/plugins.  The veth end Docker moves (SrcName) is created in
dockerd's namespace (the root one), its peer in the simulated host's.  Each
host's Docker network gets its own --ip-range of the shared subnet.

Oracles: `docker`, `ip`, `ovs-vsctl` and real traffic (ping, a 4 MB TCP
transfer with checksums).  Never `docker rm -f` in parallel (moby#46661).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

import testbed as tb
from _crosshost_helpers import wait_for, wire

from ovsfab.driver.handlers import Driver, Reservations
from ovsfab.errors import InvalidInput
from ovsfab.ops.context import Context
from ovsfab.ops.endpoint import NetworkSpec, peer_ifname, port_ifname
from ovsfab.ops.endpoint_ipam import host_range

U1, U2 = "192.168.79.5", "192.168.79.6"
SUBNET = "10.79.0.0/24"
RANGES = ("10.79.0.0/25", "10.79.0.128/25")
SPEC_DIR = "/etc/docker/plugins"
#: dockerd runs in the namespace of this test process (the root one): the ovc… ends live there.
DOCKERD_NS = f"/proc/{os.getpid()}/ns/net"


# ---------------------------------------------------------------- pure logic
def test_options_are_validated_before_anything_changes():
    nid = "ab" * 32
    spec = NetworkSpec.parse(nid, ["bridge=br0", "vlan=100", "mode=vxlan", "key=5001",
                                   "com.docker.network.driver.mtu=1400"], [SUBNET])
    assert (spec.bridge, spec.vlan, spec.mode, spec.key, spec.mtu) == ("br0", 100, "vxlan", 5001, 1400)
    assert NetworkSpec.from_record(nid, "br0", spec.to_record()) == spec
    ovn = NetworkSpec.parse(nid, ["network=blue"], [SUBNET])
    assert (ovn.bridge, ovn.network) == ("br-int", "blue") and NetworkSpec.from_record(nid, "br-int",
                                                                                       ovn.to_record()) == ovn
    for opts, subnets, words in (
            (["bridge=br0", "colour=red"], [SUBNET], "unknown option -o colour"),
            (["vlan=5"], [SUBNET], "no bridge given"),
            (["bridge=br0", "network=blue"], [SUBNET], "an OVN network rides br-int"),
            (["network=blue", "vlan=5"], [SUBNET], "-o vlan does not go with -o network="),
            (["bridge=br0", "mode=vxlan"], [SUBNET], "needs -o key"),
            (["bridge=br0", "key=7"], [SUBNET], "needs -o mode"),
            (["bridge=br0", "mode=ipip", "key=7"], [SUBNET], "mode 'ipip' is unknown"),
            (["bridge=br0", "mode=vxlan", "key=16777216"], [SUBNET], "not a valid vxlan key"),
            (["bridge=br0", "vlan=5000"], [SUBNET], "outside"),
            (["bridge=br0", "mtu=9", "com.docker.network.driver.mtu=9"], [SUBNET], "outside"),
            (["bridge=br0"], [], "no subnet")):
        with pytest.raises(InvalidInput, match=words):
            NetworkSpec.parse(nid, opts, subnets)


def test_host_ranges_are_deterministic_slices_of_the_subnet():
    import ipaddress

    a, b = host_range("10.1.0.0/16", "host-a"), host_range("10.1.0.0/16", "host-b")
    assert a == host_range("10.1.0.0/16", "host-a")
    assert ipaddress.ip_network(a).prefixlen == 22 and ipaddress.ip_network(a).subnet_of(ipaddress.ip_network("10.1.0.0/16"))
    assert len({host_range("10.1.0.0/16", f"h{i}") for i in range(40)}) > 20  # spread over the 64 slices
    assert a != b or host_range("10.1.0.0/16", "host-c") != a
    assert host_range("10.1.0.0/28", "x") == "10.1.0.0/28"  # too small to cut
    assert len(port_ifname("e" * 64)) == 15 and len(peer_ifname("e" * 64)) == 15
    assert port_ifname("e" * 64) != peer_ifname("e" * 64)


def test_driver_answers_refusals_in_one_line():
    d = Driver(context=lambda: Context(db="unix:/nonexistent/db.sock"), host_id="h")
    assert d.handle("Plugin.Activate", {}) == {"Implements": ["NetworkDriver", "IpamDriver"]}
    assert "does not implement" in d.handle("NetworkDriver.Frobnicate", {})["Err"]
    err = d.handle("NetworkDriver.CreateNetwork", {"NetworkID": "ab" * 32, "Options": {
        "com.docker.network.generic": {"bridge": "br0", "speed": "fast"}}, "IPv4Data": [{"Pool": SUBNET}]})["Err"]
    assert err.startswith("unknown option -o speed;") and "\n" not in err
    assert "needs a subnet" in d.handle("IpamDriver.RequestPool", {"Pool": ""})["Err"]
    pool = d.handle("IpamDriver.RequestPool", {"Pool": SUBNET, "SubPool": RANGES[1]})
    assert pool["Pool"] == SUBNET
    gw = d.handle("IpamDriver.RequestAddress", {"PoolID": pool["PoolID"],
                                                "Options": {"RequestAddressType": "com.docker.network.gateway"}})
    assert gw["Address"] == "10.79.0.1/24"
    # --ipam-opt network=: OVN's pool (northd assigns from the whole subnet), refused with a range or no IPv4
    ovn = d.handle("IpamDriver.RequestPool", {"Pool": SUBNET, "Options": {"network": "blue"}})
    assert ovn == {"PoolID": f"{SUBNET}|ovn:blue", "Pool": SUBNET, "Data": {}}, ovn
    assert "--ip-range does not go with" in d.handle("IpamDriver.RequestPool", {
        "Pool": SUBNET, "SubPool": RANGES[1], "Options": {"network": "blue"}})["Err"]
    assert "needs an IPv4 --subnet" in d.handle("IpamDriver.RequestPool", {
        "Pool": "fd00:1::/64", "Options": {"network": "blue"}})["Err"]
    assert d.handle("IpamDriver.RequestAddress", {"PoolID": ovn["PoolID"], "Options": {
        "RequestAddressType": "com.docker.network.gateway"}})["Address"] == "10.79.0.1/24"
    r = Reservations(ttl=0.05)
    r.add("p", "10.0.0.5")
    assert r.list("p") == ["10.0.0.5"]
    time.sleep(0.1)
    assert r.list("p") == []


# ---------------------------------------------------------------- the real thing
class Fabric:
    """Two hosts joined by VXLAN on br0, a driver on each, and what the tests made (removed in close)."""

    def __init__(self, image: str) -> None:
        self.image = image
        self.hosts = []
        self.drivers = {}
        self.networks = []
        self.containers = []
        self.spec_files = []
        try:
            self.h1, self.h2 = tb.OvsHost(), tb.OvsHost()
            self.hosts = [self.h1, self.h2]
            wire(self.h1, self.h2)
            for h, mine, other in ((self.h1, U1, U2), (self.h2, U2, U1)):
                h.ip("addr", "add", f"{mine}/24", "dev", "eth1")
                h.ovsfab("uplink", "add", "br-ul", "eth1", check=True)
                h.ovsfab("tunnel", "add", "br0", other, "--key", "5001", check=True)
            self.names = {self.h1: f"ovsfab-t{tb.RUN_ID}-1", self.h2: f"ovsfab-t{tb.RUN_ID}-2"}
            for h in self.hosts:
                self.start_driver(h)
        except BaseException:
            self.close()
            raise

    # -- drivers ---------------------------------------------------------
    def start_driver(self, h: tb.OvsHost, fault: str = None, suffix: str = "", docker_netns: str = None) -> str:
        """Start h's driver (another one beside it with ``suffix``, e.g. for a private dockerd whose
        namespace is ``docker_netns``); returns the plugin name."""
        name = self.names[h] + suffix
        sock = str(h.rundir / f"driver{suffix}.sock")
        cmd = h.ovsfab_cmd("docker-driver", "--name", name, "--socket", sock, "--spec-dir", SPEC_DIR,
                           *(("--docker-netns", docker_netns) if docker_netns else ()))
        log = open(h.rundir / "driver.log", "a")
        env = tb.clean_env({"OVSFAB_INJECT_FAULT": fault} if fault else None)
        self.drivers[(h, suffix) if suffix else h] = subprocess.Popen(cmd, stdout=log, stderr=log, env=env,
                                                                       cwd=str(tb.REPO))
        log.close()
        spec = os.path.join(SPEC_DIR, f"{name}.spec")
        self.spec_files.append(spec)
        assert wait_for(lambda: os.path.exists(sock) and os.path.exists(spec), 20), self.driver_log(h)
        return name

    def kill_driver(self, h, sig: int = signal.SIGKILL) -> None:
        proc = self.drivers.pop(h)
        proc.send_signal(sig)
        proc.wait(timeout=20)

    def driver_log(self, h: tb.OvsHost) -> str:
        try:
            return (h.rundir / "driver.log").read_text()
        except OSError:
            return ""

    # -- Docker objects --------------------------------------------------
    def network(self, h: tb.OvsHost, name: str, *opts: str, ip_range: str = None, subnet: str = SUBNET,
                check: bool = True):
        args = ["network", "create", "-d", self.names[h], "--ipam-driver", self.names[h], "--subnet", subnet]
        if ip_range:
            args += ["--ip-range", ip_range]
        self.networks.append(name)
        cp = tb.docker(*args, *opts, name, check=False)
        if check:
            assert cp.returncode == 0, cp.stderr + self.driver_log(h)
        return cp

    def run(self, name: str, *opts: str) -> tb.Container:
        self.containers.append(name)
        cid = tb.docker("run", "-d", "--name", name, *opts, self.image, "sleep", "1000000").stdout.strip()
        c = tb.Container(name=name, id=cid, pid=0)
        c.refresh_pid()
        return c

    def run_api(self, name: str, network: str, ip: str, mac: str) -> tb.Container:
        """``docker run --network --ip --mac-address`` through the Engine API (the docker SDK): the
        CLI here is newer than dockerd 20.10 and refuses --mac-address with --network."""
        import docker  # noqa: PLC0415

        api = docker.APIClient(version="1.41")
        try:
            self.containers.append(name)
            cid = api.create_container(
                self.image, ["sleep", "1000000"], name=name, mac_address=mac,
                host_config=api.create_host_config(network_mode=network),
                networking_config=api.create_networking_config(
                    {network: api.create_endpoint_config(ipv4_address=ip)}))["Id"]
            api.start(cid)
        finally:
            api.close()
        c = tb.Container(name=name, id=cid, pid=0)
        c.refresh_pid()
        return c

    def close(self) -> None:
        tb.remove_containers(self.containers)  # one at a time (moby#46661)
        for n in self.networks:
            tb.docker("network", "rm", n, check=False)
        for h in list(self.drivers):
            self.kill_driver(h, signal.SIGTERM)
        for spec in self.spec_files:
            if os.path.exists(spec):
                os.unlink(spec)
        for h in reversed(self.hosts):
            h.close()


@pytest.fixture(scope="module")
def fabric(docker_image):
    f = Fabric(docker_image)
    try:
        yield f
    finally:
        f.close()


def docker_ports(h: tb.OvsHost) -> list:
    return [r for r in tb.ovs_table(h, "Port", ["name", "external_ids", "tag"])
            if r["external_ids"].get("ovsfab-role") == "docker"]


def network_records(h: tb.OvsHost) -> list:
    return [k for r in tb.ovs_table(h, "Bridge", ["external_ids"]) for k in r["external_ids"]
            if k.startswith("ovsfab-docker-net-")]


def our_links(ns) -> list:
    """Driver-made veth ends (host ends `ovf…` in a host, peers `ovc…` in dockerd's namespace)."""
    return sorted(n for n in tb.links_in(ns) if n.startswith(("ovc", "ovf")))


def container_ifaces(c: tb.Container) -> dict:
    return {n: rec for n, rec in tb.links_in(c).items() if n.startswith("eth")}


def container_ip(c: tb.Container, net: str) -> str:
    out = tb.docker("inspect", "-f", "{{json .NetworkSettings.Networks}}", c.id).stdout
    return json.loads(out)[net]["IPAddress"]


def test_cross_host_ping_tcp_lifecycle_and_no_leak(fabric):
    f, h1, h2 = fabric, fabric.h1, fabric.h2
    root_before = our_links(DOCKERD_NS)
    n1, n2 = tb.unique("dn"), tb.unique("dn")
    f.network(h1, n1, "-o", "bridge=br0", "-o", "mode=vxlan", "-o", "key=5001", ip_range=RANGES[0])
    f.network(h2, n2, "-o", "bridge=br0", "-o", "mode=vxlan", "-o", "key=5001", ip_range=RANGES[1])
    assert len(network_records(h1)) == 1 and len(network_records(h2)) == 1

    c1 = f.run(tb.unique("dc"), "--network", n1)  # address from the ovsfab IPAM, this host's range
    c2 = f.run_api(tb.unique("dc"), n2, "10.79.0.200", "02:00:00:79:00:c8")
    ip1, ip2 = container_ip(c1, n1), container_ip(c2, n2)
    assert ip1.startswith("10.79.0.") and 2 <= int(ip1.rsplit(".", 1)[1]) < 128, ip1  # h1's range, not the gateway
    assert ip2 == "10.79.0.200"
    eth2 = container_ifaces(c2)["eth0"]
    assert eth2["address"] == "02:00:00:79:00:c8"
    # Tunnel-aware MTU: 1500 underlay - 50 VXLAN.
    assert container_ifaces(c1)["eth0"]["mtu"] == 1450 and eth2["mtu"] == 1450
    # Only the driver's own interfaces: no docker_gwbridge leg, no default route.
    assert sorted(container_ifaces(c1)) == ["eth0"] and tb.default_route(c1) is None

    # The record: a port on br0 per endpoint, owned, tagged for Docker, with the endpoint's identity.
    p1 = docker_ports(h1)
    assert len(p1) == 1 and p1[0]["external_ids"]["ovsfab-addresses"] == f"{ip1}/24"
    ids = p1[0]["external_ids"]
    assert ids["ovsfab-owner"] == "ovsfab" and len(ids["ovsfab-docker-network"]) == 64
    assert ids["ovsfab-docker-sandbox"].startswith("/var/run/docker/netns/")
    assert ids["ovsfab-docker-endpoint"] == tb.docker(
        "inspect", "-f", f"{{{{(index .NetworkSettings.Networks \"{n1}\").EndpointID}}}}", c1.id).stdout.strip()
    # show lists it as an attachment; reconcile leaves it to Docker.
    shown = h1.ovsfab("show", "--json", check=True).stdout
    assert p1[0]["name"] in shown
    rec = json.loads(h1.ovsfab("reconcile", "--json", check=True).stdout)
    assert p1[0]["name"] not in json.dumps(rec)
    assert [p["name"] for p in docker_ports(h1)] == [p1[0]["name"]]

    # Across the hosts: ping and a real TCP transfer (netdev needs the checksum offloads off).
    assert tb.ping(c1, ip2, count=3), f.driver_log(h1)
    assert tb.tcp_transfer(c1, c2, ip2)
    assert tb.tcp_transfer(c2, c1, ip1, port=5202)

    # docker restart: a new endpoint, still connected, nothing left of the old one.
    tb.docker("restart", "-t", "0", c1.name)
    c1.refresh_pid()
    assert [p["name"] for p in docker_ports(h1)] != [p1[0]["name"]] and len(docker_ports(h1)) == 1
    assert tb.ping(c1, ip2, count=2)

    # Several networks per container; connect and disconnect.
    n3 = tb.unique("dn")
    f.network(h1, n3, "-o", "bridge=br0", "-o", "vlan=300", subnet="10.80.0.0/24")
    tb.docker("network", "connect", n3, c1.name)
    assert sorted(container_ifaces(c1)) == ["eth0", "eth1"]
    tags = sorted(str(p["tag"]) for p in docker_ports(h1))
    assert "300" in tags, tags
    tb.docker("network", "disconnect", n3, c1.name)
    assert sorted(container_ifaces(c1)) == ["eth0"] and len(docker_ports(h1)) == 1
    assert tb.ping(c1, ip2, count=2)

    # docker rm -f, then network rm: no veth, port or record remains on either side.
    tb.remove_containers([c1.name, c2.name])
    for n in (n1, n2, n3):
        tb.docker("network", "rm", n)
    for h in (h1, h2):
        assert docker_ports(h) == [] and network_records(h) == []
        assert our_links(h.name) == []
    assert our_links(DOCKERD_NS) == root_before


def test_bad_input_gives_ovsfab_one_line_and_leaves_nothing(fabric):
    f, h1 = fabric, fabric.h1
    h1.vsctl("add-br", "br-other", "--", "set", "bridge", "br-other", "datapath_type=netdev")
    h1.ip("link", "add", "brl-linux", "type", "bridge")  # a Linux bridge: what `auto` would use elsewhere
    good = tb.unique("dn")
    f.network(h1, good, "-o", "bridge=br0", ip_range=RANGES[0])
    cases = (
        (["-o", "bridge=br0", "-o", "colour=red"], "unknown option -o colour"),
        (["-o", "bridge=br-other"], "bridge br-other is not ovsfab's"),
        (["-o", "bridge=br-nope"], "bridge br-nope does not exist on this host"),
        (["-o", "bridge=brl-linux"], "bridge brl-linux is a Linux bridge"),
        (["-o", "bridge=br0", "-o", "mode=vxlan", "-o", "key=77"], "carries no vxlan tunnel with key 77"),
        (["-o", "bridge=br0", "-o", "mtu=1500"], "MTU 1500 does not fit the tunnels of bridge br0"),
        (["-o", "bridge=br0", "-o", "network=blue"], "an OVN network rides br-int, not br0"),
        (["-o", "network=blue"], "this host has not joined an OVN central"),
        (["-o", "bridge=br0"], "overlaps"),  # same subnet as `good`
    )
    try:
        records = network_records(h1)
        for opts, words in cases:
            name = tb.unique("dn")
            cp = f.network(h1, name, *opts, check=False)
            assert cp.returncode != 0, (opts, cp.stdout)
            lines = [ln for ln in cp.stderr.splitlines() if ln.strip()]
            assert len(lines) == 1 and words in lines[0] and "; " in lines[0], (opts, cp.stderr)
            assert "Traceback" not in f.driver_log(h1)
            assert tb.docker("network", "inspect", name, check=False).returncode != 0, name
            assert network_records(h1) == records
        # An --ip another endpoint on the segment holds is refused by ovsfab, nothing left.
        c = f.run(tb.unique("dc"), "--network", good, "--ip", "10.79.0.50")
        ports = docker_ports(h1)
        cp = tb.docker("run", "-d", "--name", tb.unique("dc"), "--network", good, "--ip", "10.79.0.50",
                       f.image, "sleep", "100", check=False)
        assert cp.returncode != 0 and "10.79.0.50" in cp.stderr, cp.stderr
        assert docker_ports(h1) == ports and len(our_links(h1.name)) == 1
        tb.remove_containers([c.name])
    finally:
        h1.vsctl("--if-exists", "del-br", "br-other")
        h1.ip("link", "del", "brl-linux", check=False)
        tb.docker("network", "rm", good, check=False)
    assert network_records(h1) == [] and docker_ports(h1) == []


def test_driver_restart_while_containers_run(fabric):
    f, h1, h2 = fabric, fabric.h1, fabric.h2
    n1, n2 = tb.unique("dn"), tb.unique("dn")
    f.network(h1, n1, "-o", "bridge=br0", ip_range=RANGES[0])
    f.network(h2, n2, "-o", "bridge=br0", ip_range=RANGES[1])
    c1, c2 = f.run(tb.unique("dc"), "--network", n1), f.run(tb.unique("dc"), "--network", n2)
    ip2 = container_ip(c2, n2)
    ports = docker_ports(h1)
    f.kill_driver(h1)  # SIGKILL: nothing flushed, nothing cleaned up
    assert tb.ping(c1, ip2, count=2)  # the data path does not need the driver
    f.start_driver(h1)
    assert docker_ports(h1) == ports  # nothing lost: the state is OVSDB's
    # The restarted driver serves new containers and the old ones' removal from what OVSDB holds.
    c3 = f.run(tb.unique("dc"), "--network", n1)
    ip3 = container_ip(c3, n1)
    assert ip3 != container_ip(c1, n1)
    assert tb.ping(c3, ip2, count=2)
    tb.remove_containers([c1.name, c3.name, c2.name])
    for n in (n1, n2):
        tb.docker("network", "rm", n)
    for h in (h1, h2):
        assert docker_ports(h) == [] and network_records(h) == [] and our_links(h.name) == []


def test_a_failure_at_any_step_leaves_nothing(fabric):
    """The fault hook after each step of endpoint.create and network.create: Docker shows the
    error, and every step before it is undone (no port, no veth on either side, no record)."""
    f, h1 = fabric, fabric.h1
    net = tb.unique("dn")
    root_before = our_links(DOCKERD_NS)
    try:
        for step in ("create_veth", "offloads", "plug"):
            f.kill_driver(h1, signal.SIGTERM)
            f.start_driver(h1, fault=step)
            if step == "create_veth":
                f.network(h1, net, "-o", "bridge=br0", ip_range=RANGES[0])
            name = tb.unique("dc")
            f.containers.append(name)
            cp = tb.docker("run", "-d", "--name", name, "--network", net, f.image, "sleep", "100", check=False)
            assert cp.returncode != 0 and f"fault injected after step {step!r}" in cp.stderr, cp.stderr
            assert docker_ports(h1) == [] and our_links(h1.name) == [], step
            assert our_links(DOCKERD_NS) == root_before, step
            tb.remove_containers([name])
        f.kill_driver(h1, signal.SIGTERM)
        f.start_driver(h1, fault="record")
        records = network_records(h1)
        cp = f.network(h1, tb.unique("dn"), "-o", "bridge=br0", subnet="10.81.0.0/24", check=False)
        assert cp.returncode != 0 and "fault injected after step 'record'" in cp.stderr, cp.stderr
        assert network_records(h1) == records
    finally:
        tb.docker("network", "rm", net, check=False)
        f.kill_driver(h1, signal.SIGTERM)
        f.start_driver(h1)
    assert network_records(h1) == [] and docker_ports(h1) == []


# ---------------------------------------------------------------- dockerd restarts (a private dockerd)
def bed_ip(bed, c, net: str) -> str:
    out = bed.docker("inspect", "-f", "{{json .NetworkSettings.Networks}}", c.id).stdout
    return json.loads(out)[net]["IPAddress"]


def joined(bed, c) -> bool:
    """Running again (a new pid after a restart) with its ovsfab interface."""
    if bed.docker("inspect", "-f", "{{.State.Running}}", c.id).stdout.strip() != "true":
        return False
    c.refresh_pid()
    return "eth0" in container_ifaces(c)


def test_dockerd_restart_with_containers_on_ovsfab_networks(fabric, bed):
    """Live-restore off: dockerd's stop takes every endpoint away through the driver; at its start the
    --restart always containers come back and Join again.  Nothing leaked, nothing lost."""
    f, h1, h2 = fabric, fabric.h1, fabric.h2
    # A driver per host for the private dockerd: its veth ends are born in that dockerd's namespace.
    plugins = {h: f.start_driver(h, suffix="-b", docker_netns=bed.netns_path) for h in (h1, h2)}
    root_before = our_links(bed.netns_path)
    nets = {h1: tb.unique("dn"), h2: tb.unique("dn")}
    made = []
    try:
        for h, rng in ((h1, RANGES[0]), (h2, RANGES[1])):
            bed.docker("network", "create", "-d", plugins[h], "--ipam-driver", plugins[h], "--subnet", SUBNET,
                       "--ip-range", rng, "-o", "bridge=br0", "-o", "mode=vxlan", "-o", "key=5001", nets[h])
        c1 = bed.run("--restart", "always", "--network", nets[h1], tb.IMAGE, "sleep", "1000000")
        c2 = bed.run("--restart", "always", "--network", nets[h2], tb.IMAGE, "sleep", "1000000")
        c3 = bed.run("--network", nets[h1], tb.IMAGE, "sleep", "1000000")  # no policy: stays stopped
        made = [c1, c2, c3]
        assert len(docker_ports(h1)) == 2 and len(docker_ports(h2)) == 1
        assert tb.ping(c1, bed_ip(bed, c2, nets[h2]), count=2), f.driver_log(h1)

        t0 = time.monotonic()
        bed.restart()
        for c in (c1, c2):
            assert wait_for(lambda: joined(bed, c), 30), bed.log()[-2000:]
        print(f"dockerd restarted: both containers joined again {time.monotonic() - t0:.1f} s after SIGTERM")
        assert bed.docker("inspect", "-f", "{{.State.Running}}", c3.id).stdout.strip() == "false"
        # Nothing leaked: one port per running container, each veth's host end in its host,
        # no ovc… end left in dockerd's namespace, one record per network.
        for h, c in ((h1, c1), (h2, c2)):
            ports = docker_ports(h)
            assert len(ports) == 1, (ports, f.driver_log(h), bed.log()[-2000:])
            assert our_links(h.name) == [ports[0]["name"]]
            assert ports[0]["external_ids"]["ovsfab-addresses"] == f"{bed_ip(bed, c, nets[h])}/24"
            assert len(network_records(h)) == 1
        assert our_links(bed.netns_path) == root_before
        # Nothing lost: connected again, ping and TCP across the hosts.
        ip1, ip2 = bed_ip(bed, c1, nets[h1]), bed_ip(bed, c2, nets[h2])
        assert container_ifaces(c1)["eth0"]["mtu"] == 1450
        assert tb.ping(c1, ip2, count=3), f.driver_log(h1)
        assert tb.tcp_transfer(c1, c2, ip2) and tb.tcp_transfer(c2, c1, ip1, port=5202)
        # The stopped one starts on its network again.
        bed.docker("start", c3.name)
        c3.refresh_pid()
        assert tb.ping(c3, ip2, count=2) and len(docker_ports(h1)) == 2
        assert "Traceback" not in f.driver_log(h1) + f.driver_log(h2)
    finally:
        bed.remove([c.name for c in made])
        for n in nets.values():
            bed.docker("network", "rm", n, check=False)
        for h in (h1, h2):
            f.kill_driver((h, "-b"), signal.SIGTERM)
    for h in (h1, h2):
        assert docker_ports(h) == [] and network_records(h) == [] and our_links(h.name) == []
    assert our_links(bed.netns_path) == root_before


# ---------------------------------------------------------------- inspect / show / reconcile
@pytest.fixture
def endpoint(fabric):
    """One container on a driver network of h1: (container, network, port, endpoint ID, address)."""
    f, h1 = fabric, fabric.h1
    net = tb.unique("dn")
    f.network(h1, net, "-o", "bridge=br0", "-o", "mode=vxlan", "-o", "key=5001", ip_range=RANGES[0])
    c = f.run(tb.unique("dc"), "--network", net)
    try:
        (port,) = docker_ports(h1)
        eid = tb.docker("inspect", "-f", f"{{{{(index .NetworkSettings.Networks \"{net}\").EndpointID}}}}",
                        c.id).stdout.strip()
        yield c, net, port["name"], eid, container_ip(c, net)
    finally:
        tb.remove_containers([c.name])
        tb.docker("network", "rm", net, check=False)


def shown_port(h: tb.OvsHost, name: str) -> dict:
    show = json.loads(h.ovsfab("show", "--json", check=True).stdout)
    return next(p for b in show["bridges"] if b["name"] == "br0" for p in b["ports"] if p["name"] == name)


def test_inspect_show_list_driver_endpoints_and_reconcile_leaves_them(fabric, endpoint):
    h1 = fabric.h1
    c, net, port, eid, ip = endpoint
    ins = json.loads(h1.ovsfab("inspect", c.name, "--json", check=True).stdout)
    assert ins["container"]["id"] == c.id
    (iface,) = [i for i in ins["interfaces"] if i["name"] == "eth0"]
    assert iface["docker_network"] == net and iface["addresses"] == [f"{ip}/24"] and iface["mtu"] == 1450
    peer = iface["peer"]
    assert peer["name"] == port and peer["bridge"]["name"] == "br0", peer
    assert peer["bridge"]["port"]["class"] == "attachment" and peer["bridge"]["port"]["owner"]["container_id"] == eid
    assert [t["tunnel"]["key"] for t in peer["bridge"]["tunnels"]] == ["5001"]
    text = h1.ovsfab("inspect", c.name, check=True).stdout
    assert port in text and "br0" in text and f"{ip}/24" in text, text
    # show names the container that holds the endpoint (Docker knows it), and does not call it stale
    p = shown_port(h1, port)
    assert p["class"] == "attachment" and p["owner"]["tool"] == "ovsfab" and not p["stale"], p
    assert (p["owner"]["container"], p["owner"]["container_id"]) == (c.name, c.id), p
    assert port in h1.ovsfab("show", check=True).stdout
    # reconcile (for real, and its dry run) leaves it to Docker, whatever show thinks of its container.
    for args in (("reconcile", "--dry-run", "--json"), ("reconcile", "--json")):
        out = h1.ovsfab(*args, check=True).stdout
        assert port not in out and eid not in out, out
    assert [x["name"] for x in docker_ports(h1)] == [port] and port in our_links(h1.name)
    assert container_ifaces(c)["eth0"]["mtu"] == 1450


# ---------------------------------------------------------------- -o network= (OVN)
@pytest.fixture(scope="module")
def ovn_lab(docker_image):
    """`ovsfab lab up --mode ovn --hosts 2`: a central and two hosts joined to it (ovn-controller each)."""
    import shutil  # noqa: PLC0415
    import sys  # noqa: PLC0415
    import tempfile  # noqa: PLC0415

    if not all(shutil.which(b) for b in ("ovn-northd", "ovn-controller", "ovn-nbctl")):
        pytest.skip("OVN is not installed (scripts/setup.sh installs ovn-central and ovn-host)")
    lab_dir = tempfile.mkdtemp(prefix="ovsfab-dovn-")
    os.rmdir(lab_dir)  # the lab creates it (and removes it at down)
    env = tb.clean_env({"OVSFAB_LAB_DIR": lab_dir})
    lab = [sys.executable, "-m", "ovsfab", "lab"]
    cp = subprocess.run(lab + ["up", "--mode", "ovn", "--hosts", "2"], env=env, capture_output=True, text=True,
                        timeout=300)
    try:
        assert cp.returncode == 0, cp.stdout + cp.stderr
        yield lab_dir
    finally:
        down = subprocess.run(lab + ["down"], env=env, capture_output=True, text=True, timeout=300)
        assert down.returncode == 0, down.stderr


def start_ovn_drivers(lab_dir: str, hosts, names: dict, stem: str, procs: dict, specs: list) -> None:
    """One driver per OVN lab host (socket and log ``STEM.sock``/``STEM.log`` in its rundir); what is
    started goes into ``procs``/``specs`` at once, so :func:`stop_ovn_drivers` cleans up after a failure."""
    import sys  # noqa: PLC0415

    for h in hosts:
        rundir = f"{lab_dir}/{h}"
        sock = f"{rundir}/{stem}.sock"
        log = open(f"{rundir}/{stem}.log", "a")
        procs[h] = subprocess.Popen(
            ["ip", "netns", "exec", h, "env", f"OVS_RUNDIR={rundir}", f"OVN_RUNDIR={rundir}", sys.executable,
             "-m", "ovsfab", "docker-driver", "--name", names[h], "--socket", sock, "--spec-dir", SPEC_DIR],
            stdout=log, stderr=log, cwd=str(tb.REPO))
        log.close()
        specs.append(os.path.join(SPEC_DIR, f"{names[h]}.spec"))
        assert wait_for(lambda: os.path.exists(sock) and os.path.exists(specs[-1]), 20)


def stop_ovn_drivers(ctrs: list, nets: dict, procs: dict, specs: list) -> None:
    """Containers (one at a time), networks, then the drivers and their spec files."""
    tb.remove_containers(ctrs)
    for n in nets.values():
        tb.docker("network", "rm", n, check=False)
    for p in procs.values():
        p.terminate()
        p.wait(timeout=20)
    for spec in specs:
        if os.path.exists(spec):
            os.unlink(spec)


def run_on(net: str, ctrs: list) -> tb.Container:
    """``docker run -d`` of the test image on ``net`` (its name recorded in ``ctrs`` first, for cleanup)."""
    name = tb.unique("dc")
    ctrs.append(name)
    cid = tb.docker("run", "-d", "--name", name, "--network", net, tb.IMAGE, "sleep", "100000").stdout
    c = tb.Container(name=name, id=cid.strip(), pid=0)
    c.refresh_pid()
    return c


def test_ovn_network_through_the_driver(ovn_lab):
    """-o network=NAME: a logical switch port per endpoint (MAC and the address Docker's IPAM gave),
    the veth on br-int bound by ovn-controller, Geneve's MTU; ping and TCP across the hosts; the
    ports go with the containers and the switch with the last network."""
    lab_dir = ovn_lab
    hosts = ("docker-test1", "docker-test2")
    names = {h: f"ovsfab-t{tb.RUN_ID}-{h[-1]}o" for h in hosts}
    nbdb = f"unix:{lab_dir}/central/ovnnb_db.sock"
    nbctl = lambda *a: tb.run(["ovn-nbctl", f"--db={nbdb}", "--timeout=10", *a]).stdout  # noqa: E731
    switch = f"dn{tb.RUN_ID}"
    procs, nets, ctrs, specs = {}, {}, [], []
    try:
        start_ovn_drivers(lab_dir, hosts, names, "driver", procs, specs)
        # What an OVN network does not take, refused in one line.
        for opts, words in ((["-o", "network=" + switch, "-o", "mode=vxlan", "-o", "key=5"], "does not go with"),
                            (["-o", "network=" + switch, "-o", "bridge=br0"], "rides br-int")):
            cp = tb.docker("network", "create", "-d", names[hosts[0]], "--subnet", "10.96.0.0/24", *opts,
                           tb.unique("dn"), check=False)
            assert cp.returncode != 0 and words in cp.stderr and len(cp.stderr.strip().splitlines()) == 1, cp.stderr
        for h, rng in zip(hosts, ("10.96.0.0/25", "10.96.0.128/25")):
            nets[h] = tb.unique("dn")
            tb.docker("network", "create", "-d", names[h], "--ipam-driver", names[h], "-o", f"network={switch}",
                      "--subnet", "10.96.0.0/24", "--ip-range", rng, nets[h])
        cs = [run_on(nets[h], ctrs) for h in hosts]
        ips = [container_ip(c, nets[h]) for c, h in zip(cs, hosts)]
        assert ips[0].startswith("10.96.0.") and int(ips[1].rsplit(".", 1)[1]) > 128, ips
        macs = [container_ifaces(c)["eth0"]["address"] for c in cs]
        lsps = nbctl("--bare", "--columns=addresses", "find", "Logical_Switch_Port",
                     f"external_ids:ovsfab-network={switch}").split("\n")
        assert sorted(x.strip() for x in lsps if x.strip()) == sorted(f"{m} {ip}" for m, ip in zip(macs, ips)), lsps
        assert container_ifaces(cs[0])["eth0"]["mtu"] == 1442  # Geneve over 1500
        assert tb.ping(cs[0], ips[1], count=3), open(f"{lab_dir}/docker-test1/driver.log").read()[-2000:]
        assert tb.tcp_transfer(cs[0], cs[1], ips[1])
        tb.remove_containers(ctrs)
        assert nbctl("--bare", "--columns=name", "find", "Logical_Switch_Port",
                     f"external_ids:ovsfab-network={switch}").strip() == ""
        for h in hosts:
            tb.docker("network", "rm", nets.pop(h))
        assert switch not in nbctl("ls-list")
        for h in hosts:
            ports = tb.run(["ovs-vsctl", f"--db=unix:{lab_dir}/{h}/db.sock", "list-ports", "br-int"]).stdout.split()
            assert len([p for p in ports if p.startswith("ovf")]) == 1, ports  # the lab's own container only
            ids = tb.run(["ovs-vsctl", f"--db=unix:{lab_dir}/{h}/db.sock", "get", "bridge", "br-int",
                          "external_ids"]).stdout
            assert "ovsfab-docker-net-" not in ids, ids
            assert "Traceback" not in open(f"{lab_dir}/{h}/driver.log").read()
    finally:
        stop_ovn_drivers(ctrs, nets, procs, specs)


def test_ovn_dynamic_addresses_through_the_driver_ipam(ovn_lab):
    """--ipam-opt network=NAME: RequestAddress makes a pending logical port with `dynamic` addresses and
    returns what ovn-northd assigned; CreateEndpoint adopts it (one static MAC IP port, nothing pending);
    a pending port no endpoint took is removed by ReleaseAddress, or (stale) by the next RequestAddress."""
    import sys  # noqa: PLC0415

    lab_dir = ovn_lab
    hosts = ("docker-test1", "docker-test2")
    names = {h: f"ovsfab-t{tb.RUN_ID}-{h[-1]}d" for h in hosts}
    nbdb = f"unix:{lab_dir}/central/ovnnb_db.sock"
    nbctl = lambda *a: tb.run(["ovn-nbctl", f"--db={nbdb}", "--timeout=10", *a]).stdout  # noqa: E731
    switch, subnet = f"dd{tb.RUN_ID}", "10.93.0.0/24"
    procs, nets, ctrs, specs = {}, {}, [], []

    def ports():  # name -> addresses of the switch's ports
        out = nbctl("--format=json", "--columns=name,addresses", "find", "Logical_Switch_Port",
                    f"external_ids:ovsfab-network={switch}")
        return {row[0]: row[1] if isinstance(row[1], str) else " ".join(row[1][1]) for row in json.loads(out)["data"]}

    try:
        start_ovn_drivers(lab_dir, hosts, names, "driver-d", procs, specs)
        for h in hosts:
            nets[h] = tb.unique("dd")
            tb.docker("network", "create", "-d", names[h], "--ipam-driver", names[h], "--ipam-opt",
                      f"network={switch}", "-o", f"network={switch}", "--subnet", subnet, nets[h])
        db1 = f"unix:{lab_dir}/docker-test1/db.sock"
        sid1 = tb.run(["ovs-vsctl", f"--db={db1}", "get", "Open_vSwitch", ".",
                       "external_ids:system-id"]).stdout.strip().strip('"')
        # A pending port of host 1 that no endpoint took (a driver that died after RequestAddress).
        stale = f"{switch}.{sid1}.ipam-stale"
        nbctl("lsp-add", switch, stale, "--", "lsp-set-addresses", stale, "dynamic", "--", "set",
              "Logical_Switch_Port", stale, "external_ids:ovsfab-owner=ovsfab", f"external_ids:ovsfab-network={switch}",
              f"external_ids:ovsfab-chassis={sid1}", "external_ids:ovsfab-ipam-pending=1")
        cs = [run_on(nets[h], ctrs) for h in hosts]
        ips = [container_ip(c, nets[h]) for c, h in zip(cs, hosts)]
        macs = [container_ifaces(c)["eth0"]["address"] for c in cs]
        assert len(set(ips)) == 2 and all(ip.startswith("10.93.0.") and ip != "10.93.0.1" for ip in ips), ips
        now = ports()
        assert stale not in now and not any(".ipam-" in n for n in now), now  # GC'd; both adopted
        assert sorted(now.values()) == sorted(f"{m} {ip}" for m, ip in zip(macs, ips)), now
        assert tb.ping(cs[0], ips[1], count=3), open(f"{lab_dir}/docker-test1/driver-d.log").read()[-2000:]
        assert tb.tcp_transfer(cs[0], cs[1], ips[1], nbytes=500_000)
        # --ip on such a network: a static address, refused when northd gave it to another port
        ctrs.append(tb.unique("dc"))  # docker run leaves a created container behind when start fails
        taken = tb.docker("run", "-d", "--name", ctrs[-1], "--network", nets[hosts[1]], "--ip", ips[0],
                          tb.IMAGE, "sleep", "100000", check=False)
        assert taken.returncode != 0 and f"address {ips[0]} is already used" in taken.stderr, taken.stderr
        name = tb.unique("dc")
        ctrs.append(name)
        tb.docker("run", "-d", "--name", name, "--network", nets[hosts[1]], "--ip", "10.93.0.200", tb.IMAGE,
                  "sleep", "100000")
        assert any(a.endswith(" 10.93.0.200") for a in ports().values()), ports()
        # RequestAddress without an endpoint: a pending port holding northd's address; ReleaseAddress removes it.
        code = ("import json,sys; from ovsfab.driver.handlers import Driver; from ovsfab.ops.context import Context; "
                f"d = Driver(context=lambda: Context(db={db1!r}), host_id='h'); "
                f"pool = '{subnet}|ovn:{switch}'; a = d.handle('IpamDriver.RequestAddress', {{'PoolID': pool}}); "
                "print(json.dumps(a)); sys.stdout.flush(); input(); "
                "print(json.dumps(d.handle('IpamDriver.ReleaseAddress', {'PoolID': pool, 'Address': a['Address']})))")
        env = tb.clean_env({"OVS_RUNDIR": f"{lab_dir}/docker-test1", "OVN_RUNDIR": f"{lab_dir}/docker-test1"})
        p = subprocess.Popen(["ip", "netns", "exec", "docker-test1", sys.executable, "-c", code], env=env,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=str(tb.REPO))
        got = json.loads(p.stdout.readline())
        ip = got["Address"].split("/")[0]
        pending = {n: a for n, a in ports().items() if ".ipam-" in n}
        assert ip not in ips and list(pending.values()) == ["dynamic"], (got, pending)
        assert nbctl("get", "Logical_Switch_Port", next(iter(pending)),
                     "dynamic_addresses").strip().strip('"').split()[-1] == ip, pending
        out, _ = p.communicate("\n", timeout=30)
        assert json.loads(out) == {} and not any(".ipam-" in n for n in ports())
        tb.remove_containers(ctrs)
        assert ports() == {}
        for h in hosts:
            tb.docker("network", "rm", nets.pop(h))
        assert switch not in nbctl("ls-list")
        for h in hosts:
            assert "Traceback" not in open(f"{lab_dir}/{h}/driver-d.log").read()
    finally:
        stop_ovn_drivers(ctrs, nets, procs, specs)
