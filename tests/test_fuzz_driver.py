"""Fuzz the Docker driver: generated and mutated JSON bodies to every endpoint of the remote API.

Issue #22, "Requests to the Docker driver".  Every answer must be a JSON
object, and a refusal exactly ``{"Err": "<one line>"}`` that is ovsfab's own
(never "ovsfab internal error", i.e. never an exception the handlers did not
expect); a refused request must leave nothing behind.

* In-process (:class:`~ovsfab.driver.handlers.Driver`): a real host (netns
  with its own ovsdb-server and ovs-vswitchd, br0 made by ovsfab), the
  handler called from a thread inside the host's namespace (as the driver
  runs there), "dockerd's namespace" a netns of the test's; br0 is made with
  ovsfab's owner tag by ovs-vsctl.  A network, an
  endpoint and a pool are made first, so mutations of valid bodies reach the
  operations, not only the parsing.  After each refused request that could
  change the host, OVSDB (ports, the bridge's records) and the links of both
  namespaces must be as before.  At the end, every endpoint and network the
  fuzz made is deleted through the driver, and nothing is left.
* Over the real plugin socket (``ovsfab docker-driver``): raw bytes (JSON or
  not, any path, a Content-Length beyond the limit); the driver must keep
  answering, each answer a JSON object with one line of Err, and its log
  must hold no traceback.

~15 s (the host's set-up included).
"""
from __future__ import annotations

import concurrent.futures
import ctypes
import http.client
import json
import os
import socket
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import testbed as tb
from _crosshost_helpers import wait_for

from ovsfab.driver.handlers import HANDLERS, Driver, WarmBackend
from ovsfab.ops.context import Context

SETTINGS = dict(deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
NET = "ab" * 32
EP = "cd" * 32
SUBNET = "10.97.0.0/24"
GENERIC = "com.docker.network.generic"
CLONE_NEWNET = 0x40000000
#: Calls that may change the host: after a refusal of one, the host must be as before.
MUTATING = ("NetworkDriver.CreateNetwork", "NetworkDriver.DeleteNetwork", "NetworkDriver.CreateEndpoint",
            "NetworkDriver.DeleteEndpoint", "NetworkDriver.Join", "NetworkDriver.Leave")

json_scalar = st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40), st.floats(allow_nan=False),
                        st.text(max_size=20), st.sampled_from(["", "br0", "10.97.0.9/24", NET, EP, "0.0.0.0/0",
                                                               "ovsfab|x", "02:00:00:00:00:01", "a=b"]))
WRONG_TYPES = (None, 0, 7, -1.5, True, "", "x", [], [1], ["x"], [{}], {}, {"a": 1}, {"Pool": 3})
json_value = st.recursive(json_scalar, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)), max_leaves=10)


def valid_bodies(pool_id: str) -> dict:
    """A well-formed body for each method (the fuzz mutates these)."""
    ep = {"NetworkID": NET, "EndpointID": EP}
    return {
        "Plugin.Activate": {},
        "NetworkDriver.GetCapabilities": {},
        "NetworkDriver.CreateNetwork": {"NetworkID": NET, "Options": {GENERIC: {"bridge": "br0"}},
                                        "IPv4Data": [{"Pool": SUBNET}], "IPv6Data": []},
        "NetworkDriver.DeleteNetwork": {"NetworkID": NET},
        "NetworkDriver.CreateEndpoint": {**ep, "Interface": {"Address": "10.97.0.40/24", "AddressIPv6": "",
                                                             "MacAddress": ""}, "Options": {}},
        "NetworkDriver.DeleteEndpoint": dict(ep),
        "NetworkDriver.EndpointOperInfo": dict(ep),
        "NetworkDriver.Join": {**ep, "SandboxKey": "/var/run/docker/netns/x", "Options": {}},
        "NetworkDriver.Leave": dict(ep),
        "NetworkDriver.DiscoverNew": {"DiscoveryType": 1, "DiscoveryData": {}},
        "NetworkDriver.DiscoverDelete": {"DiscoveryType": 1, "DiscoveryData": {}},
        "NetworkDriver.ProgramExternalConnectivity": {**ep, "Options": {}},
        "NetworkDriver.RevokeExternalConnectivity": dict(ep),
        "IpamDriver.GetCapabilities": {},
        "IpamDriver.GetDefaultAddressSpaces": {},
        "IpamDriver.RequestPool": {"AddressSpace": "ovsfab-local", "Pool": SUBNET, "SubPool": "10.97.0.0/25",
                                   "Options": {}, "V6": False},
        "IpamDriver.ReleasePool": {"PoolID": pool_id},
        "IpamDriver.RequestAddress": {"PoolID": pool_id, "Address": "", "Options": {}},
        "IpamDriver.ReleaseAddress": {"PoolID": pool_id, "Address": "10.97.0.40"},
    }


