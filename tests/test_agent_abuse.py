"""Abuse of the agent's control socket: floods, huge and malformed requests, silent, foreign and non-root peers.

The agent (ovsfab/agent/intake.py) reads requests in a thread with three
limits: MAX_PENDING connections being read or waiting (more are refused
``busy`` at once), MAX_REQUEST bytes (more: refused, the rest drained),
READ_TIMEOUT seconds to send a whole request (else closed).  Each test
drives a real agent in a simulated host and proves, from outside (the
agent's /proc status, its log, ``ip -j`` / ``ovs-vsctl`` snapshots), that
the abuse gets a clear answer, that other clients are still served (by the
agent, or by their own in-process fallback) within the bar, and that the
agent lives on and serves normally afterwards.

The latency bar: an attach from the shell through the agent takes ~0.1 s
here (docs/performance.md); under abuse it must still finish, exit 0,
within ATTACH_BAR seconds (in-process fallback included, ~0.6 s).
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time

import testbed as tb
from ovsfab.agent.intake import MAX_PENDING, MAX_REQUEST, READ_TIMEOUT
from test_agent import AgentProc
import test_fastpath
from test_fastpath import served, sock_path

agent_host = test_fastpath.agent_host  # a fixture, shared (an import of it reads as unused to pyflakes)

ATTACH_BAR = 3.0


def rss_kib(pid: int) -> dict:
    """VmRSS and VmHWM (peak) of a process, in KiB, from /proc/PID/status."""
    out = {}
    for line in open(f"/proc/{pid}/status"):
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def agent_pid(agent: AgentProc) -> int:
    """The agent's own PID (``ip netns exec`` and ``env`` exec into it)."""
    pid = agent.proc.pid
    cmd = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
    assert any(b"python" in c for c in cmd[:1]) and b"agent" in cmd, cmd
    return pid


def exchange(path: str, payload: bytes, timeout: float = 10.0) -> tuple:
    """Send ``payload`` as a whole request: (the reply's bytes, seconds to the reply)."""
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    t0 = time.monotonic()
    try:
        c.connect(path)  # blocking: waits while the listen backlog is full (a timeout would get EAGAIN)
        c.settimeout(timeout)
        try:
            c.sendall(payload)
            c.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before it read everything: the reply is still there
        data = b""
        while True:
            try:
                chunk = c.recv(65536)
            except ConnectionResetError:
                # A refusal sent before the agent read the request: it closes with the request
                # unread, which the kernel reports as a reset -- after the refusal's bytes.
                if not data:
                    raise
                break
            if not chunk:
                break
            data += chunk
        return data, time.monotonic() - t0
    finally:
        c.close()


def host_netns(host: tb.OvsHost) -> list:
    """The host's network namespace as the protocol names it ([dev, inode])."""
    st = os.stat(host.netns_path)
    return [st.st_dev, st.st_ino]


def request(host: tb.OvsHost, op: str, params: dict) -> bytes:
    return json.dumps({"v": 2, "op": op, "params": params, "netns": host_netns(host),
                       "context": {"db": host.db_url, "backend": "ovs", "fault": None, "docker_host": None}}).encode()


def timed_attach(host: tb.OvsHost, t, addr: str) -> tuple:
    t0 = time.monotonic()
    cp = host.ovsfab("attach", "br0", t.target, addr)
    return cp, time.monotonic() - t0


