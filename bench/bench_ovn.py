#!/usr/bin/env python3
"""Benchmark: OVN networks (not a timed test).

1. attach → first cross-host ping.  On an ``ovsfab lab up --mode ovn --hosts 3``
   lab, K times: a fresh ``netns:`` target on docker-test1 is attached with
   ``ovsfab attach --network lab`` (the CLI, as that host); then it pings the
   container of docker-test3 every 10 ms until the first reply.  Reported:
   the CLI wall time, ``bound_s`` (attach's plug → ovn-northd reports the
   port up, from the JSON) and the time from the end of the attach to the
   first reply.
2. ``ovsfab apply`` of 300 attachments over three hosts (the three hosts at
   once, each ``apply FILE --host H``): an OVN network (``mode: ovn``, on an
   ``ovsfab lab up --mode ovn`` lab: one NB transaction for the host's
   logical ports, one OVSDB transaction for its br-int ports; then the time
   until ovn-northd reports all 300 ports up) against a full-mesh VXLAN
   network (``--mode vxlan --bare`` lab: one OVSDB transaction per host).
   Both: then the time until the first container pings the last one.

Usage (root, dockerd running, OVN installed)::

    sudo .venv/bin/python bench/bench_ovn.py [--pings 10] [--n 300] [--skip-scale]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import testbed as tb  # noqa: E402

HOSTS = ("docker-test1", "docker-test2", "docker-test3")
UNDERLAY = {"docker-test1": "192.168.77.5", "docker-test2": "192.168.77.6", "docker-test3": "192.168.77.7"}


def lab(env: Dict[str, str], *args: str) -> subprocess.CompletedProcess:
    cp = subprocess.run([sys.executable, "-m", "ovsfab", "lab", *args], env=env, capture_output=True,
                        text=True, timeout=600)
    if cp.returncode != 0:
        raise RuntimeError(f"ovsfab lab {' '.join(args)}: {cp.stderr.strip()}")
    return cp


def as_host(env: Dict[str, str], host: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    d = f"{env['OVSFAB_LAB_DIR']}/{host}"
    return subprocess.run(["ip", "netns", "exec", host, sys.executable, *args],
                          env=dict(env, OVS_RUNDIR=d, OVN_RUNDIR=d), capture_output=True, text=True,
                          timeout=timeout)


def netns_batch(names: List[str], verb: str) -> None:
    tb.run(["ip", "-batch", "-"], input="".join(f"netns {verb} {n}\n" for n in names), timeout=300)
    if verb == "add":
        for n in names:
            tb.run(["ip", "-n", n, "link", "set", "lo", "up"])


def fresh_env() -> Dict[str, str]:
    d = tempfile.mkdtemp(prefix="ovsfab-bench-ovn-")
    os.rmdir(d)
    return tb.clean_env({"OVSFAB_LAB_DIR": d})


def bench_first_ping(k: int) -> Dict[str, object]:
    env = fresh_env()
    lab(env, "up", "--mode", "ovn", "--hosts", "3")
    names = [f"bo{os.getpid() % 10000}-{i}" for i in range(k)]
    rows = []
    try:
        netns_batch(names, "add")
        st = json.loads(lab(env, "status", "--json").stdout)
        dst = st["hosts"][2]["address"].split("/")[0]
        for i, name in enumerate(names):
            t0 = time.monotonic()
            cp = as_host(env, "docker-test1", "-m", "ovsfab", "attach", "--network", "lab", f"netns:{name}",
                         f"10.78.0.{100 + i}/24", "--json")
            t1 = time.monotonic()
            if cp.returncode != 0:
                raise RuntimeError(cp.stderr.strip())
            bound = json.loads(cp.stdout)["bound_s"]
            while tb.ns_run(name, "ping", "-c1", "-W0.01", "-n", dst, check=False).returncode != 0:
                if time.monotonic() - t1 > 10:
                    raise RuntimeError("no reply within 10 s")
            rows.append({"cli_s": t1 - t0, "bound_s": bound, "after_attach_s": time.monotonic() - t1})
    finally:
        lab(env, "down")
        netns_batch([n for n in names if os.path.exists(f"/run/netns/{n}")], "delete")
    return {"samples": rows,
            "median_cli_s": statistics.median(r["cli_s"] for r in rows),
            "median_bound_s": statistics.median(r["bound_s"] for r in rows if r["bound_s"] is not None),
            "max_after_attach_s": max(r["after_attach_s"] for r in rows)}


def first_reply(src_ns: str, dst: str, limit: float = 30.0):  # -> Optional[float]
    """Seconds until ``src_ns`` gets a ping reply from ``dst`` (None: not within ``limit``)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        if tb.ns_run(src_ns, "ping", "-c1", "-W0.2", "-n", dst, check=False).returncode == 0:
            return round(time.monotonic() - t0, 2)
    return None


