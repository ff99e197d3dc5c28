"""Daemons restarted while ovsfab works: ovsdb-server, ovs-vswitchd, the agent and dockerd.

(a) during an ``apply`` of N attachments (N = 20 here, 100 in
bench/bench_restarts.py), once a third of its veths exist; (b) during a
stream of single attaches through the agent, after the fourth.  The agent
runs throughout (a host's normal state).  Each command must end honestly
-- exit 0, or non-zero with exactly one ``ovsfab: error:`` line (a warning
that the agent lost the request may precede it) -- and once the daemon is
back, re-running what failed must reach exactly the fabric file / the
requests made, checked with ``ovs-vsctl`` and ``ip -j`` only: every port
recorded with an ofport and no error, every target with eth1 and its
address, no orphan host-end veth; a second apply prints ``nothing to do``.
The time to recover (daemon back -> converged) is printed.

dockerd is a private one (tests/dockerbed.py: other suites share the machine's):
the targets are its ``--restart always`` containers, which stop with it and
come back; ovsfab and the agent reach it through DOCKER_HOST.
"""
from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import pytest

import testbed as tb
from ovsfab.model import host_ifname
from test_agent import AgentProc, wait_for

N_APPLY = 20
N_STREAM = 10
DOWN = 0.5  # seconds a daemon stays down
N_DOCKER = 10  # dockerd: containers (starting them is what costs)
DAEMONS = ("ovsdb-server", "ovs-vswitchd", "agent", "dockerd")


class BedAgent(AgentProc):
    """`ovsfab agent` whose dockerd is a private one (DOCKER_HOST in its environment)."""

    def __init__(self, host: tb.OvsHost, env: dict) -> None:
        self.host = host
        self.log = Path(host.rundir) / f"agent-{time.monotonic_ns()}.log"
        self._fh = open(self.log, "w")
        self.proc = subprocess.Popen(host.ovsfab_cmd("agent"), stdout=self._fh, stderr=subprocess.STDOUT,
                                     env=tb.clean_env(env), cwd=str(tb.REPO))


class Restarter:
    """Restarts one of a host's daemons (or its agent) in place."""

    def __init__(self, host: tb.OvsHost, agent: AgentProc, bed=None) -> None:
        self.host = host
        self.agent = agent
        self.bed = bed  # a private dockerd (tests/dockerbed.py), for "dockerd"
        self.back_at = None

    def restart(self, which: str, down: float = DOWN) -> None:
        h = self.host
        if which == "agent":
            assert self.agent.stop() == 0, self.agent.text()  # SIGTERM: the action in progress is finished
            time.sleep(down)
            self.agent = BedAgent(h, self.bed.env()) if self.bed else AgentProc(h)
            self.agent.wait_log("connected to OVSDB")
        elif which == "dockerd":
            self.bed.restart(down)  # SIGTERM: its containers stop; --restart always ones come back
        else:
            tb._kill_and_wait(h._pid(which))  # noqa: SLF001 - the test bed's own daemons
            time.sleep(down)
            if which == "ovsdb-server":
                cmd = ["ovsdb-server", f"{h.rundir}/conf.db", f"--remote=punix:{h.db_sock}"]
            else:
                cmd = ["ovs-vswitchd", h.db_url]
            tb.run(["ip", "netns", "exec", h.name, *cmd] + h._daemon_args(which))  # noqa: SLF001
        self.back_at = time.monotonic()


def honest(cp: subprocess.CompletedProcess) -> None:
    tb.assert_no_traceback(cp)
    if cp.returncode == 0:
        return
    lines = [line for line in cp.stderr.splitlines() if line.strip() and not line.startswith("ovsfab: warning:")
             and not line.startswith("ovsfab: note:")]
    assert cp.returncode > 0 and len(lines) == 1 and lines[0].startswith("ovsfab: error:"), cp.stderr


def assert_attached(h: tb.OvsHost, targets, addrs) -> None:
    """Exactly these targets attached, each working, nothing else left over."""
    want = {host_ifname(t.id if isinstance(t, tb.Container) else t.target, "eth1") for t in targets}
    ports = {r["name"]: r for r in tb.ovs_table(h, "Port", ["name", "external_ids"])
             if r["external_ids"].get("ovsfab-container-id")}
    assert set(ports) == want, (sorted(set(ports) ^ want))
    for r in tb.ovs_table(h, "Interface", ["name", "ofport", "error"]):
        if r["name"] in want:
            assert isinstance(r["ofport"], int) and r["ofport"] > 0 and not r["error"], r
    links = {n for n in h.links() if n.startswith("ovf")}
    assert links == want, sorted(links ^ want)
    for t, a in zip(targets, addrs):
        assert tb.addrs_in(t).get("eth1") == [a], (t.name, tb.addrs_in(t))


def key(t) -> str:
    """What a target's host-end veth name derives from (a container's ID, a netns's target)."""
    return t.id if isinstance(t, tb.Container) else t.target


def ref(t) -> str:
    """How a command names the target."""
    return t.name if isinstance(t, tb.Container) else t.target


def converged(h: tb.OvsHost, targets, addrs, timeout: float) -> float:
    """Wait for exactly these attachments, working; seconds waited (raises after timeout).

    Containers that came back with dockerd have new pids, and the agent may
    still be putting their eth1 back."""
    t0 = time.monotonic()
    last = None
    while True:
        try:
            for t in targets:
                if isinstance(t, tb.Container):
                    t.refresh_pid()
            assert_attached(h, targets, addrs)
            return time.monotonic() - t0
        except (AssertionError, RuntimeError) as exc:
            last = exc
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"not converged after {timeout:g} s: {last}")
        time.sleep(0.2)


