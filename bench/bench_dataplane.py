#!/usr/bin/env python3
"""TCP throughput between containers on two simulated hosts: ovsfab's fabric against the same built by hand.

For each mode (``vxlan``, ``uplink``):

1. ``ovsfab lab up --mode MODE`` builds two hosts (netns + private OVS,
   netdev datapath), a netns "container" on each, and connects them with
   ovsfab's own operations (``uplink add``, ``tunnel add``, ``attach``).
   iperf3 ``-t 5`` from container 1 to container 2: Gbit/s and TCP
   retransmits.  Then the settings below are tried on the interfaces ovsfab
   created, one at a time, each measured the same way.
2. ``ovsfab lab up --bare`` builds the same hosts and containers unconnected;
   the same topology is built by hand with ``ovs-vsctl`` and ``ip`` (and
   ``ethtool -K ... tx off`` on the container veths, without which TCP does
   not work at all on netdev), and measured the same way.

Prints a table per mode and the ratio ovsfab / by hand.  Needs root,
iperf3 and ethtool; no Docker (the lab uses named netns when
``DOCKER_HOST`` points nowhere).

Usage::

    sudo .venv/bin/python bench/bench_dataplane.py [--modes vxlan,uplink] [--time 5] [--repeat 3] [--no-variants]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

REPO = Path(__file__).resolve().parent.parent
PY = str(REPO / ".venv" / "bin" / "python")
LAB_ENV: Dict[str, str] = {}
HOSTS = ("docker-test1", "docker-test2")
CTRS = ("docker-test1-c1", "docker-test2-c1")
UNDERLAY = ("192.168.77.5", "192.168.77.6")


def sh(*cmd: str, check: bool = True, env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
    cp = subprocess.run(list(cmd), capture_output=True, text=True, timeout=120, env=env)
    if check and cp.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({cp.returncode}): {cp.stderr.strip()}")
    return cp


def lab(*args: str) -> subprocess.CompletedProcess:
    return sh(PY, "-m", "ovsfab", "lab", *args, env={**os.environ, **LAB_ENV})


def rundir(host: str) -> str:
    return os.path.join(LAB_ENV["OVSFAB_LAB_DIR"], host)


def vsctl(host: str, *args: str) -> None:
    sh("ovs-vsctl", f"--db=unix:{rundir(host)}/db.sock", "--timeout=20", *args)


def nsx(ns: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return sh("ip", "netns", "exec", ns, *cmd, check=check)


def iperf(dst_ip: str, seconds: int) -> Tuple[float, int]:
    """(Gbit/s, retransmits) from container 1 to container 2."""
    server = subprocess.Popen(["ip", "netns", "exec", CTRS[1], "iperf3", "-s", "-1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        try:
            cp = subprocess.run(["timeout", str(seconds + 15), "ip", "netns", "exec", CTRS[0], "iperf3", "-c",
                                 dst_ip, "-t", str(seconds), "-J", "--connect-timeout", "3000"],
                                capture_output=True, text=True, timeout=seconds + 30)
        except subprocess.TimeoutExpired:
            return 0.0, -1
        try:
            data = json.loads(cp.stdout or "{}")
        except ValueError:
            data = {}
        if "end" not in data or "sum_sent" not in data["end"]:
            return 0.0, -1  # TCP did not get through at all
        sent = data["end"]["sum_sent"]
        return sent["bits_per_second"] / 1e9, int(sent.get("retransmits", 0))
    finally:
        try:
            server.wait(timeout=2)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def addr(mode: str, i: int) -> str:
    return f"192.168.77.{10 * (i + 1)}" if mode == "uplink" else f"10.77.0.{10 * (i + 1)}"


def host_veth(host: str, container: str) -> str:
    """The host end of the container's eth1 (whatever its name)."""
    links = json.loads(nsx(host, "ip", "-j", "-d", "link", "show", "type", "veth").stdout or "[]")
    for link in links:
        if link["ifname"] not in ("eth1",) and link.get("link_netnsid") is not None:
            peer = json.loads(nsx(container, "ip", "-j", "link", "show", "eth1").stdout)[0]
            if link["ifindex"] == peer.get("link_index"):
                return link["ifname"]
    raise SystemExit(f"no host end of {container} eth1 in {host}")