def addr(i: int) -> str:
    return f"10.90.{i // 250}.{i % 250 + 2}"


def _fabric(names: List[str], mode: str) -> str:
    """The fabric file: N netns targets spread over the three hosts, one network of ``mode``."""
    up = ", uplink: eth1" if mode == "vxlan" else ""
    lines = ["name: scale", "hosts:"] + [f"  {h}: {{underlay: {UNDERLAY[h]}{up}}}" for h in HOSTS]
    net = "{bridge: br0, mode: vxlan, key: 5001, subnet: 10.90.0.0/16}" if mode == "vxlan" else \
        "{mode: ovn, subnet: 10.90.0.0/16}"
    lines += ["networks:", f"  scale: {net}", "attachments:"]
    lines += [f"  - {{container: 'netns:{nm}', network: scale, host: {HOSTS[i % 3]}, address: {addr(i)}}}"
              for i, nm in enumerate(names)]
    return "\n".join(lines) + "\n"


def _apply_everywhere(env: Dict[str, str], path: str) -> List[dict]:
    """``ovsfab apply FILE --host H`` on the three hosts at once, as real hosts would run it."""
    procs = []
    for h in HOSTS:
        d = f"{env['OVSFAB_LAB_DIR']}/{h}"
        procs.append(subprocess.Popen(["ip", "netns", "exec", h, sys.executable, "-m", "ovsfab", "apply", path,
                                       "--host", h, "--json"], env=dict(env, OVS_RUNDIR=d, OVN_RUNDIR=d),
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    out = []
    for p in procs:
        stdout, err = p.communicate(timeout=1800)
        if p.returncode != 0:
            raise RuntimeError(err.strip())
        out.append(json.loads(stdout))
    return out


def bench_scale(n: int, mode: str) -> Dict[str, object]:
    """``apply`` of N attachments over three hosts: ``mode`` is ovn or vxlan (full mesh)."""
    env = fresh_env()
    lab(env, "up", "--mode", mode, "--hosts", "3", *(["--bare"] if mode == "vxlan" else []))
    names = [f"s{mode[0]}{os.getpid() % 10000}-{i}" for i in range(n)]
    path = None
    try:
        netns_batch(names, "add")
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as fh:
            fh.write(_fabric(names, mode))
            path = fh.name
        t0 = time.monotonic()
        results = _apply_everywhere(env, path)
        total = time.monotonic() - t0
        out: Dict[str, object] = {
            "mode": "ovn (apply)" if mode == "ovn" else "vxlan full mesh (apply)", "n": n,
            "total_s": round(total, 2),
            "per_host_s": [r["timings"]["total_s"] for r in results],
            "commit_s": [r["timings"].get("commit_s") for r in results]}
        if mode == "ovn":
            out["ovn_ports_s"] = [r["timings"].get("ovn_ports_s") for r in results]
            # every logical port bound (ovn-northd sets up=true once a chassis claimed it)
            nbctl = ["ovn-nbctl", f"--db=unix:{env['OVSFAB_LAB_DIR']}/central/ovnnb_db.sock"]
            deadline = time.monotonic() + 120
            while True:
                ups = tb.run(nbctl + ["--bare", "--columns=up", "find", "Logical_Switch_Port",
                                      "external_ids:ovsfab-network=scale"]).stdout.split()
                if ups.count("true") == n or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            out["all_bound_s"] = round(time.monotonic() - t0, 2)
            out["bound"] = ups.count("true")
        out["first_to_last_ping_after_s"] = first_reply(names[0], addr(n - 1))
        return out
    finally:
        lab(env, "down")
        netns_batch([n for n in names if os.path.exists(f"/run/netns/{n}")], "delete")
        if path:
            os.unlink(path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pings", type=int, default=10)
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--skip-scale", action="store_true")
    ap.add_argument("--only", choices=("ping", "ovn", "vxlan"), help="run one part only")
    args = ap.parse_args()
    if args.only in ("ovn", "vxlan"):
        print(json.dumps(bench_scale(args.n, args.only), default=str))
        return 0
    res = bench_first_ping(args.pings)
    print(f"attach -> first cross-host ping ({args.pings} samples): CLI median {res['median_cli_s']:.2f} s, "
          f"plug -> bound median {res['median_bound_s']:.3f} s, end of attach -> first reply max "
          f"{res['max_after_attach_s']:.3f} s")
    for r in res["samples"]:
        print(f"  cli {r['cli_s']:.2f} s  bound {r['bound_s']} s  after attach {r['after_attach_s']:.3f} s")
    if not args.skip_scale and args.only is None:
        for mode in ("vxlan", "ovn"):
            print(json.dumps(bench_scale(args.n, mode), default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
