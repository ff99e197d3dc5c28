"""``ovsfab check``: prove, on this host alone, what decides cross-host traffic.

For every tunnel ovsfab made:

* **underlay**   the remote's underlay address answers an ICMP echo;
* **neighbour**  (OVS userspace datapath) exactly one MAC answers ARP for the
                 remote, and vswitchd's tunnel neighbour cache holds that MAC.
                 A second answer is a remote NIC answering beside its bridge:
                 frames sent to it miss ``tnl_pop`` there and vanish;
* **bfd**        BFD is up (OVS); a Linux tunnel device has carrier;
* **mtu**        every attachment on the tunnel's bridge fits the path:
                 MTU <= underlay MTU - tunnel overhead.

And for every attachment: it is not stale (container gone or stopped, netns
gone, interface error, no ofport).

Each problem is one line with its remedy.  ``wait`` repeats the whole check
until it passes or the deadline comes: what ``lab up`` and ``apply --wait``
use instead of one lucky ping.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

from ovsfab.backends.base import CAP_BFD, Backend, is_attachment
from ovsfab.errors import OvsfabError
from ovsfab.ops.tunnel import DEFAULT_UNDERLAY_MTU, ROLE_TUNNEL, Tunnel, overhead

BackendFactory = Callable[[], Backend]


@dataclass
class Problem:
    """One thing that stops traffic, with what to do about it."""

    subject: str
    check: str  # underlay | neighbour | bfd | carrier | mtu | stale | route
    message: str
    remedy: str

    def line(self) -> str:
        """The one line printed for it."""
        return f"{self.subject}: {self.message}; {self.remedy}"

    def to_json(self) -> dict:
        return {"subject": self.subject, "check": self.check, "message": self.message, "remedy": self.remedy}


@dataclass
class TunnelReport:
    """What was measured for one tunnel."""

    tunnel: Tunnel
    underlay_rtt_ms: Optional[float] = None
    neighbour: Optional[str] = None
    arp_answers: Optional[List[str]] = None
    path_mtu: Optional[int] = None

    def to_json(self) -> dict:
        out = self.tunnel.to_json()
        out.update({"underlay_rtt_ms": self.underlay_rtt_ms, "neighbour_mac": self.neighbour,
                    "arp_answers": self.arp_answers, "path_mtu": self.path_mtu})
        return out


@dataclass
class CheckResult:
    """The outcome of the last round (and how many rounds it took)."""

    problems: List[Problem] = field(default_factory=list)
    tunnels: List[TunnelReport] = field(default_factory=list)
    attachments: int = 0
    rounds: int = 0
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict:
        return {"action": "check", "ok": self.ok, "problems": [p.to_json() for p in self.problems],
                "tunnels": [t.to_json() for t in self.tunnels], "attachments": self.attachments,
                "rounds": self.rounds, "elapsed": round(self.elapsed, 3)}


def check(backend_factory: BackendFactory, db_remote: Optional[str] = None, wait: float = 0.0,
          interval: float = 0.3, probe_timeout: float = 0.5) -> CheckResult:
    """Check this host; with ``wait`` > 0, repeat until it passes or ``wait`` seconds pass."""
    start = time.monotonic()
    deadline = start + max(0.0, wait)
    rounds = 0
    while True:
        rounds += 1
        result = _check_once(backend_factory, db_remote, probe_timeout)
        result.rounds = rounds
        result.elapsed = time.monotonic() - start
        if result.ok or time.monotonic() + interval >= deadline:
            return result
        time.sleep(interval)


def _check_once(backend_factory: BackendFactory, db_remote: Optional[str], probe_timeout: float) -> CheckResult:
    from ovsfab.ops.attach import require_root  # noqa: PLC0415
    from ovsfab.plumbing.links import L3Handle  # noqa: PLC0415

    require_root()  # raw ICMP and ARP sockets
    result = CheckResult()
    backend = backend_factory()
    nl = L3Handle()
    try:
        tunnels = [Tunnel.from_owned(r) for r in _owned_tunnels(backend)]
        attachments = [a for a in backend.list_attachments() if is_attachment(a)]
        result.attachments = len(attachments)
        neighbours = _neighbours(backend, db_remote, tunnels, result)
        att_mtus = {a.port: _mtu_of(nl, a.port) for a in attachments}
        for tun in tunnels:
            rep = TunnelReport(tun)
            result.tunnels.append(rep)
            _check_tunnel(nl, tun, rep, neighbours, result.problems, probe_timeout)
            for att in attachments:
                mtu = att_mtus.get(att.port)
                if att.bridge == tun.bridge and rep.path_mtu is not None and mtu is not None and mtu > rep.path_mtu:
                    result.problems.append(Problem(
                        f"attachment {att.container_name} {att.ifname}", "mtu",
                        f"MTU {mtu} is larger than the {rep.path_mtu} that tunnel {tun.name} to {tun.remote} carries, "
                        "so larger packets are dropped",
                        f"attach it again with --mtu {rep.path_mtu} (or --mtu auto)"))
        _check_stale(backend, db_remote, result.problems)
    finally:
        nl.close()
        backend.close()
    return result


def _owned_tunnels(backend: Backend) -> list:
    try:
        return backend.owned_ports(ROLE_TUNNEL)
    except NotImplementedError:  # a backend without tunnels has none to check
        return []


def _mtu_of(nl: object, port: str) -> Optional[int]:
    info = nl.link(port)  # type: ignore[attr-defined]
    mtu = info.get("mtu") if info else None
    return int(mtu) if isinstance(mtu, int) else None


def _neighbours(backend: Backend, db_remote: Optional[str], tunnels: List[Tunnel],
                result: CheckResult) -> Optional[Dict[str, Tuple[str, str]]]:
    """vswitchd's tunnel neighbour cache, where the userspace datapath uses one."""
    if CAP_BFD not in backend.capabilities or not any(t.datapath == "netdev" for t in tunnels):
        return None
    from ovsfab.backends.ovs import appctl  # noqa: PLC0415
    from ovsfab.backends.ovs.idl import default_remote  # noqa: PLC0415

    try:
        return appctl.tunnel_neighbours(db_remote or default_remote())
    except OvsfabError as exc:
        result.problems.append(Problem("ovs-vswitchd", "neighbour", f"cannot read the tunnel neighbour cache: "
                                       f"{exc.message}", exc.remedy or "check that ovs-vswitchd runs"))
        return None