@st.composite
def mutated(draw, base: dict):
    """A valid body with some keys dropped, replaced by any JSON value, or added; nested too."""
    body = json.loads(json.dumps(base))
    for _ in range(draw(st.integers(1, 3))):
        target = body
        # descend into a nested object now and then (Options, Interface, IPv4Data[0] ...)
        for _ in range(draw(st.integers(0, 2))):
            nested = [k for k, v in target.items() if isinstance(v, dict)] if isinstance(target, dict) else []
            nested += [k for k, v in target.items() if isinstance(v, list) and v and isinstance(v[0], dict)] \
                if isinstance(target, dict) else []
            if not nested:
                break
            k = draw(st.sampled_from(sorted(nested)))
            target = target[k] if isinstance(target[k], dict) else target[k][0]
        action = draw(st.sampled_from(["drop", "retype", "retype", "replace", "add"]))
        keys = sorted(target)
        if action == "drop" and keys:
            del target[draw(st.sampled_from(keys))]
        elif action == "retype" and keys:  # the commonest confusion: a value of another JSON type
            target[draw(st.sampled_from(keys))] = json.loads(json.dumps(draw(st.sampled_from(WRONG_TYPES))))
        elif action == "replace" and keys:
            target[draw(st.sampled_from(keys))] = draw(json_value)
        else:
            target[draw(st.text(max_size=10))] = draw(json_value)
    return body


def assert_one_line_answer(method: str, body, answer) -> None:
    assert isinstance(answer, dict), (method, body, answer)
    if "Err" in answer:
        err = answer["Err"]
        assert isinstance(err, str) and err.strip() and "\n" not in err, (method, body, answer)
        assert "internal error" not in err, (method, body, err)
        assert set(answer) == {"Err"}, (method, body, answer)


# ---------------------------------------------------------------- the host
def enter_netns(name: str) -> None:
    """Move the calling thread (for good) into a named netns (os.setns is Python 3.12+)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {name}")
    finally:
        os.close(fd)


class Bench:
    """The fuzz's host, the driver under test and a thread inside the host's namespace."""

    def __init__(self) -> None:
        self.h = tb.OvsHost()
        self.peer = tb.make_netns()  # "dockerd's" namespace: the ovc… ends are born here
        # br0 as ovsfab's commands leave it (the driver refuses a bridge another tool made)
        self.h.vsctl("add-br", "br0", "--", "set", "bridge", "br0", "datapath_type=netdev",
                     "external_ids:ovsfab-owner=ovsfab")
        self.pool = concurrent.futures.ThreadPoolExecutor(1, initializer=enter_netns, initargs=(self.h.name,))
        self.warm = WarmBackend(self.h.db_url)
        ctx = Context(db=self.h.db_url, backend="ovs", warm_backend=self.warm)
        self.driver = Driver(context=lambda: ctx, host_id="fuzz", netns=lambda: self.peer.netns_path)

    def call(self, method: str, body):
        return self.pool.submit(self.driver.handle, method, body).result(timeout=60)

    def state(self) -> tuple:
        ports = sorted((r["name"], json.dumps(r["external_ids"], sort_keys=True))
                       for r in tb.ovs_table(self.h, "Port", ["name", "external_ids"]))
        records = sorted(json.dumps(r["external_ids"], sort_keys=True)
                         for r in tb.ovs_table(self.h, "Bridge", ["external_ids"]))
        return ports, records, sorted(self.h.links()), sorted(tb.links_in(self.peer.name))

    def close(self) -> None:
        self.pool.submit(self.warm.close).result(timeout=30)
        self.pool.shutdown()
        tb.delete_netns(self.peer.name)
        self.h.close()


@pytest.fixture(scope="module")
def bench():
    b = Bench()
    try:
        yield b
    finally:
        b.close()


def test_fuzzed_bodies_to_every_handler_in_process(bench):
    b = bench
    assert b.call("NetworkDriver.CreateNetwork", valid_bodies("")["NetworkDriver.CreateNetwork"]) == {}
    pool = b.call("IpamDriver.RequestPool", valid_bodies("")["IpamDriver.RequestPool"])
    bodies = valid_bodies(pool["PoolID"])
    ep = b.call("NetworkDriver.CreateEndpoint", bodies["NetworkDriver.CreateEndpoint"])
    assert "Err" not in ep, ep
    seen = {"state": b.state(), "calls": 0, "refused": 0}

    @settings(max_examples=600, **SETTINGS)
    @given(data=st.data())
    def run(data):
        method = data.draw(st.sampled_from(sorted(HANDLERS) + ["NetworkDriver.Frobnicate"]))
        base = bodies.get(method, {})
        body = data.draw(st.one_of(mutated(base), json_value) if base else json_value)
        answer = b.call(method, body)
        seen["calls"] += 1
        assert_one_line_answer(method, body, answer)
        if method in MUTATING or method not in HANDLERS:
            now = b.state()
            if "Err" in answer:
                seen["refused"] += 1
                assert now == seen["state"], (method, body, answer)
            seen["state"] = now

    run()
    assert seen["refused"] > 50, seen  # the fuzz reached the refusals, not only the happy paths
    sweep(b)
    print(f"driver fuzz: {seen['calls']} calls, {seen['refused']} refusals checked for residue")


def sweep(b: Bench) -> None:
    """Delete, through the driver, every endpoint and network the accepted requests made; then
    nothing of the driver's may be left (ports, records, veth ends on either side)."""
    from ovsfab.ops.endpoint import docker_endpoints, recorded_networks  # noqa: PLC0415

    def made():
        backend = b.warm(b.h.db_url)
        try:
            return ([(a.external_ids.get("ovsfab-docker-network"), a.external_ids.get("ovsfab-docker-endpoint"))
                     for a in docker_endpoints(backend)], [n.network_id for n in recorded_networks(backend)])
        finally:
            backend.close()

    endpoints, networks = b.pool.submit(made).result(timeout=30)
    for nid, eid in endpoints:
        assert b.call("NetworkDriver.DeleteEndpoint", {"NetworkID": nid, "EndpointID": eid}) == {}
    for nid in networks:
        assert b.call("NetworkDriver.DeleteNetwork", {"NetworkID": nid}) == {}
    ports, records, links, peer_links = b.state()
    assert not [p for p in ports if "ovsfab-docker" in p[1]], ports
    assert not [r for r in records if "ovsfab-docker-net" in r], records
    assert not [n for n in links if n.startswith("ovf")], links
    assert not [n for n in peer_links if n.startswith("ovc")], peer_links


