#!/usr/bin/env python3
"""Benchmark ``ovsfab show`` / ``ovsfab inspect`` on a host with N attachments.

Issue #5's bar: "inspect and show on a host with 300 attached containers
answer in well under a second" -- the wall time of the whole command as a
user types it in a shell.

Builds a simulated host (tests/testbed.py: a netns with a private
ovsdb-server + ovs-vswitchd, netdev datapath) with N attachments on ``br0``:
a few real Docker containers (``--docker``, default 3), a few ``pid:``
targets (``--pids``, default 7) and named network namespaces for the rest,
each attached with ovsfab's own ``attach`` operation driven in-process in one
loop (the CLI would take minutes).  Then, in interleaved rounds (so load
from other users of the machine hits every variant alike), it times the
whole process -- ``ip netns exec HOST env OVS_RUNDIR=... ovsfab ARGS``, the
console script a user types -- for:

* ``python -c pass`` through the same wrapper: the machine's load indicator
  and the floor of any Python command,
* ``show``, ``show --json``, ``inspect netns:...``, ``inspect CONTAINER``,
  each with ``ovsfab agent`` running (served through its socket) and with
  ``OVSFAB_NO_AGENT=1`` (in-process),

and prints median, min and max of each.  Finally it times
``ovsfab.ops.inspect.show()`` in-process (no interpreter start-up, imports
warm), to separate the work from the start-up.

Needs root and dockerd (``--docker 0`` for none).  Usage::

    sudo .venv/bin/python bench/bench_show.py [-n 300] [--runs 15] [--hold]

``--hold`` keeps the host after the timings until Enter or SIGTERM (for
profiling by hand; the host's name and rundir are printed; ``--state FILE``
records them, and ``--reuse FILE`` then only runs the timings on it).
``--before DIR`` also times, in the same rounds, the ovsfab package found
in DIR (a copy of the code before a change), in-process.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import testbed as tb  # noqa: E402

#: The console script a user types (falls back to ``python -m ovsfab``).
OVSFAB = Path(sys.executable).parent / "ovsfab"


def _attach_all(targets: List[str]) -> None:
    """Runs inside the simulated host: attach each target to br0, in-process."""
    from ovsfab.backends.factory import get_backend
    from ovsfab.model import AttachRequest
    from ovsfab.ops.attach import attach

    def factory():
        return get_backend("ovs")

    t0 = time.monotonic()
    for i, target in enumerate(targets):
        addr = f"10.200.{i // 250}.{i % 250 + 1}/16"
        attach(AttachRequest.parse("br0", target, [addr]), factory)
        if (i + 1) % 50 == 0:
            print(f"  attached {i + 1}/{len(targets)} ({time.monotonic() - t0:.1f} s)", flush=True)


def _show_in_process(runs: int) -> None:
    """Runs inside the simulated host: time show() without interpreter start-up."""
    from ovsfab.ops.inspect import show

    show()  # warm the imports
    times = []
    for _ in range(runs):
        t0 = time.monotonic()
        result = show()
        times.append(time.monotonic() - t0)
    ports = sum(len(b.ports) for b in result.bridges)
    print(f"in-process show() (imports warm, fresh OVSDB session): {_stats(times)} ({ports} ports)")


def _stats(times: List[float]) -> str:
    ms = sorted(t * 1000 for t in times)
    return f"median {statistics.median(ms):6.0f} ms  min {ms[0]:6.0f}  max {ms[-1]:6.0f}  (n={len(ms)})"


class Host:
    """Where to run commands: the simulated host's netns and OVS_RUNDIR."""

    def __init__(self, name: str, rundir: str) -> None:
        self.name, self.rundir = name, rundir


def _cmd(host: Host, args: List[str], prog: Optional[List[str]] = None) -> List[str]:
    if prog is None:
        prog = [str(OVSFAB)] if OVSFAB.exists() else [sys.executable, "-m", "ovsfab"]
    return ["ip", "netns", "exec", host.name, "env", f"OVS_RUNDIR={host.rundir}", *prog, *args]


#: CPU seconds (user + system) of the last command timed by _wall, its whole process tree.
LAST_CPU = [0.0]


