"""Error paths: exit codes, one-line stderr, no traceback, nothing changed."""
import subprocess

import pytest

import testbed as tb


@pytest.fixture(scope="module")
def victim(module_containers):
    return module_containers()


def _attach(host, *args, **kw):
    return host.ovsfab("attach", *args, **kw)


BAD_ATTACH = [
    # (id, args after "attach"), {c} = a real running container
    ("malformed-addr", ["br0", "{c}", "10.1.0/24"]),
    ("addr-no-prefix-garbage", ["br0", "{c}", "10.1.0.300/24"]),
    ("addr-words", ["br0", "{c}", "hello"]),
    ("prefix-33", ["br0", "{c}", "10.1.0.5/33"]),
    ("prefix-v6-129", ["br0", "{c}", "2001:db8::5/129"]),
    ("gw-outside-subnet", ["br0", "{c}", "10.1.0.5/24@10.2.0.1"]),
    ("gw-malformed", ["br0", "{c}", "10.1.0.5/24@nope"]),
    ("gw-family-mismatch", ["br0", "{c}", "10.1.0.5/24@2001:db8::1"]),
    ("vlan-4096", ["br0", "{c}", "10.1.0.5/24", "--vlan", "4096"]),
    ("vlan-minus-1", ["br0", "{c}", "10.1.0.5/24", "--vlan=-1"]),
    ("vlan-text", ["br0", "{c}", "10.1.0.5/24", "--vlan", "ten"]),
    ("mac-multicast", ["br0", "{c}", "10.1.0.5/24", "--mac", "01:00:5e:00:00:01"]),
    ("mac-broadcast", ["br0", "{c}", "10.1.0.5/24", "--mac", "ff:ff:ff:ff:ff:ff"]),
    ("mac-zero", ["br0", "{c}", "10.1.0.5/24", "--mac", "00:00:00:00:00:00"]),
    ("mac-malformed", ["br0", "{c}", "10.1.0.5/24", "--mac", "02:00:00:00:05"]),
    ("mtu-67", ["br0", "{c}", "10.1.0.5/24", "--mtu", "67"]),
    ("mtu-65536", ["br0", "{c}", "10.1.0.5/24", "--mtu", "65536"]),
    ("ifname-16", ["br0", "{c}", "10.1.0.5/24", "--ifname", "a" * 16]),
    ("ifname-slash", ["br0", "{c}", "10.1.0.5/24", "--ifname", "eth/1"]),
    ("ifname-space", ["br0", "{c}", "10.1.0.5/24", "--ifname", "eth 1"]),
    ("ifname-colon", ["br0", "{c}", "10.1.0.5/24", "--ifname", "eth:1"]),
    ("ifname-empty", ["br0", "{c}", "10.1.0.5/24", "--ifname", ""]),
    ("bridge-16", ["b" * 16, "{c}", "10.1.0.5/24"]),
    ("bridge-slash", ["br/0", "{c}", "10.1.0.5/24"]),
    ("bridge-space", ["br 0", "{c}", "10.1.0.5/24"]),
    ("bridge-colon", ["br:0", "{c}", "10.1.0.5/24"]),
    ("bridge-empty", ["", "{c}", "10.1.0.5/24"]),
    ("no-address", ["br0", "{c}"]),
    ("datapath-bogus", ["br0", "{c}", "10.1.0.5/24", "--datapath", "bogus"]),
    ("pid-negative", ["br0", "pid:-1", "10.1.0.5/24"]),
    ("pid-text", ["br0", "pid:abc", "10.1.0.5/24"]),
    ("netns-empty", ["br0", "netns:", "10.1.0.5/24"]),
]


@pytest.mark.docker
@pytest.mark.parametrize("args", [a for _, a in BAD_ATTACH], ids=[i for i, _ in BAD_ATTACH])
def test_bad_input_rejected_with_2_before_any_change(shared_host, victim, args):
    before = tb.snapshot(shared_host, [victim])
    cp = _attach(shared_host, *[a.format(c=victim.name) for a in args])
    assert cp.returncode == 2, f"exit {cp.returncode}: {cp.stderr!r}"
    tb.assert_no_traceback(cp)
    assert cp.stderr.strip(), "no error message"
    tb.assert_no_residue(shared_host, before, [victim])


@pytest.mark.parametrize("target", ["netns:../x", "netns:a/b", "netns:.."])
def test_netns_path_traversal_rejected(shared_host, target):
    """A netns name is a name in /run/netns, never a path."""
    before = tb.snapshot(shared_host)
    cp = _attach(shared_host, "br0", target, "10.1.0.5/24")
    tb.assert_clean_error(cp, {2, 3})
    tb.assert_no_residue(shared_host, before)


@pytest.mark.parametrize("args", [
    ["detach", "b" * 16, "x"],
    ["detach", "br0", "x", "--ifname", "a" * 16],
    ["detach", "br0", "x", "--ifname", "e/1"],
    ["attach"],
    ["detach"],
    ["frobnicate"],
    ["attach", "br0", "x", "10.1.0.5/24", "--no-such-option"],
], ids=["bridge-16", "ifname-16", "ifname-slash", "attach-noargs", "detach-noargs",
        "unknown-cmd", "unknown-opt"])
