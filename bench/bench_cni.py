#!/usr/bin/env python3
"""Benchmark: `podman run` to first ping, ovsfab-cni against the `bridge` plugin (issue 19).

Two CNI networks side by side, same host-local IPAM: ``ovsfab`` (a netdev
OVS bridge on a simulated host, tests/testbed.py) and Debian's ``bridge``
plugin (a Linux bridge; no gateway, no masquerade, so nothing but the bridge
itself and one iptables FORWARD rule appear in the root namespace, both
removed at the end).  The
containers are started alternately, one of each per round, ``--count``
rounds (default 50).  Each figure is the time from starting `podman run -d`
until the network's first container (the probe, started before the clock
runs) gets an echo reply from the new one (pings every 20 ms).

Prints the median and p90 of each, and the ratio of the medians (target
<= 1.2).  With ``--agent`` an ``ovsfab agent`` runs on the simulated host and
every ADD is handed to it whole (ovsfab/cni/plugin.py); without, each ADD runs
in-process.

``--direct`` times the plugin alone, as a runtime runs it: the executable
(/usr/lib/cni/ovsfab) with ``CNI_*`` and the configuration, ADD then DEL of
one namespace per round, host-local IPAM; with ``--before DIR`` the ovsfab
package in DIR (e.g. ``git archive COMMIT ovsfab | tar -x -C DIR``) runs
too, interleaved in the same rounds, through the same agent when there is
one.  Prints the medians of the wall time of each.

Usage (root, scripts/setup.sh done)::

    .venv/bin/python bench/bench_cni.py [--count 50] [--agent]
    .venv/bin/python bench/bench_cni.py --direct [--count 50] [--agent] [--before DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import podmanbed  # noqa: E402
import testbed as tb  # noqa: E402

LINUX_BRIDGE = "ovfbench0"


def FORWARD_RULE(op: str) -> List[str]:  # noqa: N802 - reads like the constant it almost is
    """iptables argv inserting (-I) or deleting (-D) the bench bridge's forwarding rule."""
    return ["iptables", op, "FORWARD", "-i", LINUX_BRIDGE, "-o", LINUX_BRIDGE, "-j", "ACCEPT"]


def first_ping(probe_ns: str, addr: str, deadline: float = 20.0) -> bool:
    """Ping ``addr`` from ``probe_ns`` every 20 ms until one reply; False (and why) after ``deadline``."""
    cmd = tb.ns_prefix(probe_ns) + ["ping", "-4", "-n", "-c", "1", "-W", "1", "-i", "0.02", "-w", str(int(deadline)),
                                    addr]
    # -w with -c 1: ping keeps sending (every -i) until the first reply or the deadline.
    cp = subprocess.run(cmd, capture_output=True, text=True, timeout=deadline + 5)
    if cp.returncode != 0:
        print(f"bench_cni: ping {addr} from {probe_ns}: {cp.stdout.strip()} {cp.stderr.strip()}", file=sys.stderr)
    return cp.returncode == 0


def one(podman: podmanbed.Podman, net: str, probe_ns: str) -> float:
    t0 = time.monotonic()
    name = podman.start(net)
    addr = podman.address(name, net)
    if not first_ping(probe_ns, addr):
        raise RuntimeError(f"{name} ({addr}) on {net} never answered")
    return time.monotonic() - t0


PLUGIN = "/usr/lib/cni/ovsfab"


