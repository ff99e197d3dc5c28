"""Soak: random attach, detach, container restart and agent restart for N minutes; a checker every 10 s.

    .venv/bin/python bench/bench_soak.py [--minutes 30] [--containers 8] [--check-every 10] [--seed S]

On one simulated host (tests/testbed.py: a netns with its own ovsdb-server and
ovs-vswitchd) with ``--containers`` Docker containers and a running ``ovsfab
agent``, one worker does, at random:

* ``attach`` of a container that should not have eth1 (through the agent);
* ``detach`` of one that should;
* ``docker restart -t 0`` of any container (the agent must put eth1 back);
* an agent restart: an attach or detach is started, and 0-0.3 s later the
  agent gets SIGTERM or SIGKILL (half each); then a new agent is started.
  The client must still end honestly (exit 0 -- after its in-process
  fallback when the agent died holding the request -- or one clear error line).

What *should* exist follows from the exit codes alone: a 0 from attach means
the container must have eth1 with its address, a 0 from detach that it must
not; a failed command must change nothing.  Every ``--check-every`` seconds
the worker pauses and the checker compares that model with the three
sources of truth, through their own tools only (``ovs-vsctl``, ``ip -j``,
``docker inspect``): the OVS ports ovsfab owns (each with an ofport, no
error), the host-end veths (``ovf*``: no orphans), and eth1 + address in each
container (the containers running).  The agent gets up to ``--settle``
seconds to finish restoring restarted containers; a difference still there
after that is an inconsistency.  It prints the operations done, their
outcomes and the inconsistencies found (target 0).
"""
from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import testbed as tb  # noqa: E402

#: Where the product runs from (``--code``): the working tree, or a copy of HEAD's ovsfab/
#: so that others' edits in progress cannot break a 30-minute run half-way.
CODE = tb.REPO


def host_ifname(container_id: str, ifname: str) -> str:
    from ovsfab.model import host_ifname as f  # noqa: PLC0415 - from CODE, imported after it is set

    return f(container_id, ifname)


def cli(h: tb.OvsHost, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(h.ovsfab_cmd(*map(str, args)), capture_output=True, text=True, timeout=timeout,
                          env=tb.clean_env(), cwd=str(CODE))


class Agent:
    def __init__(self, host: tb.OvsHost, n: int) -> None:
        self.log = Path(host.rundir) / f"soak-agent-{n}.log"
        self._fh = open(self.log, "w")
        self.proc = subprocess.Popen(host.ovsfab_cmd("agent"), stdout=self._fh, stderr=subprocess.STDOUT,
                                     env=tb.clean_env(), cwd=str(CODE))
        deadline = time.monotonic() + 30
        while "connected to OVSDB" not in self.log.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"agent did not start:\n{self.log.read_text()}")
            time.sleep(0.05)

    def stop(self, sig: int) -> int:
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=20)
        finally:
            self._fh.close()


def start_container(image: str) -> tb.Container:
    """A busybox container with ``--restart always``: it comes back after a dockerd restart."""
    name = tb.unique("soak")
    cid = tb.docker("run", "-d", "--restart", "always", "--network", "none", "--name", name, image,
                    "sleep", "1000000").stdout.strip()
    return tb.Container(name=name, id=cid, pid=container_pid(name))


def wait_dockerd(limit: float = 180.0) -> float:
    """Wait for dockerd to answer (another engineer's test may restart it); seconds waited."""
    t0 = time.monotonic()
    while tb.docker_available(timeout=5) is not None:
        if time.monotonic() - t0 > limit:
            raise RuntimeError(f"dockerd did not come back within {limit:g} s")
        time.sleep(1)
    return time.monotonic() - t0


def container_pid(name: str) -> int:
    cp = tb.docker("inspect", "-f", "{{.State.Running}} {{.State.Pid}}", name, check=False)
    running, _, pid = cp.stdout.strip().partition(" ")
    return int(pid) if running == "true" and pid.isdigit() else 0


def settled_check(h: tb.OvsHost, cs: List[tb.Container], want: Dict[str, str],
                  settle: float) -> Tuple[List[str], float]:
    """Once dockerd answers, :func:`check` until it finds nothing or ``settle`` s have passed:
    (what is still wrong, seconds it took)."""
    wait_dockerd()
    t0 = time.monotonic()
    while True:
        bad = check(h, cs, want)
        if not bad or time.monotonic() - t0 > settle:
            return bad, time.monotonic() - t0
        time.sleep(0.5)


