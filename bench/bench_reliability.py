"""Crash and race figures for docs/reliability.md (the long loops the test suite cannot afford).

    .venv/bin/python bench/bench_reliability.py [--kills 3] [--midway 10] [--size 100] [--races 50]

1. kill points: every step of attach, detach and apply (OVSFAB_INJECT_FAULT=kill:<step>),
   ``--kills`` times each: residue right after the kill (host-end veths, OVS ports),
   time of the converging re-run, converged or not (tests/test_crash.py's oracle);
2. mid-way: apply of ``--size`` netns attachments SIGKILLed from outside once a random
   number of its veths exist: orphan veths, re-apply time, converged or not;
3. races, ``--races`` times each: attach vs detach of one target (random start offset),
   two applies of different files; 5 each with Docker: ``docker rm -f`` mid-attach,
   ``docker restart`` mid-apply.  Outcomes and inconsistencies;
4. agent kills (``--only agent-kills``): the same kill hook sent to a running agent, which
   SIGKILLs itself mid-request, ``--agent-kills`` times per attach/detach step: the client's
   exit, whether it warned and fell back, its total time, converged or not.

Needs root, OVS and (for the Docker races) dockerd; the state oracles are ``ip -j`` and
``ovs-vsctl`` only, as in the tests.
"""
from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import testbed as tb  # noqa: E402
import test_crash as tc  # noqa: E402
import test_races as tr  # noqa: E402

from ovsfab.model import host_ifname  # noqa: E402


def residue(h: tb.OvsHost, before_links: set, before_ports: set) -> str:
    links = {n for n in h.links() if n.startswith("ovf")} - before_links
    ports = set(tb.ovs_ports(h)) - before_ports
    return f"{len(links)} veth(s), {len(ports)} port(s)"


def fig(times: List[float]) -> str:
    return f"median {statistics.median(times):.2f} s, max {max(times):.2f} s" if times else "-"


def kill_points(n: int, tmp: Path) -> None:
    print(f"== kill points ({n} run(s) each) ==")
    t = tb.make_netns()
    ts = [tb.make_netns() for _ in range(4)]
    v1, v2 = tmp / "v1.yaml", tmp / "v2.yaml"
    v1.write_text(tc.fabric_v1(ts))
    v2.write_text(tc.fabric_v2(ts))
    tried = bad = 0
    try:
        with tb.OvsHost() as h:  # references
            h.ovsfab("attach", tc.ATTACH_ARGS[0], t.target, *tc.ATTACH_ARGS[1:], check=True)
            ref_att = tc.norm_snapshot(h, [t])
            h.ovsfab("detach", "br0", t.target, check=True)
            ref_det = tc.norm_snapshot(h, [t])
        with tc.apply_host() as h:
            h.ovsfab("apply", v1, "--host", "h1", check=True)
            h.ovsfab("apply", v2, "--host", "h1", "--prune", check=True)
            ref_apply = tc.norm_snapshot(h, ts)
        cases = [("attach", s) for s in tc.ATTACH_STEPS] + [("detach", s) for s in tc.DETACH_STEPS] \
            + [("apply", s) for s in tc.APPLY_KILLED]
        for op, step in cases:
            times, res, ok = [], set(), 0
            for _ in range(n):
                tc.wait_gone([t] + ts)
                h = tc.apply_host() if op == "apply" else tb.OvsHost()
                try:
                    if op == "apply":
                        h.ovsfab("apply", v1, "--host", "h1", check=True)
                        argv, targets, ref = ("apply", v2, "--host", "h1", "--prune"), ts, ref_apply
                    elif op == "attach":
                        argv, targets, ref = ("attach", tc.ATTACH_ARGS[0], t.target, *tc.ATTACH_ARGS[1:]), [t], ref_att
                    else:
                        h.ovsfab("attach", tc.ATTACH_ARGS[0], t.target, *tc.ATTACH_ARGS[1:], check=True)
                        argv, targets, ref = ("detach", "br0", t.target), [t], ref_det
                    links0 = {n for n in h.links() if n.startswith("ovf")}
                    ports0 = set(tb.ovs_ports(h))
                    cp = h.ovsfab(*argv, env=tc.kill_env(step))
                    assert cp.returncode == tc.KILLED, (op, step, cp.returncode, cp.stderr)
                    res.add(residue(h, links0, ports0) if op != "detach" else
                            f"{len(links0 & set(h.links()))} veth(s) kept, {len(ports0 - set(tb.ovs_ports(h)))} "
                            "port(s) removed")
                    t0 = time.monotonic()
                    cp = h.ovsfab(*argv)
                    times.append(time.monotonic() - t0)
                    try:
                        assert cp.returncode == 0, cp.stderr
                        tc.assert_same(tc.norm_snapshot(h, targets), ref)
                        ok += 1
                    except AssertionError as exc:
                        print(f"   NOT CONVERGED {op} {step}: {exc}")
                finally:
                    h.close()
            tried += n
            bad += n - ok
            print(f"{op:7s} kill:{step:12s} residue after kill: {'; '.join(sorted(res)):38s} "
                  f"re-run {fig(times)}, converged {ok}/{n}")
    finally:
        for x in [t] + ts:
            tb.delete_netns(x.name)
    print(f"kill points: {len(tc.ATTACH_STEPS) + len(tc.DETACH_STEPS) + len(tc.APPLY_KILLED)} distinct, "
          f"{tried} kills, {bad} not converged")