def until_ok(run, tries: int = 30):
    """Re-run a command that failed honestly until it exits 0 (dockerd may still be starting
    the containers it brings back: `not running` is honest then)."""
    for _ in range(tries):
        cp = run()
        honest(cp)
        if cp.returncode == 0:
            return cp
        time.sleep(0.5)
    raise AssertionError(f"still failing after {tries} tries: {cp.stderr}")


@pytest.fixture
def agent_host(request):
    """(host, agent, bed, env, make_targets): bed/env only when dockerd is the daemon restarted."""
    which = request.node.callspec.params.get("which")
    bed = request.getfixturevalue("bed") if which == "dockerd" else None
    env = bed.env() if bed else None
    h = tb.OvsHost()
    agent = BedAgent(h, env) if bed else AgentProc(h)
    made = []

    def targets(n: int):
        if bed is None:
            make = request.getfixturevalue("netns_targets")
            return [make() for _ in range(n)]
        out = [bed.run("--restart", "always", "--network", "none", tb.IMAGE, "sleep", "1000000")
               for _ in range(n)]
        made.extend(c.name for c in out)
        return out

    try:
        agent.wait_log("connected to OVSDB")
        if bed:
            agent.wait_log("dockerd connected")
        yield h, agent, bed, env, targets
    finally:
        if agent.proc.poll() is None:
            agent.kill()
        if bed:
            bed.remove(made)
        h.close()


@pytest.mark.parametrize("which", DAEMONS)
def test_restart_during_apply(which, agent_host, tmp_path):
    h, agent, bed, env, targets = agent_host
    n = N_DOCKER if bed else N_APPLY
    ts = targets(n)
    addrs = [f"10.71.{i // 200}.{10 + i % 200}/16" for i in range(n)]
    f = tmp_path / "fabric.yaml"
    f.write_text("name: restarts\nhosts:\n  h1: {underlay: 192.168.77.5}\nnetworks:\n"
                 "  net: {bridge: br0, mode: vxlan, key: 9, subnet: 10.71.0.0/16}\nattachments:\n"
                 + "".join(f"  - {{container: '{ref(t)}', network: net, host: h1, address: {a.split('/')[0]}}}\n"
                           for t, a in zip(ts, addrs)))
    veths = {host_ifname(key(t), "eth1") for t in ts}
    r = Restarter(h, agent, bed)
    p = subprocess.Popen(h.ovsfab_cmd("apply", str(f), "--host", "h1"), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=tb.clean_env(env), cwd=str(tb.REPO))
    wait_for(lambda: len(veths & set(h.links())) >= n // 3 or p.poll() is not None, 30, "apply's veths")
    mid = p.poll() is None
    r.restart(which)
    out, err = p.communicate(timeout=120)
    first = subprocess.CompletedProcess(p.args, p.returncode, out, err)
    honest(first)
    if first.returncode != 0:  # an honest failure: the re-run converges
        until_ok(lambda: h.ovsfab("apply", f, "--host", "h1", env=env, timeout=120))
    # ofports: ovs-vswitchd (re)opens the ports as it (re)starts; dockerd's containers come
    # back and the agent puts their eth1 back
    converged(h, ts, addrs, 30)
    recovered = time.monotonic() - r.back_at
    last = h.ovsfab("apply", f, "--host", "h1", env=env, check=True)
    assert "nothing to do" in last.stdout, last.stdout
    assert r.agent.proc.poll() is None and "Traceback" not in r.agent.text()
    print(f"{which} restarted {'during' if mid else 'after'} apply of {n}: apply exit {first.returncode} "
          f"({(err.strip().splitlines() or [''])[-1][:100]}); converged {recovered:.2f} s after it was back")


@pytest.mark.parametrize("which", DAEMONS)
def test_restart_during_a_stream_of_attaches(which, agent_host):
    h, agent, bed, env, targets = agent_host
    ts = targets(N_STREAM)
    addrs = [f"10.72.0.{10 + i}/24" for i in range(N_STREAM)]
    r = Restarter(h, agent, bed)
    results = {}
    restarter = None
    for i, (t, a) in enumerate(zip(ts, addrs)):
        if i == 4:
            restarter = threading.Thread(target=r.restart, args=(which,))
            restarter.start()
        cp = h.ovsfab("attach", "br0", ref(t), a, env=env, timeout=120)
        honest(cp)
        results[t.name] = cp
    restarter.join(60)
    failed = [t for t in ts if results[t.name].returncode != 0]
    fell_back = sum("warning: the agent took" in cp.stderr for cp in results.values())
    for t in failed:  # a failed attach changed nothing that a retry trips on
        until_ok(lambda: h.ovsfab("attach", "br0", ref(t), addrs[ts.index(t)], env=env, timeout=120))
    converged(h, ts, addrs, 30)
    recovered = time.monotonic() - r.back_at
    # and the (possibly new) agent serves
    n0 = r.agent.text().count(" op: ")
    h.ovsfab("detach", "br0", ref(ts[0]), env=env, check=True)
    assert r.agent.text().count(" op: ") == n0 + 1
    assert_attached(h, ts[1:], addrs[1:])
    codes = sorted({cp.returncode for cp in results.values()})
    print(f"{which} restarted during {N_STREAM} attaches: exit codes {codes}, {len(failed)} failed "
          f"({'; '.join(sorted({results[t.name].stderr.strip().splitlines()[-1][:90] for t in failed}))}), "
          f"{fell_back} fell back; all attached {recovered:.2f} s after it was back")
