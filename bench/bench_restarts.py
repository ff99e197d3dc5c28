"""Daemon restarts during work, at bench scale (tests/test_restarts.py is the suite's small version).

    .venv/bin/python bench/bench_restarts.py [--size 100] [--stream 30] [--runs 3] [--only DAEMON ...]

For each of ovsdb-server, ovs-vswitchd, the agent and dockerd: (a) an ``apply`` of ``--size`` attachments, the daemon
restarted (down 0.5 s) once a third of the apply's veths exist; (b) a stream
of ``--stream`` single attaches through the agent, the daemon restarted after
the fourth.  Each command must end honestly (exit 0 or one ``ovsfab: error:``
line); then what failed is re-run, and the end state must be exactly the
fabric file / the requests made (tests/test_restarts.py's oracle:
``ovs-vsctl``, ``ip -j``).  Printed: exit codes, error lines, time from the
daemon being back to converged.

dockerd is a private one (tests/dockerbed.py), so the machine's dockerd and
its containers are left alone; it has no live-restore, so its containers
stop with it.  The targets are then ``--restart always`` containers of it
(``--docker-size`` of them), which come back; the agent must put their eth1
back.  ovsfab and the agent reach it through DOCKER_HOST.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import testbed as tb  # noqa: E402
import test_restarts as trs  # noqa: E402
from dockerbed import DockerBed  # noqa: E402
from test_agent import AgentProc, wait_for  # noqa: E402

from ovsfab.model import host_ifname  # noqa: E402

converged = trs.converged
#: How long, after the daemon is back, a failed command is re-run before the bench gives up.
RETRY_FOR = 300.0


def docker_targets(bed: DockerBed, n: int) -> List[tb.Container]:
    return [bed.run("--restart", "always", "--network", "none", tb.IMAGE, "sleep", "1000000") for _ in range(n)]


def start_agent(h: tb.OvsHost, bed) -> AgentProc:
    agent = trs.BedAgent(h, bed.env()) if bed else AgentProc(h)
    agent.wait_log("connected to OVSDB")
    if bed:
        agent.wait_log("dockerd connected")
    return agent


def first_error(cp: subprocess.CompletedProcess) -> str:
    lines = [x for x in cp.stderr.splitlines() if x.startswith("ovsfab: error:")]
    return lines[0][:110] if lines else ""


def apply_run(which: str, targets, addrs, tmp: Path, names, bed=None) -> Dict[str, object]:
    h = tb.OvsHost()
    env = bed.env() if bed else None
    r = None
    try:
        agent = start_agent(h, bed)
        f = tmp / "fabric.yaml"
        f.write_text("name: restarts\nhosts:\n  h1: {underlay: 192.168.77.5}\nnetworks:\n"
                     "  net: {bridge: br0, mode: vxlan, key: 9, subnet: 10.71.0.0/16}\nattachments:\n"
                     + "".join(f"  - {{container: '{n}', network: net, host: h1, address: {a.split('/')[0]}}}\n"
                               for n, a in zip(names, addrs)))
        veths = {host_ifname(t.id if isinstance(t, tb.Container) else t.target, "eth1") for t in targets}
        r = trs.Restarter(h, agent, bed)
        p = subprocess.Popen(h.ovsfab_cmd("apply", str(f), "--host", "h1"), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=tb.clean_env(env), cwd=str(tb.REPO))
        wait_for(lambda: len(veths & set(h.links())) >= len(veths) // 3 or p.poll() is not None, 120, "veths")
        mid = p.poll() is None
        r.restart(which)
        out, err = p.communicate(timeout=300)
        first = subprocess.CompletedProcess(p.args, p.returncode, out, err)
        trs.honest(first)
        reruns = 0
        while True:  # re-apply until 0 (dockerd may still be restarting containers)
            cp = h.ovsfab("apply", f, "--host", "h1", env=env, timeout=300) if (first.returncode or reruns) else first
            if cp.returncode == 0:
                break
            trs.honest(cp)
            reruns += 1
            # dockerd brings its --restart always containers back one by one: "is exited" is honest
            # until it has; 100 of them take a while on a loaded host
            assert time.monotonic() - r.back_at < RETRY_FOR, cp.stderr
            time.sleep(1)
        waited = converged(h, targets, addrs, RETRY_FOR)
        recovered = time.monotonic() - r.back_at
        last = h.ovsfab("apply", f, "--host", "h1", env=env, timeout=300)
        assert last.returncode == 0 and "nothing to do" in last.stdout, (last.stdout, last.stderr)
        return {"mid": mid, "rc": first.returncode, "err": first_error(first), "recover": recovered,
                "reruns": reruns, "settle": waited}
    finally:
        if r is not None and r.agent.proc.poll() is None:
            r.agent.stop()
        h.close()


def stream_run(which: str, targets, addrs, names, bed=None) -> Dict[str, object]:
    h = tb.OvsHost()
    env = bed.env() if bed else None
    r = None
    try:
        r = trs.Restarter(h, start_agent(h, bed), bed)
        results = []
        th = None
        for i, (n, a) in enumerate(zip(names, addrs)):
            if i == 4:
                th = threading.Thread(target=r.restart, args=(which,))
                th.start()
            cp = h.ovsfab("attach", "br0", n, a, env=env, timeout=180)
            trs.honest(cp)
            results.append(cp)
        th.join(180)
        failed = [i for i, cp in enumerate(results) if cp.returncode != 0]
        for i in failed:
            while time.monotonic() - r.back_at < RETRY_FOR:
                cp = h.ovsfab("attach", "br0", names[i], addrs[i], env=env, timeout=180)
                if cp.returncode == 0:
                    break
                trs.honest(cp)
                time.sleep(1)
            assert cp.returncode == 0, cp.stderr
        converged(h, targets, addrs, RETRY_FOR)
        recovered = time.monotonic() - r.back_at
        return {"failed": len(failed), "codes": sorted({cp.returncode for cp in results}),
                "errs": sorted({first_error(results[i]) for i in failed}), "recover": recovered,
                "fell_back": sum("warning: the agent took" in cp.stderr for cp in results)}
    finally:
        if r is not None and r.agent.proc.poll() is None:
            r.agent.stop()
        h.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--stream", type=int, default=30)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", nargs="*", default=list(trs.DAEMONS))
    ap.add_argument("--docker-size", type=int, default=100)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root")
    with tempfile.TemporaryDirectory(prefix="ovsfab-rs-") as d:
        tmp = Path(d)
        for which in args.only:
            bed = DockerBed(start_timeout=600) if which == "dockerd" else None
            try:
                if bed:
                    bed.import_busybox()
                apply_res, stream_res = [], []
                for _ in range(args.runs):
                    if which == "dockerd":
                        ts = docker_targets(bed, args.docker_size)
                        names = [c.name for c in ts]
                    else:
                        ts = [tb.make_netns() for _ in range(max(args.size, args.stream))]
                        names = [t.target for t in ts]
                    n_apply = args.docker_size if which == "dockerd" else args.size
                    n_stream = args.stream
                    addrs = [f"10.71.{i // 200}.{10 + i % 200}/16" for i in range(len(ts))]
                    try:
                        apply_res.append(apply_run(which, ts[:n_apply], addrs[:n_apply], tmp, names[:n_apply], bed))
                        if which != "dockerd":
                            for t in ts:  # the apply host is closed: wait for the peers to go
                                wait_for(lambda: "eth1" not in tb.links_in(t), 30, "eth1 gone")
                        else:
                            bed.remove(names)
                            ts = docker_targets(bed, args.stream)
                            names = [c.name for c in ts]
                        stream_res.append(stream_run(which, ts[:n_stream], addrs[:n_stream], names[:n_stream], bed))
                    finally:
                        if which == "dockerd":
                            bed.remove(names)
                        else:
                            for t in ts:
                                tb.delete_netns(t.name)
            finally:
                if bed:
                    keep = Path(tempfile.gettempdir()) / f"bench-restarts-dockerd-{os.getpid()}.log"
                    keep.write_text(bed.log())
                    print(f"(the private dockerd's log: {keep})", flush=True)
                    bed.close()
            rec = [x["recover"] for x in apply_res]
            print(f"{which}: apply of {n_apply}, restarted mid-way in {sum(x['mid'] for x in apply_res)}/"
                  f"{len(apply_res)}: exit codes {[x['rc'] for x in apply_res]}, re-applies {[x['reruns'] for x in apply_res]}, "
                  f"converged {statistics.median(rec):.2f} s median / {max(rec):.2f} s max after it was back; "
                  f"errors: {sorted({x['err'] for x in apply_res if x['err']})}", flush=True)
            rec = [x["recover"] for x in stream_res]
            print(f"{which}: stream of {n_stream} attaches: failed {[x['failed'] for x in stream_res]}, "
                  f"fell back {[x['fell_back'] for x in stream_res]}, all attached {statistics.median(rec):.2f} s "
                  f"median / {max(rec):.2f} s max after it was back; errors: "
                  f"{sorted({e for x in stream_res for e in x['errs']})}", flush=True)


if __name__ == "__main__":
    main()
