#!/usr/bin/env python3
"""Benchmark: N concurrent ``ovsfab attach`` through the agent against one ``ovsfab apply`` of the same N.

Issue 21's bar for the agent's group commit: 100 concurrent attaches (as a
shell would start them, ``xargs -P 16``) finish in <= 1.5x the time of one
``apply`` of the same 100.  Each side runs on a fresh simulated host
(tests/testbed.py: a netns with a private ovsdb-server + ovs-vswitchd,
netdev datapath) with N named netns targets and an empty bridge; the
attaches go through an ``ovsfab agent`` started on that host.  Every command
is a whole process of the console script ``ovsfab``, as from a shell.  Prints
both wall times, their ratio, how many attaches the agent put in shared
transactions (its log), and the CPU time of the clients, the agent and
ovs-vswitchd during the attaches.

Fair conditions (both sides alike):

* the shell that runs ``xargs`` (or ``apply``) is on the simulated host:
  ONE ``ip netns exec HOST`` around it, as a shell on a real host needs
  none; a wrapper per attach (what this bench did first) cost ~8 ms of CPU
  each, 100 times, against once for apply;
* ovsfab's modules are byte-compiled first, as ``pip install`` leaves a
  package: with ``PYTHONDONTWRITEBYTECODE=1`` in the environment (as in
  this project's sessions) every process compiled the modules it imported
  from source, ~16 ms per lean client, 100 times, against once for apply.

Usage (root)::

    .venv/bin/python bench/bench_group.py [--n 100] [--parallel 16] [--rounds 3] [--ab [--b-setting 'LINGER_MAX = 0']]
    .venv/bin/python bench/bench_group.py --client-cpu 30
"""
from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Tuple

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import testbed as tb  # noqa: E402
from bench_apply import addr, fabric_file, netns_batch  # noqa: E402
from test_agent import AgentProc  # noqa: E402


OVSFAB = str(REPO / ".venv" / "bin" / "ovsfab")


def byte_compile() -> None:
    """Write ovsfab's bytecode (``__pycache__``, git-ignored), as an installed package has it."""
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "ovsfab")], check=True)


def on_host(host: "tb.OvsHost", *cmd: str) -> List[str]:
    """``cmd`` as a shell on the simulated host runs it (one netns wrapper)."""
    return ["ip", "netns", "exec", host.name, "env", f"OVS_RUNDIR={host.rundir}", *cmd]


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class VariantAgent(AgentProc):
    """The agent with one module setting of agent/server.py changed (``--ab``): the same agent otherwise."""

    def __init__(self, host: "tb.OvsHost", setting: str) -> None:  # noqa: super().__init__ would start the plain agent
        self.host = host
        self.log = Path(host.rundir) / f"agent-{time.monotonic_ns()}.log"
        self._fh = open(self.log, "w")
        code = (f"import ovsfab.agent.server as s; s.{setting}\n"
                "import sys; sys.argv = ['ovsfab', 'agent']\nfrom ovsfab.cli.main import main; main()\n")
        self.proc = subprocess.Popen(on_host(host, sys.executable, "-c", code), stdout=self._fh,
                                     stderr=subprocess.STDOUT, env=tb.clean_env(), cwd=str(REPO))


def settle(agent: AgentProc, pid: int, quiet: float = 0.5, limit: float = 20.0) -> None:
    """Until the agent is idle: its start-up passes are done (its CPU has not moved for ``quiet`` s).

    An agent reconciles everything when it connects to OVSDB and again when
    the Docker event stream connects (0.2-0.25 s of its loop each at 100
    namespaces, cProfile); a burst started at "connected to OVSDB" shared the
    agent with them, which apply, having no agent, never does.
    """
    agent.wait_log("dockerd ")  # "dockerd connected: ..." or "lost dockerd": the second pass is due
    deadline = time.monotonic() + limit
    last = cpu_s(pid)
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = cpu_s(pid)
        if now == last:
            return
        last = now
    raise RuntimeError(f"the agent never went idle in {limit:.0f} s:\n{agent.text()[-2000:]}")


def concurrent_attaches(n: int, parallel: int, setting: str = "") -> Tuple[float, int, str]:
    host = tb.OvsHost()
    names = [f"og{os.getpid() % 10000}-{i}" for i in range(n)]
    netns_batch(names, "add")
    agent = VariantAgent(host, setting) if setting else AgentProc(host)
    try:
        agent.wait_log("serving attach/detach")
        agent.wait_log("connected to OVSDB")
        settle(agent, agent.proc.pid)
        lines = "".join(f"netns:{nm} {addr(i)}/16\n" for i, nm in enumerate(names))
        cmd = on_host(host, "xargs", "-P", str(parallel), "-L", "1", OVSFAB, "attach", "br0")  # + target, address
        vswitchd = int((host.rundir / "ovs-vswitchd.pid").read_text())
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        agent0, vs0 = cpu_s(agent.proc.pid), cpu_s(vswitchd)
        t0 = time.monotonic()
        cp = subprocess.run(cmd, input=lines, text=True,
                            capture_output=True, timeout=600, env=tb.clean_env(), cwd=str(REPO))
        total = time.monotonic() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        clients = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        cpu = (f"CPU: clients {clients:.2f} s, agent {cpu_s(agent.proc.pid) - agent0:.2f} s, "
               f"ovs-vswitchd {cpu_s(vswitchd) - vs0:.2f} s")
        if cp.returncode != 0:
            raise RuntimeError(f"an attach failed: {cp.stderr.strip()[-500:]}")
        ports = [p for p in tb.ovs_ports(host) if p.startswith("ovf")]
        assert len(ports) == n, f"expected {n} ports, found {len(ports)}"
        text = agent.text()
        grouped = sum(int(g) for g in re.findall(r"op: attach x(\d+) in one transaction", text))
        groups = len(re.findall(r"op: attach x\d+ in one transaction", text))
        return total, grouped, f"{groups} shared transactions; {cpu}"
    finally:
        if agent.proc.poll() is None:
            agent.stop()
        host.close()
        netns_batch(names, "delete")


