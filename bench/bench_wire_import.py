#!/usr/bin/env python3
"""What agent/wire.py's use of CPython's private ``_json`` saves the lean client: ``import json`` avoided.

Fresh interpreters (what every ``ovsfab`` command is), interleaved in one
run (the machine is shared: medians): a bare start, one that imports
:mod:`json` and round-trips a small object through it, and one that does
the same through ``ovsfab.agent.wire`` (which drives ``_json``'s scanner and
encoder itself, tests/test_wire_private.py guards that).  The saving is
``json - wire``; ``wire - bare`` is what the module costs.

Usage::

    .venv/bin/python bench/bench_wire_import.py [--runs 40]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from typing import Dict, List

CASES = {
    "bare": "pass",
    "json": "import json; json.loads(json.dumps({'a': [1, 'x']}))",
    "wire": "from ovsfab.agent import wire; wire.loads(wire.dumps({'a': [1, 'x']}))",
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=40, help="interpreters per case (interleaved)")
    args = ap.parse_args()
    times: Dict[str, List[float]] = {k: [] for k in CASES}
    for _ in range(args.runs):
        for name, code in CASES.items():
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True)
            times[name].append((time.perf_counter() - t0) * 1000)
    med = {k: statistics.median(v) for k, v in times.items()}
    for name in CASES:
        print(f"{name:5} median {med[name]:6.1f} ms  (N={args.runs})")
    print(f"json - wire: {med['json'] - med['wire']:.1f} ms saved per command; "
          f"wire - bare: {med['wire'] - med['bare']:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
