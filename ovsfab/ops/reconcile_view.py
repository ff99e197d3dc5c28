"""``ovsfab reconcile``: its results, and its view of Docker (one listing, a few inspects).

:class:`ovsfab.ops.reconcile.Reconciler` decides and acts; this module holds
what it reports (:class:`Action`, :class:`ReconcileResult`) and what it asks
dockerd (:class:`DockerView`), so the agent can keep one view warm.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional

from ovsfab.errors import OvsfabError, Unavailable
from ovsfab.model import Attachment, Target
from ovsfab.ops.batch import map_parallel

LOG = logging.getLogger(__name__)

# Results (the ``result`` field of each entry; documented in docs/agent.md).
OK = "ok"


RESTORED = "restored"


REMOVED = "removed"


STOPPED = "stopped"


SKIPPED = "skipped"


FAILED = "failed"


RESULTS = (OK, RESTORED, REMOVED, STOPPED, SKIPPED, FAILED)


#: Docker states whose network namespace is usable ("paused" only freezes
#: the processes; netlink into the namespace still works).
_DOCKER_UP = ("running", "paused")


@dataclass
class Action:
    """What reconcile did (or, with dry_run, would do) for one attachment."""

    result: str
    attachment: Attachment
    reason: str = ""
    changed: bool = False
    error: Optional[OvsfabError] = None

    def text(self, dry_run: bool) -> str:
        """One line for people (and the agent's log)."""
        a = self.attachment
        who = f"{a.container_name or a.container_key[:12]} {a.ifname} on {a.bridge}"
        addrs = ", ".join(str(x) for x in a.addresses)
        if self.result == RESTORED:
            if dry_run:
                return f"would restore {who} ({addrs}): {self.reason}"
            return f"restored {who} ({addrs}) as port {a.port} (ofport {a.ofport}): {self.reason}"
        if self.result == REMOVED:
            verb = "would remove" if dry_run else "removed"
            return f"{verb} {who} (port {a.port}): {self.reason}"
        if self.result == STOPPED:
            return f"kept {who} (port {a.port}): {self.reason}; restored when it starts"
        if self.result == SKIPPED:
            return f"skipped {who}: {self.reason}"
        if self.result == FAILED:
            return f"could not reconcile {who}: {self.error}"
        return f"{who}: ok"

    def to_json(self) -> Dict[str, Any]:
        out: Dict[str, Any] = dict(self.attachment.to_json())
        out.update({"result": self.result, "reason": self.reason, "changed": self.changed,
                    "persist": self.attachment.persist,
                    "error": str(self.error) if self.error is not None else None})
        return out


@dataclass
class ReconcileResult:
    """Every attachment looked at, and what happened to it."""

    actions: List[Action] = field(default_factory=list)
    dry_run: bool = False
    #: "ok", "unavailable" or "not-needed" (no Docker attachment looked at).
    docker: str = "not-needed"
    notes: List[str] = field(default_factory=list)
    #: Seconds per phase of a full pass ("look", and for a batch restore
    #: "lookup", "relink", "remove", "up", "add"; see docs/agent.md): where
    #: the time went, for --json and bench/.
    timings: Dict[str, float] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return any(a.changed for a in self.actions)

    def failures(self) -> List[Action]:
        return [a for a in self.actions if a.result == FAILED]

    def summary(self) -> Dict[str, int]:
        counts = {r: 0 for r in RESULTS}
        for a in self.actions:
            counts[a.result] += 1
        return counts

    def extend(self, other: "ReconcileResult") -> None:
        self.actions.extend(other.actions)
        self.notes.extend(other.notes)
        if other.docker != "not-needed":
            self.docker = other.docker

    def to_json(self) -> Dict[str, Any]:
        return {"action": "reconcile", "dry_run": self.dry_run, "changed": self.changed,
                "docker": self.docker, "summary": self.summary(),
                "attachments": [a.to_json() for a in self.actions], "notes": list(self.notes),
                "timings": {k: round(v, 4) for k, v in self.timings.items()}}


# ---------------------------------------------------------------------------
# Docker: one client, list once, inspect only what must be restored
# ---------------------------------------------------------------------------
class DockerView:
    """A reusable Docker API client (the agent keeps one for its lifetime).

    The SDK is imported on first use; any transport error becomes
    :class:`Unavailable` and drops the client, so the next call reconnects.
    """

    def __init__(self) -> None:
        self._client: Any = None

    def _call(self, fn: Callable[[Any], Any], what: str) -> Any:
        import docker.errors  # noqa: PLC0415 - lazy: ~160 ms
        import requests.exceptions  # noqa: PLC0415

        from ovsfab.plumbing.containers import _docker_client  # noqa: PLC0415 - knows DOCKER_HOST

        try:
            if self._client is None:
                self._client = _docker_client()
            return fn(self._client)
        except docker.errors.NotFound:
            raise
        except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
            self.close()
            from ovsfab.plumbing import dockerapi  # noqa: PLC0415
            from ovsfab.plumbing.containers import docker_url  # noqa: PLC0415

            raise Unavailable(f"cannot reach dockerd to {what}: {dockerapi.unreachable(exc, docker_url())}",
                              "start dockerd (or set DOCKER_HOST); Docker attachments were left as they are"
                              ) from None

    def states(self) -> Dict[str, str]:
        """{full container ID: state} for every container dockerd knows (one call)."""
        listing = self._call(lambda c: c.containers(all=True), "list containers")
        return {c["Id"]: str(c.get("State") or "") for c in listing}

    def inspect(self, container_id: str) -> Optional[Dict[str, Any]]:
        """The container's inspect data, or None if dockerd does not know it."""
        import docker.errors  # noqa: PLC0415

        try:
            return self._call(lambda c: c.inspect_container(container_id), "inspect a container")
        except docker.errors.NotFound:
            return None

    def inspect_many(self, container_ids: Iterable[str]) -> Dict[str, Optional[Dict[str, Any]]]:
        """Inspect several containers, a few at a time (dockerd answers them in parallel)."""
        ids = sorted(set(container_ids))
        if len(ids) <= 1:
            return {i: self.inspect(i) for i in ids}
        if self._client is None:  # connect once, before the threads share the client
            self.states()
        return dict(zip(ids, map_parallel(self.inspect, ids, 8, "inspect")))

    def close(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            except Exception:  # closing a broken client: nothing to save
                pass
            self._client = None


def docker_target(info: Dict[str, Any]) -> Optional[Target]:
    """The Target of a running container from its inspect data (None if not running)."""
    state = info.get("State") or {}
    pid = int(state.get("Pid") or 0)
    if not state.get("Running") or state.get("Restarting") or pid <= 0:
        return None
    name = str(info.get("Name") or info["Id"]).lstrip("/")
    return Target("docker", info["Id"], name, pid, f"/proc/{pid}/ns/net")
