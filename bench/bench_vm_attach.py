#!/usr/bin/env python3
"""Attach #1 against attach #N+1 on OVS's kernel (``system``) datapath, in a qemu guest.

This machine has no openvswitch module; tests/vm boots Debian's cloud kernel
under TCG.  This bench boots one guest (a) with the ``bench`` scenario of
tests/vm/guest/scenarios.py, which the suite never runs:

* ``br0`` on the system datapath; at each size N, ports are added until N
  are on it (veth pairs, recorded like ovsfab attachments, 50 per
  ``ovs-vsctl`` transaction);
* then K times: ``ovsfab attach br0 netns:...`` (a fresh process forked from
  a warm interpreter, as the suite runs ovsfab: no import time; the time of
  the OVSDB connect + initial sync and of the wait for ovs-vswitchd to apply
  the change are taken apart), and the commands ``ovs-docker add-port``
  runs (``ovs-vsctl find`` for an existing port, ``ip link add`` a veth,
  ``ovs-vsctl add-port``, move it into the netns, rename, up, address);
* one cold ``python3 -m ovsfab attach`` and three empty reconfigurations
  (``ovs-vsctl set Open_vSwitch . external_ids:...``, which waits for
  ovs-vswitchd) for scale.

Everything runs under TCG emulation, so absolute times are 10-20x a real
host's; the ratios are the point.

Usage::

    sudo .venv/bin/python bench/bench_vm_attach.py [--sizes 0,250,500,1000] [-k 5] [--timeout 900]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "vm"))

import vmrun  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="0,250,500,1000", help="ports on br0 before each batch of attaches")
    ap.add_argument("-k", type=int, default=5, help="attaches per tool and size")
    ap.add_argument("--timeout", type=float, default=900, help="seconds for the whole guest run")
    ap.add_argument("--keep-logs", type=Path, help="directory for the guest's serial log")
    args = ap.parse_args()
    t0 = time.monotonic()
    try:
        r = vmrun.run(["bench"], args.keep_logs, roles=("a",), timeout=args.timeout,
                      append=f"ovsfab.bench={args.sizes}/{args.k}", memory=2048)
    except vmrun.Unavailable as exc:
        print(f"unavailable: {exc}", file=sys.stderr)
        return 2
    g = r.guests[0]
    rows = []
    for line in g.text().splitlines():
        i = line.find("OVSFAB-BENCH ")
        if i >= 0:
            try:
                rows.append(json.loads(line[i + len("OVSFAB-BENCH "):]))
            except ValueError:
                pass
    status = g.results.get("bench", ("MISSING", "no result line (killed at the timeout?)"))
    print(f"guest run: {status[0]} {status[1]}; {time.monotonic() - t0:.0f} s; log {g.log}")
    if not rows:
        print(g.text()[-4000:])
        return 1
    by = defaultdict(list)
    for row in rows:
        by[(row["tool"], row["size"])].append(row)
    sizes = sorted({row["size"] for row in rows})

    def med(tool: str, size: int, key: str = "s") -> float:
        xs = [row[key] for row in by.get((tool, size), []) if key in row]
        return statistics.median(xs) if xs else float("nan")

    print("\n| ports on br0 | ovsfab attach (forked) | of which OVSDB connect+sync | of which waiting for "
          "vswitchd | ovsfab's own rest | ovs-docker add-port commands | ovsfab ÷ ovs-docker "
          "| cold `python3 -m ovsfab attach` | empty reconfiguration |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n in sizes:
        a, c, w = med("ovsfab", n), med("ovsfab", n, "connect"), med("ovsfab", n, "wait_vswitchd")
        od = med("ovs-docker", n)
        print(f"| {n} | {a * 1000:.0f} ms | {c * 1000:.0f} ms | {w * 1000:.0f} ms | {(a - c - w) * 1000:.0f} ms "
              f"| {od * 1000:.0f} ms | {a / od:.2f} | {med('ovsfab-cold', n) * 1000:.0f} ms "
              f"| {med('reconfigure', n) * 1000:.0f} ms |")
    lo, hi = sizes[0], sizes[-1]
    if hi != lo:
        print(f"\nattach at {hi} ports ÷ at {lo} ports (medians of {args.k}):")
        for tool in ("ovsfab", "ovs-docker", "ovsfab-cold", "reconfigure"):
            print(f"  {tool:12} {med(tool, hi) / med(tool, lo):.2f}")
        for key in ("connect", "wait_vswitchd"):
            print(f"  ovsfab {key:13} {med('ovsfab', lo, key) * 1000:.0f} ms -> {med('ovsfab', hi, key) * 1000:.0f} ms")
    return 0 if status[0] == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
