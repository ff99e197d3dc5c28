#!/usr/bin/env python3
"""Benchmark ``ovsfab show`` / ``ovsfab inspect`` on a host with N attachments.

Builds a simulated host (tests/testbed.py: a netns with a private
ovsdb-server + ovs-vswitchd, netdev datapath), creates N named network
namespaces and attaches each with ovsfab's own ``attach`` operation, driven
in-process in one loop (the CLI costs ~0.7 s per call; this is ~10x faster).
Then it times, each several times, the median:

* ``ovsfab show`` and ``ovsfab show --json`` as a user runs them (whole process),
* ``ovsfab inspect netns:...`` (whole process),
* ``ovsfab.ops.inspect.show()`` in-process (without Python start-up and imports),
  with the stock python-ovs from PyPI (pure-Python JSON parser) and, for
  comparison, with the C JSON parser of Debian's python3-openvswitch loaded
  into the same python-ovs (bench only; the product never does this).

Needs root.  Usage::

    .venv/bin/python bench/bench_show.py [-n 300] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import testbed as tb  # noqa: E402


def _attach_all(prefix: str, n: int) -> None:
    """Runs inside the simulated host: attach netns prefix-0..n-1 to br0."""
    from ovsfab.backends.factory import get_backend
    from ovsfab.model import AttachRequest
    from ovsfab.ops.attach import attach

    def factory():
        return get_backend("ovs")

    t0 = time.monotonic()
    for i in range(n):
        addr = f"10.200.{i // 250}.{i % 250 + 1}/16"
        attach(AttachRequest.parse("br0", f"netns:{prefix}{i}", [addr]), factory)
        if (i + 1) % 50 == 0:
            print(f"  attached {i + 1}/{n} ({time.monotonic() - t0:.1f} s)", flush=True)


#: Debian's build of python-ovs ships the C JSON parser that the PyPI wheel lacks.
DEBIAN_OVS_JSON = "/usr/lib/python3/dist-packages/ovs/_json.cpython-311-x86_64-linux-gnu.so"


def _load_c_json() -> bool:
    """For comparison only: make python-ovs use its C JSON parser if one is on the machine."""
    import importlib.util

    import ovs

    if not os.path.exists(DEBIAN_OVS_JSON) or sys.version_info[:2] != (3, 11):
        return False
    spec = importlib.util.spec_from_file_location("ovs._json", DEBIAN_OVS_JSON)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    sys.modules["ovs._json"] = mod
    ovs._json = mod  # ovs.json checks for it at import, below
    import ovs.json

    return ovs.json.PARSER == ovs.json.PARSER_C


def _show_in_process(runs: int, c_json: bool) -> None:
    """Runs inside the simulated host: time show() without interpreter start-up."""
    if c_json and not _load_c_json():
        print("in-process show(), C JSON parser: not available on this machine")
        return
    from ovsfab.ops.inspect import show

    show()  # warm the imports
    times = []
    for _ in range(runs):
        t0 = time.monotonic()
        result = show()
        times.append(time.monotonic() - t0)
    ports = sum(len(b.ports) for b in result.bridges)
    parser = "C JSON parser (Debian python3-openvswitch)" if c_json else "stock python-ovs (pure-Python JSON)"
    print(f"in-process show(), {parser}: median {statistics.median(times):.3f} s over {runs} runs "
          f"({ports} ports)")


def _timed(host: tb.OvsHost, runs: int, *args: str) -> float:
    times = []
    for _ in range(runs):
        t0 = time.monotonic()
        host.ovsfab(*args, check=True)
        times.append(time.monotonic() - t0)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=300, help="number of attached namespaces")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--inner", choices=("attach", "show"), help=argparse.SUPPRESS)
    ap.add_argument("--prefix", help=argparse.SUPPRESS)
    ap.add_argument("--c-json", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.inner == "attach":
        _attach_all(args.prefix, args.n)
        return 0
    if args.inner == "show":
        _show_in_process(args.runs, args.c_json)
        return 0

    if os.geteuid() != 0:
        print("bench_show needs root", file=sys.stderr)
        return 2
    prefix = f"ovsfab-b{os.getpid()}-"
    host = tb.OvsHost()
    made = []
    try:
        t0 = time.monotonic()
        for i in range(args.n):
            tb.run(["ip", "netns", "add", f"{prefix}{i}"])
            made.append(f"{prefix}{i}")
        print(f"created {args.n} namespaces in {time.monotonic() - t0:.1f} s", flush=True)
        inner = host.ovsfab_cmd()[:-3] + [sys.executable, str(Path(__file__).resolve())]
        t0 = time.monotonic()
        subprocess.run(inner + ["--inner", "attach", "--prefix", prefix, "-n", str(args.n)],
                       check=True, env=tb.clean_env(), cwd=str(REPO))
        print(f"attached {args.n} namespaces in {time.monotonic() - t0:.1f} s", flush=True)

        cp = host.ovsfab("show", check=True)
        lines = cp.stdout.count("\n")
        print(f"ovsfab show: {lines} lines of output")
        print(f"ovsfab show          (CLI, whole process): median {_timed(host, args.runs, 'show'):.3f} s")
        print(f"ovsfab show --json   (CLI, whole process): median "
              f"{_timed(host, args.runs, 'show', '--json'):.3f} s")
        print(f"ovsfab inspect netns (CLI, whole process): median "
              f"{_timed(host, args.runs, 'inspect', f'netns:{prefix}0'):.3f} s")
        print(f"ovsfab --help        (CLI start-up floor): median {_timed(host, args.runs, '--help'):.3f} s")
        for extra in ([], ["--c-json"]):
            subprocess.run(inner + ["--inner", "show", "--runs", str(args.runs)] + extra,
                           check=True, env=tb.clean_env(), cwd=str(REPO))
    finally:
        for name in made:
            tb.delete_netns(name)
        host.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