def _wall(cmd: List[str], env: Dict[str, str]) -> float:
    """Wall time of one whole command (output discarded, exit code checked).

    Also leaves the command's CPU time in LAST_CPU: on a machine shared with
    other work, CPU time moves much less than wall time (it excludes time
    spent waiting for a core), so it is reported alongside.  For a command
    served by the agent it is the client's only; the agent logs its own time.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    cp = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd="/")
    elapsed = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    LAST_CPU[0] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if cp.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} -> {cp.returncode}: {cp.stderr.decode()}")
    return elapsed


class Agent:
    """``ovsfab agent`` in the simulated host, its log in the rundir."""

    def __init__(self, host: Host, env: Dict[str, str]) -> None:
        self.log = Path(host.rundir) / "bench-agent.log"
        self._fh = open(self.log, "w")
        self.proc = subprocess.Popen(_cmd(host, ["agent"]), stdout=self._fh, stderr=subprocess.STDOUT,
                                     env=env, cwd="/")
        deadline = time.monotonic() + 120
        # Ready when it serves the socket and its first (catch-up) pass is done.
        while time.monotonic() < deadline:
            text = self.log.read_text()
            if "serving" in text and "connected to OVSDB" in text:
                break
            if self.proc.poll() is not None:
                raise RuntimeError(f"agent exited:\n{text}")
            time.sleep(0.2)
        # The first request is served once the catch-up pass is done: wait for it.
        _wall(_cmd(host, ["show"]), env)

    def served(self) -> int:
        return self.log.read_text().count(" op: ")

    def served_ms(self) -> List[float]:
        """The agent's own time for each command it served (from its log lines)."""
        return [float(m) for m in re.findall(r" op: .* \((\d+) ms\)", self.log.read_text())]

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._fh.close()