def midway(n: int, size: int, tmp: Path) -> None:
    print(f"== apply of {size} attachments SIGKILLed mid-way ({n} runs) ==")
    ts = [tb.make_netns() for _ in range(size)]
    f = tmp / "mid.yaml"
    f.write_text("name: mid\nhosts:\n  h1: {underlay: 192.168.77.5}\nnetworks:\n"
                 "  net: {bridge: br0, mode: vxlan, key: 9, subnet: 10.60.0.0/16}\nattachments:\n"
                 + "".join(f"  - {{container: '{t.target}', network: net, host: h1}}\n" for t in ts))
    ports = {host_ifname(t.target, "eth1") for t in ts}
    orphans, times, ok = [], [], 0
    try:
        for _ in range(n):
            tc.wait_gone(ts, timeout=60)
            with tb.OvsHost() as h:
                want = random.randint(5, size - 5)
                p = tr.start(h, "apply", f, "--host", "h1")
                while p.poll() is None:
                    have = {n for n in h.links() if n.startswith("ovf")}
                    if len(have & ports) >= want:
                        p.send_signal(signal.SIGKILL)
                        break
                p.communicate()
                assert p.returncode == -signal.SIGKILL, f"apply finished ({p.returncode}) before the kill"
                left = {n for n in h.links() if n in ports}
                recorded = set(tb.ovs_ports(h)) & ports
                orphans.append(len(left - recorded))
                t0 = time.monotonic()
                cp = h.ovsfab("apply", f, "--host", "h1", timeout=300)
                times.append(time.monotonic() - t0)
                again = h.ovsfab("apply", f, "--host", "h1", timeout=300)
                good = (cp.returncode == 0 and "nothing to do" in again.stdout
                        and set(tb.ovs_ports(h)) == ports | {"br0"}
                        and {n for n in h.links() if n.startswith("ovf")} == ports
                        and all("eth1" in tb.links_in(t) for t in ts))
                ok += good
                if not good:
                    print(f"   NOT CONVERGED: rc={cp.returncode} {cp.stderr.strip()[-200:]}")
    finally:
        for t in ts:
            tb.delete_netns(t.name)
    print(f"orphan host-end veths after the kill: min {min(orphans)}, median {statistics.median(orphans)}, "
          f"max {max(orphans)}; re-apply {fig(times)}; converged {ok}/{n}")


