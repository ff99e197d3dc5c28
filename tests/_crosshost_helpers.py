"""Helpers for the uplink/tunnel tests: wires between simulated hosts,
a switch namespace, and L3 snapshots.  Test-side only (uses `ip` as oracle)."""
from __future__ import annotations

import json
import time
from typing import Optional, Sequence

import testbed as tb


def wire(a: tb.OvsHost, b: tb.OvsHost, name_a: str = "eth1", name_b: str = "eth1") -> None:
    """A veth 'cable' between two hosts: name_a in a, name_b in b, both up."""
    a.ip("link", "add", name_a, "type", "veth", "peer", "name", name_b, "netns", b.name)
    a.ip("link", "set", name_a, "up")
    b.ip("link", "set", name_b, "up")


class Switch:
    """A Linux bridge in its own namespace; hosts plug an eth1 into it."""

    def __init__(self) -> None:
        self.ns = tb.make_netns()
        tb.ns_run(self.ns.name, "ip", "link", "add", "sw", "type", "bridge")
        tb.ns_run(self.ns.name, "ip", "link", "set", "sw", "up")
        self._n = 0

    def plug(self, host: tb.OvsHost, name: str = "eth1") -> None:
        self._n += 1
        port = f"p{self._n}"
        host.ip("link", "add", name, "type", "veth", "peer", "name", port, "netns", self.ns.name)
        host.ip("link", "set", name, "up")
        tb.ns_run(self.ns.name, "ip", "link", "set", port, "master", "sw", "up")

    def close(self) -> None:
        tb.delete_netns(self.ns.name)


def l3_state(host: tb.OvsHost, ifname: Optional[str] = None) -> dict:
    """`ip -j addr` (of one link, or all) and `ip -j route` (v4 and v6), raw."""
    addr_args = ["-j", "addr", "show"] + (["dev", ifname] if ifname else [])
    addrs = json.loads(host.ip(*addr_args).stdout or "[]")
    return {
        "addr": addrs,
        "route4": json.loads(host.ip("-j", "-4", "route", "show", "table", "all").stdout or "[]"),
        "route6": [r for r in json.loads(host.ip("-j", "-6", "route", "show", "table", "all").stdout or "[]")
                   if not str(r.get("dst", "")).startswith(("fe80", "ff00", "multicast"))],
    }


def ping_df(ns, addr: str, size: int, count: int = 2) -> "tb.subprocess.CompletedProcess":
    """A ping with DF set and `size` bytes of payload."""
    return tb.ns_run(ns, "ping", "-4", "-n", "-M", "do", "-s", str(size), "-c", str(count),
                     "-i", "0.2", "-W", "2", addr, check=False, timeout=20)


def wait_for(cond, timeout: float = 10.0, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(interval)
    return cond()


def ovs_routes(host: tb.OvsHost) -> str:
    """`ovs-appctl ovs/route/show` of a host's vswitchd (oracle)."""
    return tb.run(["ovs-appctl", "-t", str(host.rundir / "ovs-vswitchd.ctl"), "ovs/route/show"],
                  check=False).stdout


def attach(host: tb.OvsHost, bridge: str, target, *addrs: str, opts: Sequence[str] = ()) -> dict:
    cp = host.ovsfab("attach", bridge, target.target, *addrs, *opts, "--json", check=True)
    return json.loads(cp.stdout)


def mtu_of(ns, ifname: str = "eth1") -> int:
    return int(tb.links_in(ns)[ifname]["mtu"])


def configure_uplink_nic(h, v4: str, v6: str) -> None:
    """Addresses and routes of every kind on eth1: what uplink must carry over."""
    h.ip("addr", "add", v4, "dev", "eth1")
    h.ip("addr", "add", v6, "dev", "eth1", "nodad")
    h.ip("route", "add", "10.200.0.0/16", "via", "192.168.77.1", "metric", "7")
    h.ip("route", "add", "default", "via", "192.168.77.1")
    h.ip("-6", "route", "add", "2001:db8:99::/48", "via", "2001:db8:77::1")
    h.ip("route", "add", "10.201.0.0/16", "dev", "eth1", "proto", "static", "scope", "link")
    tb.wait_dad(h.name)
