"""``ovsfab inspect`` and ``ovsfab show``: collect facts, change nothing.

Both commands gather plain facts into the dataclasses of inspect_facts.py
(each with a ``to_json()``; schema in docs/json.md); the CLI renders them as
a tree or as JSON.  This module assembles them; the readers are their own
modules:

* **Links** -- inspect_links.py: one rtnetlink link dump (plus one address
  dump) per namespace.  A container interface's host peer is found through
  the veth's ``IFLA_LINK`` (the peer's ifindex) and ``IFLA_LINK_NETNSID``
  (the peer's namespace *as numbered by the container's namespace*), never
  by name: a name says nothing about which namespace or which pair it is.
  The match is confirmed from both ends (the host link's own ``IFLA_LINK``
  must be the container interface's ifindex).
* **OVS** -- inspect_ovsdb.py: one IDL sync of only the columns read there.
* **Docker** -- here: one API call: ``inspect`` for the container being
  inspected; for ``show``, one container *list* for all ports (never one
  call per port, and no namespace is entered: the OVSDB record says whose
  port it is), through the docker SDK, imported only when a port or the
  target is a Docker container (the import costs ~160 ms; the agent has it
  loaded).

Speed (issue #5: 300 attachments, "well under a second"): run by the agent,
these read its warm OVSDB session (the ``warm`` provider their callers
pass); run in a one-shot CLI process, pyroute2 is imported without its
package ``__init__``.  The private interfaces these rely on live in
plumbing/pyroute2_private.py and backends/ovs/python_ovs_private.py.  See
docs/performance.md, "show and inspect" and "Private interfaces".

What ovsfab owns is decided by external_ids tags only, never by name
patterns.
"""


from __future__ import annotations

import logging
import os
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

from ovsfab.errors import NotFound, OvsfabError, Unavailable
from ovsfab.model import parse_target_spec
from ovsfab.ops.inspect_facts import (STALE_CONTAINER_GONE, STALE_CONTAINER_STOPPED, STALE_NETNS_GONE,
                                      STALE_PROCESS_GONE, BridgeFacts, ContainerFacts, InspectResult,
                                      InterfaceFacts, LinkFacts, Owner, PeerFacts, PortFacts, ServiceStatus,
                                      ShowResult)
from ovsfab.ops.inspect_links import dump_addresses, dump_links, linux_bridges, prepare_pyroute2
from ovsfab.ops.inspect_ovsdb import OVSDB_COLUMNS, WarmSessions, open_ovsdb, ovs_bridges

__all__ = ["show", "inspect", "mark_stale", "OVSDB_COLUMNS", "ShowResult", "InspectResult"]

LOG = logging.getLogger(__name__)


# ---------------------------------------------------------------------------
# show
# ---------------------------------------------------------------------------
def _docker_containers(docker_host: Optional[str] = None) -> List[Dict[str, Any]]:
    """Every container dockerd knows of (one API call, through the docker SDK); raises Unavailable."""
    import docker.errors  # noqa: PLC0415 - lazy: the SDK costs ~160 ms to import
    import requests.exceptions  # noqa: PLC0415

    # The one place that knows DOCKER_HOST and the timeout.  Its client is
    # kept for the process: making one asks dockerd for its API version (a
    # round trip) that the agent would otherwise pay on every show.
    from ovsfab.plumbing.containers import _inspect_client  # noqa: PLC0415

    try:
        return list(_inspect_client(docker_host).containers(all=True))
    except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
        from ovsfab.plumbing import dockerapi  # noqa: PLC0415
        from ovsfab.plumbing.containers import docker_url  # noqa: PLC0415

        raise Unavailable(f"cannot reach dockerd: {dockerapi.unreachable(exc, docker_url(docker_host))}",
                          "start dockerd (or set DOCKER_HOST)") from None


def _inspect_container(ref: str, docker_host: Optional[str] = None) -> Dict[str, Any]:
    """``docker inspect REF`` (one API call), with the errors of plumbing.containers._inspect_docker."""
    from ovsfab.plumbing import containers  # noqa: PLC0415

    return containers._inspect_docker(ref, docker_host)  # noqa: SLF001 - shares the client and the error mapping


