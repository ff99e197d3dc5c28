#!/usr/bin/env python3
"""What ``--backend auto`` (the default) costs over an explicit ``--backend ovs``.

``auto`` asks the kernel whether a Linux bridge of the request's name exists
(ovsfab/backends/factory.py ``resolve_kind``: one RTM_GETLINK on a fresh
netlink socket) before it takes the OVS path.  Two measurements, both
interleaved in one run (the machine is shared: medians):

1. in this process, ``--loops`` (2000) rounds of: ``resolve_kind("auto",
   "br0")`` against the lookup it replaced (a pyroute2 ``IPRoute`` opened for
   each call, as factory.py did before);
2. a simulated OVS host (tests/testbed.py) with the agent running: ``--runs``
   (40) pairs of attaches of fresh netns sent through the agent's socket,
   one with context ``backend: ovs``, one with ``backend: auto``, alternating;
   the agent's own time per request from its log.

Usage::

    sudo .venv/bin/python bench/bench_backend_auto.py [--loops 2000] [--runs 40]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO))

import testbed as tb  # noqa: E402
from bench_cli import Agent  # noqa: E402


def old_lookup(bridge: str) -> None:
    """factory.existing_bridge_kind before auto became the default: an IPRoute per call."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=bridge)
        if found:
            ipr.get_links(found[0])


def micro(loops: int) -> Dict[str, float]:
    from ovsfab.backends.factory import resolve_kind

    times: Dict[str, List[float]] = {"resolve_kind (netlink/rtnl.py)": [], "IPRoute lookup (before)": []}
    for _ in range(loops):
        t = time.perf_counter()
        resolve_kind("auto", "br0")
        times["resolve_kind (netlink/rtnl.py)"].append(time.perf_counter() - t)
        t = time.perf_counter()
        old_lookup("br0")
        times["IPRoute lookup (before)"].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def agent_ab(runs: int) -> Dict[str, List[float]]:
    from ovsfab.cli import argv, fast
    from ovsfab.plumbing.netns import Namespace

    prefix = f"aba{os.getpid()}-"
    host = tb.OvsHost()
    agent = None
    made: List[str] = []
    out: Dict[str, List[float]] = {"ovs": [], "auto": []}
    try:
        for i in range(2 * runs + 2):
            tb.run(["ip", "netns", "add", f"{prefix}{i}"])
            made.append(f"{prefix}{i}")
        agent = Agent(host)
        sock = fast.socket_path({"OVS_RUNDIR": str(host.rundir)})
        ns = Namespace.open(host.netns_path)
        with ns, ns.entered():  # the agent serves only clients in its own namespace
            for i in range(2 * runs + 2):
                kind = ("ovs", "auto")[i % 2]
                parsed = argv.parse(["attach", "br0", f"netns:{prefix}{i}", f"10.61.{i // 250}.{i % 250 + 1}/16"])
                ctx = {"db": host.db_url, "backend": kind, "fault": None, "docker_host": None}
                reply = fast.call_agent(fast.request(parsed, ctx), sock)
                if reply is None or "result" not in reply:
                    raise SystemExit(f"attach {i} ({kind}) through the agent failed: {reply}")
                if i >= 2:  # the first pair creates the bridge
                    out[kind].append(agent.request_ms()[-1])
    finally:
        if agent is not None:
            agent.stop()
        host.close()
        for name in made:
            tb.run(["ip", "netns", "del", name], check=False)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--loops", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=40)
    args = ap.parse_args()
    print(f"lookup in this process, {args.loops} interleaved rounds, median:\n")
    print("| lookup | median |\n|---|---|")
    for k, v in micro(args.loops).items():
        print(f"| {k} | {v * 1e3:.3f} ms |")
    res = agent_ab(args.runs)
    print(f"\nattach through the agent, {args.runs} interleaved pairs, the agent's own time (its log):\n")
    print("| context backend | median | min | max |\n|---|---|---|---|")
    for k, xs in res.items():
        print(f"| {k} | {statistics.median(xs):.0f} ms | {min(xs):.0f} ms | {max(xs):.0f} ms |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
