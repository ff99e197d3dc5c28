"""``ovsfab reconcile``: make every recorded attachment true again.

The record of an attachment (external_ids on its port, see
:class:`ovsfab.model.Attachment`) is its desired state; the live state is the
veth, the addresses inside the container and the OVS interface.  After
``docker restart`` or a reboot the container has a new network namespace, the
old veth died with the old one, and OVS keeps a port whose interface has an
error and ofport -1.  For each record:

=====================  =========================================================
target                 what reconcile does
=====================  =========================================================
running, link healthy  nothing ("ok")
running, link missing  re-create it exactly ("restored"): the attach flow with
                       the recorded request -- same ifname, addresses, gateway,
                       MAC, MTU, VLAN, bridge
stopped                keep the record ("stopped"); the host end of the veth
                       died with the container's namespace, and if something
                       still holds that namespace open, the host end is set
                       down.  The OVS row stays as it is (error / ofport -1):
                       it *is* the record, and is restored on the next start
removed / netns gone   delete the port and its record, and the veth if any
/ process gone         ("removed"): such a target cannot come back
=====================  =========================================================

One-shot attachments (``attach --no-persist``, ``ovsfab-persist=false``) are
never restored: once their link is gone (the container restarted, stopped or
was removed) their dead port is removed instead.

Cost: a full pass reads the IDL (no round trip), dumps this namespace's links
once, and lists Docker containers once -- never one Docker call per
attachment.  Only attachments that need restoring cost more (one ``inspect``
for the PID, then the attach flow).  The cheap health check of a running
target is: the host end of the veth exists, its peer lives in a live
namespace (``IFLA_LINK_NETNSID`` >= 0; a dying namespace has none), and the
OVS interface has an ofport and no error.  The event path
(:meth:`Reconciler.containers`, used by the agent on a Docker event) checks
deeper: it opens the container's namespace and looks for the interface
itself, through attach's own "already attached" check.

Nothing here prints: results are returned as :class:`ReconcileResult`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Set, Tuple

from ovsfab.backends.base import CAP_BATCH, NOT_IN_OVSDB, Backend, Borrowed, NewPort, add_failed, is_attachment
from ovsfab.errors import Conflict, OperationFailed, OvsfabError, Unavailable
from ovsfab.model import Attachment, AttachRequest, Target, parse_target_spec
from ovsfab.ops.batch import in_background
from ovsfab.ops.reconcile_view import (_DOCKER_UP, FAILED, OK, REMOVED, RESTORED, SKIPPED, STOPPED, Action,
                                       DockerView, ReconcileResult, docker_target)
from ovsfab.ops.plan import fault_point

LOG = logging.getLogger(__name__)


# Target states.
RUNNING, GONE, HALTED, UNKNOWN = "running", "gone", "stopped", "unknown"


IFF_UP = 0x1


# ---------------------------------------------------------------------------
# The reconciler
# ---------------------------------------------------------------------------
def request_of(att: Attachment) -> AttachRequest:
    """The attach request that re-creates a recorded attachment exactly.

    MAC and MTU come from the record (attach recorded the values the link
    really had), so a restored interface is indistinguishable from the first.
    """
    return AttachRequest(bridge=att.bridge, target_spec=att.target or att.container_key,
                         addresses=att.addresses, ifname=att.ifname, mac=att.mac, mtu=att.mtu,
                         vlan=att.vlan, datapath="auto", persist=att.persist,
                         network=att.network or None, iface_id=att.iface_id or None)  # OVN binding


def target_kind(att: Attachment) -> Tuple[str, str]:
    """(kind, reference) of a recorded attachment's target."""
    try:
        return parse_target_spec(att.target or att.container_key)
    except OvsfabError:
        return "docker", att.container_key


