#!/usr/bin/env python3
"""Benchmark: how fast attachments come back after restarts (not a timed test).

Numbers printed:

1. ``docker restart`` -> first successful ping on the restarted container's
   eth1, with ``ovsfab agent`` running (several rounds; median and max).
2. Restoring N restarted containers at once (default 100):
   a. one in-process ``Reconciler.all()`` pass (imports and connection
      already done: what the agent spends);
   b. the ``ovsfab reconcile`` CLI, wall time (imports included).
3. The agent's CPU while idle, with N attachments recorded, over a window
   with and without a periodic full pass.

Runs on one simulated host of the test bed (tests/testbed.py: a netns with
private ovsdb-server + ovs-vswitchd) and real Docker containers.  Needs root
and dockerd.  Usage::

    sudo .venv/bin/python bench/bench_restore.py [--containers 100] [--rounds 5]
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import testbed as tb  # noqa: E402

CLK = os.sysconf("SC_CLK_TCK")


def start_containers(n: int, prefix: str) -> list:
    out = []
    for i in range(n):
        name = f"{prefix}-{i}"
        cid = tb.docker("run", "-d", "--init", "--network", "none", "--name", name, tb.IMAGE,
                        "sleep", "1000000").stdout.strip()
        out.append(tb.Container(name, cid, 0))
    for c in out:
        c.refresh_pid()
    return out


def address(subnet: str, i: int) -> str:
    """The address of container ``i`` (without prefix): inner_attach's numbering."""
    return f"{subnet}.{i // 200}.{i % 200 + 1}"


def inner_attach(names: list, subnet: str) -> None:
    """Inside the host netns: attach every container in one process (fast set-up)."""
    from ovsfab.backends.factory import get_backend
    from ovsfab.model import AttachRequest
    from ovsfab.ops.attach import attach

    for i, name in enumerate(names):
        req = AttachRequest.parse("br0", name, [f"{address(subnet, i)}/16"])
        attach(req, lambda: get_backend("ovs"))


def inner_reconcile() -> None:
    """Inside the host netns: time one in-process full pass (what the agent spends)."""
    from ovsfab.backends.factory import get_backend
    from ovsfab.ops.reconcile import DockerView, Reconciler

    backend = get_backend("ovs")
    docker = DockerView()
    docker.states()  # connect first: the agent's client is already connected
    importlib.import_module("pyroute2.netlink.rtnl.ifinfmsg")  # and the agent's first pass imported pyroute2
    t0 = time.perf_counter()
    res = Reconciler(backend, docker).all()
    dt = time.perf_counter() - t0
    print(json.dumps({"seconds": dt, "summary": res.summary(), "timings": {k: round(v, 3) for k, v in res.timings.items()}}))


def in_host(host: tb.OvsHost, *args: str) -> subprocess.CompletedProcess:
    cmd = ["ip", "netns", "exec", host.name, "env", f"OVS_RUNDIR={host.rundir}", sys.executable,
           __file__, *args]
    return tb.run(cmd, timeout=900, env=tb.clean_env())


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def wait_ping(ns: tb.Container, addr: str, timeout: float = 20) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        cp = tb.ns_run(ns, "ping", "-4", "-n", "-c", "1", "-W", "0.2", addr, check=False)
        if cp.returncode == 0:
            return time.monotonic()
    raise RuntimeError(f"no ping to {addr} within {timeout}s")


def restart_all(ctrs: list) -> float:
    t0 = time.monotonic()
    for c in ctrs:
        tb.docker("restart", "-t", "0", c.name)
    return time.monotonic() - t0


