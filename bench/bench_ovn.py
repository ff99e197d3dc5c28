#!/usr/bin/env python3
"""Benchmark: OVN networks (not a timed test).

1. attach → first cross-host ping.  On an ``ovsfab lab up --mode ovn --hosts 3``
   lab, K times: a fresh ``netns:`` target on docker-test1 is attached with
   ``ovsfab attach --network lab`` (the CLI, as that host); then it pings the
   container of docker-test3 every 10 ms until the first reply.  Reported:
   the CLI wall time, ``bound_s`` (attach's plug → ovn-northd reports the
   port up, from the JSON) and the time from the end of the attach to the
   first reply.
2. 300 attachments over three hosts: OVN mode (per host, one process entering
   the host's namespace and calling ``attach_network`` N/3 times: the
   logical port in NB plus the veth/port in br-int, one attachment at a
   time) against full-mesh VXLAN mode (``ovsfab apply FILE --host H`` on each
   host of a ``--mode vxlan --bare`` lab: one OVSDB transaction per host).

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


_OVN_WORKER = r"""
import json, sys, time
from ovsfab.ovn.network import attach_network
remote, names = sys.argv[1], sys.argv[2:]
t0 = time.monotonic()
per = []
for name in names:
    ns, addr = name.split("=")
    t = time.monotonic()
    attach_network("scale", f"netns:{ns}", [addr], ovs_remote=remote, wait=0)
    per.append(time.monotonic() - t)
print(json.dumps({"total": time.monotonic() - t0, "per": per}))
"""


def first_reply(src_ns: str, dst: str, limit: float = 30.0):  # -> Optional[float]
    """Seconds until ``src_ns`` gets a ping reply from ``dst`` (None: not within ``limit``)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        if tb.ns_run(src_ns, "ping", "-c1", "-W0.2", "-n", dst, check=False).returncode == 0:
            return round(time.monotonic() - t0, 2)
    return None


def addr(i: int) -> str:
    return f"10.90.{i // 250}.{i % 250 + 2}"


def bench_scale_ovn(n: int) -> Dict[str, object]:
    env = fresh_env()
    lab(env, "up", "--mode", "ovn", "--hosts", "3")
    names = [f"so{os.getpid() % 10000}-{i}" for i in range(n)]
    try:
        netns_batch(names, "add")
        t0 = time.monotonic()
        procs = []
        for h, host in enumerate(HOSTS):  # the three hosts work at the same time, as real ones would
            mine = [f"{nm}={addr(i)}/16" for i, nm in enumerate(names) if i % 3 == h]
            d = f"{env['OVSFAB_LAB_DIR']}/{host}"
            procs.append(subprocess.Popen(["ip", "netns", "exec", host, sys.executable, "-c", _OVN_WORKER,
                                           f"unix:{d}/db.sock", *mine], env=dict(env, OVS_RUNDIR=d, OVN_RUNDIR=d),
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        per_host = []
        for p in procs:
            out, err = p.communicate(timeout=1800)
            if p.returncode != 0:
                raise RuntimeError(err.strip().splitlines()[-1])
            per_host.append(json.loads(out))
        total = time.monotonic() - t0
        # all bound: every logical port up
        nbctl = ["ovn-nbctl", f"--db=unix:{env['OVSFAB_LAB_DIR']}/central/ovnnb_db.sock"]
        deadline = time.monotonic() + 60
        while True:
            ups = tb.run(nbctl + ["--bare", "--columns=up", "find", "Logical_Switch_Port",
                                  "external_ids:ovsfab-network=scale"]).stdout.split()
            if ups.count("true") == n or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        all_up = time.monotonic() - t0
        ok = first_reply(names[0], addr(n - 1))
        per = [p for h in per_host for p in h["per"][: max(1, len(h["per"]) // 10)]]
        last = [p for h in per_host for p in h["per"][-max(1, len(h["per"]) // 10):]]
        return {"mode": "ovn", "n": n, "total_s": total, "all_up_s": all_up,
                "per_host_s": [round(h["total"], 2) for h in per_host],
                "mean_ms_first_10pct": round(1000 * sum(per) / len(per), 1),
                "mean_ms_last_10pct": round(1000 * sum(last) / len(last), 1),
                "first_to_last_ping_after_s": ok}
    finally:
        lab(env, "down")
        netns_batch([n for n in names if os.path.exists(f"/run/netns/{n}")], "delete")


def bench_scale_vxlan(n: int) -> Dict[str, object]:
    env = fresh_env()
    lab(env, "up", "--mode", "vxlan", "--hosts", "3", "--bare")
    names = [f"sv{os.getpid() % 10000}-{i}" for i in range(n)]
    path = None
    try:
        netns_batch(names, "add")
        lines = ["hosts:"] + [f"  {h}: {{underlay: {UNDERLAY[h]}, uplink: eth1}}" for h in HOSTS]
        lines += ["networks:", "  blue: {bridge: br0, mode: vxlan, key: 5001, subnet: 10.90.0.0/16}", "attachments:"]
        lines += [f"  - {{container: 'netns:{nm}', network: blue, host: {HOSTS[i % 3]}, address: {addr(i)}}}"
                  for i, nm in enumerate(names)]
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as fh:
            fh.write("\n".join(lines) + "\n")
            path = fh.name
        t0 = time.monotonic()
        procs = [subprocess.Popen(["ip", "netns", "exec", h, sys.executable, "-m", "ovsfab", "apply", path,
                                   "--host", h, "--json"],
                                  env=dict(env, OVS_RUNDIR=f"{env['OVSFAB_LAB_DIR']}/{h}"),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for h in HOSTS]
        for p in procs:
            _out, err = p.communicate(timeout=1800)
            if p.returncode != 0:
                raise RuntimeError(err.strip())
        total = time.monotonic() - t0
        ok = first_reply(names[0], addr(n - 1))
        return {"mode": "vxlan full mesh (apply)", "n": n, "total_s": total, "first_to_last_ping_after_s": ok}
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
        print(json.dumps((bench_scale_ovn if args.only == "ovn" else bench_scale_vxlan)(args.n), default=str))
        return 0
    res = bench_first_ping(args.pings)
    print(f"attach -> first cross-host ping ({args.pings} samples): CLI median {res['median_cli_s']:.2f} s, "
          f"plug -> bound median {res['median_bound_s']:.3f} s, end of attach -> first reply max "
          f"{res['max_after_attach_s']:.3f} s")
    for r in res["samples"]:
        print(f"  cli {r['cli_s']:.2f} s  bound {r['bound_s']} s  after attach {r['after_attach_s']:.3f} s")
    if not args.skip_scale and args.only is None:
        for fn in (bench_scale_vxlan, bench_scale_ovn):
            r = fn(args.n)
            print(json.dumps(r, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
