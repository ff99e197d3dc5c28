"""``ovsfab inspect`` and ``ovsfab show`` against real wiring.

One simulated host carries every kind of port the commands must tell apart:
a container attached by ovsfab, one attached by ``ovs-docker`` (the Debian
package's script, used here as a set-up tool only), a namespace plugged by
hand into a Linux bridge, a foreign veth, uplinks and tunnels made with
``ovs-vsctl``.  Facts are checked against independent oracles (``ip -j``,
``ovs-vsctl``) and the JSON against the schema documented in docs/json.md.
"""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

import testbed as tb

DOCS = Path(__file__).resolve().parent.parent / "docs" / "json.md"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


# ---------------------------------------------------------------- schema
def _schemas() -> dict:
    """{name: schema} from the ``<!-- schema: NAME -->`` blocks of docs/json.md."""
    text = DOCS.read_text()
    found = re.findall(r"<!-- schema: (\w+) -->\s*```json\n(.*?)\n```", text, re.S)
    assert {n for n, _ in found} == {"inspect", "show"}, "docs/json.md lost a schema block"
    return {n: json.loads(body) for n, body in found}


def _validator(name: str):
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource

    schemas = _schemas()
    registry = Registry().with_resources(
        [(s["$id"], Resource.from_contents(s)) for s in schemas.values()])
    Draft202012Validator.check_schema(schemas[name])
    return Draft202012Validator(schemas[name], registry=registry)


def validate(name: str, doc: dict) -> dict:
    errors = sorted(_validator(name).iter_errors(doc), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:5])
    return doc


def cli_json(host, *args, schema):
    cp = host.ovsfab(*args, "--json", check=True)
    tb.assert_no_traceback(cp)
    return validate(schema, json.loads(cp.stdout))


# ---------------------------------------------------------------- helpers
def ports_by_name(doc: dict, bridge: str) -> dict:
    [br] = [b for b in doc["bridges"] if b["name"] == bridge]
    return {p["name"]: p for p in br["ports"]}


def iface(doc: dict, name: str) -> dict:
    [i] = [i for i in doc["interfaces"] if i["name"] == name]
    return i


def vsctl_get(host, table, record, column) -> str:
    return host.vsctl("get", table, record, column).stdout.strip().strip('"')


def ovs_docker_port(host, container) -> str:
    """The host end ovs-docker made for container/eth1 (its own lookup)."""
    return host.vsctl("--data=bare", "--no-heading", "--columns=name", "find", "interface",
                      f"external_ids:container_id={container.name}",
                      "external_ids:container_iface=eth1").stdout.strip()


def veth_into_host(host, ns, host_end: str, addr: str) -> None:
    """A veth from ``ns`` (eth1, addressed) to ``host_end`` in the simulated host."""
    tb.ns_run(ns, "ip", "link", "add", "eth1", "type", "veth", "peer", "name", host_end,
              "netns", host.name)
    tb.ns_run(ns, "ip", "addr", "add", addr, "dev", "eth1")
    tb.ns_run(ns, "ip", "link", "set", "eth1", "up")
    host.ip("link", "set", host_end, "up")


@pytest.fixture(scope="module")
def bed(shared_host, module_containers):
    """The host with every kind of port (built once for the module)."""
    h = shared_host
    made_ns = []
    try:
        c1, c2 = module_containers(), module_containers()
        # 1. attached by ovsfab (creates br0, netdev)
        h.ovsfab("attach", "br0", c1.name, "10.61.0.10/24", "--vlan", "100", check=True)
        # 2. attached by ovs-docker, run inside the simulated host against its OVSDB
        tb.run(["ip", "netns", "exec", h.name, "env", f"OVS_RUNDIR={h.rundir}", "ovs-docker",
                "add-port", "br0", "eth1", c2.name, "--ipaddress=10.61.0.20/24"])
        # 3. a namespace plugged by hand into a Linux bridge with a VXLAN member
        n3 = tb.make_netns()
        made_ns.append(n3.name)
        h.ip("link", "add", "lbr0", "type", "bridge")
        h.ip("link", "set", "lbr0", "up")
        veth_into_host(h, n3, "hv3", "10.62.0.3/24")
        h.ip("link", "set", "hv3", "master", "lbr0")
        h.ip("link", "add", "lvx0", "type", "vxlan", "id", "42", "remote", "192.0.2.9", "dstport", "4789")
        h.ip("link", "set", "lvx0", "master", "lbr0")
        # 4. a foreign veth plugged into br0 by hand
        n4 = tb.make_netns()
        made_ns.append(n4.name)
        veth_into_host(h, n4, "hv4", "10.61.0.40/24")
        h.vsctl("add-port", "br0", "hv4")
        # 5. uplinks: an untagged veth whose peer stays on the host, an internal port tagged uplink
        h.ip("link", "add", "upa", "type", "veth", "peer", "name", "upb")
        h.vsctl("add-port", "br0", "upa")
        h.vsctl("add-port", "br0", "up2", "--", "set", "interface", "up2", "type=internal",
                "--", "set", "port", "up2", "external_ids:ovsfab-owner=ovsfab",
                "external_ids:ovsfab-role=uplink")
        # 6. tunnels: an untagged vxlan, a geneve tagged as ovsfab's tunnel
        h.vsctl("add-port", "br0", "vx0", "--", "set", "interface", "vx0", "type=vxlan",
                "options:remote_ip=192.0.2.6", "options:key=5001")
        h.vsctl("add-port", "br0", "gnv0", "--", "set", "interface", "gnv0", "type=geneve",
                "options:remote_ip=192.0.2.7", "options:key=7",
                "--", "set", "port", "gnv0", "external_ids:ovsfab-owner=ovsfab",
                "external_ids:ovsfab-role=tunnel")
        yield {"host": h, "c1": c1, "c2": c2, "n3": n3, "n4": n4}
    finally:
        for name in made_ns:
            tb.delete_netns(name)


