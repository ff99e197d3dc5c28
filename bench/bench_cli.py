#!/usr/bin/env python3
"""``ovsfab attach`` from a shell, against ``ovs-docker add-port``; and the cost as the bridge grows.

Two parts (both need root; the packages the README installs, plus dockerd
and ovs-docker for part 1):

``cli`` (default)
    A simulated host (tests/testbed.py: a netns with a private ovsdb-server +
    ovs-vswitchd, netdev datapath) and a bridge with ``--base`` (100) Docker
    containers already on it (busybox, ``--network none``).  Then ``--runs``
    (20) rounds, each attaching three fresh containers one after the other:
    ``ovs-docker add-port``, ``ovsfab attach`` with the agent running (the
    CLI hands the work to it), ``ovsfab attach`` in-process
    (``OVSFAB_NO_AGENT=1``).  Every command is a whole process started from
    this script, as a shell loop would, inside the host's netns.  Also:
    ``ovsfab --help`` and an empty ``python -c pass`` for scale.  ovsfab is
    byte-compiled first, as ``pip install`` leaves a package (under
    ``PYTHONDONTWRITEBYTECODE=1`` each call compiled its modules from source).

``flat``
    ``--ports`` (1000) named netns attached through the agent's socket
    (one request each, no Python start-up: the agent's own time), then
    ``ovsfab attach`` from the shell for attach #1..20 on an empty bridge
    against attach #N+1..N+20.  Also prints the agent-side time per attach
    against the port count (``--csv`` writes it for bench/plot.py).

Usage::

    sudo .venv/bin/python bench/bench_cli.py cli  [--base 100] [--runs 20] [--csv out.csv]
    sudo .venv/bin/python bench/bench_cli.py flat [--ports 1000] [--csv out.csv]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

import testbed as tb  # noqa: E402
from bench_group import byte_compile  # noqa: E402

OVSFAB = str(REPO / ".venv" / "bin" / "ovsfab")


class Agent:
    """``ovsfab agent`` inside the host's netns, logging to a file."""

    def __init__(self, host: tb.OvsHost) -> None:
        self.log = Path(host.rundir) / "bench-agent.log"
        self._fh = open(self.log, "w")
        self.proc = subprocess.Popen(host_cmd(host, OVSFAB, "agent", "--interval", "3600"),
                                     stdout=self._fh, stderr=subprocess.STDOUT, env=tb.clean_env())
        deadline = time.monotonic() + 60
        while not ("serving attach/detach" in self.text() and "connected to OVSDB" in self.text()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the agent did not start:\n{self.text()}")
            time.sleep(0.1)
        time.sleep(2)  # let its start-up reconcile pass finish

    def text(self) -> str:
        return self.log.read_text()

    def served(self) -> int:
        return self.text().count(" op: ")

    def request_ms(self) -> List[float]:
        """The agent's own time for each request it served (its log: ``... -> exit 0 (12 ms)``)."""
        return [float(line.rsplit("(", 1)[1].split(" ms)")[0]) for line in self.text().splitlines()
                if " op: " in line and line.endswith(" ms)")]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._fh.close()


def host_cmd(host: tb.OvsHost, *cmd: str) -> List[str]:
    """A command run inside the simulated host (its netns, its OVS)."""
    return ["ip", "netns", "exec", host.name, "env", f"OVS_RUNDIR={host.rundir}", *cmd]


def timed(cmd: Sequence[str], env: Optional[Dict[str, str]] = None) -> float:
    """Wall time of one whole command; exits on failure (a bench of failures is worthless)."""
    t0 = time.perf_counter()
    cp = subprocess.run(list(cmd), capture_output=True, text=True, env=tb.clean_env(env), timeout=120)
    dt = time.perf_counter() - t0
    if cp.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({cp.returncode}): {cp.stderr.strip()}")
    return dt


def med(xs: List[float]) -> float:
    return statistics.median(xs)


def start_containers(prefix: str, n: int) -> List[str]:
    """n busybox containers (`--network none`), started a few at a time (parallel *run* is safe)."""
    names = [f"{prefix}{i}" for i in range(n)]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda nm: tb.docker("run", "-d", "--network", "none", "--name", nm, tb.IMAGE,
                                           "sleep", "1000000"), names))
    return names


def help_times(runs: int) -> Dict[str, float]:
    py = str(REPO / ".venv" / "bin" / "python")
    out = {"python -c pass": med([timed([py, "-c", "pass"]) for _ in range(runs)]),
           "ovsfab --help": med([timed([OVSFAB, "--help"]) for _ in range(runs)]),
           "ovsfab --version": med([timed([OVSFAB, "--version"]) for _ in range(runs)])}
    return out


