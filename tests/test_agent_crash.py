"""The agent SIGKILLed in the middle of a client's operation, at every step of attach and detach.

``OVSFAB_INJECT_FAULT=kill:<step>`` travels in the request's context, so it
is the *agent* that kills itself right after <step> (ovsfab/ops/plan.py), with
the client waiting on the socket.  For each step this proves, with ``ip -j``
and ``ovs-vsctl`` only (tests/test_crash.py's reference states and oracle):

* the agent really died there (-9) and never answered (no ``op:`` line);
* the client says so in one warning line, runs the operation itself
  (ovsfab/cli/fast.py) -- without firing the kill hook a second time -- and
  exits 0 with the state a clean run leaves: nothing half-done, no orphan
  veth, every interface with an ofport and no error;
* a restarted agent (on the dead one's stale socket) leaves that state as it
  is and serves the next request, which undoes it exactly.
"""
from __future__ import annotations

import signal
import time

import pytest

import testbed as tb
from ovsfab.ops.attach import ATTACH_STEPS
from ovsfab.ops.detach import DETACH_STEPS
from test_agent import AgentProc
import test_crash
from test_crash import ATTACH_ARGS, assert_same, kill_env, norm_snapshot, wait_gone
from test_fastpath import served

attach_refs, target = test_crash.attach_refs, test_crash.target  # fixtures, shared

KILLED = -signal.SIGKILL
WARNING = "ovsfab: warning: the agent took the request and closed the connection without a reply"


def start_agent(host: tb.OvsHost) -> AgentProc:
    agent = AgentProc(host)
    agent.wait_log("serving attach/detach")
    agent.wait_log("connected to OVSDB")
    return agent


def died_mid_request(agent: AgentProc, answered_before: int) -> None:
    assert agent.proc.wait(timeout=10) == KILLED, agent.text()
    agent._fh.close()  # noqa: SLF001 - the test's own log handle
    assert served(agent) == answered_before, "the killed agent answered"


def fell_back(cp, op: str) -> None:
    """Exit 0, the warning line first, then nothing but the in-process run's own notes."""
    assert cp.returncode == 0, (cp.returncode, cp.stderr)
    lines = cp.stderr.splitlines()
    assert lines and lines[0].startswith(WARNING) and f"running {op} in this process" in lines[0], cp.stderr
    assert not any("error" in line for line in lines), cp.stderr
    tb.assert_no_traceback(cp)


@pytest.fixture
def agents():
    made = []

    def make(host):
        made.append(start_agent(host))
        return made[-1]

    yield make
    for a in made:
        if a.proc.poll() is None:
            a.kill()


def test_agent_killed_at_every_attach_step(ovs_host, target, attach_refs, agents):
    attached, detached = attach_refs
    agent = agents(ovs_host)
    took = {}
    for step in ATTACH_STEPS:
        wait_gone([target])
        n0 = served(agent)
        t0 = time.monotonic()
        cp = ovs_host.ovsfab("attach", ATTACH_ARGS[0], target.target, *ATTACH_ARGS[1:], env=kill_env(step))
        took[step] = time.monotonic() - t0
        died_mid_request(agent, n0)
        fell_back(cp, "attach")
        assert "attached" in cp.stdout, cp.stdout  # "attached ..." or, from plug on, "... is already attached ..."
        assert_same(norm_snapshot(ovs_host, [target]), attached)
        # A new agent on the dead one's socket: it changes nothing, and serves the detach.
        agent = agents(ovs_host)
        n0 = served(agent)
        cp = ovs_host.ovsfab("detach", "br0", target.target)
        assert cp.returncode == 0 and served(agent) == n0 + 1, (step, cp.stderr, agent.text())
        assert_same(norm_snapshot(ovs_host, [target]), detached)
    assert "Traceback" not in agent.text()
    print("agent killed mid-attach, client's total: " + ", ".join(f"{s} {t:.2f} s" for s, t in took.items()))