def _check_tunnel(nl: object, tun: Tunnel, rep: TunnelReport, neighbours: Optional[Dict[str, Tuple[str, str]]],
                  problems: List[Problem], probe_timeout: float) -> None:
    from ovsfab.plumbing.probe import arp_answers, ping  # noqa: PLC0415

    subject = f"tunnel {tun.name} ({tun.tun_type} to {tun.remote})"
    route = nl.route_to(tun.remote)  # type: ignore[attr-defined]
    if route is None or route.get("ifname") is None:
        problems.append(Problem(subject, "route", f"this host has no route to {tun.remote}",
                                "give the host an underlay address that reaches it (ovsfab uplink add ...)"))
        return
    underlay = route.get("mtu") if isinstance(route.get("mtu"), int) else DEFAULT_UNDERLAY_MTU
    rep.path_mtu = int(underlay) - overhead(tun.tun_type, ":" in tun.remote, tun.key,  # type: ignore[arg-type]
                                            tun.options.get("csum") == "true")
    rtt = ping(None, tun.remote, count=1, timeout=probe_timeout)
    rep.underlay_rtt_ms = None if rtt is None else round(rtt * 1000, 3)
    if rtt is None:
        problems.append(Problem(subject, "underlay", f"the remote underlay address {tun.remote} does not answer "
                                f"(via {route['ifname']})",
                                "check that the other host is up, has that address, and that the wire between "
                                "them carries traffic"))
    if neighbours is not None and tun.datapath == "netdev" and ":" not in tun.remote:
        cached = neighbours.get(tun.remote)
        rep.neighbour = cached[0] if cached else None
        oif = str(route["ifname"])
        info = nl.link(oif)  # type: ignore[attr-defined]
        if info is not None and route.get("prefsrc"):
            rep.arp_answers = arp_answers(None, oif, str(info["mac"]), str(route["prefsrc"]), tun.remote,
                                          timeout=probe_timeout)
        answers = rep.arp_answers or []
        if len(answers) > 1:
            problems.append(Problem(subject, "neighbour",
                                    f"{len(answers)} MACs answer ARP for {tun.remote} ({', '.join(answers)}): "
                                    "its NIC answers beside its bridge, and frames sent to the NIC's MAC are lost",
                                    f"on {tun.remote}, run `ovsfab uplink del` and `uplink add` again with this "
                                    "version (or set arp_ignore=8 on its uplink NIC)"))
        elif answers and rep.neighbour is not None and rep.neighbour not in answers:
            problems.append(Problem(subject, "neighbour",
                                    f"ovs-vswitchd sends to {rep.neighbour}, but {tun.remote} answers ARP with "
                                    f"{answers[0]}", "flush the stale entry: ovs-appctl tnl/neigh/flush"))
    live = tun.liveness
    if live.available and live.enabled and live.state != "up":
        diag = f" ({live.diagnostic})" if live.diagnostic and live.diagnostic != "No Diagnostic" else ""
        problems.append(Problem(subject, "bfd", f"BFD is {live.state or 'not running yet'}{diag}",
                                f"check that {tun.remote} has a tunnel back to this host with BFD "
                                "(ovsfab tunnel list there) and that the remote underlay answers"))
    if not live.available and live.carrier is False:
        problems.append(Problem(subject, "carrier", f"the tunnel device {tun.name} has no carrier",
                                f"bring it up (ip link set {tun.name} up) and check its underlay device"))


def _check_stale(backend: Backend, db_remote: Optional[str], problems: List[Problem]) -> None:
    from ovsfab.ops.inspect import show  # noqa: PLC0415

    shown = show(remote=db_remote, with_ovs=backend.kind == "ovs")
    for br in shown.bridges:
        for port in br.ports:
            if port.owner is not None and port.owner.tool == "ovsfab" and port.stale:
                problems.append(Problem(
                    f"attachment {port.owner.container} {port.owner.ifname}", "stale",
                    f"port {port.name} on {br.name} is stale ({', '.join(port.stale_reasons)})",
                    "run `ovsfab reconcile` (or detach it)"))