pytestmark = pytest.mark.docker


# ---------------------------------------------------------------- inspect
def test_inspect_ovsfab_attachment(bed):
    h, c1 = bed["host"], bed["c1"]
    doc = cli_json(h, "inspect", c1.name, schema="inspect")
    c = doc["container"]
    assert (c["name"], c["id"], c["short_id"], c["pid"], c["state"], c["kind"]) == \
        (c1.name, c1.id, c1.id[:12], c1.pid, "running", "docker")
    assert [i["name"] for i in doc["interfaces"]] == ["eth1"]  # loopback left out
    eth1 = iface(doc, "eth1")
    inner = tb.links_in(c1)["eth1"]
    assert eth1["ifindex"] == inner["ifindex"] and eth1["mac"] == inner["address"]
    assert eth1["mtu"] == inner["mtu"] and eth1["state"] == "up"
    assert eth1["addresses"] == tb.addrs_in(c1)["eth1"] == ["10.61.0.10/24"]
    # the host peer, by the oracles: the ovsfab-tagged port, and ip's link record
    port = tb.ovs_port_for(h, container_name=c1.name)
    hlink = h.links()[port["name"]]
    peer = eth1["peer"]
    assert (peer["name"], peer["ifindex"], peer["in_host_namespace"]) == (port["name"], hlink["ifindex"], True)
    br = peer["bridge"]
    assert (br["name"], br["kind"], br["datapath"], br["ovsfab_owned"]) == ("br0", "ovs", "netdev", True)
    assert br["port"]["class"] == "attachment"
    assert br["port"]["ofport"] == int(vsctl_get(h, "interface", port["name"], "ofport"))
    assert br["port"]["vlan"] == 100
    assert br["port"]["owner"]["container_id"] == c1.id
    assert sorted(u["name"] for u in br["uplinks"]) == ["up2", "upa"]
    tunnels = {t["name"]: t["tunnel"] for t in br["tunnels"]}
    assert tunnels["vx0"]["type"] == "vxlan" and tunnels["vx0"]["remote_ip"] == "192.0.2.6"
    assert tunnels["vx0"]["key"] == "5001"
    assert tunnels["gnv0"]["type"] == "geneve" and tunnels["gnv0"]["key"] == "7"
    assert doc["ovs"]["status"] == "ok"


def test_inspect_tree_for_people(bed):
    h, c1 = bed["host"], bed["c1"]
    cp = h.ovsfab("inspect", c1.name, check=True)
    out = cp.stdout
    assert not ANSI.search(out), "colour on a pipe"
    port = tb.ovs_port_for(h, container_name=c1.name)["name"]
    lines = out.splitlines()
    assert lines[0] == f"{c1.name} ({c1.id[:12]}, pid {c1.pid}, running)"
    assert lines[1].startswith("└── eth1  10.61.0.10/24")
    assert re.match(rf"^    └── {port} \(ifindex \d+\) ─ br0 \(ovs netdev, ovsfab\) ofport \d+ vlan 100$", lines[2])
    assert "uplink upa" in out and "uplink up2" in out
    assert "tunnel vxlan→192.0.2.6 key 5001" in out and "tunnel geneve→192.0.2.7 key 7" in out