def check(h: tb.OvsHost, cs: List[tb.Container], want: Dict[str, str]) -> List[str]:
    """Differences between the model (container name -> address of eth1) and the three sources."""
    bad: List[str] = []
    ports = {}
    for r in tb.ovs_table(h, "Port", ["name", "external_ids"]):
        cid = r["external_ids"].get("ovsfab-container-id")
        if cid:
            ports[cid] = r["name"]
    health = {r["name"]: (r["ofport"], r["error"]) for r in tb.ovs_table(h, "Interface", ["name", "ofport", "error"])}
    links = {n for n in h.links() if n.startswith("ovf")}
    by_id = {c.id: c for c in cs}
    expected_ports = {host_ifname(c.id, "eth1") for c in cs if c.name in want}
    for cid, port in ports.items():
        c = by_id.get(cid)
        if c is None or c.name not in want:
            bad.append(f"OVSDB: port {port} for {c.name if c else cid[:12]}, which should have none")
        else:
            ofport, err = health.get(port, (None, None))
            if not (isinstance(ofport, int) and ofport > 0) or err not in ([], "", None):
                bad.append(f"vswitchd: {port} ({c.name}) ofport={ofport} error={err}")
    for c in cs:
        if c.name in want and c.id not in ports:
            bad.append(f"OVSDB: no port for {c.name}")
    for extra in sorted(links - expected_ports):
        bad.append(f"netlink: host-end veth {extra} that nothing should have")
    for missing in sorted(expected_ports - links):
        bad.append(f"netlink: host-end veth {missing} missing")
    for c in cs:
        pid = container_pid(c.name)
        if not pid:
            bad.append(f"docker: {c.name} not running")
            continue
        try:
            addrs = tb.addrs_in(f"/proc/{pid}/ns/net")
        except (RuntimeError, subprocess.TimeoutExpired):
            bad.append(f"netlink: cannot read {c.name}'s namespace")
            continue
        if c.name in want and addrs.get("eth1") != [want[c.name]]:
            bad.append(f"{c.name}: eth1 {addrs.get('eth1')} != [{want[c.name]}]")
        if c.name not in want and "eth1" in addrs:
            bad.append(f"{c.name}: has eth1 {addrs['eth1']} but should not")
    return bad