def test_agent_killed_at_every_detach_step(ovs_host, target, attach_refs, agents):
    attached, detached = attach_refs
    agent = agents(ovs_host)
    for step in DETACH_STEPS:
        wait_gone([target])
        n0 = served(agent)
        ovs_host.ovsfab("attach", ATTACH_ARGS[0], target.target, *ATTACH_ARGS[1:], check=True)
        assert served(agent) == n0 + 1
        assert_same(norm_snapshot(ovs_host, [target]), attached)
        cp = ovs_host.ovsfab("detach", "br0", target.target, env=kill_env(step))
        died_mid_request(agent, n0 + 1)
        fell_back(cp, "detach")
        assert_same(norm_snapshot(ovs_host, [target]), detached)
        agent = agents(ovs_host)
        again = ovs_host.ovsfab("detach", "br0", target.target)
        tb.assert_clean_error(again, codes=(3,))  # served by the new agent: nothing left to find
        assert " op: detach -> exit 3" in agent.text()
    assert "Traceback" not in agent.text()


def test_a_kill_hook_still_fires_in_process_without_an_agent(ovs_host, target, attach_refs):
    """The client drops the hook only after an agent died holding the request: with no agent
    (or a stale socket) the client is the one that runs the step, and dies there."""
    wait_gone([target])
    cp = ovs_host.ovsfab("attach", ATTACH_ARGS[0], target.target, *ATTACH_ARGS[1:], env=kill_env("plug"))
    assert cp.returncode == KILLED, cp.stderr
    cp = ovs_host.ovsfab("detach", "br0", target.target)
    assert cp.returncode == 0, cp.stderr


def test_reconcile_killed_mid_restore_keeps_the_records(ovs_host, netns_targets):
    """Found by bench/bench_soak.py: a restore removes the broken ports in one transaction and adds them
    back in another; a kill in between lost the records.  The removal now journals them on the bridge
    (in the same transaction) and the add clears the journal, so the next reconcile restores them."""
    ts = [netns_targets() for _ in range(2)]  # two: the batched restore
    for i, t in enumerate(ts):
        ovs_host.ovsfab("attach", "br0", t.target, f"10.5.0.{i + 1}/24", check=True)
    ports = tb.ovs_ports(ovs_host)
    for t in ts:  # the links go (as when a container restarts): reconcile must restore them
        tb.run(["ip", "-n", t.name, "link", "del", "eth1"])
    cp = ovs_host.ovsfab("reconcile", env=kill_env("restore-relink"))
    if cp.returncode != KILLED:
        pytest.fail(f"the kill point restore-relink was not reached: {cp.returncode} {cp.stderr}")
    cp = ovs_host.ovsfab("reconcile")
    assert cp.returncode == 0, cp.stderr
    assert tb.ovs_ports(ovs_host) == ports, "records lost by the kill"
    for t in ts:
        assert tb.addrs_in(t).get("eth1"), t.name
    # the journal is done with once the ports are back (ovs-vsctl as the oracle)
    assert not [k for k in tb.ovs_row(ovs_host, "Bridge", "br0")["external_ids"] if k.startswith("ovsfab-restoring-")]


def test_agent_that_finished_a_detach_and_died_before_replying(ovs_host, target, attach_refs):
    """The last window: the agent has detached (port and veth gone) and dies before its reply.
    The client's re-run then finds nothing attached; that is the state asked for, so it must
    exit 0 (found by bench/bench_soak.py: exit 3, "has no eth1 attached", so a script took a
    detach that had happened for one that had failed).  A stand-in agent on the socket runs the
    detach for real (in-process, OVSFAB_NO_AGENT=1) and closes without a word."""
    import os
    import socket
    import threading

    _, detached = attach_refs
    wait_gone([target])
    ovs_host.ovsfab("attach", ATTACH_ARGS[0], target.target, *ATTACH_ARGS[1:], check=True)
    path = os.path.join(str(ovs_host.rundir), "ovsfab-agent.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    done = {}

    def stand_in() -> None:
        conn, _ = listener.accept()
        while conn.recv(65536):
            pass
        done["cp"] = ovs_host.ovsfab("detach", "br0", target.target, env={"OVSFAB_NO_AGENT": "1"})
        conn.close()  # dies before replying

    th = threading.Thread(target=stand_in)
    th.start()
    try:
        cp = ovs_host.ovsfab("detach", "br0", target.target)
        th.join(30)
    finally:
        listener.close()
        os.unlink(path)
    assert done["cp"].returncode == 0, done["cp"].stderr  # the stand-in really detached
    assert cp.stderr.startswith(WARNING), cp.stderr
    assert cp.returncode == 0, (cp.returncode, cp.stderr)
    assert "nothing to do" in cp.stdout, cp.stdout
    assert_same(norm_snapshot(ovs_host, [target]), detached)