# -- the same topology by hand -------------------------------------------------
def build_by_hand(mode: str) -> None:
    for i, (host, ctr) in enumerate(zip(HOSTS, CTRS)):
        env_db = f"unix:{rundir(host)}/db.sock"
        if mode == "uplink":
            vsctl(host, "add-br", "br0", "--", "set", "bridge", "br0", "datapath_type=netdev")
            vsctl(host, "add-port", "br0", "eth1")
            nsx(host, "ethtool", "-K", "eth1", "tx", "off")
            mtu = "1500"
        else:
            vsctl(host, "add-br", "br-ul", "--", "set", "bridge", "br-ul", "datapath_type=netdev")
            vsctl(host, "add-port", "br-ul", "eth1")
            nsx(host, "ethtool", "-K", "eth1", "tx", "off")
            nsx(host, "ip", "addr", "del", f"{UNDERLAY[i]}/24", "dev", "eth1")
            nsx(host, "ip", "addr", "add", f"{UNDERLAY[i]}/24", "dev", "br-ul")
            nsx(host, "ip", "link", "set", "br-ul", "up")
            vsctl(host, "add-br", "br0", "--", "set", "bridge", "br0", "datapath_type=netdev")
            vsctl(host, "add-port", "br0", "vx0", "--", "set", "interface", "vx0", "type=vxlan",
                  f"options:remote_ip={UNDERLAY[1 - i]}", "options:key=5001")
            mtu = "1450"
        del env_db
        nsx(host, "ip", "link", "add", "vh1", "mtu", mtu, "type", "veth", "peer", "name", "eth1",
            "mtu", mtu, "netns", ctr)
        nsx(ctr, "ip", "addr", "add", f"{addr(mode, i)}/24", "dev", "eth1")
        nsx(ctr, "ip", "link", "set", "eth1", "up")
        nsx(host, "ip", "link", "set", "vh1", "up")
        vsctl(host, "add-port", "br0", "vh1")
        nsx(ctr, "ethtool", "-K", "eth1", "tx", "off")
        nsx(host, "ethtool", "-K", "vh1", "tx", "off")
    time.sleep(1)
    if nsx(CTRS[0], "ping", "-c", "2", "-W", "2", addr(mode, 1), check=False).returncode != 0:
        raise SystemExit(f"the hand-built {mode} fabric does not ping")


# -- settings tried on ovsfab's interfaces -------------------------------------
Variant = Tuple[str, Callable[[], None], Callable[[], None]]


def variants() -> List[Variant]:
    """(label, apply, undo): each measured on top of ovsfab's defaults, then undone."""
    def each(fn: Callable[[str, str, str], object]) -> Callable[[], None]:
        def apply() -> None:
            for host, ctr in zip(HOSTS, CTRS):
                fn(host, ctr, host_veth(host, ctr))
        return apply

    def ctr(*feat: str) -> Callable[[], None]:
        return each(lambda h, c, v: nsx(c, "ethtool", "-K", "eth1", *feat))

    def hst(*feat: str) -> Callable[[], None]:
        return each(lambda h, c, v: nsx(h, "ethtool", "-K", v, *feat))

    def ends(*feat: str) -> Callable[[], None]:
        return each(lambda h, c, v: (nsx(c, "ethtool", "-K", "eth1", *feat), nsx(h, "ethtool", "-K", v, *feat)))

    def txqlen(n: str) -> Callable[[], None]:
        return each(lambda h, c, v: (nsx(c, "ip", "link", "set", "eth1", "txqueuelen", n),
                                     nsx(h, "ip", "link", "set", v, "txqueuelen", n)))

    def backlog(n: str) -> Callable[[], None]:
        return lambda: sh("sysctl", "-qw", f"net.core.netdev_max_backlog={n}")

    def tso(on: bool) -> Callable[[], None]:
        def apply() -> None:
            for host in HOSTS:
                vsctl(host, "set", "Open_vSwitch", ".", f"other_config:userspace-tso-enable={str(on).lower()}")
                restart_vswitchd(host)  # read at start-up only
            time.sleep(3)
        return apply

    def both(*fns: Callable[[], None]) -> Callable[[], None]:
        return lambda: [f() for f in fns] and None

    base_backlog = Path("/proc/sys/net/core/netdev_max_backlog").read_text().strip()
    return [
        ("container eth1: sg/tso/gso off", ctr("sg", "off", "tso", "off", "gso", "off"), ctr("sg", "on", "gso", "on")),
        ("host veth: gro off", hst("gro", "off"), hst("gro", "on")),
        ("both ends: gro on", ends("gro", "on"), ends("gro", "off")),
        ("both ends: txqueuelen 10000", txqlen("10000"), txqlen("1000")),
        ("container eth1: rx (checksum) off", ctr("rx", "off"), ctr("rx", "on")),
        ("host sysctl netdev_max_backlog=10000", backlog("10000"), backlog(base_backlog)),
        ("OVS userspace-tso-enable=true (offloads as ovsfab sets)", tso(True), lambda: None),
        ("userspace TSO + tx on again on both veth ends", ends("tx", "on"), both(ends("tx", "off"), tso(False))),
    ]