def _docker_index(listing: Iterable[Mapping[str, Any]]) -> Tuple[Dict[str, Mapping[str, Any]],
                                                                 Dict[str, Mapping[str, Any]]]:
    by_id: Dict[str, Mapping[str, Any]] = {}
    by_name: Dict[str, Mapping[str, Any]] = {}
    for c in listing:
        by_id[c["Id"]] = c
        for n in c.get("Names") or []:
            by_name[n.lstrip("/")] = c
    return by_id, by_name


def _find_container(ref: str, by_id: Mapping[str, Mapping[str, Any]],
                    by_name: Mapping[str, Mapping[str, Any]]) -> Optional[Mapping[str, Any]]:
    if ref in by_id:
        return by_id[ref]
    if ref in by_name:
        return by_name[ref]
    # ovs-docker records whatever the user typed, possibly a short ID.
    if len(ref) >= 6 and all(ch in "0123456789abcdef" for ch in ref):
        hits = [c for cid, c in by_id.items() if cid.startswith(ref)]
        if len(hits) == 1:
            return hits[0]
    return None


def _target_kind(owner: Owner) -> str:
    """docker / netns / pid, from the recorded target (or the container key)."""
    spec = owner.target or owner.container_id
    try:
        kind, _ = parse_target_spec(spec)
    except OvsfabError:
        return "docker"
    return kind


def mark_stale(bridges: Iterable[BridgeFacts],
               docker_listing: Optional[List[Dict[str, Any]]]) -> None:
    """Flag owned ports whose container is gone.

    ``docker_listing`` is the result of one container list call, or None when
    dockerd could not be asked (Docker-backed ports are then left unflagged).
    """
    by_id, by_name = _docker_index(docker_listing or [])
    by_endpoint = {net.get("EndpointID"): c for c in docker_listing or []
                   for net in ((c.get("NetworkSettings") or {}).get("Networks") or {}).values()
                   if isinstance(net, Mapping) and net.get("EndpointID")}
    for br in bridges:
        for port in br.ports:
            owner = port.owner
            if owner is None:
                continue
            if owner.endpoint is not None:  # the Docker driver's: the container holding the endpoint
                if docker_listing is not None:
                    found = by_endpoint.get(owner.endpoint)
                    if found is None:
                        port.stale_reasons.append(STALE_CONTAINER_GONE)
                    else:
                        names = found.get("Names") or []
                        owner.container = names[0].lstrip("/") if names else owner.container
                        owner.container_id = found["Id"]
                continue
            kind = "docker" if owner.tool == "ovs-docker" else _target_kind(owner)
            spec = owner.target or owner.container_id
            if kind == "netns":
                from ovsfab.plumbing.netns import named_path  # noqa: PLC0415

                if not os.path.exists(named_path(spec[len("netns:"):])):
                    port.stale_reasons.append(STALE_NETNS_GONE)
            elif kind == "pid":
                if not os.path.exists(f"/proc/{spec[len('pid:'):]}/ns/net"):
                    port.stale_reasons.append(STALE_PROCESS_GONE)
            elif docker_listing is not None:
                found = _find_container(owner.container_id, by_id, by_name)
                if found is None:
                    port.stale_reasons.append(STALE_CONTAINER_GONE)
                else:
                    if owner.tool == "ovs-docker":
                        # Say which container it is, not only what the user typed.
                        names = found.get("Names") or []
                        owner.container = names[0].lstrip("/") if names else owner.container
                        owner.container_id = found["Id"]
                    if found.get("State") not in ("running", "paused"):
                        port.stale_reasons.append(STALE_CONTAINER_STOPPED)
            port.stale_reasons.sort()