def test_200_connections_at_once(agent_host, netns_targets):
    """200 idle connections: exactly MAX_PENDING held, the rest refused ``busy`` at once; an attach in the
    middle falls back in-process and finishes within the bar.  Then 200 real requests at once: each one
    answered (a result or ``busy``), an attach among them within the bar; the agent serves normally after."""
    host, agent = agent_host
    path = sock_path(host)
    t1, t2, t3 = netns_targets(), netns_targets(), netns_targets()
    # -- 200 connections that send nothing
    conns = []
    t0 = time.monotonic()
    for _ in range(200):
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.connect(path)  # blocking: waits while the listen backlog is full (a timeout would get EAGAIN)
        conns.append(c)
    try:
        n0 = served(agent)
        cp, took = timed_attach(host, t1, "10.8.0.1/24")
        assert cp.returncode == 0 and "attached" in cp.stdout, cp.stderr
        assert took < ATTACH_BAR, f"attach during the flood took {took:.2f} s"
        assert served(agent) == n0, "the agent cannot have served it: all its slots were held"
        busy, held = 0, 0
        for c in conns:
            c.setblocking(False)
            try:
                data = c.recv(4096)
            except BlockingIOError:
                held += 1
                continue
            assert json.loads(data) == {"refused": "busy"}, data
            busy += 1
        assert (held, busy) == (MAX_PENDING, 200 - MAX_PENDING), (held, busy)
        # the held ones are closed after the read timeout, not kept
        for c in conns:
            c.setblocking(True)
            c.settimeout(READ_TIMEOUT + 3)
        left = [c for c in conns if c.recv(1) != b""]
        assert not left
        assert time.monotonic() - t0 < READ_TIMEOUT + 4
    finally:
        for c in conns:
            c.close()
    print(f"200 idle: {MAX_PENDING} held, {200 - MAX_PENDING} busy; attach (in-process) {took:.2f} s")

    # -- 200 real requests at once
    payload = request(host, "tunnel.list", {"bridge": None})
    replies: list = [None] * 200
    start = threading.Barrier(201)

    def client(i: int) -> None:
        start.wait()
        try:
            replies[i] = exchange(path, payload, timeout=30)
        except OSError as exc:
            replies[i] = (repr(exc).encode(), -1.0)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(200)]
    for th in threads:
        th.start()
    n0 = served(agent)
    start.wait()
    cp, took2 = timed_attach(host, t2, "10.8.0.2/24")
    for th in threads:
        th.join(60)
    assert cp.returncode == 0 and "attached" in cp.stdout, cp.stderr
    assert took2 < ATTACH_BAR, f"attach among 200 requests took {took2:.2f} s"
    results = busy = 0
    worst = 0.0
    for data, dt in replies:
        doc = json.loads(data)  # every one got a JSON answer: none reset, none lost
        if doc == {"refused": "busy"}:
            busy += 1
        else:
            assert doc.get("v") == 2 and isinstance(doc.get("result"), dict), doc
            results += 1
            worst = max(worst, dt)
    assert results + busy == 200 and results >= MAX_PENDING, (results, busy)
    assert served(agent) >= n0 + results
    print(f"200 requests: {results} served (slowest {worst:.2f} s), {busy} busy; attach {took2:.2f} s")
    # -- and normally afterwards
    n0 = served(agent)
    cp, took3 = timed_attach(host, t3, "10.8.0.3/24")
    assert cp.returncode == 0 and served(agent) == n0 + 1 and took3 < ATTACH_BAR, (cp.stderr, took3)
    assert agent.proc.poll() is None and "Traceback" not in agent.text()


def test_100_mb_request_keeps_memory_bounded(agent_host, netns_targets):
    """A 100 MB request: refused as too large, drained, never buffered: the agent's peak RSS grows
    by well under the request's size (measured from /proc/PID/status), and it serves on."""
    host, agent = agent_host
    pid = agent_pid(agent)
    # warm: the agent's start-up (imports, first passes, a first request) is not the request's cost
    cp, _ = timed_attach(host, netns_targets(), "10.8.1.1/24")
    assert cp.returncode == 0, cp.stderr
    time.sleep(0.5)
    before = rss_kib(pid)
    figures = []
    for _ in range(2):
        data, took = exchange(sock_path(host), b"x" * (100 << 20), timeout=30)
        reply = json.loads(data)
        assert reply == {"refused": f"request larger than {MAX_REQUEST} bytes"}, reply
        figures.append((took, rss_kib(pid)))
    after = figures[-1][1]
    grew = after["VmHWM"] - before["VmHWM"]
    # bounded: MAX_REQUEST of buffered chunks and change, not a tenth of the request
    assert grew < 10 * 1024, f"peak RSS grew by {grew} KiB for two 100 MB requests"
    assert after["VmRSS"] - before["VmRSS"] < 10 * 1024, (before, after)
    print(f"100 MB request x2: refused in {figures[0][0]:.2f} / {figures[1][0]:.2f} s; RSS {before['VmRSS']} -> "
          f"{figures[0][1]['VmRSS']} -> {after['VmRSS']} KiB, peak {before['VmHWM']} -> "
          f"{figures[0][1]['VmHWM']} -> {after['VmHWM']} KiB")
    n0 = served(agent)
    cp, _ = timed_attach(host, netns_targets(), "10.8.1.2/24")
    assert cp.returncode == 0 and served(agent) == n0 + 1, cp.stderr


