"""`ovsfab agent`: follows Docker events, catches up after outages, stops cleanly.

The agent runs inside the simulated host's netns like the CLI does
(`ip netns exec NS env OVS_RUNDIR=... python -m ovsfab agent`), as a
background process; it is stopped with SIGTERM and must exit 0.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

import testbed as tb
import test_reconcile
from test_reconcile import eth_facts, port_facts

ctrs = test_reconcile.ctrs  # a fixture, shared (an import of it reads as unused to pyflakes)

pytestmark = pytest.mark.docker


def wait_for(cond, timeout: float, what: str, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)


class AgentProc:
    """`ovsfab agent` in a host's netns, its log in a file."""

    def __init__(self, host: tb.OvsHost, *args: str) -> None:
        self.host = host
        self.log = Path(host.rundir) / f"agent-{time.monotonic_ns()}.log"
        self._fh = open(self.log, "w")
        self.proc = subprocess.Popen(host.ovsfab_cmd("agent", *args), stdout=self._fh,
                                     stderr=subprocess.STDOUT, env=tb.clean_env(), cwd=str(tb.REPO))

    def text(self) -> str:
        return self.log.read_text()

    def wait_log(self, needle: str, timeout: float = 15, count: int = 1) -> None:
        wait_for(lambda: self.text().count(needle) >= count or self.proc.poll() is not None,
                 timeout, f"{needle!r} in the agent log")
        assert self.proc.poll() is None, f"agent exited {self.proc.returncode}:\n{self.text()}"

    def ready(self) -> "AgentProc":
        self.wait_log("connected to OVSDB")
        self.wait_log("dockerd connected")
        return self

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=15)
        finally:
            self._fh.close()
        return rc

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)
        self._fh.close()


@pytest.fixture
def agents():
    made = []

    def make(host, *args):
        a = AgentProc(host, *args)
        made.append(a)
        return a

    yield make
    for a in made:
        if a.proc.poll() is None:
            a.kill()


def has_eth(c: tb.Container, ifname: str = "eth1"):
    try:
        return eth_facts(c, ifname)
    except RuntimeError:  # the container is between two lives
        return {}


def test_agent_restores_on_restart_removes_on_rm_and_stops_cleanly(ovs_host, ctrs, agents):
    c1, c2, c3, one_shot = ctrs(), ctrs(), ctrs(), ctrs()
    ovs_host.ovsfab("attach", "br0", c1.name, "10.6.0.1/24@10.6.0.254", "--mac", "02:00:00:06:00:01",
                    "--mtu", "1450", "--vlan", "6", check=True)
    ovs_host.ovsfab("attach", "br0", c2.name, "10.6.0.2/24", "--mtu", "1450", "--vlan", "6", check=True)
    ovs_host.ovsfab("attach", "br0", c3.name, "10.6.0.3/24", check=True)
    ovs_host.ovsfab("attach", "br0", one_shot.name, "10.6.0.4/24", "--no-persist", check=True)
    before = eth_facts(c1)
    rm_port = port_facts(ovs_host, c3)["name"]
    one_port = port_facts(ovs_host, one_shot)["name"]
    agent = agents(ovs_host, "--interval", "60").ready()

    t0 = time.monotonic()
    tb.docker("restart", "-t", "1", c1.name)
    t_restarted = time.monotonic()
    wait_for(lambda: has_eth(c1) == before, 10, "eth1 restored in c1")
    restored_after = time.monotonic() - t_restarted
    assert restored_after < 3, f"restore took {restored_after:.2f}s after docker restart returned"
    c2.refresh_pid()
    assert tb.ping(c2, "10.6.0.1"), "no ping to the restored eth1"
    agent.wait_log(f"restored {c1.name} eth1")
    print(f"docker restart -> eth1 back: {restored_after:.2f}s (restart itself {t_restarted - t0:.2f}s)")

    tb.docker("rm", "-f", c3.name)
    wait_for(lambda: rm_port not in tb.ovs_ports(ovs_host) and rm_port not in ovs_host.links(), 10,
             "the removed container's port and veth to go")
    agent.wait_log(f"removed {c3.name} eth1")

    tb.docker("restart", "-t", "1", one_shot.name)
    wait_for(lambda: one_port not in tb.ovs_ports(ovs_host), 10, "the one-shot port to go")
    assert has_eth(one_shot) == {}, "a --no-persist attachment was restored"

    assert agent.stop() == 0, agent.text()
    log = agent.text()
    assert "Traceback" not in log and "stopped" in log.splitlines()[-1], log