def honest(cp: subprocess.CompletedProcess) -> bool:
    """Exit 0, or one clear error line (warnings and notes aside), never a traceback."""
    if "Traceback" in cp.stderr + cp.stdout:
        return False
    if cp.returncode == 0:
        return True
    errors = [line for line in cp.stderr.splitlines() if line.startswith("ovsfab: error:")]
    return cp.returncode > 0 and len(errors) == 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--containers", type=int, default=8)
    ap.add_argument("--check-every", type=float, default=10.0)
    ap.add_argument("--settle", type=float, default=15.0)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--code", choices=("head", "tree"), default="head",
                    help="run the product from a copy of HEAD's ovsfab/ (default) or from the working tree")
    args = ap.parse_args()
    global CODE
    if args.code == "head":
        import tempfile  # noqa: PLC0415

        CODE = Path(tempfile.mkdtemp(prefix="ovsfab-soak-code-"))
        archive = subprocess.run(["git", "-C", str(tb.REPO), "archive", "HEAD", "ovsfab"], capture_output=True,
                                 check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(CODE)], input=archive, check=True)
        rev = subprocess.run(["git", "-C", str(tb.REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True).stdout.strip()
        print(f"product: HEAD {rev}, copied to {CODE}", flush=True)
    sys.path.insert(0, str(CODE))
    if os.geteuid() != 0:
        sys.exit("needs root")
    reason = tb.docker_available()
    if reason:
        sys.exit(f"dockerd not usable: {reason}")
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rnd = random.Random(seed)
    print(f"soak: {args.minutes:g} min, {args.containers} containers, check every {args.check_every:g} s, "
          f"seed {seed}", flush=True)
    image = tb.build_busybox_image()
    h = tb.OvsHost()
    cs: List[tb.Container] = []
    agent: Optional[Agent] = None
    ops: Dict[str, int] = {}
    outcomes: Dict[str, int] = {}
    dishonest: List[str] = []
    inconsistencies: List[str] = []
    checks = 0
    settles: List[float] = []
    want: Dict[str, str] = {}
    agents_made = 0
    journal: List[tuple] = []
    t_start = time.monotonic()

    def explain(bad: List[str]) -> None:
        """What the journal and the agents' logs say about the containers concerned."""
        names = {c.name for c in cs if any(c.name in b or host_ifname(c.id, "eth1") in b for b in bad)}
        ids = {c.id[:12] for c in cs if c.name in names}
        for t, text in journal:
            if any(n in text for n in names) or text.startswith(("agent", "dockerd")):
                print(f"    {t - t_start:7.2f} {text}", flush=True)
        for log in sorted(Path(h.rundir).glob("soak-agent-*.log")):
            for line in log.read_text().splitlines():
                if any(n in line for n in names | ids) or "ERROR" in line or "WARNING" in line:
                    print(f"    [{log.stem}] {line[:220]}", flush=True)
    try:
        cs = [start_container(image) for _ in range(args.containers)]
        addr = {c.name: f"10.70.0.{10 + i}/24" for i, c in enumerate(cs)}
        agent = Agent(h, agents_made)
        agents_made += 1

        def note(kind: str, cp: subprocess.CompletedProcess, extra: str = "") -> None:
            key = f"{kind}{extra} -> {cp.returncode}" + (" (fell back)" if "warning: the agent took" in cp.stderr
                                                         else "")
            outcomes[key] = outcomes.get(key, 0) + 1
            if not honest(cp):
                dishonest.append(f"{kind}: rc={cp.returncode} {cp.stderr.strip()[-300:]}")

        def attach_or_detach(c: tb.Container, extra: str = "",
                             during=None) -> None:
            if c.name in want:
                argv, kind = ("detach", "br0", c.name), "detach"
            else:
                argv, kind = ("attach", "br0", c.name, addr[c.name]), "attach"
            if during is None:
                cp = cli(h, *argv)
            else:
                p = subprocess.Popen(h.ovsfab_cmd(*argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=tb.clean_env(), cwd=str(CODE))
                during()
                out, err = p.communicate(timeout=180)
                cp = subprocess.CompletedProcess(p.args, p.returncode, out, err)
            note(kind, cp, extra)
            journal.append((time.monotonic(), f"{kind}{extra} {c.name} -> {cp.returncode} "
                            f"{cp.stderr.strip().splitlines()[-1][:160] if cp.stderr.strip() else ''}"))
            if cp.returncode == 0:
                if kind == "attach":
                    want[c.name] = addr[c.name]
                else:
                    want.pop(c.name, None)

        t_end = time.monotonic() + args.minutes * 60
        next_check = time.monotonic() + args.check_every
        while time.monotonic() < t_end:
            op = rnd.choices(["attach/detach", "restart-container", "restart-agent"], weights=[6, 2, 1])[0]
            ops[op] = ops.get(op, 0) + 1
            c = rnd.choice(cs)
            if op == "attach/detach":
                attach_or_detach(c)
            elif op == "restart-container":
                cp = tb.docker("restart", "-t", "0", c.name, timeout=120, check=False)
                journal.append((time.monotonic(), f"docker restart {c.name} -> {cp.returncode}"))
                if cp.returncode != 0:
                    waited = wait_dockerd()
                    outcomes["docker restart failed: dockerd away"] = outcomes.get(
                        "docker restart failed: dockerd away", 0) + 1
                    journal.append((time.monotonic(), f"dockerd away; back after {waited:.1f} s"))
            else:
                sig = rnd.choice([signal.SIGTERM, signal.SIGKILL])
                old = agent

                def kill_agent() -> None:
                    time.sleep(rnd.uniform(0, 0.3))
                    rc = old.stop(sig)
                    journal.append((time.monotonic(), f"agent {signal.Signals(sig).name} -> {rc}"))
                    key = f"agent {signal.Signals(sig).name} -> exit {rc}"
                    outcomes[key] = outcomes.get(key, 0) + 1

                attach_or_detach(c, extra=" (agent restarted)", during=kill_agent)
                agent = Agent(h, agents_made)
                agents_made += 1
            if time.monotonic() >= next_check:
                checks += 1
                bad, took = settled_check(h, cs, want, args.settle)
                settles.append(took)
                if bad:
                    inconsistencies.extend(f"check {checks}: {b}" for b in bad)
                    print(f"  check {checks}: INCONSISTENT after {args.settle:g} s: {bad}", flush=True)
                    explain(bad)
                    # Count it once: take what is there as the new model so later checks are fresh.
                    want = {c.name: addr[c.name] for c in cs
                            if c.id in {r["external_ids"].get("ovsfab-container-id")
                                        for r in tb.ovs_table(h, "Port", ["external_ids"])}}
                done = sum(ops.values())
                if not bad:
                    print(f"  check {checks} at {time.monotonic() - t_start:.0f} s: {done} ops, "
                          f"{len(want)} attached, consistent after {settles[-1]:.1f} s", flush=True)
                next_check = time.monotonic() + args.check_every
        # the final check
        checks += 1
        bad, _ = settled_check(h, cs, want, args.settle)
        inconsistencies.extend(f"final check: {b}" for b in bad)
        if bad:
            explain(bad)
    finally:
        if agent is not None and agent.proc.poll() is None:
            rc = agent.stop(signal.SIGTERM)
            if rc != 0:
                dishonest.append(f"final agent stop: exit {rc}")
        logs = [p.read_text() for p in Path(h.rundir).glob("soak-agent-*.log")]
        tracebacks = sum(text.count("Traceback") for text in logs)
        try:
            wait_dockerd()
        finally:
            tb.remove_containers(c.name for c in cs)
            h.close()
    print(f"operations: {sum(ops.values())} ({', '.join(f'{k} {v}' for k, v in sorted(ops.items()))}); "
          f"agents started {agents_made}")
    print("outcomes: " + "; ".join(f"{k}: {v}" for k, v in sorted(outcomes.items())))
    print(f"checks: {checks}; settle time median {sorted(settles)[len(settles) // 2] if settles else 0:.1f} s, "
          f"max {max(settles) if settles else 0:.1f} s; tracebacks in agent logs: {tracebacks}")
    print(f"dishonest outcomes: {len(dishonest)}" + "".join(f"\n  {d}" for d in dishonest))
    print(f"inconsistencies: {len(inconsistencies)}" + "".join(f"\n  {i}" for i in inconsistencies))
    sys.exit(1 if inconsistencies or dishonest else 0)


if __name__ == "__main__":
    main()
