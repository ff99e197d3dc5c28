"""``ovsfab detach``: remove an attachment's port and veth.

Steps: find the recorded attachment, delete the OVS port (undo: put it back
exactly as recorded), delete the veth (which removes both ends).  Deleting
the veth is the last step, so a failure leaves the attachment whole.  Works
when the container has stopped or been removed: the record in OVSDB names
everything needed.  A process killed between the two leaves a veth with no
record; the next detach of the same target finds it by its derived name and
deletes it, under the attachment's lock (ovsfab/ops/lock.py) so that it is
never the veth of an attach running at the same time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Optional

from ovsfab.backends.base import Backend
from ovsfab.errors import Conflict, NotFound, OvsfabError
from ovsfab.model import Attachment, host_ifname, parse_name, parse_target_spec
from ovsfab.ops.attach import require_root
from ovsfab.ops.lock import attachment_lock
from ovsfab.ops.plan import Plan
from ovsfab.plumbing import containers
from ovsfab.plumbing.links import NetlinkHandle

LOG = logging.getLogger(__name__)

#: Steps after which a fault can be injected (the veth deletion is last).
DETACH_STEPS = ("find", "del_port")


@dataclass
class DetachResult:
    """What detach did."""

    attachment: Optional[Attachment]
    changed: bool

    def to_json(self) -> dict:
        out: dict = {"action": "detach", "changed": self.changed}
        if self.attachment is not None:
            out.update(self.attachment.to_json())
        return out


def _find(backend: Backend, bridge: str, target_spec: str, ifname: str,
          docker_host: Optional[str] = None) -> Optional[Attachment]:
    """The attachment of a target, even when its container is gone."""
    kind, ref = parse_target_spec(target_spec)
    records = [a for a in backend.list_attachments() if a.ifname == ifname]
    if kind != "docker":
        key = f"{kind}:{ref}"
        matches = [a for a in records if a.container_key == key]
    else:
        # By name or (prefix of) ID, as docker does; no Docker round trip
        # needed, and it works after `docker rm`.
        matches = [a for a in records if a.container_name == ref or a.container_key == ref]
        if not matches and len(ref) >= 4:
            matches = [a for a in records if a.container_key.startswith(ref)]
        if not matches:
            try:
                target = containers.resolve(target_spec, require_running=False, docker_host=docker_host)
                matches = [a for a in records if a.container_key == target.key]
            except OvsfabError:
                matches = []
    on_bridge = [a for a in matches if a.bridge == bridge]
    if len(on_bridge) > 1:
        raise NotFound(f"{target_spec} is ambiguous: it matches {len(on_bridge)} attachments",
                       "give the full container ID")
    return on_bridge[0] if on_bridge else None


def _derived_port(target_spec: str, ifname: str, docker_host: Optional[str] = None) -> Optional[str]:
    """The host-end name an attachment of this target would have (None: the target is gone)."""
    kind, ref = parse_target_spec(target_spec)
    if kind != "docker":
        return host_ifname(f"{kind}:{ref}", ifname)
    try:
        return host_ifname(containers.resolve(target_spec, require_running=False, docker_host=docker_host).key,
                           ifname)
    except OvsfabError:
        return None  # a removed container's namespace took both veth ends with it


def _delete_leftover(port: str) -> bool:
    """Delete the host-end veth ``port`` if there is one; True if there was.

    The name is derived from the target and ifname
    (:func:`~ovsfab.model.host_ifname`), so only our own veth carries it;
    a link of another kind by that name is left alone (attach refuses it).
    """
    host = NetlinkHandle()
    try:
        leftover = host.link(port)
        if leftover is None or leftover["kind"] != "veth":
            return False
        LOG.debug("removing leftover veth %s of an interrupted detach", port)
        return host.delete(port, if_exists=True)
    finally:
        host.close()


def detach(bridge: str, target_spec: str, ifname: str, if_exists: bool,
           backend_factory: Callable[[], Backend], network: Optional[str] = None,
           fault: Optional[str] = None, docker_host: Optional[str] = None) -> DetachResult:
    """Detach (container, ifname) from a bridge.

    ``network``: the OVN network whose detach (ovsfab/ovn/network.py) calls
    this for the OVS side, after or around its logical port; without it an
    OVN attachment is refused, since its logical port would stay behind.
    """
    parse_name(bridge, "bridge name")
    parse_name(ifname, "interface name")
    parse_target_spec(target_spec)
    require_root()
    return _detach(bridge, target_spec, ifname, if_exists, backend_factory, network, None, fault, docker_host)


def _once(fn: Callable[[], object]) -> Callable[[], None]:
    """``fn`` to be called at most once, however many paths call it."""
    done = []

    def call() -> None:
        if not done:
            done.append(True)
            fn()

    return call


def _detach(bridge: str, target_spec: str, ifname: str, if_exists: bool,
            backend_factory: Callable[[], Backend], network: Optional[str], locked: Optional[str],
            fault: Optional[str] = None, docker_host: Optional[str] = None) -> DetachResult:
    """:func:`detach`; ``locked``: the host-end name whose lock (ovsfab/ops/lock.py) the caller holds."""
    with Plan("detach", fault) as plan:
        backend = backend_factory()
        close_backend = _once(backend.close)  # closed early on some paths; never twice
        plan.add_undo("close backend", close_backend)
        att = plan.step("find", lambda: _find(backend, bridge, target_spec, ifname, docker_host))
        if att is None:
            # A port of that name in OVSDB is this interface attached to
            # another bridge: not a leftover, never deleted here.
            recorded = locked is not None and backend.port_exists(locked) is not None
            close_backend()
            port = locked or _derived_port(target_spec, ifname, docker_host)
            if port is not None and locked is None:
                # Look again under the lock, with a fresh view of OVSDB: an
                # attach of this interface in flight is then done (and is
                # detached as usual) or not begun (its veth is not touched).
                with attachment_lock(port):
                    return _detach(bridge, target_spec, ifname, if_exists, backend_factory, network, port, fault,
                                   docker_host)
            if port is not None and not recorded and _delete_leftover(port):
                # A detach killed between del_port and the veth's deletion
                # left the veth without its record: this retry finishes it.
                return DetachResult(None, changed=True)
            if if_exists:
                return DetachResult(None, changed=False)
            raise NotFound(f"{target_spec} has no {ifname} attached to {bridge}",
                           "check `ovsfab show`, or pass --if-exists")
        if att.network and att.network != network:
            # Its logical switch port lives in the OVN northbound database,
            # which only the OVN detach reaches; removing just the port here
            # would leave the logical port (and its address) taken.
            close_backend()
            raise Conflict(f"{target_spec} {ifname} is attached to OVN network {att.network}",
                           f"detach it with: ovsfab detach --network {att.network} {target_spec}")
        host = NetlinkHandle()
        plan.add_undo("close netlink", host.close)
        ids = dict(att.external_ids)
        plan.step(
            "del_port",
            lambda: backend.del_port(att.port, if_exists=True),
            undo=lambda: backend.add_port(att.bridge, att.port, external_ids=ids, tag=att.vlan,
                                          may_exist=True),
        )
        host.delete(att.port, if_exists=True)
        host.close()
        close_backend()
        return DetachResult(att, changed=True)