class Reconciler:
    """Reconciles recorded attachments through one backend session.

    The CLI makes one per run; the agent keeps one (with its IDL session and
    Docker client) for as long as both services stay reachable.
    ``should_stop`` is checked between attachments, so a stopping agent
    finishes the action it is in and no more.
    """

    def __init__(self, backend: Backend, docker: Optional[DockerView] = None,
                 should_stop: Optional[Callable[[], bool]] = None, fault: Optional[str] = None) -> None:
        self.backend = backend
        self.fault = fault  # the test hook of the request (ovsfab/ops/plan.py)
        self.docker = docker if docker is not None else DockerView()
        self.should_stop = should_stop or (lambda: False)
        self._nl: Any = None

    def _netlink(self) -> Any:
        """This namespace's NetlinkHandle, opened once per pass."""
        if self._nl is None:
            from ovsfab.plumbing.links import NetlinkHandle  # noqa: PLC0415

            self._nl = NetlinkHandle()
        return self._nl

    def _end_pass(self) -> None:
        if self._nl is not None:
            self._nl.close()
            self._nl = None

    # -- passes ----------------------------------------------------------
    def all(self, dry_run: bool = False, deep: bool = True) -> ReconcileResult:
        try:
            return self._all(dry_run, deep)
        finally:
            self._end_pass()

    def containers(self, keys: Iterable[str], dry_run: bool = False) -> ReconcileResult:
        """Reconcile the attachments of some Docker containers (by full ID), checked deeply.

        Costs nothing but an IDL scan when none of them has an attachment.
        """
        try:
            return self._containers(keys, dry_run)
        finally:
            self._end_pass()

    def _all(self, dry_run: bool, deep: bool) -> ReconcileResult:
        """Reconcile every recorded attachment.

        ``deep``: also look up the PID of each running Docker container with
        an attachment (one ``inspect`` each) to confirm its veth's peer is in
        the container's *current* namespace.  Without it a container
        restarted a moment ago can look healthy: its old veth outlives the
        old namespace for a few hundred milliseconds.  The agent's periodic
        passes skip it (Docker events trigger a deep check of each restart).
        """
        result = ReconcileResult(dry_run=dry_run)
        t0 = time.monotonic()
        # Plus those a restore killed mid-way left in the journal (port removed, not re-added).
        atts = [a for a in self.backend.list_attachments() + self.backend.journaled_attachments()
                if is_attachment(a)]
        states: Optional[Dict[str, str]] = None
        if any(target_kind(a)[0] == "docker" for a in atts):
            try:
                states = self.docker.states()
                result.docker = "ok"
            except Unavailable as exc:
                result.docker = "unavailable"
                result.notes.append(str(exc))
        links = self._host_links()
        infos: Dict[str, Optional[Dict[str, Any]]] = {}
        if deep:
            infos = self.docker.inspect_many(
                {a.container_key for a in atts if target_kind(a)[0] == "docker"
                 and self._state(a, states) == RUNNING and self._healthy(a, links)})
        to_restore: List[Tuple[Attachment, str, Optional[Dict[str, Any]]]] = []
        for att in sorted(atts, key=lambda a: (a.bridge, a.port)):
            if self.should_stop():
                break
            state = self._state(att, states)
            info: Optional[Dict[str, Any]] = None
            kind, ref = target_kind(att)
            healthy = self._healthy(att, links)
            if healthy and state == RUNNING:
                if kind == "docker" and deep:
                    info = infos.get(att.container_key)
                    target = docker_target(info) if info is not None else None
                    if target is None:
                        state = GONE if info is None else HALTED
                    else:
                        healthy = self._same_netns(links[att.port][0], pid=target.pid)
                elif kind == "pid":
                    healthy = self._same_netns(links[att.port][0], pid=int(ref))
                elif kind == "netns":
                    from ovsfab.plumbing.netns import named_path  # noqa: PLC0415

                    healthy = self._same_netns(links[att.port][0], path=named_path(ref))
            if state == RUNNING and not healthy and att.persist and not dry_run:
                to_restore.append((att, kind, info))  # together, below: batched
                continue
            result.actions.append(self._act(att, state, healthy, links, dry_run, deep=False, info=info))
        result.timings["look"] = time.monotonic() - t0
        result.actions.extend(self._restore_many(to_restore, links, result.timings))
        return result

    def _containers(self, keys: Iterable[str], dry_run: bool) -> ReconcileResult:
        wanted = set(keys)
        result = ReconcileResult(dry_run=dry_run)
        atts = [a for a in self.backend.list_attachments()
                if is_attachment(a) and a.container_key in wanted and target_kind(a)[0] == "docker"]
        if not atts:
            return result
        infos: Dict[str, Optional[Dict[str, Any]]] = {}
        try:
            for key in sorted({a.container_key for a in atts}):
                infos[key] = self.docker.inspect(key)
            result.docker = "ok"
        except Unavailable:
            result.docker = "unavailable"
            raise
        links = self._host_links()
        for att in sorted(atts, key=lambda a: (a.bridge, a.port)):
            if self.should_stop():
                break
            info = infos.get(att.container_key)
            if info is None:
                state = GONE
            else:
                st = info.get("State") or {}
                state = RUNNING if st.get("Running") and not st.get("Restarting") else HALTED
            result.actions.append(self._act(att, state, False, links, dry_run, deep=True, info=info))
        return result

    # -- facts -----------------------------------------------------------
    def _host_links(self) -> Dict[str, Tuple[Optional[int], bool]]:
        """{name: (IFLA_LINK_NETNSID, up)} of this namespace's links, from one dump."""
        return {name: (facts["peer_netnsid"], bool(facts["up"]))  # type: ignore[misc]
                for name, facts in self._netlink().link_table().items()}

    def _same_netns(self, nsid: Optional[int], pid: Optional[int] = None, path: Optional[str] = None) -> bool:
        """True when ``nsid`` (a veth peer's namespace, numbered here) is the target's namespace."""
        host = self._netlink()
        fd = -1
        try:
            if path is not None:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                their = host.netnsid(fd=fd)
            else:
                their = host.netnsid(pid=pid)
        except OSError:  # the target vanished meanwhile: not the same
            return False
        finally:
            if fd >= 0:
                os.close(fd)
        return their is not None and their >= 0 and their == nsid

    def _healthy(self, att: Attachment, links: Dict[str, Tuple[Optional[int], bool]]) -> bool:
        link = links.get(att.port)
        if link is None:
            return False
        netnsid, _ = link
        # The peer's namespace as numbered here; a dying namespace (the old
        # one of a restarted container, its veth not yet reaped) has none.
        if netnsid is None or netnsid < 0:
            return False
        if att.error:
            return False
        if self.backend.kind == "ovs" and (att.ofport is None or att.ofport < 0):
            return False
        return True

    @staticmethod
    def _state(att: Attachment, docker_states: Optional[Dict[str, str]]) -> str:
        kind, ref = target_kind(att)
        if kind == "cni":
            return UNKNOWN  # the container runtime owns it: CNI DEL removes it, reconcile never does
        if kind == "netns":
            from ovsfab.plumbing.netns import named_path  # noqa: PLC0415

            return RUNNING if os.path.exists(named_path(ref)) else GONE
        if kind == "pid":
            return RUNNING if os.path.exists(f"/proc/{ref}/ns/net") else GONE
        if docker_states is None:
            return UNKNOWN
        st = docker_states.get(att.container_key)
        if st is None:
            return GONE
        return RUNNING if st in _DOCKER_UP else HALTED

    # -- one attachment ----------------------------------------------------
    def _act(self, att: Attachment, state: str, healthy: bool,
             links: Dict[str, Tuple[Optional[int], bool]], dry_run: bool, deep: bool,
             info: Optional[Dict[str, Any]] = None) -> Action:
        kind, _ = target_kind(att)
        try:
            if state == UNKNOWN:
                return Action(SKIPPED, att, "owned by the CNI runtime" if kind == "cni" else "dockerd unreachable")
            if state == GONE:
                reason = {"netns": "network namespace gone", "pid": "process gone"}.get(kind, "container removed")
                return self._remove(att, reason, dry_run)
            if state == HALTED:
                if not att.persist:
                    return self._remove(att, "container stopped; one-shot attachment (--no-persist)", dry_run)
                return self._stopped(att, links, dry_run)
            # Running.
            if healthy and not deep:
                return Action(OK, att)
            if not att.persist:
                if deep and self._deep_ok(att, info):
                    return Action(OK, att)
                return self._remove(att, "link gone; one-shot attachment (--no-persist)", dry_run)
            if dry_run:
                if deep and self._deep_ok(att, info):
                    return Action(OK, att)
                return Action(RESTORED, att, "link missing")
            return self._restore(att, kind, info)
        except OvsfabError as exc:
            if isinstance(exc, Unavailable):
                raise  # a service went away: the whole pass is void, the caller retries
            return Action(FAILED, att, "", error=exc)

    def _deep_ok(self, att: Attachment, info: Optional[Dict[str, Any]]) -> bool:
        """True when the container really has the interface (dry-run of the event path)."""
        from ovsfab.plumbing.links import NetlinkHandle  # noqa: PLC0415
        from ovsfab.plumbing.netns import Namespace  # noqa: PLC0415

        target = docker_target(info) if info is not None else None
        if target is None:
            return False
        try:
            with Namespace.open(target.netns_path) as ns:
                inner = NetlinkHandle(ns)
                try:
                    return inner.index(att.ifname) is not None
                finally:
                    inner.close()
        except OvsfabError:
            return False

    def _remove(self, att: Attachment, reason: str, dry_run: bool) -> Action:
        if dry_run:
            return Action(REMOVED, att, reason)
        # Port first, veth last, as detach does: a failure in between leaves
        # nothing ovsfab would not clear on the next pass.
        self.backend.del_port(att.port, if_exists=True)
        self._netlink().delete(att.port, if_exists=True)
        return Action(REMOVED, att, reason, changed=True)

    def _stopped(self, att: Attachment, links: Dict[str, Tuple[Optional[int], bool]],
                 dry_run: bool) -> Action:
        link = links.get(att.port)
        if link is None or not link[1]:
            return Action(STOPPED, att, "container stopped")
        if dry_run:
            return Action(STOPPED, att, "container stopped; host end would be set down")
        # Something still holds the stopped container's namespace open, so
        # the veth lives on: take the port down rather than leave it forwarding.
        host = self._netlink()
        idx = host.index(att.port)
        if idx is not None:
            host.set_down(idx)
        return Action(STOPPED, att, "container stopped; host end set down", changed=True)

    def _restore(self, att: Attachment, kind: str, info: Optional[Dict[str, Any]]) -> Action:
        from ovsfab.ops.attach import attach  # noqa: PLC0415
        from ovsfab.plumbing import containers  # noqa: PLC0415

        if kind == "docker":
            if info is None:
                info = self.docker.inspect(att.container_key)
            if info is None:
                return self._remove(att, "container removed", dry_run=False)
            target = docker_target(info)
            if target is None:
                return self._stopped(att, {}, dry_run=False)
        else:
            target = containers.resolve(att.target)
        try:
            res = attach(request_of(att), lambda: Borrowed(self.backend), resolved=target)
        except OvsfabError:
            # attach cleared the broken record before it failed; put the
            # record back so that the next pass tries again.
            self._rerecord(att)
            raise
        if not res.changed:
            return Action(OK, res.attachment)
        return Action(RESTORED, res.attachment, "link was missing", changed=True)

    def _restore_many(self, items: List[Tuple[Attachment, str, Optional[Dict[str, Any]]]],
                      links: Dict[str, Tuple[Optional[int], bool]],
                      timings: Optional[Dict[str, float]] = None) -> List[Action]:
        """Restore several attachments with two OVSDB transactions in all.

        One transaction removes the broken ports; the lingering host ends of
        their veths go in one unregister batch; each attachment's links are
        re-created by attach's own link phases (:func:`ovsfab.ops.attach.prepare_link`:
        netlink only, no OVSDB, no Docker); one transaction adds every port
        back -- instead of two transactions per attachment, each waiting for
        ovs-vswitchd.  Attachments whose re-creation failed get their record
        back in that same transaction, so nothing recorded is lost.

        No gratuitous ARP: the restored interface has the recorded MAC and
        addresses, so neighbours' caches are still right (and a frame sent
        before the port exists would reach nobody).
        """
        if not items:
            return []
        if len(items) == 1 or CAP_BATCH not in self.backend.capabilities:
            return [self._act_restore(att, kind, info) for att, kind, info in items]
        from ovsfab.plumbing import containers  # noqa: PLC0415

        actions: List[Action] = []
        datapaths = {att.bridge: self._datapath(att.bridge) for att, _, _ in items}
        csum_off = {b: self.backend.needs_tx_csum_off(dp) for b, dp in datapaths.items()}
        specs: List[NewPort] = []  # ports for the one transaction that re-adds them

        def keep(att: Attachment) -> None:
            """Put a record back as it was (a port row with no device yet)."""
            specs.append(NewPort(att.bridge, att.port, dict(att.external_ids),
                                          datapath=datapaths[att.bridge], tag=att.vlan))

        # ovs-vswitchd takes ~13 ms per port it removes on the userspace
        # datapath (1.3 s for 100, measured with ovs-vsctl alone), so the
        # rest happens meanwhile: the IDL transaction runs in a thread (this
        # one leaves the backend alone until it is joined), while this one
        # looks up the PIDs of restarted containers and re-creates their
        # veths -- host ends DOWN.  ovs-vswitchd, closing an old port, puts
        # back the flags it found on the device of that name, so a new host
        # end must not be up before the removal is done (tried: restored
        # ports then carried no traffic).  Then: IPv6 off, up, one add.
        # (Making them in a scratch namespace and moving them in was tried
        # too: each move waits for an RCU grace period, 2 s for 100.)
        from ovsfab.ops.attach import host_end_up  # noqa: PLC0415

        timings = timings if timings is not None else {}
        t0 = time.monotonic()
        host = self._netlink()
        need = [att.container_key for att, kind, info in items if kind == "docker" and info is None]
        # Journaled: a kill before the add below leaves the records on the bridges.
        removal = in_background(self.backend.del_ports, [att.port for att, _, _ in items], True)
        removed = False
        gone: List[Attachment] = []  # containers removed meanwhile: dropped once the removal is done
        dropped: Set[str] = set()
        staged: List[Tuple[Attachment, Target, int]] = []
        done: List[Tuple[Attachment, Target, int]] = []
        try:
            try:
                infos = self.docker.inspect_many(need) if need else {}
                timings["lookup"] = time.monotonic() - t0
                ready: List[Tuple[Attachment, Target]] = []
                for att, kind, info in items:
                    try:
                        if kind == "docker":
                            info = info if info is not None else infos.get(att.container_key)
                            if info is None:
                                gone.append(att)
                                continue
                            target = docker_target(info)
                            if target is None:  # stopped meanwhile: its record stays
                                keep(att)
                                actions.append(self._stopped(att, {}, dry_run=False))
                                continue
                        else:
                            target = containers.resolve(att.target)
                        ready.append((att, target))
                    except OvsfabError as exc:
                        if isinstance(exc, Unavailable):
                            raise
                        keep(att)
                        actions.append(Action(FAILED, att, "", error=exc))
                # The host ends of restarted containers' veths outlive their
                # dead namespaces until the kernel's (slow, batched) namespace
                # cleanup reaches them, and their names are the ones to
                # re-create.  Deleted one by one, each would wait for RCU
                # grace periods; together, the waits are paid once.
                lingering = [att.port for att, _ in ready if att.port in links]
                if lingering:
                    host.delete_many(lingering)
                for att, target in ready:
                    if self.should_stop():
                        keep(att)  # not restored now: keep its record
                        continue
                    try:
                        restored, inode = self._relink(att, target, csum_off[att.bridge], host_up=False)
                    except OvsfabError as exc:
                        keep(att)
                        actions.append(Action(FAILED, att, "", error=exc))
                        continue
                    staged.append((restored, target, inode))
                timings["relink"] = time.monotonic() - t0
                fault_point("restore-relink", "reconcile", self.fault)
            finally:
                removal.result()  # joined whatever happened; raises if the removal failed
                removed = True
                timings["remove"] = removal.seconds
            for att in gone:
                actions.append(self._remove(att, "container removed", dry_run=False))
                dropped.add(att.port)
            t1 = time.monotonic()
            for restored, target, inode in staged:
                try:
                    host_end_up(host, restored.port)
                except OvsfabError as exc:
                    host.delete(restored.port, if_exists=True)
                    keep(restored)
                    actions.append(Action(FAILED, restored, "", error=exc))
                    continue
                specs.append(NewPort(restored.bridge, restored.port, dict(restored.external_ids),
                                     datapath=datapaths[restored.bridge], tag=restored.vlan))
                done.append((restored, target, inode))
            timings["up"] = time.monotonic() - t1
            fault_point("restore-up", "reconcile", self.fault)
        except BaseException:
            # Veths made but not brought up go (container ends with them);
            # every record not yet re-added goes back as it was.
            up = {r.port for r, _, _ in done}
            half = [r.port for r, _, _ in staged if r.port not in up]
            if half:
                try:
                    host.delete_many(half)
                except OvsfabError as exc:
                    LOG.error("could not remove half-restored veths %s: %s", ", ".join(half), exc)
            if removed:
                for att, _, _ in items:
                    if att.port not in dropped and all(spec.port != att.port for spec in specs):
                        keep(att)
                self._flush(specs)
            raise
        t3 = time.monotonic()
        applied = self._flush(specs)
        timings["add"] = time.monotonic() - t3
        for restored, target, inode in done:
            ofport, error = applied.get(restored.port, (None, NOT_IN_OVSDB))
            restored.ofport = ofport
            if error:
                actions.append(Action(FAILED, restored, "", error=add_failed(restored.port, restored.bridge, error)))
            elif not containers.still_alive(target, inode):
                # attach's verify step: the record stays, the next start restores it.
                actions.append(Action(FAILED, restored, "", error=Conflict(
                    f"{target.name} stopped while it was being attached", "start it and run attach again")))
            else:
                actions.append(Action(RESTORED, restored, "link was missing", changed=True))
        return actions

    def _datapath(self, bridge: str) -> str:
        return self.backend.bridge_datapath(bridge) or "netdev"

    def _relink(self, att: Attachment, target: Target, csum_off: bool,
                host_up: bool = True) -> Tuple[Attachment, int]:
        """Re-create one recorded attachment's veth and configuration (no OVSDB change).

        ``host_up=False``: the host end stays down (see :meth:`_restore_many`).
        Returns the restored attachment (its external_ids: the recorded ones,
        updated -- keys other features added, like a fabric's tags, are
        kept) and the inode of the namespace it went into.  On failure the
        veth is gone again.
        """
        from ovsfab.ops.attach import prepare_link  # noqa: PLC0415
        from ovsfab.plumbing.netns import Namespace  # noqa: PLC0415

        host = self._netlink()
        req = request_of(att)
        created: List[str] = []

        def prepare() -> Any:
            return prepare_link(host, ns, att.port, req, csum_off, created=lambda: created.append(att.port),
                                host_up=host_up)

        ns = Namespace.open(target.netns_path)
        try:
            inode = ns.inode()
            try:
                link = prepare()
            except Conflict as exc:
                if created or not str(exc).startswith("cannot create veth pair"):
                    raise
                # A name is taken: a host end that appeared after this pass's
                # link dump (an interrupted attach's, or a lingering one), or
                # the interface name inside the container.
                leftover = host.link(att.port)
                if leftover is None:
                    raise Conflict(f"{target.name} already has an interface named {req.ifname}",
                                   "choose another --ifname") from None
                if leftover["kind"] != "veth":
                    raise Conflict(f"interface {att.port} exists and is not an ovsfab veth",
                                   "remove or rename it") from None
                host.delete(att.port, if_exists=True)
                link = prepare()
        except BaseException:
            if created:
                host.delete(att.port, if_exists=True)
            raise
        finally:
            ns.close()
        restored = dataclasses.replace(
            att, container_key=target.key, container_name=target.name, mac=link.mac, mtu=link.mtu,
            target=req.target_spec if target.kind != "docker" else target.key, ofport=None, error=None)
        ids = dict(att.external_ids)
        ids.update(restored.to_external_ids())
        restored.external_ids = ids
        return restored, inode

    def _flush(self, specs: List[NewPort]) -> Dict[str, Tuple[Optional[int], Optional[str]]]:
        return self.backend.add_many(specs, may_exist=True)

    def _act_restore(self, att: Attachment, kind: str, info: Optional[Dict[str, Any]]) -> Action:
        try:
            return self._restore(att, kind, info)
        except OvsfabError as exc:
            if isinstance(exc, Unavailable):
                raise
            return Action(FAILED, att, "", error=exc)

    def _rerecord(self, att: Attachment) -> None:
        if self.backend.find_attachment(att.container_key, att.ifname) is not None:
            return
        try:
            self.backend.add_port(att.bridge, att.port, external_ids=dict(att.external_ids),
                                  tag=att.vlan, may_exist=True)
        except OperationFailed:
            pass  # expected: the row is back, its interface has no device yet
        except OvsfabError as exc:
            LOG.error("could not put back the record of %s %s: %s", att.container_name, att.ifname, exc)


def reconcile(backend_factory: Callable[[], Backend], dry_run: bool = False,
              fault: Optional[str] = None) -> ReconcileResult:
    """One full pass with a fresh backend (``ovsfab reconcile``)."""
    from ovsfab.ops.attach import require_root  # noqa: PLC0415

    require_root()
    backend = backend_factory()
    docker = DockerView()
    try:
        return Reconciler(backend, docker, fault=fault).all(dry_run=dry_run)
    finally:
        docker.close()
        backend.close()