def carries_traffic(ctrs: list) -> str:
    """Ping from the first container to a spread of the others, and TCP data to the last one."""
    for c in ctrs:
        c.refresh_pid()
    sample = sorted({1, len(ctrs) // 4, len(ctrs) // 2, 3 * len(ctrs) // 4, len(ctrs) - 1})
    pinged = sum(1 for i in sample if tb.ping(ctrs[0], address("10.77", i), count=1))
    tcp = tb.tcp_transfer(ctrs[0], ctrs[-1], address("10.77", len(ctrs) - 1), nbytes=500_000)
    return f"ping {pinged}/{len(sample)}, TCP {'ok' if tcp else 'FAILED'}"


def agent_parts(host: "tb.OvsHost", ctrs: list, args: argparse.Namespace) -> None:
    """Parts 1 and 3: restart -> first ping with the agent running; the agent's idle CPU."""
    agent = None
    try:
        # 1. docker restart -> first ping, agent running.
        log = open(Path(host.rundir) / "agent.log", "w")
        agent = subprocess.Popen(host.ovsfab_cmd("agent", "--interval", "3600"), stdout=log,
                                 stderr=subprocess.STDOUT, env=tb.clean_env(), cwd=str(tb.REPO))
        deadline = time.monotonic() + 30
        while "dockerd connected" not in Path(log.name).read_text():
            if time.monotonic() > deadline:
                raise RuntimeError("agent did not start:\n" + Path(log.name).read_text())
            time.sleep(0.1)
        peer, target = ctrs[0], ctrs[1]
        from_cmd, from_return = [], []
        for _ in range(args.rounds):
            t0 = time.monotonic()
            tb.docker("restart", "-t", "0", target.name)
            t1 = time.monotonic()
            t2 = wait_ping(peer, "10.77.0.2")
            from_cmd.append(t2 - t0)
            from_return.append(t2 - t1)
            time.sleep(0.5)
        print(f"docker restart -> first ping on eth1 ({args.rounds} rounds, agent running): "
              f"median {statistics.median(from_cmd):.2f}s, max {max(from_cmd):.2f}s from issuing "
              f"`docker restart -t 0`; median {statistics.median(from_return):.2f}s, "
              f"max {max(from_return):.2f}s after it returned")

        # 3. idle CPU (agent still running, N attachments recorded, no events).
        time.sleep(1)
        c0, t0 = cpu_seconds(agent.pid), time.monotonic()
        time.sleep(args.idle_seconds)
        c1, t1 = cpu_seconds(agent.pid), time.monotonic()
        print(f"agent idle CPU: {100 * (c1 - c0) / (t1 - t0):.3f}% over {t1 - t0:.0f}s "
              f"({len(ctrs)} attachments, no events, no periodic pass in the window)")
        agent.send_signal(signal.SIGTERM)
        rc = agent.wait(timeout=20)
        log.close()
        print(f"agent stopped with exit code {rc}")
        agent = None

        # Idle CPU including periodic passes (cheap full pass every 5 s).
        log = open(Path(host.rundir) / "agent2.log", "w")
        agent = subprocess.Popen(host.ovsfab_cmd("agent", "--interval", "5"), stdout=log,
                                 stderr=subprocess.STDOUT, env=tb.clean_env(), cwd=str(tb.REPO))
        time.sleep(4)
        c0, t0 = cpu_seconds(agent.pid), time.monotonic()
        time.sleep(args.idle_seconds)
        c1, t1 = cpu_seconds(agent.pid), time.monotonic()
        print(f"agent CPU with a full pass every 5s: {100 * (c1 - c0) / (t1 - t0):.3f}% over "
              f"{t1 - t0:.0f}s ({len(ctrs)} attachments)")
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=20)
        log.close()
        agent = None
    finally:
        if agent is not None:
            agent.kill()
            agent.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--containers", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--idle-seconds", type=float, default=20)
    ap.add_argument("--only-restore", action="store_true", help="part 2 only (restoring N restarted containers)")
    ap.add_argument("--restore-rounds", type=int, default=1, help="repeat part 2a (in-process pass)")
    ap.add_argument("--inner", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.inner:
        if args.inner[0] == "attach":
            inner_attach(args.inner[2:], args.inner[1])
        else:
            inner_reconcile()
        return

    tb.build_busybox_image()
    host = tb.OvsHost()
    prefix = tb.unique("b")
    ctrs: list = []
    try:
        print(f"starting {args.containers} containers ...", flush=True)
        ctrs = start_containers(args.containers, prefix)
        t0 = time.monotonic()
        in_host(host, "--inner", "attach", "10.77", *[c.name for c in ctrs])
        print(f"attached {len(ctrs)} containers in {time.monotonic() - t0:.1f}s (one process)")

        if not args.only_restore:
            agent_parts(host, ctrs, args)

        # 2a. N restarted containers, one in-process pass.
        for _ in range(args.restore_rounds):
            dt = restart_all(ctrs)
            print(f"restarted {len(ctrs)} containers in {dt:.1f}s (agent not running)")
            doc = json.loads(in_host(host, "--inner", "reconcile").stdout)
            print(f"restore {len(ctrs)} restarted containers, in-process pass: {doc['seconds']:.2f}s "
                  f"{doc['summary']} phases (s): {doc['timings']}", flush=True)
            print(f"  restored ports carry traffic: {carries_traffic(ctrs)}", flush=True)

        # 2b. The same through the CLI.
        restart_all(ctrs)
        t0 = time.monotonic()
        cp = host.ovsfab("reconcile", "--json", timeout=600)
        dt = time.monotonic() - t0
        summary = json.loads(cp.stdout)["summary"] if cp.returncode == 0 else cp.stderr
        print(f"restore {len(ctrs)} restarted containers, `ovsfab reconcile` CLI: {dt:.2f}s {summary}")
        cp = host.ovsfab("reconcile", "--json", timeout=600)
        t0 = time.monotonic()
        host.ovsfab("reconcile", timeout=600)
        print(f"`ovsfab reconcile` with nothing to do ({len(ctrs)} attachments): "
              f"{time.monotonic() - t0:.2f}s")
    finally:
        tb.remove_containers(c.name for c in ctrs)
        host.close()


if __name__ == "__main__":
    main()
