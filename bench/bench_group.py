#!/usr/bin/env python3
"""Benchmark: N concurrent ``ovsfab attach`` through the agent against one ``ovsfab apply`` of the same N.

Issue 21's bar for the agent's group commit: 100 concurrent attaches (as a
shell would start them, ``xargs -P 16``) finish in <= 1.5x the time of one
``apply`` of the same 100.  Each side runs on a fresh simulated host
(tests/testbed.py: a netns with a private ovsdb-server + ovs-vswitchd,
netdev datapath) with N named netns targets and an empty bridge; the
attaches go through an ``ovsfab agent`` started on that host.  Every command
is a whole process, as from a shell.  Prints both wall times, their ratio,
and how many attaches the agent put in shared transactions (its log).

Usage (root)::

    .venv/bin/python bench/bench_group.py [--n 100] [--parallel 16] [--rounds 3]
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Tuple

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import testbed as tb  # noqa: E402
from bench_apply import addr, fabric_file, netns_batch  # noqa: E402
from test_agent import AgentProc  # noqa: E402


def concurrent_attaches(n: int, parallel: int) -> Tuple[float, int, str]:
    host = tb.OvsHost()
    names = [f"og{os.getpid() % 10000}-{i}" for i in range(n)]
    netns_batch(names, "add")
    agent = AgentProc(host)
    try:
        agent.wait_log("serving attach/detach")
        agent.wait_log("connected to OVSDB")
        lines = "".join(f"netns:{nm} {addr(i)}/16\n" for i, nm in enumerate(names))
        cmd = host.ovsfab_cmd("attach", "br0")  # + target address, from xargs
        t0 = time.monotonic()
        cp = subprocess.run(["xargs", "-P", str(parallel), "-L", "1", *cmd], input=lines, text=True,
                            capture_output=True, timeout=600, env=tb.clean_env(), cwd=str(REPO))
        total = time.monotonic() - t0
        if cp.returncode != 0:
            raise RuntimeError(f"an attach failed: {cp.stderr.strip()[-500:]}")
        ports = [p for p in tb.ovs_ports(host) if p.startswith("ovf")]
        assert len(ports) == n, f"expected {n} ports, found {len(ports)}"
        text = agent.text()
        grouped = sum(int(g) for g in re.findall(r"op: attach x(\d+) in one transaction", text))
        groups = len(re.findall(r"op: attach x\d+ in one transaction", text))
        return total, grouped, f"{groups} shared transactions"
    finally:
        if agent.proc.poll() is None:
            agent.stop()
        host.close()
        netns_batch(names, "delete")


def one_apply(n: int) -> float:
    host = tb.OvsHost()
    names = [f"oa{os.getpid() % 10000}-{i}" for i in range(n)]
    netns_batch(names, "add")
    try:
        path = fabric_file(names)
        try:
            t0 = time.monotonic()
            host.ovsfab("apply", path, "--host", "bench", check=True, timeout=600)
            return time.monotonic() - t0
        finally:
            os.unlink(path)
    finally:
        host.close()
        netns_batch(names, "delete")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--parallel", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    conc: List[float] = []
    apps: List[float] = []
    for r in range(args.rounds):  # interleaved, so a drift of the machine hits both
        total, grouped, how = concurrent_attaches(args.n, args.parallel)
        conc.append(total)
        apps.append(one_apply(args.n))
        print(f"round {r + 1}: {args.n} concurrent attaches {total:.2f} s ({grouped} of them in {how}); "
              f"one apply {apps[-1]:.2f} s; ratio {total / apps[-1]:.2f}", flush=True)
    c, a = statistics.median(conc), statistics.median(apps)
    print(f"\nmedian of {args.rounds}: {args.n} concurrent `ovsfab attach` (xargs -P {args.parallel}, agent) "
          f"{c:.2f} s, one `ovsfab apply` {a:.2f} s: ratio {c / a:.2f} (bar <= 1.5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