def bench_cli(args: argparse.Namespace) -> None:
    reason = tb.docker_available()
    if reason:
        raise SystemExit(f"bench_cli cli: {reason}; start dockerd")
    tb.build_busybox_image()
    # As pip leaves an installed package: with PYTHONDONTWRITEBYTECODE=1 (this
    # project's sessions) every ovsfab process compiled its modules from source.
    byte_compile()
    prefix = f"obc{os.getpid()}-"
    names: List[str] = []
    host = tb.OvsHost()
    agent: Optional[Agent] = None
    rows: List[Dict[str, object]] = []
    try:
        t0 = time.monotonic()
        names = start_containers(prefix, args.base + 3 * args.runs)
        print(f"started {len(names)} containers in {time.monotonic() - t0:.0f} s", flush=True)
        base, rest = names[:args.base], names[args.base:]
        agent = Agent(host)
        t0 = time.monotonic()
        for i, name in enumerate(base):  # the 100 already on the bridge (through the agent: quick)
            timed(host_cmd(host, OVSFAB, "attach", "br0", name, f"10.50.{i // 250}.{i % 250 + 1}/16"))
        print(f"{args.base} containers attached in {time.monotonic() - t0:.0f} s", flush=True)
        res: Dict[str, List[float]] = {"ovs-docker add-port": [], "ovsfab attach (agent)": [],
                                       "ovsfab attach (in-process)": []}
        served0 = agent.served()
        for r in range(args.runs):
            od, ag, ip = rest[3 * r:3 * r + 3]
            n = args.base + 3 * r
            addr = lambda k: f"10.51.{k // 250}.{k % 250 + 1}/16"  # noqa: E731
            t = timed(host_cmd(host, "ovs-docker", "add-port", "br0", "eth1", od, f"--ipaddress={addr(3 * r)}"))
            res["ovs-docker add-port"].append(t)
            rows.append({"tool": "ovs-docker", "ports": n, "seconds": t})
            t = timed(host_cmd(host, OVSFAB, "attach", "br0", ag, addr(3 * r + 1)))
            res["ovsfab attach (agent)"].append(t)
            rows.append({"tool": "ovsfab (agent)", "ports": n + 1, "seconds": t})
            t = timed(host_cmd(host, OVSFAB, "attach", "br0", ip, addr(3 * r + 2)), env={"OVSFAB_NO_AGENT": "1"})
            res["ovsfab attach (in-process)"].append(t)
            rows.append({"tool": "ovsfab (in-process)", "ports": n + 2, "seconds": t})
        assert agent.served() - served0 == args.runs, "not every agent-path attach went through the agent"
        inside = agent.request_ms()[-args.runs:]
        helps = help_times(args.runs)
        wrapper = med([timed(host_cmd(host, "true")) for _ in range(args.runs)])
    finally:
        if agent is not None:
            agent.stop()
        host.close()
        tb.remove_containers(names)  # one at a time: dockerd 20.10 deadlocks on parallel rm
    ref = med(res["ovs-docker add-port"])
    print(f"\nper attach, {args.base} containers already on the bridge, {args.runs} rounds interleaved "
          f"(wall time of the whole command, median / min / max):\n")
    print("| command | median | min | max | ÷ ovs-docker |\n|---|---|---|---|---|")
    for k, xs in res.items():
        print(f"| {k} | {med(xs) * 1000:.0f} ms | {min(xs) * 1000:.0f} ms | {max(xs) * 1000:.0f} ms "
              f"| {med(xs) / ref:.2f} |")
    print("\n| start-up | median of %d |\n|---|---|" % args.runs)
    for k, v in helps.items():
        print(f"| `{k}` | {v * 1000:.0f} ms |")
    agent_wall = med(res["ovsfab attach (agent)"])
    print(f"\nthe agent path, median: {med(inside):.0f} ms inside the agent (its log), "
          f"{agent_wall * 1000 - med(inside):.0f} ms client start-up, socket and the wrapper; "
          f"the simulated host's wrapper alone (`ip netns exec HOST env OVS_RUNDIR=.. true`): {wrapper * 1000:.0f} ms, "
          f"part of every command above (ratio without it: {(agent_wall - wrapper) / (ref - wrapper):.2f})")
    if args.csv:
        write_csv(args.csv, rows)