def races(n: int, tmp: Path, docker_runs: int) -> None:
    print(f"== races ({n} runs each, Docker races {docker_runs}) ==")
    outcomes: Dict[str, int] = {}
    bad = 0
    with tb.OvsHost() as h:
        for i in range(n):
            t = tb.make_netns()
            try:
                port = host_ifname(t.target, "eth1")
                first = random.choice(["attach", "detach"])
                runs = {"attach": ("attach", "br0", t.target, "10.3.0.10/24"), "detach": ("detach", "br0", t.target)}
                procs = {first: tr.start(h, *runs[first])}
                time.sleep(random.uniform(0, 0.4))
                second = "detach" if first == "attach" else "attach"
                procs[second] = tr.start(h, *runs[second])
                ra, rd = tr.finish(procs["attach"]), tr.finish(procs["detach"])
                try:
                    state = tr.attachment_state(h, t, port, "10.3.0.10/24")
                    honest = (ra.returncode == 0 and rd.returncode == 3) if state == "attached" else \
                        (rd.returncode == 0 and ra.returncode in (0, 3, 4, 5, 6))
                    assert honest, (state, ra.returncode, rd.returncode)
                    key = f"{state} (attach {ra.returncode}, detach {rd.returncode})"
                    outcomes[key] = outcomes.get(key, 0) + 1
                except AssertionError as exc:
                    bad += 1
                    print(f"   INCONSISTENT: {exc}")
                h.ovsfab("detach", "br0", t.target)
            finally:
                tb.delete_netns(t.name)
    print(f"attach vs detach: {outcomes}; inconsistent {bad}/{n}")

    apply_bad, apply_out = 0, {}
    for i in range(n):
        with tb.OvsHost() as h:
            sets = {"red": [tb.make_netns() for _ in range(6)], "green": [tb.make_netns() for _ in range(6)]}
            try:
                nets = {"red": "10.41.0", "green": "10.42.0"}
                files = {}
                for name, ts in sets.items():
                    files[name] = tmp / f"{name}.yaml"
                    files[name].write_text(tr._fabric(name, ts, nets[name]))
                procs = {name: tr.start(h, "apply", f, "--host", "h1") for name, f in files.items()}
                res = {name: tr.finish(p) for name, p in procs.items()}
                key = "+".join(str(res[k].returncode) for k in sorted(res))
                try:
                    for name, ts in sets.items():
                        st = {tr.attachment_state(h, t, host_ifname(t.target, "eth1"), f"{nets[name]}.{10 + j}/24")
                              for j, t in enumerate(ts)}
                        assert st == {"attached" if res[name].returncode == 0 else "detached"}, (name, st)
                    apply_out[key] = apply_out.get(key, 0) + 1
                except AssertionError as exc:
                    apply_bad += 1
                    print(f"   INCONSISTENT: {exc}")
            finally:
                for ts in sets.values():
                    for t in ts:
                        tb.delete_netns(t.name)
    print(f"two applies at once: exit codes (green+red) {apply_out}; inconsistent {apply_bad}/{n}")

    if tb.docker_available() is not None or docker_runs <= 0:
        print("docker races: skipped (dockerd not usable)")
        return
    image = tb.build_busybox_image()
    rm_out: Dict[str, int] = {}
    for _ in range(docker_runs):
        with tb.OvsHost() as h:
            c = tb.start_container(image=image)
            try:
                port = host_ifname(c.id, "eth1")
                a = tr.start(h, "attach", "br0", c.name, "10.4.0.10/24")
                tr.wait_link(h, port, a)
                tb.docker("rm", "-f", c.name)
                ra = tr.finish(a)
                if ra.returncode != 0:
                    left = port in tb.ovs_ports(h) or port in h.links()
                    key = f"attach {ra.returncode}, residue {'YES' if left else 'none'}"
                else:
                    h.ovsfab("reconcile")
                    left = port in tb.ovs_ports(h) or port in h.links()
                    key = f"attach 0, after reconcile residue {'YES' if left else 'none'}"
                rm_out[key] = rm_out.get(key, 0) + 1
            finally:
                tb.remove_containers([c.name])
    print(f"docker rm -f mid-attach: {rm_out}")
    rs_out: Dict[str, int] = {}
    for _ in range(docker_runs):
        with tb.OvsHost() as h:
            cs = [tb.start_container(image=image) for _ in range(3)]
            try:
                f = tmp / "restart.yaml"
                f.write_text("name: restart\nhosts:\n  h1: {underlay: 192.168.77.5}\nnetworks:\n"
                             "  net: {bridge: br0, mode: vxlan, key: 7, subnet: 10.43.0.0/24}\nattachments:\n"
                             + "".join(f"  - {{container: '{c.name}', network: net, host: h1, "
                                       f"address: 10.43.0.{10 + i}}}\n" for i, c in enumerate(cs)))
                a = tr.start(h, "apply", f, "--host", "h1")
                tr.wait_link(h, host_ifname(cs[1].id, "eth1"), a)
                tb.docker("restart", "-t", "0", cs[1].name)
                ra = tr.finish(a)
                t0 = time.monotonic()
                re_ = h.ovsfab("apply", f, "--host", "h1")
                took = time.monotonic() - t0
                for c in cs:
                    c.refresh_pid()
                ok = re_.returncode == 0 and all(
                    tr.attachment_state(h, c, host_ifname(c.id, "eth1"), f"10.43.0.{10 + i}/24") == "attached"
                    for i, c in enumerate(cs))
                key = f"apply {ra.returncode}, re-apply {'converged' if ok else 'NOT converged'}"
                rs_out[key] = rs_out.get(key, 0) + 1
                print(f"   restart mid-apply: re-apply {took:.2f} s")
            finally:
                tb.remove_containers([c.name for c in cs])
    print(f"docker restart mid-apply: {rs_out}")


