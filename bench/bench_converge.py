#!/usr/bin/env python3
"""Benchmark: cross-host traffic works every time (issue 16; not a timed test).

Three scenarios, each repeated ``--runs`` times (default 20):

* ``lab2`` / ``lab3``: ``ovsfab lab up --mode vxlan`` with Docker containers on
  2 / 3 simulated hosts, built the way the CLI builds it (``lab.up(bare=True)``,
  then each host's uplink, tunnels and attach in order, in-process so the
  clock starts when the last host is set up);
* ``mesh``: the three-host ``ovsfab apply`` of a VXLAN fabric (each host
  ``uplink: eth1``, two networks), one CLI call per host, one after the other
  (tests/testbed.py hosts, ``netns:`` containers).

After set-up, every ordered pair of containers is pinged in a loop (100 ms
per try) until it answers; the figure is the time from the end of set-up to
the first reply of each pair.  A run fails when any pair stays silent for
``--deadline`` seconds (default 30), or when ``ovsfab check`` (BFD, the
neighbour caches, the MTU) does not pass within that deadline.

Prints one line per run and, per scenario, failures (target 0) and the
median and max time to the first cross-host ping (target <= 1 s).

Usage (root, dockerd running)::

    .venv/bin/python bench/bench_converge.py [--runs 20] [--only lab2,lab3,mesh]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

import testbed as tb  # noqa: E402
from _crosshost_helpers import Switch  # noqa: E402
from test_apply import mesh_text  # noqa: E402

from ovsfab.plumbing.netns import Namespace  # noqa: E402
from ovsfab.plumbing.probe import ping  # noqa: E402

Pair = Tuple[str, str, str]  # (label, source netns path, destination address)


def first_pings(pairs: List[Pair], deadline: float) -> Dict[str, Optional[float]]:
    """Seconds from now until each pair first answers (None: never, within ``deadline``)."""
    t0 = time.monotonic()
    left = {label: (src, dst) for label, src, dst in pairs}
    got: Dict[str, Optional[float]] = {label: None for label, _, _ in pairs}
    while left and time.monotonic() - t0 < deadline:
        for label, (src, dst) in list(left.items()):
            with Namespace.open(src) as ns:
                if ping(ns, dst, count=1, timeout=0.1) is not None:
                    got[label] = time.monotonic() - t0
                    del left[label]
    return got


def run_lab(hosts: int, deadline: float) -> Tuple[Dict[str, Optional[float]], bool, str]:
    from ovsfab.lab import lab  # noqa: PLC0415
    from ovsfab.ops.check import check  # noqa: PLC0415
    from ovsfab.backends.ovs.backend import OvsBackend  # noqa: PLC0415
    from ovsfab.plumbing.netns import named_path  # noqa: PLC0415

    state = lab.up(hosts=hosts, mode="vxlan", bare=True)
    try:
        for host in state.hosts:
            lab._connect(state, host, lambda s: None)  # what `lab up` does, host by host
        pairs = []
        for src in state.hosts:
            if src.container.startswith("netns:"):  # no dockerd: the lab used named namespaces
                path = named_path(src.container[len("netns:"):])
            else:
                pid = json.loads(tb.docker("inspect", src.container).stdout)[0]["State"]["Pid"]
                path = f"/proc/{pid}/ns/net"
            for dst in state.hosts:
                if dst is not src:
                    pairs.append((f"{src.name}->{dst.name}", path, dst.address.split("/")[0]))
        got = first_pings(pairs, deadline)
        ok, why = True, ""
        for host in state.hosts:
            with Namespace.open(named_path(host.netns)) as ns, ns.entered():
                res = check(lambda: OvsBackend(host.remote), host.remote, wait=deadline)
            if not res.ok:
                ok, why = False, f"{host.name}: {res.problems[0].line()}"
        return got, ok and all(v is not None for v in got.values()), why
    finally:
        lab.down(quiet=True)


def run_mesh(deadline: float) -> Tuple[Dict[str, Optional[float]], bool, str]:
    hosts = [tb.OvsHost() for _ in range(3)]
    sw = Switch()
    cs = [tb.make_netns() for _ in range(6)]
    try:
        names = [f"docker-test{i + 1}" for i in range(3)]
        underlays = [f"192.168.77.{5 + i}" for i in range(3)]
        for h, ip in zip(hosts, underlays):
            sw.plug(h)
            h.ip("addr", "add", f"{ip}/24", "dev", "eth1")
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as fh:
            fh.write(mesh_text(names, underlays, [c.target for c in cs]))
        try:
            for i, h in enumerate(hosts):
                h.ovsfab("apply", fh.name, "--host", names[i], check=True, timeout=90)
        finally:
            os.unlink(fh.name)
        addr = {c.name: tb.addrs_in(c.name)["eth1"][0].split("/")[0] for c in cs}
        pairs = [(f"{cs[a].name}->{cs[b].name}", f"/run/netns/{cs[a].name}", addr[cs[b].name])
                 for net in (0, 1) for a in range(net, 6, 2) for b in range(net, 6, 2) if a != b]
        got = first_pings(pairs, deadline)
        ok, why = True, ""
        for i, h in enumerate(hosts):
            cp = h.ovsfab("check", "--wait", str(deadline))
            if cp.returncode != 0:
                ok, why = False, f"{names[i]}: {cp.stdout.strip().splitlines()[-1] if cp.stdout.strip() else cp.stderr}"
        return got, ok and all(v is not None for v in got.values()), why
    finally:
        for c in cs:
            tb.delete_netns(c.name)
        for h in hosts:
            h.close()
        sw.close()


SCENARIOS: Dict[str, Callable[[float], Tuple[Dict[str, Optional[float]], bool, str]]] = {
    "lab2": lambda d: run_lab(2, d),
    "lab3": lambda d: run_lab(3, d),
    "mesh": run_mesh,
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--only", default=",".join(SCENARIOS))
    ap.add_argument("--deadline", type=float, default=30.0)
    args = ap.parse_args()
    if os.environ.get("OVSFAB_LAB_DIR") is None:
        os.environ["OVSFAB_LAB_DIR"] = tempfile.mkdtemp(prefix="ovsfab-bench-lab-")
    summary = []
    for name in args.only.split(","):
        fails, firsts = 0, []
        for run in range(1, args.runs + 1):
            got, ok, why = SCENARIOS[name](args.deadline)
            times = [v for v in got.values() if v is not None]
            firsts.extend(times)
            fails += 0 if ok else 1
            worst = f"{max(times):.2f}" if times else "-"
            print(f"{name} run {run:2d}: {'ok  ' if ok else 'FAIL'} pairs {len(times)}/{len(got)} "
                  f"first ping max {worst} s {why}", flush=True)
        med = statistics.median(firsts) if firsts else float("nan")
        mx = max(firsts) if firsts else float("nan")
        summary.append(f"{name}: {fails}/{args.runs} failed; set-up -> first cross-host ping: "
                       f"median {med:.2f} s, max {mx:.2f} s over {len(firsts)} pairs")
    print("\n".join(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