def test_bad_usage_exits_2(shared_host, args):
    before = tb.snapshot(shared_host)
    cp = shared_host.ovsfab(*args)
    assert cp.returncode == 2, f"exit {cp.returncode}: {cp.stderr!r}"
    tb.assert_no_traceback(cp)
    tb.assert_no_residue(shared_host, before)


@pytest.mark.docker
def test_unknown_container_exits_3(shared_host, docker_image):
    before = tb.snapshot(shared_host)
    cp = _attach(shared_host, "br0", "ovsfab-no-such-container-xyz", "10.1.0.5/24")
    tb.assert_clean_error(cp, {3})
    tb.assert_no_residue(shared_host, before)
    cp = shared_host.ovsfab("detach", "br0", "ovsfab-no-such-container-xyz")
    tb.assert_clean_error(cp, {3})
    cp = shared_host.ovsfab("detach", "br0", "ovsfab-no-such-container-xyz", "--if-exists")
    assert cp.returncode == 0, cp.stderr


@pytest.mark.docker
def test_detach_not_attached_exits_3(shared_host, victim):
    cp = shared_host.ovsfab("detach", "br0", victim.name)
    tb.assert_clean_error(cp, {3})


@pytest.mark.docker
def test_ovsdb_unreachable_exits_5(shared_host, victim):
    # global options go before the command
    cp = shared_host.ovsfab("--db", "unix:/nonexistent.sock", "attach", "br0", victim.name, "10.1.0.5/24")
    tb.assert_clean_error(cp, {5})
    assert "eth1" not in tb.links_in(victim)
    cp = shared_host.ovsfab("--db", "unix:/nonexistent.sock", "detach", "br0", victim.name)
    tb.assert_clean_error(cp, {5})
    cp = shared_host.ovsfab("attach", "br0", victim.name, "10.1.0.5/24",
                            env={"OVSFAB_DB": "unix:/nonexistent.sock"})
    tb.assert_clean_error(cp, {5})
    assert "eth1" not in tb.links_in(victim)


def test_db_resolution_order(shared_host, netns_targets):
    """--db beats OVSFAB_DB beats OVS_RUNDIR."""
    t = netns_targets()
    good = shared_host.db_url
    cp = shared_host.ovsfab("--db", good, "attach", "brdb", t.target, "10.4.0.1/24",
                            env={"OVSFAB_DB": "unix:/nonexistent.sock"})
    assert cp.returncode == 0, cp.stderr
    cp = shared_host.ovsfab("detach", "brdb", t.target,
                            env={"OVSFAB_DB": good})
    assert cp.returncode == 0, cp.stderr
    shared_host.vsctl("--if-exists", "del-br", "brdb")


def test_dockerd_unreachable_exits_5(shared_host):
    cp = _attach(shared_host, "br0", "somecontainer", "10.1.0.5/24",
                 env={"DOCKER_HOST": "unix:///nonexistent-docker.sock"})
    tb.assert_clean_error(cp, {5})


@pytest.mark.docker
def test_stopped_container_clear_error(shared_host, module_containers):
    c = module_containers()
    tb.docker("stop", "-t", "0", c.name)
    before = tb.snapshot(shared_host)
    cp = _attach(shared_host, "br0", c.name, "10.1.0.5/24")
    tb.assert_clean_error(cp, {3, 4, 6})
    msg = cp.stderr.lower()
    assert c.name in cp.stderr, msg
    assert any(w in msg for w in ("running", "stopped", "exited", "start")), msg
    tb.assert_no_residue(shared_host, before)


def test_not_root_exits_7(shared_host, netns_targets):
    """As nobody if the interpreter is reachable for nobody, else as root with
    every capability dropped (bounding set empty).  Either way: exit 7."""
    t = netns_targets()
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    probe = subprocess.run(nobody + [tb.PYTHON, "-c", "import ovsfab"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        prefix = ["setpriv", "--bounding-set=-all", "--inh-caps=-all"]
    else:
        prefix = nobody
    before = tb.snapshot(shared_host, [t])
    cp = subprocess.run(prefix + [tb.PYTHON, "-m", "ovsfab", "--db", shared_host.db_url,
                                  "attach", "brnr", t.target, "10.1.0.5/24"],
                        capture_output=True, text=True, timeout=60, env=tb.clean_env())
    tb.assert_clean_error(cp, {7})
    tb.assert_no_residue(shared_host, before, [t])


def test_version_and_help(shared_host):
    cp = shared_host.ovsfab("--version")
    assert cp.returncode == 0 and cp.stdout.strip(), cp.stderr
    cp = shared_host.ovsfab("--help")
    assert cp.returncode == 0 and "attach" in cp.stdout and "detach" in cp.stdout


@pytest.mark.docker
def test_debug_shows_details(shared_host):
    cp = shared_host.ovsfab("--debug", "--db", "unix:/nonexistent.sock", "attach", "br0",
                            "ovsfab-no-such-container-xyz", "10.1.0.5/24")
    assert cp.returncode in (3, 5)
