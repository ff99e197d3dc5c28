"""What one request carries besides its arguments: where to act, and the test hook.

Every front end (the CLI, the agent's socket, the Docker driver, the CNI
plugin) builds a :class:`Context` for each request and hands it to
:func:`ovsfab.ops.api.execute` as an argument.  Nothing below the front ends
reads the environment for these: the agent serves requests from many clients
with one process environment, so a request's OVSDB, backend and fault hook
must travel with the request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional

from ovsfab import defaults
from ovsfab.errors import InvalidInput

#: The backends a request may name (``auto``: a Linux bridge of the request's name, else OVS).
BACKENDS = defaults.KINDS
#: The test hook's variable (ovsfab/ops/plan.py), read by front ends only.
FAULT_ENV = "OVSFAB_INJECT_FAULT"
#: Wire fields of a context (the warm providers never travel).
FIELDS = ("db", "backend", "fault", "docker_host")


@dataclass(frozen=True)
class Context:
    """Per-request context.

    ``db``: the OVSDB remote (``unix:PATH`` or ``tcp:HOST:PORT``); a front end
    resolves the default (``OVSFAB_DB``, ``$OVS_RUNDIR/db.sock``, the standard
    socket) before it builds the context.  ``backend``: ``ovs``, ``linux`` or
    ``auto``.  ``fault``: the test hook (a step name, or ``kill:STEP``; see
    :mod:`ovsfab.ops.plan`).  ``docker_host``: dockerd's API socket, None for
    the default.
    """

    db: str
    backend: str = "auto"
    fault: Optional[str] = None
    docker_host: Optional[str] = None
    #: The agent's warm connections, never on the wire: OVSDB remote -> a
    #: synced backend whose close() keeps it open, or None (connect afresh).
    warm_backend: Optional[Callable[[str], Optional[Any]]] = field(default=None, compare=False, repr=False)
    #: The same for show/inspect: remote -> a synced read-only IDL session, or None.
    warm_session: Optional[Callable[[str], Optional[Any]]] = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise InvalidInput(f"backend {self.backend!r} is unknown", "use --backend ovs, linux or auto")
        if not isinstance(self.db, str) or not self.db:
            raise InvalidInput("no OVSDB remote given", "e.g. --db unix:/var/run/openvswitch/db.sock")

    def backend_factory(self, bridge: Optional[str] = None) -> Callable[[], Any]:
        """A factory of connected backends of this context's kind.

        ``bridge`` is what ``auto`` decides by (see
        :func:`ovsfab.backends.factory.resolve_kind`: a Linux bridge of that
        name, else OVS), when the factory is called, in the calling thread's
        namespace.  An OVS request for the agent's or the driver's OVSDB gets
        their warm session.
        """

        def factory() -> Any:
            from ovsfab.backends.factory import auto_unavailable, connect, resolve_kind  # noqa: PLC0415
            from ovsfab.errors import Unavailable  # noqa: PLC0415

            auto = self.backend == "auto"
            kind = resolve_kind(self.backend, bridge)
            if kind == "ovs" and self.warm_backend is not None:
                try:
                    warm = self.warm_backend(self.db)
                except Unavailable as exc:
                    raise (auto_unavailable(exc) if auto else exc) from exc
                if warm is not None:
                    return warm
            return connect(kind, db=self.db, auto=auto)

        return factory

    def to_json(self) -> Dict[str, Any]:
        return {k: getattr(self, k) for k in FIELDS}

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], db: Optional[str] = None,
                     backend: Optional[str] = None) -> "Context":
        """What a front end's process would act on: --db/--backend, else its environment and config file."""
        return cls(db=db or defaults.default_db(environ), backend=defaults.backend_kind(environ, backend),
                   fault=environ.get(FAULT_ENV) or None, docker_host=environ.get("DOCKER_HOST") or None)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Context":
        """A context from its wire form; InvalidInput for anything malformed."""
        if not isinstance(data, Mapping):
            raise InvalidInput("the request's context is not an object")
        extra = set(data) - set(FIELDS)
        if extra:
            raise InvalidInput(f"unknown context field(s): {', '.join(sorted(extra))}")
        for key in ("fault", "docker_host"):
            if data.get(key) is not None and not isinstance(data[key], str):
                raise InvalidInput(f"context field {key} must be a string")
        if not isinstance(data.get("backend", "auto"), str):
            raise InvalidInput("context field backend must be a string")
        return cls(db=data.get("db"), backend=data.get("backend", "auto"),  # type: ignore[arg-type]
                   fault=data.get("fault"), docker_host=data.get("docker_host"))
