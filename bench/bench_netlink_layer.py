#!/usr/bin/env python3
"""The Linux backend and L3Handle on the one netlink socket (netlink/rtnl.py) against pyroute2's IPRoute.

Two source trees side by side, interleaved in one run (the machine is
shared: medians): this checkout and an older one given with ``--old``
(``git archive COMMIT ovsfab | tar -x -C DIR``), each imported through
``PYTHONPATH``.  In a fresh network namespace (a bridge, a veth with
addresses and routes):

* ``attach`` + ``detach`` of a ``netns:`` target with ``--backend linux``:
  whole CLI processes, as a shell runs them (``--runs`` pairs);
* in one process, ``--loops`` rounds of: a LinuxBackend opened, its
  attachments listed, closed; and an L3Handle reading a link's addresses
  and routes (``l3_config``) and the route to an address (``route_to``).

Usage::

    git archive 2236617 ovsfab | tar -x -C /tmp/old
    sudo .venv/bin/python bench/bench_netlink_layer.py --old /tmp/old [--runs 20] [--loops 300]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

REPO = Path(__file__).resolve().parent.parent
PY = str(REPO / ".venv" / "bin" / "python")

MICRO = r"""
import json, statistics, sys, time
from ovsfab.backends.linux import LinuxBackend
from ovsfab.plumbing.links import L3Handle
loops = int(sys.argv[1])
out = {"LinuxBackend open + list_attachments + close": [], "L3Handle l3_config + route_to": []}
for _ in range(loops):
    t = time.perf_counter()
    b = LinuxBackend(); b.list_attachments(); b.close()
    out["LinuxBackend open + list_attachments + close"].append(time.perf_counter() - t)
    h = L3Handle()
    t = time.perf_counter()
    h.l3_config(h.index("bnl0")); h.route_to("10.77.0.9")
    out["L3Handle l3_config + route_to"].append(time.perf_counter() - t)
    h.close()
print(json.dumps({k: statistics.median(v) for k, v in out.items()}))
"""


def sh(*cmd: str) -> None:
    subprocess.run(list(cmd), check=True, capture_output=True)


def in_ns(ns: str, tree: str, *cmd: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=tree, OVS_RUNDIR="/nonexistent-bench")
    return subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True, env=env, timeout=120)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old", required=True, help="the older tree (a directory holding ovsfab/)")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--loops", type=int, default=300)
    args = ap.parse_args()
    trees = {"old (IPRoute)": os.path.abspath(args.old), "new (rtnl.py)": str(REPO)}
    ns, target = f"bnl{os.getpid()}", f"bnlt{os.getpid()}"
    cli: Dict[str, List[float]] = {k: [] for k in trees}
    micro: Dict[str, List[Dict[str, float]]] = {k: [] for k in trees}
    try:
        for name in (ns, target):
            sh("ip", "netns", "add", name)
        sh("ip", "-n", ns, "link", "add", "bnl0", "type", "veth", "peer", "name", "bnl1")
        sh("ip", "-n", ns, "link", "set", "bnl0", "up")
        sh("ip", "-n", ns, "addr", "add", "10.77.0.1/24", "dev", "bnl0")
        sh("ip", "-n", ns, "route", "add", "10.78.0.0/24", "via", "10.77.0.2")
        for r in range(args.runs):
            for label, tree in (trees.items() if r % 2 == 0 else reversed(trees.items())):
                t = time.perf_counter()
                for verb in (["attach", "brb", f"netns:{target}", "10.79.0.2/24"], ["detach", "brb", f"netns:{target}"]):
                    cp = in_ns(ns, tree, PY, "-m", "ovsfab", "--backend", "linux", *verb)
                    if cp.returncode != 0:
                        raise SystemExit(f"{label}: ovsfab {' '.join(verb)} failed: {cp.stderr.strip()}")
                cli[label].append(time.perf_counter() - t)
        for r in range(5):
            for label, tree in (trees.items() if r % 2 == 0 else reversed(trees.items())):
                cp = in_ns(ns, tree, PY, "-c", MICRO, str(args.loops))
                if cp.returncode != 0:
                    raise SystemExit(f"{label}: {cp.stderr.strip()}")
                micro[label].append(json.loads(cp.stdout))
    finally:
        for name in (ns, target):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
    print(f"`ovsfab --backend linux attach` + `detach` (whole processes), {args.runs} interleaved pairs, median:\n")
    print("| tree | median | min | max |\n|---|---|---|---|")
    for label, xs in cli.items():
        print(f"| {label} | {statistics.median(xs) * 1000:.0f} ms | {min(xs) * 1000:.0f} ms "
              f"| {max(xs) * 1000:.0f} ms |")
    print(f"\nin one process, {args.loops} rounds x 5 interleaved processes (median of the medians):\n")
    keys = list(next(iter(micro.values()))[0])
    print("| tree | " + " | ".join(keys) + " |\n|---|" + "---|" * len(keys))
    for label, runs in micro.items():
        print(f"| {label} | " + " | ".join(f"{statistics.median(r[k] for r in runs) * 1000:.2f} ms" for k in keys)
              + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