def agent_kills(n: int) -> None:
    import test_agent_crash as tac  # noqa: PLC0415

    print(f"== kills inside the agent ({n} run(s) each) ==")
    t = tb.make_netns()
    bad = total = 0
    try:
        with tb.OvsHost() as h:
            h.ovsfab("attach", tc.ATTACH_ARGS[0], t.target, *tc.ATTACH_ARGS[1:], check=True)
            ref_att = tc.norm_snapshot(h, [t])
            h.ovsfab("detach", "br0", t.target, check=True)
            ref_det = tc.norm_snapshot(h, [t])
        for op, step in [("attach", s) for s in tc.ATTACH_STEPS] + [("detach", s) for s in tc.DETACH_STEPS]:
            times, codes, warned, ok = [], set(), 0, 0
            for _ in range(n):
                tc.wait_gone([t])
                with tb.OvsHost() as h:
                    if op == "detach":
                        h.ovsfab("attach", tc.ATTACH_ARGS[0], t.target, *tc.ATTACH_ARGS[1:], check=True)
                    agent = tac.start_agent(h)
                    try:
                        argv = (("attach", tc.ATTACH_ARGS[0], t.target, *tc.ATTACH_ARGS[1:]) if op == "attach"
                                else ("detach", "br0", t.target))
                        t0 = time.monotonic()
                        cp = h.ovsfab(*argv, env=tc.kill_env(step))
                        times.append(time.monotonic() - t0)
                        died = agent.proc.wait(timeout=10) == tc.KILLED
                        codes.add(cp.returncode)
                        warned += cp.stderr.startswith(tac.WARNING)
                        try:
                            assert died and cp.returncode == 0
                            tc.assert_same(tc.norm_snapshot(h, [t]), ref_att if op == "attach" else ref_det)
                            ok += 1
                        except AssertionError as exc:
                            print(f"   NOT CONVERGED {op} {step}: rc={cp.returncode} died={died} {exc}")
                    finally:
                        if agent.proc.poll() is None:
                            agent.kill()
            total += n
            bad += n - ok
            print(f"{op:7s} kill:{step:12s} client exit {sorted(codes)}, warned {warned}/{n}, "
                  f"total {fig(times)}, converged {ok}/{n}")
    finally:
        tb.delete_netns(t.name)
    print(f"agent kills: {total}, not converged {bad}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=3)
    ap.add_argument("--midway", type=int, default=10)
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--races", type=int, default=50)
    ap.add_argument("--docker-races", type=int, default=5)
    ap.add_argument("--agent-kills", type=int, default=5)
    ap.add_argument("--only", choices=("kills", "midway", "races", "agent-kills"))
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root")
    import tempfile  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="ovsfab-rel-") as d:
        tmp = Path(d)
        if args.only in (None, "kills"):
            kill_points(args.kills, tmp)
        if args.only in (None, "midway"):
            midway(args.midway, args.size, tmp)
        if args.only in (None, "races"):
            races(args.races, tmp, args.docker_races)
        if args.only in (None, "agent-kills"):
            agent_kills(args.agent_kills)


if __name__ == "__main__":
    main()