def restart_vswitchd(host: str) -> None:
    r = rundir(host)
    pid = int(Path(r, "ovs-vswitchd.pid").read_text().strip())
    argv = [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")]
    os.kill(pid, 15)
    for _ in range(100):
        if not Path(f"/proc/{pid}").exists():
            break
        time.sleep(0.05)
    sh("ip", "netns", "exec", host, *argv)


def measure(label: str, mode: str, seconds: int, rows: List[Tuple[str, str, float, int]],
            repeat: int = 1) -> Tuple[float, int]:
    """iperf3 ``repeat`` times; the run with the median throughput."""
    runs = sorted(iperf(addr(mode, 1), seconds) for _ in range(repeat))
    gbps, retr = runs[len(runs) // 2]
    if repeat > 1:
        label = f"{label} [median of {repeat}: " + ", ".join(f"{g:.2f}" for g, _ in runs) + "]"
    rows.append((mode, label, gbps, retr))
    print(f"  {mode:7} {label:48} {gbps:6.2f} Gbit/s  {retr:7d} retransmits", flush=True)
    return gbps, retr


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--modes", default="vxlan,uplink")
    ap.add_argument("--time", type=int, default=5)
    ap.add_argument("--no-variants", action="store_true", help="only ovsfab against by hand")
    ap.add_argument("--repeat", type=int, default=3, help="iperf3 runs for ovsfab and by hand (median)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_dataplane: needs root; run it with sudo", file=sys.stderr)
        return 7
    tmp = tempfile.mkdtemp(prefix="ovsfab-dp-")
    LAB_ENV.update(OVSFAB_LAB_DIR=tmp, DOCKER_HOST="unix:///nonexistent.sock")
    rows: List[Tuple[str, str, float, int]] = []
    summary = []
    try:
        for mode in args.modes.split(","):
            lab("up", "--mode", mode)
            try:
                fab, fab_r = measure("ovsfab (defaults)", mode, args.time, rows, args.repeat)
                if not args.no_variants:
                    for label, apply, undo in variants():
                        apply()
                        measure(label, mode, args.time, rows)
                        undo()
            finally:
                lab("down")
            lab("up", "--mode", mode, "--bare")
            try:
                build_by_hand(mode)
                hand, hand_r = measure("by hand (ovs-vsctl + ip + ethtool tx off)", mode, args.time, rows,
                                       args.repeat)
            finally:
                lab("down")
            summary.append((mode, fab, fab_r, hand, hand_r))
    finally:
        if os.path.exists(os.path.join(tmp, "lab.json")):
            lab("down")
    print("\n| fabric | ovsfab | by hand | ratio |\n|---|---|---|---|")
    for mode, fab, fab_r, hand, hand_r in summary:
        ratio = fab / hand if hand else float("nan")
        print(f"| {mode} | {fab:.2f} Gbit/s ({fab_r} retr.) | {hand:.2f} Gbit/s ({hand_r} retr.) | {ratio:.2f} |")
    print("\n| mode | setting (on top of ovsfab's defaults) | Gbit/s | retransmits |\n|---|---|---|---|")
    for mode, label, gbps, retr in rows:
        print(f"| {mode} | {label} | {gbps:.2f} | {retr} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