def bench_flat(args: argparse.Namespace) -> None:
    prefix = f"obf{os.getpid()}-"
    host = tb.OvsHost()
    agent: Optional[Agent] = None
    made: List[str] = []
    rows: List[Dict[str, object]] = []
    try:
        total = args.ports + 2 * args.sample
        t0 = time.monotonic()
        for i in range(total):
            tb.run(["ip", "netns", "add", f"{prefix}{i}"])
            made.append(f"{prefix}{i}")
        print(f"{total} netns in {time.monotonic() - t0:.0f} s", flush=True)
        agent = Agent(host)
        env = dict(os.environ, OVS_RUNDIR=str(host.rundir))
        from ovsfab.cli import argv, fast  # noqa: PLC0415 - the client side of the socket

        sock = fast.socket_path(env)

        def shell_attach(i: int) -> float:
            return timed(host_cmd(host, OVSFAB, "attach", "br0", f"netns:{prefix}{i}",
                                  f"10.60.{i // 250}.{i % 250 + 1}/16"))

        def reconfigure() -> float:
            # vswitchd's share: one empty reconfiguration (ovs-vsctl waits for it) at this size,
            # once vswitchd is idle: right after an attach it is still busy with the new port
            # (bench_ports1k.py at 1,000 ports: 315-405 ms then, 155-163 ms idle).
            from bench_ports1k import settle  # noqa: PLC0415 - it imports this module

            settle(host)
            return med([timed(["ovs-vsctl", f"--db={host.db_url}", "set", "Open_vSwitch", ".",
                               f"external_ids:bench={k}"]) for k in range(5)])

        first = [shell_attach(i) for i in range(args.sample)]
        vs_first = reconfigure()
        # Build up through the socket from this process: only the agent's work is timed.
        # The request must come from the agent's netns (it serves only its own).
        from ovsfab.plumbing.netns import Namespace  # noqa: PLC0415

        ns = Namespace.open(host.netns_path)
        with ns, ns.entered():
            t0 = time.monotonic()
            for i in range(args.sample, args.ports + args.sample):
                os.environ["OVS_RUNDIR"] = str(host.rundir)
                t = time.perf_counter()
                parsed = argv.parse(["attach", "br0", f"netns:{prefix}{i}", f"10.60.{i // 250}.{i % 250 + 1}/16"])
                reply = fast.call_agent(fast.request(parsed, fast.context_of(parsed)), sock)
                dt = time.perf_counter() - t
                if reply is None or "result" not in reply:
                    raise SystemExit(f"attach {i} through the agent failed: {reply}")
                rows.append({"tool": "ovsfab (agent, socket)", "ports": i, "seconds": dt})
                if (i + 1) % 100 == 0:
                    print(f"  {i + 1} ports ({time.monotonic() - t0:.0f} s; last {dt * 1000:.0f} ms)", flush=True)
        os.environ.pop("OVS_RUNDIR", None)
        last = [shell_attach(i) for i in range(args.ports + args.sample, args.ports + 2 * args.sample)]
        vs = reconfigure()
    finally:
        if agent is not None:
            agent.stop()
        host.close()
        for name in made:
            tb.run(["ip", "netns", "del", name], check=False)
    print(f"\n`ovsfab attach` from a shell, agent running, netns targets ({args.sample} each, median):\n")
    print("| attach | median | min | max |\n|---|---|---|---|")
    for label, xs in ((f"#1..{args.sample} (empty bridge)", first),
                      (f"#{args.ports + args.sample + 1}..{args.ports + 2 * args.sample}", last)):
        print(f"| {label} | {med(xs) * 1000:.0f} ms | {min(xs) * 1000:.0f} ms | {max(xs) * 1000:.0f} ms |")
    print(f"\nratio last/first: {med(last) / med(first):.2f}")
    by = [r["seconds"] for r in rows]
    for lo in range(0, len(by), max(1, len(by) // 10)):
        chunk = by[lo:lo + max(1, len(by) // 10)]
        print(f"  agent-side, ports {lo + args.sample}..{lo + args.sample + len(chunk)}: "
              f"median {med(chunk) * 1000:.0f} ms")
    print(f"`ovs-vsctl set` (one vswitchd reconfiguration, which every attach waits for): "
          f"{vs_first * 1000:.0f} ms with {args.sample} ports, {vs * 1000:.0f} ms with "
          f"{args.ports + 2 * args.sample} ports")
    print(f"ratio last/first without vswitchd's reconfiguration: "
          f"{(med(last) - vs) / (med(first) - vs_first):.2f}")
    if args.csv:
        write_csv(args.csv, rows + [{"tool": "ovsfab (shell, agent)", "ports": i, "seconds": t}
                                    for i, t in enumerate(first)]
                  + [{"tool": "ovsfab (shell, agent)", "ports": args.ports + args.sample + i, "seconds": t}
                     for i, t in enumerate(last)])


def write_csv(path: str, rows: List[Dict[str, object]]) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["tool", "ports", "seconds"])
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {path}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("part", nargs="?", default="cli", choices=("cli", "flat"))
    ap.add_argument("--base", type=int, default=100, help="containers on the bridge before timing (cli)")
    ap.add_argument("--runs", type=int, default=20, help="attaches per method (cli)")
    ap.add_argument("--ports", type=int, default=1000, help="ports built up (flat)")
    ap.add_argument("--sample", type=int, default=20, help="shell attaches timed at each end (flat)")
    ap.add_argument("--csv", help="write per-attach times for bench/plot.py")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_cli: needs root (netns, OVS daemons, docker); run it with sudo", file=sys.stderr)
        return 7
    (bench_cli if args.part == "cli" else bench_flat)(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