def test_silent_client_is_closed_after_the_read_timeout_and_others_are_served_meanwhile(agent_host,
                                                                                        netns_targets):
    host, agent = agent_host
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.connect(sock_path(host))
    t0 = time.monotonic()
    try:
        n0 = served(agent)
        took = []
        for i in range(3):
            cp, dt = timed_attach(host, netns_targets(), f"10.8.2.{i + 1}/24")
            assert cp.returncode == 0, cp.stderr
            took.append(dt)
        assert served(agent) == n0 + 3, "the agent served the others while the silent one was connected"
        assert time.monotonic() - t0 < READ_TIMEOUT, "too slow to prove anything about 'meanwhile'"
        c.settimeout(READ_TIMEOUT + 5)
        assert c.recv(1) == b"", "a silent client got an answer"
        closed = time.monotonic() - t0
    finally:
        c.close()
    assert READ_TIMEOUT - 0.1 <= closed <= READ_TIMEOUT + 1.5, closed
    assert max(took) < ATTACH_BAR, took
    print(f"silent client closed after {closed:.2f} s; attaches meanwhile {', '.join(f'{x:.2f}' for x in took)} s")


MALFORMED = [
    (b"", "refused"), (b"{", "refused"), (b"\xff\xfe\x00", "refused"), (b"null", "refused"),
    (b"[1, 2]", "refused"), (b'"attach"', "refused"),
    (b"[" * 400_000, "refused"),                     # nesting deeper than the JSON parser's recursion limit
    (b'{"a":' * 150_000, "refused"),
    (b"{}", "declined"), (b'{"v": 1, "argv": ["attach"]}', "declined"), (b'{"v": 2}', "declined"),
    (b'{"v": 2, "op": 5, "params": {}}', "declined"), (b'{"v": 2, "op": "attach", "params": []}', "declined"),
    (b'{"v": 2, "op": "no.such.op", "params": {}}', "declined"),
    (b'{"v": 2, "op": "attach", "params": {"container": "netns:x"}, "netns": [0, 0]}', "declined"),
]


def test_malformed_requests_get_clear_answers_and_change_nothing(agent_host, netns_targets):
    host, agent = agent_host
    path = sock_path(host)
    t = netns_targets()
    before = tb.snapshot(host, [t])
    ours = host_netns(host)
    ctx = {"db": host.db_url, "backend": "ovs", "fault": None, "docker_host": None}
    bad_fields = [  # well-formed envelopes with bad insides: the operation's own error, exit 2
        {"v": 2, "op": "attach", "params": {"container": 5}, "context": ctx, "netns": ours},
        {"v": 2, "op": "attach", "params": {"container": t.target, "mtu": "x" * 100}, "context": ctx, "netns": ours},
        {"v": 2, "op": "attach", "params": {"container": t.target, "bogus": 1}, "context": ctx, "netns": ours},
        {"v": 2, "op": "tunnel.list", "params": {}, "context": "x", "netns": ours},
        {"v": 2, "op": "tunnel.list", "params": {}, "context": {**ctx, "evil": 1}, "netns": ours},
        {"v": 2, "op": "tunnel.list", "params": {}, "context": {**ctx, "fault": ["kill:find"]}, "netns": ours},
    ]
    cases = MALFORMED + [(json.dumps(b).encode(), "error") for b in bad_fields]
    for payload, kind in cases:
        data, took = exchange(path, payload)
        doc = json.loads(data)
        label = payload[:60]
        if kind == "refused":
            assert doc == {"refused": "not a JSON object"}, (label, doc)
        elif kind == "declined":
            assert doc.get("v") == 2 and isinstance(doc.get("declined"), str), (label, doc)
        else:
            err = doc.get("error")
            assert isinstance(err, dict) and err["exit_code"] == 2, (label, doc)
            assert err["line"].startswith("ovsfab: error:") and "\n" not in err["line"], (label, doc)
        assert took < 2.0, (label, took)
        assert agent.proc.poll() is None, f"the agent died on {label!r}:\n{agent.text()}"
    tb.assert_no_residue(host, before, [t])
    n0 = served(agent)
    cp, took = timed_attach(host, t, "10.8.3.1/24")
    assert cp.returncode == 0 and served(agent) == n0 + 1 and took < ATTACH_BAR, (cp.stderr, agent.text())
    assert "Traceback" not in agent.text()