def direct(host: tb.OvsHost, count: int, before: "str | None") -> None:
    """ADD and DEL through the plugin executable, ``count`` rounds; the current code and ``before``'s."""
    host.vsctl("add-br", "brdirect", "--", "set", "bridge", "brdirect", "datapath_type=netdev")
    data = tempfile.mkdtemp(prefix="ovsfab-bench-ipam-")
    conf = json.dumps({"cniVersion": "1.0.0", "name": "benchdirect", "type": "ovsfab", "bridge": "brdirect",
                       "ovsdb": host.db_url, "ovs_netns": host.name,
                       "ipam": {"type": "host-local", "dataDir": data, "ranges": [[{"subnet": "10.86.0.0/24"}]]}})
    kinds = {"now": {}}
    if before:
        kinds["before"] = {"PYTHONPATH": os.path.abspath(before)}
    times: Dict[str, List[float]] = {f"{k} {c}": [] for k in kinds for c in ("ADD", "DEL")}
    try:
        for i in range(count):
            for kind in (list(kinds) if i % 2 == 0 else list(reversed(kinds))):
                ns = tb.make_netns(tb.unique("dir"))
                env = tb.clean_env({"CNI_CONTAINERID": f"bench{kind}{i:04d}", "CNI_NETNS": ns.netns_path,
                                    "CNI_IFNAME": "eth0", "CNI_PATH": podmanbed.CNI_BIN, **kinds[kind]})
                try:
                    for command in ("ADD", "DEL"):
                        env["CNI_COMMAND"] = command
                        t0 = time.monotonic()
                        # cwd /: the package under test comes from PYTHONPATH, not the working directory
                        cp = subprocess.run([PLUGIN], input=conf.encode(), env=env, capture_output=True, cwd="/")
                        times[f"{kind} {command}"].append(time.monotonic() - t0)
                        if cp.returncode != 0:
                            raise RuntimeError(f"{kind} {command}: {cp.stdout!r} {cp.stderr[-500:]!r}")
                finally:
                    tb.delete_netns(ns.name)
    finally:
        subprocess.run(["rm", "-rf", data], check=False)
    for label, values in times.items():
        values.sort()
        print(f"{label:10s} n={len(values)} median {statistics.median(values) * 1000:.1f} ms  "
              f"p90 {values[int(len(values) * 0.9) - 1] * 1000:.1f} ms")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=50)
    ap.add_argument("--agent", action="store_true", help="an ovsfab agent serves the ADDs")
    ap.add_argument("--direct", action="store_true", help="time the plugin executable alone (ADD, DEL)")
    ap.add_argument("--before", metavar="DIR", help="with --direct: also the ovsfab package in DIR, interleaved")
    args = ap.parse_args()
    reason = podmanbed.podman_available()
    if reason:
        print(f"bench_cni: {reason}", file=sys.stderr)
        return 1
    podman = podmanbed.Podman()
    host = tb.OvsHost()
    agent = None
    try:
        if args.agent:
            from test_agent import AgentProc  # noqa: PLC0415

            agent = AgentProc(host)
            agent.wait_log("serving attach/detach")
            agent.wait_log("connected to OVSDB")
        if args.direct:
            direct(host, args.count, args.before)
            if agent is not None:
                print(f"agent: {agent.text().count('cni ADD ')} cni ADDs served")
            return 0
        podman.image()
        host.vsctl("add-br", "brbench", "--", "set", "bridge", "brbench", "datapath_type=netdev")
        nets = {"ovsfab": tb.unique("ovs"), "bridge": tb.unique("lnx")}
        podman.network(nets["ovsfab"], {"type": "ovsfab", "bridge": "brbench", "ovsdb": host.db_url,
                                        "ovs_netns": host.name}, "10.84.0.0/24")
        podman.network(nets["bridge"], {"type": "bridge", "bridge": LINUX_BRIDGE, "isGateway": False,
                                        "ipMasq": False}, "10.85.0.0/24")
        probes = {kind: podman.netns(podman.start(net)) for kind, net in nets.items()}
        # dockerd loads br_netfilter and sets FORWARD's policy to DROP: bridged
        # frames between the bridge plugin's containers would be dropped.
        # podman's own default network chains the firewall plugin for this;
        # one rule (removed below) keeps the bridge plugin's path bare.
        subprocess.run(FORWARD_RULE("-I"), check=True, capture_output=True)
        times: Dict[str, List[float]] = {kind: [] for kind in nets}
        for i in range(args.count):
            for kind in ("ovsfab", "bridge") if i % 2 == 0 else ("bridge", "ovsfab"):
                times[kind].append(one(podman, nets[kind], probes[kind]))
        for kind, values in times.items():
            values.sort()
            print(f"{kind:7s} n={len(values)} median {statistics.median(values):.3f} s  "
                  f"p90 {values[int(len(values) * 0.9) - 1]:.3f} s  max {values[-1]:.3f} s")
        ratio = statistics.median(times["ovsfab"]) / statistics.median(times["bridge"])
        served = agent.text().count("cni ADD ") if agent is not None else 0
        print(f"ratio ovsfab/bridge (medians): {ratio:.2f}  (target <= 1.2; "
              + (f"agent running, {served} ADDs served by it)" if agent is not None else "no agent)"))
    finally:
        if agent is not None and agent.proc.poll() is None:
            agent.stop()
        podman.close()
        host.close()
        subprocess.run(FORWARD_RULE("-D"), capture_output=True)
        subprocess.run(["ip", "link", "del", LINUX_BRIDGE], capture_output=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