# ---------------------------------------------------------------- the real socket
class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=30)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(self.path)


def test_fuzzed_requests_over_the_plugin_socket(bench):
    h = bench.h
    sock = str(h.rundir / "fuzz-driver.sock")
    log_path = h.rundir / "fuzz-driver.log"
    name = f"ovsfab-fz{tb.RUN_ID}"
    with open(log_path, "a") as log:
        proc = subprocess.Popen(h.ovsfab_cmd("docker-driver", "--name", name, "--socket", sock, "--spec-dir",
                                             str(h.rundir), "--docker-netns", bench.peer.netns_path),
                                stdout=log, stderr=log, env=tb.clean_env(), cwd=str(tb.REPO))
    try:
        assert wait_for(lambda: os.path.exists(sock), 20), log_path.read_text()
        bodies = valid_bodies("10.97.0.0/24|10.97.0.0/25")
        count = {"n": 0}

        @settings(max_examples=80, **SETTINGS)
        @given(data=st.data())
        def run(data):
            method = data.draw(st.sampled_from(sorted(HANDLERS) + ["Nope", "NetworkDriver.", ""]))
            kind = data.draw(st.sampled_from(["mutated", "json", "bytes"]))
            if kind == "mutated" and method in bodies:
                raw = json.dumps(data.draw(mutated(bodies[method]))).encode()
            elif kind == "json":
                raw = json.dumps(data.draw(json_value)).encode()
            else:
                raw = data.draw(st.binary(max_size=64))
            conn = UnixHTTP(sock)
            try:
                conn.request("POST", "/" + method, body=raw,
                             headers={"Content-Type": "application/vnd.docker.plugins.v1.2+json"})
                resp = conn.getresponse()
                answer = json.loads(resp.read())
            finally:
                conn.close()
            count["n"] += 1
            assert resp.status == 200, (method, raw, resp.status, answer)
            assert_one_line_answer(method, raw, answer)

        run()
        # A body larger than the driver reads: refused in one line, and the driver serves on.
        conn = UnixHTTP(sock)
        conn.putrequest("POST", "/NetworkDriver.CreateNetwork")
        conn.putheader("Content-Length", str(100 << 20))
        conn.endheaders()
        resp = conn.getresponse()
        assert resp.status == 413 and json.loads(resp.read()) == {"Err": "request too large"}
        conn.close()
        conn = UnixHTTP(sock)
        conn.request("POST", "/Plugin.Activate", body=b"{}")
        assert json.loads(conn.getresponse().read()) == {"Implements": ["NetworkDriver", "IpamDriver"]}
        conn.close()
        assert proc.poll() is None
        text = log_path.read_text()
        assert "Traceback" not in text and "internal error" not in text, text[-3000:]
        print(f"driver fuzz over the socket: {count['n']} requests")
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert not os.path.exists(sock) and not os.path.exists(h.rundir / f"{name}.spec")
    sweep(bench)  # what the accepted requests made is the driver's to delete, and nothing else is left