def one_apply(n: int) -> Tuple[float, str]:
    host = tb.OvsHost()
    names = [f"oa{os.getpid() % 10000}-{i}" for i in range(n)]
    netns_batch(names, "add")
    try:
        path = fabric_file(names)
        try:
            vswitchd = int((host.rundir / "ovs-vswitchd.pid").read_text())
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            vs0 = cpu_s(vswitchd)
            t0 = time.monotonic()
            subprocess.run(on_host(host, OVSFAB, "apply", path, "--host", "bench"), check=True, timeout=600,
                           capture_output=True, env=tb.clean_env(), cwd=str(REPO))
            total = time.monotonic() - t0
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            own = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
            return total, f"CPU: apply {own:.2f} s, ovs-vswitchd {cpu_s(vswitchd) - vs0:.2f} s"
        finally:
            os.unlink(path)
    finally:
        host.close()
        netns_batch(names, "delete")


def child_cpu_ms(cmd: List[str], **kw) -> float:
    """CPU (user + system, ms) of one child process run to its end."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, **kw)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) * 1000


def client_cpu(n: int) -> None:
    """Issue 21, item 3: what one lean client of an attach costs beyond a bare interpreter start.

    Interleaved, on one simulated host with an agent: the venv's python
    doing nothing (with and without ``site``, whose ``.pth`` hooks are the
    environment's, not ovsfab's), importing the lean client only, and a
    whole ``ovsfab attach`` served by the agent; medians of ``n`` each.
    """
    host = tb.OvsHost()
    names = [f"oc{os.getpid() % 10000}-{i}" for i in range(n)]
    netns_batch(names, "add")
    agent = AgentProc(host)
    py = str(REPO / ".venv" / "bin" / "python")
    kinds = {"python -c pass": [py, "-c", "pass"],
             "python -S -c pass (no site)": [py, "-S", "-c", "pass"],
             "python -c 'import ovsfab.cli.fast'": [py, "-c", "import ovsfab.cli.fast"],
             "ovsfab attach (served by the agent)": []}
    out: dict = {k: [] for k in kinds}
    try:
        agent.wait_log("serving attach/detach")
        agent.wait_log("connected to OVSDB")
        for i, nm in enumerate(names):
            for k, cmd in kinds.items():
                cmd = cmd or [OVSFAB, "attach", "br0", f"netns:{nm}", f"{addr(i)}/16"]
                out[k].append(child_cpu_ms(on_host(host, *cmd), env=tb.clean_env(), cwd="/"))
        wrap = child_cpu_ms(on_host(host, "true"), env=tb.clean_env())
    finally:
        agent.stop()
        host.close()
        netns_batch(names, "delete")
    print(f"client CPU, median of {n} interleaved, each including the `ip netns exec` wrapper (~{wrap:.1f} ms alone):")
    for k, v in out.items():
        print(f"  {k:40s} {statistics.median(v):6.1f} ms")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--parallel", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--ab", action="store_true",
                    help="also the attaches with one agent/server.py setting changed (--b-setting), interleaved")
    ap.add_argument("--b-setting", default="LINGER_MAX = 0",
                    help="the agent/server.py setting of --ab's B side (default: burst groups closed at once)")
    ap.add_argument("--client-cpu", type=int, metavar="N", default=0,
                    help="instead: the CPU of one lean client against a bare interpreter, N times each (item 3)")
    args = ap.parse_args()
    byte_compile()
    if args.client_cpu:
        client_cpu(args.client_cpu)
        return 0
    conc: List[float] = []
    apps: List[float] = []
    plain: List[float] = []
    for r in range(args.rounds):  # interleaved, so a drift of the machine hits both
        total, grouped, how = concurrent_attaches(args.n, args.parallel)
        conc.append(total)
        if args.ab:
            t, g, h = concurrent_attaches(args.n, args.parallel, setting=args.b_setting)
            plain.append(t)
            print(f"round {r + 1}: with {args.b_setting}: {t:.2f} s ({g} of them in {h})", flush=True)
        took, apply_cpu = one_apply(args.n)
        apps.append(took)
        print(f"round {r + 1}: {args.n} concurrent attaches {total:.2f} s ({grouped} of them in {how}); "
              f"one apply {took:.2f} s ({apply_cpu}); ratio {total / took:.2f}", flush=True)
    c, a = statistics.median(conc), statistics.median(apps)
    print(f"\nmedian of {args.rounds}: {args.n} concurrent `ovsfab attach` (xargs -P {args.parallel}, agent) "
          f"{c:.2f} s, one `ovsfab apply` {a:.2f} s: ratio {c / a:.2f} (bar <= 1.5)")
    if plain:
        print(f"with {args.b_setting}: {statistics.median(plain):.2f} s, ratio {statistics.median(plain) / a:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
