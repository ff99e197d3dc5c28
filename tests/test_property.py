"""Property-based: random arguments never crash the CLI.

The CLI runs in-process (typer CliRunner on ``ovsfab.cli.main:app``) inside a
long-lived, sandboxed worker process (see cli_worker.py): one Python start
instead of one per example.  Exit codes must be documented ones and no
traceback may appear.
"""
import json
import os
import select
import subprocess

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st  # noqa: I001

import testbed as tb

ALLOWED = {0, 2, 3, 4, 5, 6}
WORKER = os.path.join(os.path.dirname(__file__), "cli_worker.py")


class Worker:
    def __init__(self, host: tb.OvsHost):
        self.host = host
        sandbox = (
            "set -e; mount -t tmpfs tmpfs /run/netns; "
            "if [ -e /run/docker.sock ]; then mount --bind /dev/null /run/docker.sock; fi; "
            "if [ -e /var/run/docker.sock ]; then mount --bind /dev/null /var/run/docker.sock; fi; "
            'exec "$0" "$1"'
        )
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", host.name, "unshare", "--mount", "--pid", "--fork",
             "--mount-proc", "sh", "-c", sandbox, tb.PYTHON, WORKER],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, cwd=str(tb.REPO),
            env=tb.clean_env({"OVS_RUNDIR": str(host.rundir),
                              "DOCKER_HOST": "unix:///nonexistent-docker.sock"}))
        first = self._read(60)
        if not first.get("ready"):
            raise RuntimeError(f"cli worker did not start: {first}")

    def _read(self, timeout: float) -> dict:
        r, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if r else ""
        if not line:
            err = ""
            if self.proc.poll() is not None:
                err = self.proc.stderr.read()
            raise RuntimeError(f"cli worker gave no answer within {timeout}s: {err[-2000:]}")
        return json.loads(line)

    def invoke(self, argv, timeout: float = 60) -> dict:
        self.proc.stdin.write(json.dumps(argv) + "\n")
        self.proc.stdin.flush()
        return self._read(timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def worker():
    host = tb.OvsHost()
    w = Worker(host)
    yield w
    w.close()
    host.close()


chars = st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",))
txt = st.text(alphabet=chars, max_size=24)


def mostly(valid, weird=txt):
    """(well-formed, arbitrary) strategy pair; see argvs()."""
    return (valid, weird)


good_name = st.one_of(st.from_regex(r"\A[a-z][a-z0-9_.-]{0,14}\Z"),
                      st.sampled_from(["br0", "brp", "eth1", "eth2"]))
names = mostly(good_name, st.one_of(txt, st.sampled_from(
    ["x" * 16, "a/b", "a b", "a:b", ".", "..", "-br", "br0\n", ""])))
ip4 = st.ip_addresses(v=4).map(str)
ip6 = st.ip_addresses(v=6).map(str)


@st.composite
def good_addr(draw):
    if draw(st.booleans()):
        p = draw(st.integers(8, 30))
        a = f"10.{draw(st.integers(0, 255))}.{draw(st.integers(0, 255))}.{draw(st.integers(1, 254))}"
        s = f"{a}/{p}"
        if draw(st.booleans()):
            import ipaddress
            net = ipaddress.ip_interface(s).network
            gw = net.network_address + draw(st.integers(1, 3))
            s += f"@{gw}"
        return s
    return f"2001:db8::{draw(st.integers(1, 0xffff)):x}/{draw(st.integers(48, 127))}"


addr = mostly(good_addr(), st.one_of(
    txt,
    st.builds(lambda a, p: f"{a}/{p}", st.one_of(ip4, ip6), st.integers(-1, 140)),
    st.builds(lambda a, p, g: f"{a}/{p}@{g}", st.one_of(ip4, ip6), st.integers(-1, 140),
              st.one_of(ip4, ip6, txt)),
    st.sampled_from(["10.1.0.5", "10.1.0.5/24@", "@", "/", "10.1.0.5/24@10.1.0.5",
                     "224.0.0.1/24", "0.0.0.0/0", "::/0", "127.0.0.1/8"]),
))
# The worker is sandboxed: no named netns, no dockerd, and in its pid
# namespace pid:1 is the worker itself (its netns is the test host's).
target = mostly(
    st.sampled_from(["pid:1", "pid:1", "netns:ovsfab-nope", "pid:2", "some-container", "deadbeef"]),
    st.one_of(txt, st.builds(lambda s: "netns:" + s, txt),
              st.builds(lambda n: f"pid:{n}", st.one_of(st.integers(-3, 5_000_000), txt))),
)
mac = mostly(
    st.binary(min_size=5, max_size=5).map(lambda b: "02:" + ":".join(f"{x:02x}" for x in b)),
    st.one_of(txt, st.binary(min_size=6, max_size=6).map(lambda b: ":".join(f"{x:02x}" for x in b)),
              st.sampled_from(["01:00:5e:00:00:01", "ff:ff:ff:ff:ff:ff", "00:00:00:00:00:00"])),
)
mtu = mostly(st.integers(68, 9000).map(str), st.one_of(st.integers(-10, 70_000).map(str), txt))
vlan = mostly(st.integers(0, 4095).map(str), st.one_of(st.integers(-10, 70_000).map(str), txt))
datapath = mostly(st.sampled_from(["auto", "netdev"]), st.one_of(st.just("system"), txt))


@st.composite
def argvs(draw):
    """Half of the examples are entirely well-formed (they get past validation
    and reach OVSDB/netlink: real attaches into the sandbox, conflicts,
    idempotent repeats); in the other half each field is arbitrary with p=1/3."""
    chaos = draw(st.booleans())

    def pick(pair):
        valid, weird = pair
        if chaos and draw(st.integers(0, 2)) == 0:
            return draw(weird)
        return draw(valid)

    cmd = draw(st.sampled_from(["attach", "attach", "attach", "detach"]))
    argv = [cmd, pick(names), pick(target)]
    if cmd == "attach":
        n = draw(st.integers(0 if chaos else 1, 3))
        argv += [pick(addr) for _ in range(n)]
    if draw(st.booleans()):
        argv += ["--ifname", pick(names)]
    if cmd == "attach":
        for flag, pair in (("--mac", mac), ("--mtu", mtu), ("--vlan", vlan), ("--datapath", datapath)):
            if draw(st.booleans()):
                argv += [flag, pick(pair)]
    elif draw(st.booleans()):
        argv.append("--if-exists")
    if draw(st.booleans()):
        argv.append("--json")
    return argv


def test_worker_sandbox_works(worker):
    res = worker.invoke(["--db", worker.host.db_url, "attach", "br0", "netns:x", "10.1.0.5/24"])
    assert res["exit_code"] == 3, res
    res = worker.invoke(["--version"])
    assert res["exit_code"] == 0, res


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(argv=argvs())
def test_random_arguments_never_crash(worker, argv):
    full = ["--db", worker.host.db_url] + argv
    res = worker.invoke(full)
    event(f"exit {res['exit_code']}")
    assert not res["exception"], f"{full!r} raised:\n{res['exception']}"
    out = res["stdout"] + res["stderr"]
    assert "Traceback" not in out, f"{full!r}:\n{out}"
    assert res["exit_code"] in ALLOWED, f"{full!r} -> {res['exit_code']}:\n{out}"
    if res["exit_code"] not in (0, 2):
        lines = [l for l in res["stderr"].splitlines() if l.strip() and "note:" not in l]
        assert len(lines) == 1 and lines[0].startswith("ovsfab: error:"), (full, res["stderr"])
    if "--json" in argv and res["exit_code"] == 0:
        doc = json.loads(res["stdout"])
        assert isinstance(doc, dict) and "changed" in doc