def show(bridge: Optional[str] = None, remote: Optional[str] = None,
         timeout: float = 10.0, with_ovs: bool = True, warm: Optional[WarmSessions] = None,
         docker_host: Optional[str] = None) -> ShowResult:
    """Every bridge on this host (or ``bridge``), its ports classified.

    Reads OVSDB once, dumps this namespace's links once and, only if some
    port belongs to a Docker container, lists Docker containers once.
    Raises Unavailable when OVSDB cannot be reached, NotFound for an unknown
    ``bridge``.
    """
    from ovsfab.netlink.rtnl import Rtnl  # noqa: PLC0415

    prepare_pyroute2()
    with Rtnl() as sock:
        links = dump_links(sock)
    by_name = {ln.name: ln for ln in links.values()}
    bridges: List[BridgeFacts] = []
    ovs_status = ServiceStatus("not-needed")
    if with_ovs:  # False with --backend linux: a host without OVS
        session = open_ovsdb(remote, timeout, warm)
        try:
            bridges = ovs_bridges(session, by_name)
        finally:
            session.close()
        ovs_status = ServiceStatus("ok")
    bridges += linux_bridges(links)
    if bridge is not None:
        bridges = [b for b in bridges if b.name == bridge]
        if not bridges:
            raise NotFound(f"no bridge named {bridge} on this host", "run ovsfab show to list them")
    bridges.sort(key=lambda b: (b.name, b.kind))

    notes: List[str] = []
    needs_docker = any(p.owner is not None and (p.owner.tool == "ovs-docker" or _target_kind(p.owner) == "docker")
                       for b in bridges for p in b.ports)
    docker_status = ServiceStatus("not-needed")
    listing: Optional[List[Dict[str, Any]]] = None
    if needs_docker:
        try:
            listing = _docker_containers(docker_host)
            docker_status = ServiceStatus("ok")
        except Unavailable as exc:
            docker_status = ServiceStatus("unavailable", str(exc))
            notes.append(f"{exc}: Docker containers not checked for staleness")
    mark_stale(bridges, listing)
    return ShowResult(bridges, ovs_status, docker_status, notes)


# ---------------------------------------------------------------------------
# inspect
# ---------------------------------------------------------------------------
def _resolve(spec: str, docker_host: Optional[str] = None) -> Tuple[ContainerFacts, Optional[str], Dict[str, str]]:
    """The target's facts, its namespace file (None if it has none) and, for
    Docker, {MAC: network name} from the container's own network settings."""
    from ovsfab.plumbing import containers  # noqa: PLC0415

    kind, ref = parse_target_spec(spec)
    if kind != "docker":
        target = containers.resolve(spec, docker_host=docker_host)
        facts = ContainerFacts(name=target.name, kind=kind, target=target.key, id=None,
                               pid=target.pid, state="running")
        return facts, target.netns_path, {}
    # One inspect call gives identity, state, PID and Docker's own networks.
    info = _inspect_container(ref, docker_host)
    state = info.get("State") or {}
    pid = int(state.get("Pid") or 0)
    facts = ContainerFacts(name=(info.get("Name") or ref).lstrip("/"), kind="docker",
                           target=info["Id"], id=info["Id"], pid=pid or None,
                           state=str(state.get("Status") or "unknown"))
    networks = ((info.get("NetworkSettings") or {}).get("Networks") or {})
    macs = {str(n.get("MacAddress")).lower(): name for name, n in networks.items() if n.get("MacAddress")}
    return facts, (f"/proc/{pid}/ns/net" if pid > 0 else None), macs


def _peer_in_host(inner: Any, host_ns_fd: int, link: LinkFacts,
                  host_links: Mapping[int, LinkFacts], same_ns: bool) -> PeerFacts:
    """Find a container veth's peer among the host's links by ifindex, from both ends."""
    if link.link_netnsid is None:
        # No LINK_NETNSID: the peer is in the container's own namespace.
        return PeerFacts(ifindex=link.link_index, netnsid=None, in_host_namespace=same_ns,
                         in_container=True)
    from ovsfab.netlink.rtnl import netnsid  # noqa: PLC0415

    host_nsid = netnsid(inner, fd=host_ns_fd)  # None: the nsid check is skipped
    peer = PeerFacts(ifindex=link.link_index, netnsid=link.link_netnsid, in_host_namespace=False)
    if host_nsid is not None and host_nsid >= 0 and host_nsid != link.link_netnsid:
        return peer  # the peer lives in a third namespace
    cand = host_links.get(link.link_index) if link.link_index is not None else None
    # ifindexes are per namespace: confirm the pairing from the host end too.
    if cand is not None and cand.kind == "veth" and cand.link_index == link.index:
        peer.name = cand.name
        peer.in_host_namespace = True
    return peer