def test_non_root_peer_is_refused_and_changes_nothing(agent_host, netns_targets):
    """A protocol-2 attach from uid 65534 (socket mode loosened on purpose): refused ``root only``,
    nothing run, nothing changed; root is served right after."""
    host, agent = agent_host
    path = sock_path(host)
    t = netns_targets()
    before = tb.snapshot(host, [t])
    payload = request(host, "attach", {"bridge": "br0", "container": t.target, "addresses": ["10.8.4.1/24"]})
    r, w = os.pipe()
    rundir_mode = os.stat(host.rundir).st_mode & 0o777
    os.chmod(host.rundir, 0o711)
    os.chmod(path, 0o666)
    try:
        pid = os.fork()
        if pid == 0:  # child: drop to nobody, ask, report
            os.close(r)
            try:
                os.setgid(65534)
                os.setuid(65534)
                out = exchange(path, payload)[0]
            except BaseException as exc:  # noqa: BLE001 - never escape the child
                out = repr(exc).encode()
            os.write(w, out)
            os._exit(0)
        os.close(w)
        os.waitpid(pid, 0)
        got = os.read(r, 65536)
        os.close(r)
    finally:
        os.chmod(path, 0o600)
        os.chmod(host.rundir, rundir_mode)
    assert json.loads(got) == {"refused": "root only"}, got
    agent.wait_log("refused a request from uid 65534")
    assert " op: attach" not in agent.text()
    tb.assert_no_residue(host, before, [t])
    cp, _ = timed_attach(host, t, "10.8.4.1/24")
    assert cp.returncode == 0 and " op: attach -> exit 0" in agent.text(), cp.stderr


def test_peer_in_another_netns_is_declined_and_runs_the_operation_itself(agent_host, ovs_host, netns_targets):
    """A client in another host's namespace pointed at this agent's socket (OVSFAB_AGENT_SOCK):
    declined (the veth's host end would land in the agent's namespace), so the client attaches
    in-process, in its own namespace, to its own Open vSwitch -- which works; the agent's host
    is untouched."""
    host, agent = agent_host
    other = ovs_host
    t = netns_targets()
    before = tb.snapshot(host, [])
    n0 = served(agent)
    cp = other.ovsfab("attach", "br0", t.target, "10.8.5.1/24", env={"OVSFAB_AGENT_SOCK": sock_path(host)})
    assert cp.returncode == 0 and "attached" in cp.stdout, cp
    assert "warning" not in cp.stderr and "error" not in cp.stderr, cp.stderr  # a decline is silent
    assert served(agent) == n0, "the agent ran a request from another namespace"
    tb.assert_no_residue(host, before, [])
    port = tb.ovs_port_for(other, container_id=t.target)
    assert port is not None and port["name"] in other.links()
    iface = tb.ovs_row(other, "Interface", port["name"])
    assert isinstance(iface["ofport"], int) and iface["ofport"] > 0 and not iface["error"], iface
    assert tb.addrs_in(t).get("eth1") == ["10.8.5.1/24"]
    # and the decline is logged nowhere as a failure: the agent is fine
    assert agent.proc.poll() is None and "Traceback" not in agent.text()