def _hold(host: tb.OvsHost, state: Optional[str], variants: Dict[str, List[str]]) -> None:
    if state:
        with open(state, "w", encoding="utf-8") as fh:
            json.dump({"name": host.name, "rundir": str(host.rundir), "variants": variants}, fh)
    print(f"holding: host netns {host.name}, OVS_RUNDIR={host.rundir}"
          f"{f', state in {state}' if state else ''}; Enter or SIGTERM to clean up", flush=True)

    def stop(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        if sys.stdin.isatty():
            input()
        else:
            signal.pause()
    except (KeyboardInterrupt, EOFError):
        pass


def time_commands(host: Host, variants: Dict[str, List[str]], runs: int,
                  before: Optional[str] = None) -> None:
    """Interleaved rounds of every variant, with the agent and without; prints the table.

    ``before``: a directory holding another copy of the ovsfab package (e.g.
    the code before a change); each variant is also run from it, in-process
    (``OVSFAB_NO_AGENT=1``), in the same rounds.
    """
    times: Dict[str, List[float]] = {}
    cpu: Dict[str, List[float]] = {}

    def timed(label: str, cmd: List[str], env: Dict[str, str]) -> None:
        times.setdefault(label, []).append(_wall(cmd, env))
        cpu.setdefault(label, []).append(LAST_CPU[0])

    no_agent = tb.clean_env({"OVSFAB_NO_AGENT": "1"})
    with_agent = tb.clean_env()
    old = tb.clean_env({"OVSFAB_NO_AGENT": "1", "PYTHONPATH": before}) if before else None
    agent = Agent(host, with_agent)
    try:
        served0 = agent.served()
        for _ in range(runs):
            for label, argv in variants.items():
                if argv[0] == "PYTHON":
                    timed(label, _cmd(host, argv[1:], prog=[sys.executable]), with_agent)
                    continue
                timed(f"{label}  [agent]", _cmd(host, argv), with_agent)
                timed(f"{label}  [no agent]", _cmd(host, argv), no_agent)
                if old is not None:
                    timed(f"{label}  [before, in-process]", _cmd(host, argv, [sys.executable, "-m", "ovsfab"]), old)
        served = agent.served() - served0
        agent_ms = agent.served_ms()[-served:] if served else []
    finally:
        agent.stop()
    expected = runs * sum(1 for v in variants.values() if v[0] != "PYTHON")
    print(f"\nwall time of the whole command, {runs} interleaved rounds "
          f"(the agent served {served} of the {expected} runs meant for it):")
    for label, values in sorted(times.items(), key=lambda kv: (not kv[0].startswith("python"), kv[0])):
        print(f"  {label:<56} {_stats(values)}", flush=True)
    print("\nCPU time of the same commands (user + system, the command's process tree; "
          "[agent]: the client only):")
    for label, values in sorted(cpu.items(), key=lambda kv: (not kv[0].startswith("python"), kv[0])):
        print(f"  {label:<56} {_stats(values)}", flush=True)
    if agent_ms:
        print(f"\nthe agent's own time per served command (its log): {_stats([t / 1000 for t in agent_ms])}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=300, help="number of attachments (all kinds)")
    ap.add_argument("--docker", type=int, default=3, help="how many of them are Docker containers")
    ap.add_argument("--pids", type=int, default=7, help="how many of them are pid: targets")
    ap.add_argument("--runs", type=int, default=15, help="rounds of timings")
    ap.add_argument("--hold", action="store_true", help="keep the host for profiling by hand")
    ap.add_argument("--state", help="with --hold: write the host's name and rundir to this file")
    ap.add_argument("--reuse", metavar="STATE", help="only time commands, on a host kept by --hold --state")
    ap.add_argument("--before", metavar="DIR",
                    help="also time the ovsfab package in DIR (e.g. a copy from before a change), in-process")
    ap.add_argument("--inner", choices=("attach", "show"), help=argparse.SUPPRESS)
    ap.add_argument("targets", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.inner == "attach":
        _attach_all(args.targets)
        return 0
    if args.inner == "show":
        _show_in_process(args.runs)
        return 0

    if os.geteuid() != 0:
        print("bench_show needs root", file=sys.stderr)
        return 2
    if args.reuse:
        with open(args.reuse, encoding="utf-8") as fh:
            state = json.load(fh)
        time_commands(Host(state["name"], state["rundir"]), state["variants"], args.runs, args.before)
        return 0
    n_docker = args.docker
    if n_docker and tb.docker_available() is not None:
        print("dockerd not usable: no Docker containers", file=sys.stderr)
        n_docker = 0
    prefix = f"ovsfab-b{os.getpid()}-"
    host = tb.OvsHost()
    made_ns: List[str] = []
    pids: List[tb.PidTarget] = []
    ctrs: List[tb.Container] = []
    try:
        t0 = time.monotonic()
        if n_docker:
            image = tb.build_busybox_image()
            ctrs = [tb.start_container(image=image) for _ in range(n_docker)]
        pids = [tb.make_pid_target() for _ in range(min(args.pids, args.n - n_docker))]
        for i in range(args.n - len(ctrs) - len(pids)):
            tb.run(["ip", "netns", "add", f"{prefix}{i}"])
            made_ns.append(f"{prefix}{i}")
        targets = [c.name for c in ctrs] + [p.target for p in pids] + [f"netns:{n}" for n in made_ns]
        print(f"made {len(ctrs)} containers, {len(pids)} pid targets, {len(made_ns)} namespaces "
              f"in {time.monotonic() - t0:.1f} s", flush=True)
        inner = host.ovsfab_cmd()[:-3] + [sys.executable, str(Path(__file__).resolve())]
        t0 = time.monotonic()
        subprocess.run(inner + ["--inner", "attach", *targets], check=True, env=tb.clean_env(), cwd=str(REPO))
        print(f"attached {len(targets)} targets in {time.monotonic() - t0:.1f} s", flush=True)
        where = Host(host.name, str(host.rundir))
        cp = subprocess.run(_cmd(where, ["show"]), capture_output=True, text=True, env=tb.clean_env(),
                            check=True)
        print(f"ovsfab show: {cp.stdout.count(chr(10))} lines of output")

        variants: Dict[str, List[str]] = {
            "python -c pass (load indicator)": ["PYTHON", "-c", "pass"],
            "show": ["show"], "show --json": ["show", "--json"],
            "inspect netns:NAME": ["inspect", targets[-1]],
            "inspect netns:NAME --json": ["inspect", targets[-1], "--json"],
        }
        if ctrs:
            variants["inspect CONTAINER"] = ["inspect", ctrs[0].name]
        time_commands(where, variants, args.runs, args.before)
        print()
        subprocess.run(inner + ["--inner", "show", "--runs", str(args.runs)],
                       check=True, env=tb.clean_env(), cwd=str(REPO))
        if args.hold:
            _hold(host, args.state, variants)
    finally:
        for name in made_ns:
            tb.delete_netns(name)
        for p in pids:
            p.close()
        tb.remove_containers(c.name for c in ctrs)
        host.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