def test_inspect_ovs_docker_port(bed):
    h, c2 = bed["host"], bed["c2"]
    doc = cli_json(h, "inspect", c2.name, schema="inspect")
    peer = iface(doc, "eth1")["peer"]
    assert peer["name"] == ovs_docker_port(h, c2)
    assert peer["ifindex"] == h.links()[peer["name"]]["ifindex"]
    port = peer["bridge"]["port"]
    assert port["class"] == "ovs-docker" and port["owner"]["tool"] == "ovs-docker"
    assert port["ofport"] == int(vsctl_get(h, "interface", peer["name"], "ofport"))
    assert iface(doc, "eth1")["addresses"] == ["10.61.0.20/24"]


def test_inspect_hand_plugged_linux_bridge(bed):
    h, n3 = bed["host"], bed["n3"]
    doc = cli_json(h, "inspect", n3.target, schema="inspect")
    assert doc["container"]["kind"] == "netns" and doc["container"]["target"] == n3.target
    peer = iface(doc, "eth1")["peer"]
    hlinks = h.links()
    assert (peer["name"], peer["ifindex"]) == ("hv3", hlinks["hv3"]["ifindex"])
    br = peer["bridge"]
    assert (br["name"], br["kind"], br["datapath"]) == (hlinks["hv3"]["master"], "linux", None)
    assert br["port"]["class"] == "foreign" and br["port"]["ofport"] is None
    [vx] = br["tunnels"]
    assert vx["name"] == "lvx0"
    assert vx["tunnel"] == {"type": "vxlan", "remote_ip": "192.0.2.9", "local_ip": None, "key": "42",
                            "dst_port": "4789", "bfd": None}  # kernel tunnel devices have no BFD
    # a Linux bridge never needs OVSDB
    assert doc["ovs"]["status"] == "not-needed"
    out = h.ovsfab("inspect", n3.target, check=True).stdout
    assert "hv3 (ifindex" in out and "─ lbr0 (linux bridge)" in out and "tunnel vxlan→192.0.2.9 key 42" in out


def test_inspect_docker_eth0_on_docker0(docker_image):
    """Docker's own eth0 on docker0, inspected from the root namespace (no OVS there)."""
    name = tb.unique("d")
    tb.docker("run", "-d", "--name", name, docker_image, "sleep", "1000000")
    try:
        pid = int(tb.docker("inspect", "-f", "{{.State.Pid}}", name).stdout.strip())
        cp = subprocess.run([tb.PYTHON, "-m", "ovsfab", "inspect", name, "--json"], capture_output=True,
                            text=True, timeout=60, env=tb.clean_env(), cwd=str(tb.REPO))
        assert cp.returncode == 0, cp.stderr
        doc = validate("inspect", json.loads(cp.stdout))
        eth0 = iface(doc, "eth0")
        inner = tb.links_in(f"/proc/{pid}/ns/net")["eth0"]
        assert eth0["ifindex"] == inner["ifindex"]
        assert eth0["docker_network"] == "bridge"
        peer = eth0["peer"]
        root_links = {rec["ifindex"]: rec for rec in json.loads(tb.run(["ip", "-j", "link"]).stdout)}
        hrec = root_links[peer["ifindex"]]
        assert peer["name"] == hrec["ifname"] and peer["in_host_namespace"]
        assert peer["bridge"]["name"] == hrec["master"] and peer["bridge"]["kind"] == "linux"
        assert doc["ovs"]["status"] == "not-needed"
    finally:
        tb.remove_containers([name])


