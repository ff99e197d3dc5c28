#!/usr/bin/env python3
"""At 1,000 ports: one vswitchd reconfiguration with ovsfab's rows vs plain rows; attach vs ovs-docker.

Two simulated hosts (tests/testbed.py: netns + private ovsdb-server +
ovs-vswitchd, netdev datapath), each with ``--ports`` (1000) veth ports on
``br0`` whose peers live in namespaces of their own (up, IPv6 off, as
dockerd's containers without IPv6):

* ``ovsfab``: the ports are ovsfab attachments, made by ``ovsfab apply`` in
  steps of 250 (every key ovsfab writes: Port and Interface external_ids,
  fabric tags);
* ``plain``: the same port names, made with ``ip link`` + one ``ovs-vsctl
  add-port`` transaction: no external_ids at all.

Part 1, the question of issue #21: does one ``ovs-vsctl set Bridge br0
external_ids:x=N`` (an empty reconfiguration: ovs-vsctl waits for
ovs-vswitchd) cost more with ovsfab's rows?  Timed interleaved on both hosts
(``--sets`` each, medians) twice: settled (ovs-vswitchd's CPU idle for a
second first) and right after a port was added on that host (an ovsfab
attach / a veth + ``ovs-vsctl add-port``), which is when the ``flat`` run of
bench_cli.py took its 382 ms.  ovs-vswitchd's CPU per set is reported too
(less sensitive to the other load on the machine than wall time).

Part 2, the flat bar at 1,000 ports: with ``ovsfab agent`` running on the
ovsfab host, ``--runs`` (20) rounds, each ``ovs-docker add-port br0 eth1 C``
then ``ovsfab attach br0 C ADDR`` of two fresh Docker containers (busybox,
``--network none``), whole commands from a shell in the host's netns, as in
``bench_cli.py cli``.

Usage (root, dockerd, ovs-docker)::

    sudo .venv/bin/python bench/bench_ports1k.py [--ports 1000] [--sets 15] [--runs 20]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench"))

import testbed as tb  # noqa: E402
from bench_apply import byte_compile, fabric_file, netns_batch  # noqa: E402
from bench_cli import OVSFAB, Agent, host_cmd, start_containers, timed  # noqa: E402


def cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def vswitchd_pid(host: tb.OvsHost) -> int:
    return int((Path(host.rundir) / "ovs-vswitchd.pid").read_text())


def settle(host: tb.OvsHost, idle: float = 0.05, limit: float = 30.0) -> None:
    """Wait until ovs-vswitchd used < ``idle`` of a CPU over the last second (or ``limit`` passed)."""
    pid, end = vswitchd_pid(host), time.monotonic() + limit
    while time.monotonic() < end:
        c0 = cpu_s(pid)
        time.sleep(1.0)
        if cpu_s(pid) - c0 < idle:
            return


def build_ovsfab(host: tb.OvsHost, names: List[str], step: int = 250) -> None:
    for k in range(step, len(names) + step, step):
        path = fabric_file(names[:k])
        try:
            t0 = time.monotonic()
            tb.run(host_cmd(host, OVSFAB, "apply", path, "--host", "bench"), timeout=900, env=tb.clean_env())
            print(f"  ovsfab host: {min(k, len(names))} ports ({time.monotonic() - t0:.1f} s)", flush=True)
        finally:
            os.unlink(path)


def build_plain(host: tb.OvsHost, ports: List[str], peers: List[str]) -> None:
    host.vsctl("add-br", "br0", "--", "set", "bridge", "br0", "datapath_type=netdev")
    script = "".join(f"link add {p} type veth peer name eth1 netns {n}\n" for p, n in zip(ports, peers))
    script += "".join(f"link set {p} up\n" for p in ports)
    tb.run(["ip", "-n", host.name, "-batch", "-"], input=script, timeout=600)
    # host ends without IPv6, as ovsfab makes them (docs/performance.md: "The host end of a veth has no IPv6")
    tb.run(["ip", "netns", "exec", host.name, "sh", "-c",
            "for p in " + " ".join(ports) + "; do echo 1 > /proc/sys/net/ipv6/conf/$p/disable_ipv6; done"],
           timeout=600)
    tb.run(["ip", "-batch", "-"], input="".join(f"netns exec {n} ip link set eth1 up\n" for n in peers),
           timeout=600)
    args: List[str] = []
    for p in ports:
        args += ["--", "add-port", "br0", p]
    tb.run(["ovs-vsctl", f"--db={host.db_url}", "--timeout=600", *args], timeout=700)
    print(f"  plain host: {len(ports)} ports", flush=True)


def one_set(host: tb.OvsHost, value: str) -> Dict[str, float]:
    """One ``ovs-vsctl set`` that changes the Bridge row (a value it does not have yet)."""
    pid = vswitchd_pid(host)
    c0 = cpu_s(pid)
    wall = timed(["ovs-vsctl", f"--db={host.db_url}", "set", "Bridge", "br0", f"external_ids:bench={value}"])
    return {"wall": wall, "cpu": cpu_s(pid) - c0}


def add_one(host: tb.OvsHost, kind: str, i: int, spares: List[str]) -> None:
    """One new port on ``host``: an ovsfab attach (in-process), or a veth + ovs-vsctl add-port."""
    ns = spares.pop()
    if kind == "ovsfab":
        timed(host_cmd(host, OVSFAB, "attach", "br0", f"netns:{ns}", f"10.78.1.{i + 1}/16"),
              env={"OVSFAB_NO_AGENT": "1"})
    else:
        port = f"bx{os.getpid() % 10000}-{i}"
        tb.run(["ip", "-n", host.name, "link", "add", port, "type", "veth", "peer", "name", "eth1", "netns", ns])
        tb.run(["ip", "netns", "exec", host.name, "sysctl", "-qw", f"net.ipv6.conf.{port}.disable_ipv6=1"])
        tb.run(["ip", "-n", host.name, "link", "set", port, "up"])
        tb.run(["ip", "-n", ns, "link", "set", "eth1", "up"])
        host.vsctl("add-port", "br0", port)


def part1(hosts: Dict[str, tb.OvsHost], sets: int, spares: Dict[str, List[str]]) -> Dict[str, Dict[str, list]]:
    res: Dict[str, Dict[str, list]] = {f"{h} {w}": {"wall": [], "cpu": []} for h in hosts for w in ("settled", "after")}
    for k in range(sets):
        for h, host in hosts.items():
            settle(host)
            r = one_set(host, f"s{k}")
            for m in r:
                res[f"{h} settled"][m].append(r[m])
        for h, host in hosts.items():
            add_one(host, h, k, spares[h])
            r = one_set(host, f"a{k}")
            for m in r:
                res[f"{h} after"][m].append(r[m])
    return res


def part2(host: tb.OvsHost, runs: int) -> Dict[str, List[float]]:
    tb.build_busybox_image()
    names = start_containers(f"obk{os.getpid()}-", 2 * runs)
    agent: Optional[Agent] = None
    res: Dict[str, List[float]] = {"ovs-docker add-port": [], "ovsfab attach (agent)": []}
    try:
        agent = Agent(host)
        served0 = agent.served()
        for r in range(runs):
            od, ag = names[2 * r:2 * r + 2]
            res["ovs-docker add-port"].append(timed(host_cmd(
                host, "ovs-docker", "add-port", "br0", "eth1", od, f"--ipaddress=10.79.0.{2 * r + 1}/16")))
            res["ovsfab attach (agent)"].append(timed(host_cmd(
                host, OVSFAB, "attach", "br0", ag, f"10.79.0.{2 * r + 2}/16")))
        assert agent.served() - served0 == runs, "not every ovsfab attach went through the agent"
        res["agent's own time"] = [ms / 1000 for ms in agent.request_ms()[-runs:]]
    finally:
        if agent is not None:
            agent.stop()
        tb.remove_containers(names)  # one at a time: dockerd 20.10 deadlocks on parallel rm
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ports", type=int, default=1000)
    ap.add_argument("--sets", type=int, default=15, help="ovs-vsctl sets per host and condition (part 1)")
    ap.add_argument("--runs", type=int, default=20, help="attaches per tool (part 2; 0: skip it)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_ports1k: needs root (netns, OVS daemons, docker); run it with sudo", file=sys.stderr)
        return 7
    if args.runs and tb.docker_available():
        print(f"bench_ports1k: {tb.docker_available()}; start dockerd or pass --runs 0", file=sys.stderr)
        return 2
    byte_compile()
    tag = os.getpid() % 10000
    targets = {h: [f"bk{h[0]}{tag}-{i}" for i in range(args.ports + args.sets)] for h in ("ovsfab", "plain")}
    hosts: Dict[str, tb.OvsHost] = {}
    try:
        t0 = time.monotonic()
        for h, names in targets.items():
            netns_batch(names, "add", ipv6=False)
            hosts[h] = tb.OvsHost()
        build_ovsfab(hosts["ovsfab"], targets["ovsfab"][:args.ports])
        ports = sorted(p for p in tb.ovs_ports(hosts["ovsfab"]) if p != "br0")
        build_plain(hosts["plain"], ports, targets["plain"][:args.ports])
        print(f"built in {time.monotonic() - t0:.0f} s", flush=True)
        spares = {h: list(reversed(names[args.ports:])) for h, names in targets.items()}
        res1 = part1(hosts, args.sets, spares)
        hosts.pop("plain").close()
        res2 = part2(hosts["ovsfab"], args.runs) if args.runs else {}
    finally:
        for host in hosts.values():
            host.close()
        for names in targets.values():
            netns_batch(names, "delete")
    med = statistics.median
    print(f"\n`ovs-vsctl set Bridge br0 external_ids:bench=N` at {args.ports} ports, {args.sets} each, interleaved:\n")
    print("| rows on br0 | when | wall, median (min-max) | ovs-vswitchd CPU, median |\n|---|---|---|---|")
    for key, r in res1.items():
        h, when = key.split()
        print(f"| {h} | {'settled' if when == 'settled' else 'right after a port was added'} | "
              f"{med(r['wall']) * 1000:.0f} ms ({min(r['wall']) * 1000:.0f}-{max(r['wall']) * 1000:.0f}) | "
              f"{med(r['cpu']) * 1000:.0f} ms |")
    if res2:
        ref = med(res2["ovs-docker add-port"])
        print(f"\nper attach with {args.ports}+ ports on br0, {args.runs} rounds interleaved (whole commands):\n")
        print("| command | median | min | max | ÷ ovs-docker |\n|---|---|---|---|---|")
        for k, xs in res2.items():
            print(f"| {k} | {med(xs) * 1000:.0f} ms | {min(xs) * 1000:.0f} ms | {max(xs) * 1000:.0f} ms "
                  f"| {med(xs) / ref:.2f} |")
        ratio = med(res2["ovsfab attach (agent)"]) / ref
        print(f"\nbar (agent attach <= 0.5 x ovs-docker at {args.ports} ports): {ratio:.2f}, "
              f"{'met' if ratio <= 0.5 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
