#!/usr/bin/env python3
"""Benchmark: `docker run -d` on an ovsfab network vs on Docker's own bridge network (issue 18; not a timed test).

One simulated host (tests/testbed.py: netns + private OVS, netdev datapath)
runs ``ovsfab docker-driver``; a probe namespace attached to its br0 (which
the attach creates, owned by ovsfab) is the neighbour that pings.  The bridge
network's neighbour is the host itself (its gateway address on the Linux
bridge).  For each of ``--count`` containers (default 50) per network, in
turns (ovsfab, bridge, ovsfab, ...) so drift hits both alike, the clock starts
before ``docker run -d --network NET`` and stops at the first echo reply from
the container's address (one ping per 20 ms).

Prints the median, p90 and max per network and the ratio of the medians
(target <= 1.2).

Usage (root, dockerd running)::

    .venv/bin/python bench/bench_docker_driver.py [--count 50]
"""
from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import List

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import testbed as tb  # noqa: E402

OVS_SUBNET, BRIDGE_SUBNET = "10.91.0.0/24", "10.92.0.0/24"


def first_ping(ns: object, addr: str, deadline: float = 30.0) -> bool:
    """Ping ``addr`` from ``ns`` (None: here) once per 20 ms until it answers."""
    end = time.monotonic() + deadline
    cmd = ["ping", "-4", "-n", "-c", "1", "-W", "1", "-i", "0.02", addr]
    while time.monotonic() < end:
        full = tb.ns_prefix(ns) + cmd if ns is not None else cmd
        if subprocess.run(full, capture_output=True).returncode == 0:
            return True
        time.sleep(0.02)
    return False


def run_one(image: str, net: str, ip: str, probe: object) -> float:
    name = tb.unique("bd")
    t0 = time.monotonic()
    tb.docker("run", "-d", "--name", name, "--network", net, "--ip", ip, image, "sleep", "1000000")
    if not first_ping(probe, ip):
        raise RuntimeError(f"{name} on {net} ({ip}) never answered")
    return time.monotonic() - t0


def stats(xs: List[float]) -> str:
    xs = sorted(xs)
    return (f"median {statistics.median(xs) * 1000:.0f} ms, p90 {xs[int(len(xs) * 0.9) - 1] * 1000:.0f} ms, "
            f"max {xs[-1] * 1000:.0f} ms")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=50)
    args = ap.parse_args()
    image = tb.build_busybox_image()
    host = tb.OvsHost()
    probe = tb.make_netns()
    plugin = f"ovsfab-bench{tb.RUN_ID}"
    nets, driver = [], None
    try:
        host.ovsfab("attach", "br0", probe.target, "10.91.0.254/24", check=True)
        log = open(host.rundir / "driver.log", "w")
        driver = subprocess.Popen(host.ovsfab_cmd("docker-driver", "--name", plugin, "--socket",
                                                  str(host.rundir / "d.sock")), stdout=log, stderr=log,
                                  env=tb.clean_env())
        spec = f"/etc/docker/plugins/{plugin}.spec"
        for _ in range(200):
            if os.path.exists(spec):
                break
            time.sleep(0.05)
        ovs_net, br_net = tb.unique("bn"), tb.unique("bn")
        tb.docker("network", "create", "-d", plugin, "--ipam-driver", plugin, "--subnet", OVS_SUBNET,
                  "-o", "bridge=br0", ovs_net)
        nets.append(ovs_net)
        tb.docker("network", "create", "-d", "bridge", "--subnet", BRIDGE_SUBNET, br_net)
        nets.append(br_net)
        times = {"ovsfab": [], "bridge": []}
        for i in range(args.count):
            for kind, net, subnet, ns in (("ovsfab", ovs_net, OVS_SUBNET, probe), ("bridge", br_net, BRIDGE_SUBNET, None)):
                ip = subnet.rsplit(".", 1)[0] + f".{10 + i}"
                times[kind].append(run_one(image, net, ip, ns))
        print(f"docker run -d -> first ping, {args.count} containers each (one at a time, alternating):")
        for kind in ("ovsfab", "bridge"):
            print(f"  {kind:7s} {stats(times[kind])}")
        ratio = statistics.median(times["ovsfab"]) / statistics.median(times["bridge"])
        print(f"  ratio of medians ovsfab/bridge: {ratio:.2f} (target <= 1.2)")
        return 0 if ratio <= 1.2 else 1
    finally:
        out = tb.docker("ps", "-aq", "--filter", f"name=ovsfab-bd{tb.RUN_ID}-", check=False).stdout.split()
        tb.remove_containers(out)  # one at a time (moby#46661)
        for n in nets:
            tb.docker("network", "rm", n, check=False)
        if driver is not None:
            driver.send_signal(signal.SIGTERM)
            driver.wait(timeout=20)
        tb.delete_netns(probe.name)
        host.close()


if __name__ == "__main__":
    sys.exit(main())