# ---------------------------------------------------------------- show
def test_show_classifies_every_port(bed):
    h, c1, c2 = bed["host"], bed["c1"], bed["c2"]
    doc = cli_json(h, "show", schema="show")
    assert doc["ovs"]["status"] == "ok" and doc["docker"]["status"] == "ok"
    assert [(b["name"], b["kind"]) for b in doc["bridges"]] == [("br0", "ovs"), ("lbr0", "linux")]
    ports = ports_by_name(doc, "br0")
    assert sorted(ports) == tb.ovs_ports(h)
    mine = tb.ovs_port_for(h, container_name=c1.name)["name"]
    theirs = ovs_docker_port(h, c2)
    classes = {n: p["class"] for n, p in ports.items()}
    assert classes == {mine: "attachment", theirs: "ovs-docker", "hv4": "foreign", "upa": "uplink",
                       "up2": "uplink", "vx0": "tunnel", "gnv0": "tunnel", "br0": "internal"}
    assert ports[mine]["owner"] == {"tool": "ovsfab", "container": c1.name, "container_id": c1.id,
                                    "ifname": "eth1", "target": c1.id}
    assert ports[mine]["vlan"] == 100
    # ovs-docker records what it was given (the name); show resolves it through Docker
    assert ports[theirs]["owner"]["container"] == c2.name and ports[theirs]["owner"]["container_id"] == c2.id
    assert ports["vx0"]["tunnel"]["remote_ip"] == "192.0.2.6" and ports["vx0"]["tunnel"]["key"] == "5001"
    assert not any(p["stale"] for p in ports.values())
    for name, p in ports.items():
        assert p["ofport"] == int(vsctl_get(h, "interface", name, "ofport")), name
    lports = ports_by_name(doc, "lbr0")
    assert {n: p["class"] for n, p in lports.items()} == {"hv3": "foreign", "lvx0": "tunnel"}

    cp = h.ovsfab("show", "br0", check=True)
    out = cp.stdout
    assert out.splitlines()[0] == "br0 (ovs netdev, ovsfab)"
    assert not ANSI.search(out) and "lbr0" not in out
    assert re.search(rf"{mine}  ofport \d+  vlan 100  {c1.name} eth1$", out, re.M)
    assert re.search(rf"{theirs}  ofport \d+  {c2.name} eth1 \(ovs-docker\)$", out, re.M)
    assert re.search(r"hv4  ofport \d+  foreign$", out, re.M)
    assert re.search(r"vx0  ofport \d+  tunnel vxlan→192.0.2.6 key 5001", out, re.M)


def test_show_unknown_bridge_and_inspect_unknown_container(bed):
    h = bed["host"]
    tb.assert_clean_error(h.ovsfab("show", "nosuchbr"), codes=(3,))
    tb.assert_clean_error(h.ovsfab("inspect", "ovsfab-no-such-container"), codes=(3,))
    tb.assert_clean_error(h.ovsfab("inspect", "netns:ovsfab-no-such-ns"), codes=(3,))


def test_ovsdb_unreachable(bed):
    h, c1 = bed["host"], bed["c1"]
    bad = "unix:/nonexistent/db.sock"
    cp = h.ovsfab("--db", bad, "inspect", c1.name, "--json", check=True)
    doc = validate("inspect", json.loads(cp.stdout))
    assert doc["ovs"]["status"] == "unavailable" and "nonexistent" in doc["ovs"]["error"]
    peer = iface(doc, "eth1")["peer"]
    assert peer["name"] == tb.ovs_port_for(h, container_name=c1.name)["name"] and peer["bridge"] is None
    cp = h.ovsfab("--db", bad, "inspect", c1.name, check=True)
    assert "bridge unknown (OVS unavailable)" in cp.stdout and "ovsfab: note: OVS facts unavailable" in cp.stderr
    tb.assert_clean_error(h.ovsfab("--db", bad, "show"), codes=(5,))


def _run_on_tty(host, *args, no_color: bool) -> str:
    """Run the CLI with stdout on a pseudo-terminal; returns what it printed."""
    env = {k: v for k, v in tb.clean_env().items() if k != "NO_COLOR"}
    if no_color:
        env["NO_COLOR"] = "1"
    code, out, err = tb.run_on_tty(host.ovsfab_cmd(*args), env)
    assert code == 0, err
    return out


def test_colour_only_on_a_tty(bed):
    h = bed["host"]
    coloured = _run_on_tty(h, "show", "br0", no_color=False)
    assert ANSI.search(coloured), coloured
    plain = _run_on_tty(h, "show", "br0", no_color=True)
    assert not ANSI.search(plain) and "br0 (ovs netdev, ovsfab)" in plain


# ---------------------------------------------------------------- stale (last: removes containers)
def test_stale_after_docker_rm(bed):
    h, c1, c2 = bed["host"], bed["c1"], bed["c2"]
    mine = tb.ovs_port_for(h, container_name=c1.name)["name"]
    theirs = ovs_docker_port(h, c2)
    tb.remove_containers([c1.name, c2.name])
    doc = cli_json(h, "show", schema="show")
    ports = ports_by_name(doc, "br0")
    assert ports[mine]["stale"] and "container-gone" in ports[mine]["stale_reasons"]
    assert ports[theirs]["stale"] and "container-gone" in ports[theirs]["stale_reasons"]
    assert not any(ports[n]["stale"] for n in ("hv4", "upa", "up2", "vx0", "gnv0"))
    out = h.ovsfab("show", check=True).stdout
    assert re.search(rf"{mine} .*{c1.name} eth1  STALE \(.*container gone.*\)$", out, re.M), out