def test_agent_catches_up_after_being_killed(ovs_host, ctrs, agents):
    c1, c2, c3 = ctrs(), ctrs(), ctrs()
    for i, c in enumerate((c1, c2, c3), start=1):
        ovs_host.ovsfab("attach", "br0", c.name, f"10.6.1.{i}/24", check=True)
    before1, before2 = eth_facts(c1), eth_facts(c2)
    gone = port_facts(ovs_host, c3)["name"]
    agent = agents(ovs_host).ready()
    agent.kill()  # no goodbye: SIGKILL
    tb.docker("restart", "-t", "1", c1.name)
    tb.docker("restart", "-t", "1", c2.name)
    tb.docker("rm", "-f", c3.name)
    agent = agents(ovs_host).ready()
    wait_for(lambda: has_eth(c1) == before1 and has_eth(c2) == before2, 10, "both restored")
    wait_for(lambda: gone not in tb.ovs_ports(ovs_host), 5, "port of the removed container gone")
    assert gone not in ovs_host.links()
    assert tb.ping(c1, "10.6.1.2")
    assert agent.stop() == 0, agent.text()


def test_agent_catches_up_after_ovsdb_server_restart(ovs_host, ctrs, agents):
    c1, c2 = ctrs(), ctrs()
    ovs_host.ovsfab("attach", "br0", c1.name, "10.6.2.1/24", check=True)
    ovs_host.ovsfab("attach", "br0", c2.name, "10.6.2.2/24", check=True)
    before = eth_facts(c1)
    agent = agents(ovs_host).ready()

    tb._kill_and_wait(ovs_host._pid("ovsdb-server"))  # noqa: SLF001 - the test bed's own daemon
    agent.wait_log("lost OVSDB")
    tb.docker("restart", "-t", "1", c1.name)
    time.sleep(1)  # the agent sees the event but cannot reach OVSDB
    assert has_eth(c1) == {}
    r = ovs_host.rundir
    tb.run(["ip", "netns", "exec", ovs_host.name, "ovsdb-server", f"{r}/conf.db",
            f"--remote=punix:{ovs_host.db_sock}"] + ovs_host._daemon_args("ovsdb-server"))  # noqa: SLF001
    wait_for(lambda: has_eth(c1) == before, 15, "eth1 restored after ovsdb-server came back")
    agent.wait_log("connected to OVSDB", count=2)
    c2.refresh_pid()
    assert tb.ping(c2, "10.6.2.1")
    assert agent.stop() == 0, agent.text()


# ---------------------------------------------------------------- dockerd restart
def _dockerd() -> tuple:
    """(pid, argv, log path) of the running dockerd (started by hand here, not by systemd)."""
    pids = [int(p) for p in os.listdir("/proc") if p.isdigit()
            and _comm(int(p)) == "dockerd"]
    assert len(pids) == 1, f"expected one dockerd, found {pids}"
    pid = pids[0]
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    log = os.readlink(f"/proc/{pid}/fd/2")
    return pid, [a.decode() for a in argv], log


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _restart_dockerd() -> None:
    pid, argv, log = _dockerd()
    if not log.startswith("/") or log.startswith("/dev/pts") or "(deleted)" in log:
        log = "/dev/null"
    env = {k: v for k, v in (line.split("=", 1) for line in
           Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace").split("\0") if "=" in line)}
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not tb._pid_alive(pid), 60, "dockerd to exit", step=0.2)  # noqa: SLF001
    with open(log, "ab") as out:
        # The same command line, environment and log as before; its own
        # session so it outlives this test run.
        subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env,
                         start_new_session=True, cwd="/")
    wait_for(lambda: tb.docker_available(timeout=5) is None, 60, "dockerd to answer again", step=0.5)


@pytest.mark.slow
def test_agent_catches_up_after_dockerd_restart(ovs_host, ctrs, agents):
    always = ctrs(restart_always=True)
    plain = ctrs()
    ovs_host.ovsfab("attach", "br0", always.name, "10.6.3.1/24", check=True)
    ovs_host.ovsfab("attach", "br0", plain.name, "10.6.3.2/24", check=True)
    before_a, before_p = eth_facts(always), eth_facts(plain)
    plain_port = port_facts(ovs_host, plain)["name"]
    agent = agents(ovs_host).ready()

    _restart_dockerd()
    agent.wait_log("lost dockerd")
    agent.wait_log("dockerd reconnected", timeout=30)
    # --restart=always: back by itself, and the agent puts eth1 back.
    wait_for(lambda: has_eth(always) == before_a, 20, "eth1 restored in the --restart=always container")
    # No restart policy: stays stopped; its record is kept.
    assert has_eth(plain) == {}
    assert plain_port in tb.ovs_ports(ovs_host)
    tb.docker("start", plain.name)
    wait_for(lambda: has_eth(plain) == before_p, 10, "eth1 restored after docker start")
    assert tb.ping(always, "10.6.3.2")
    assert agent.stop() == 0, agent.text()