def inspect(spec: str, remote: Optional[str] = None, timeout: float = 10.0,
            warm: Optional[WarmSessions] = None, docker_host: Optional[str] = None) -> InspectResult:
    """Container -> interfaces -> host peers -> bridges (-> uplinks, tunnels).

    Raises NotFound for an unknown container.  An unreachable OVSDB does not
    fail the command: the namespace facts are returned with ``ovs.status`` set
    to "unavailable" and the OVS facts left out.
    """
    from ovsfab.plumbing.netns import Namespace  # noqa: PLC0415

    from ovsfab.netlink.rtnl import Rtnl  # noqa: PLC0415

    prepare_pyroute2()
    container, ns_path, docker_macs = _resolve(spec, docker_host)
    notes: List[str] = []
    ovs_status = ServiceStatus("not-needed")
    if ns_path is None:
        notes.append(f"{container.name} is {container.state}: it has no network namespace")
        return InspectResult(container, [], ovs_status, notes)
    try:
        ns = Namespace.open(ns_path)
    except NotFound:
        container.state = "gone" if container.kind != "docker" else container.state
        notes.append(f"the network namespace of {container.name} is gone")
        return InspectResult(container, [], ovs_status, notes)

    host_ns = Namespace.current()
    try:
        same_ns = ns.inode() == host_ns.inode()
        if same_ns:
            notes.append(f"{container.name} shares this host's network namespace")
        with ns.entered():
            inner = Rtnl()  # the socket stays in the container's namespace for life
        try:
            inner_links = dump_links(inner)
            addrs = dump_addresses(inner)
            with Rtnl() as host_sock:
                host_links = dump_links(host_sock)
            interfaces: List[InterfaceFacts] = []
            for link in sorted(inner_links.values(), key=lambda ln: ln.index):
                if link.loopback:
                    continue
                facts = InterfaceFacts(link=link, addresses=addrs.get(link.index, []),
                                       docker_network=docker_macs.get((link.mac or "").lower()))
                if link.kind == "veth" and not same_ns:
                    facts.peer = _peer_in_host(inner, host_ns.fd, link, host_links, same_ns)
                    if facts.peer.in_container:
                        peer_link = inner_links.get(facts.peer.ifindex or -1)
                        facts.peer.name = peer_link.name if peer_link else None
                        notes.append(f"the peer of {link.name} is inside {container.name} too")
                    elif not facts.peer.in_host_namespace:
                        notes.append(f"the peer of {link.name} is not in this namespace "
                                     f"(netnsid {facts.peer.netnsid}); run ovsfab where it lives")
                interfaces.append(facts)
        finally:
            inner.close()
    finally:
        host_ns.close()
        ns.close()

    linux = {b.name: b for b in linux_bridges(host_links)}
    host_by_name = {ln.name: ln for ln in host_links.values()}
    need_ovs = []
    for facts in interfaces:
        peer = facts.peer
        if peer is None or peer.name is None:
            continue
        hlink = host_by_name[peer.name]
        master = host_links.get(hlink.master) if hlink.master is not None else None
        if master is not None and master.kind == "bridge":
            peer.bridge = linux[master.name]
            peer.port = next(p for p in peer.bridge.ports if p.name == peer.name)
        else:
            # On the netdev datapath there is no kernel master: OVSDB knows.
            need_ovs.append(peer)
    if need_ovs:
        try:
            session = open_ovsdb(remote, timeout, warm)
        except Unavailable as exc:
            ovs_status = ServiceStatus("unavailable", str(exc))
            notes.append(f"OVS facts unavailable: {exc}")
        else:
            ovs_status = ServiceStatus("ok")
            by_interface: Dict[str, Tuple[BridgeFacts, PortFacts]] = {}
            try:
                ovs_bridges(session, host_by_name, by_interface)
            finally:
                session.close()
            for peer in need_ovs:
                # An OVS Interface of a system device is named after the kernel link.
                hit = by_interface.get(peer.name or "")
                if hit is not None:
                    peer.bridge, peer.port = hit
    return InspectResult(container, interfaces, ovs_status, notes)
