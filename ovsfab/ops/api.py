"""The operations API: one entry point for every front end.

A front end (the CLI, the agent's socket, the Docker driver, the CNI plugin)
names an operation, gives its parameters as plain JSON-ready values and a
:class:`~ovsfab.ops.context.Context`, and gets back a result with
``to_json()``, or an :class:`~ovsfab.errors.OvsfabError`::

    from ovsfab.ops import api
    from ovsfab.ops.context import Context

    result = api.execute("attach", {"bridge": "br0", "container": "web",
                                    "addresses": ["10.1.0.5/24"]}, Context(db="unix:/run/openvswitch/db.sock"))
    result.to_json()   # {"action": "attach", "changed": true, ...}

Parameters are named like the CLI's options (``ifname``, ``vlan``,
``if_exists``, ...); each operation validates them into its typed request
(:mod:`ovsfab.model`, :mod:`ovsfab.ops.tunnel`) before anything changes, so a
bad value is an ``InvalidInput`` (exit 2) whoever sent it.  The request and
result types are the wire format of the agent's socket (protocol 2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from ovsfab.errors import InvalidInput, OvsfabError, Unavailable
from ovsfab.ops.context import Context


class Result:
    """What every operation returns (duck-typed: the op modules' result classes)."""

    def to_json(self) -> Dict[str, Any]:  # pragma: no cover - documentation
        raise NotImplementedError


@dataclass(frozen=True)
class Operation:
    """One operation: its name, its parameters, and how it runs."""

    name: str
    #: Parameter name -> kind ("str", "int", "float", "bool", "list", "opt-str", "opt-bool", "opt-num").
    params: Mapping[str, str]
    run: Callable[[Dict[str, Any], Context], Any]
    #: False for operations that only read (show, inspect, list, check).
    changes: bool = True
    #: Parameters that must be given.
    required: Sequence[str] = ()
    doc: str = ""


@dataclass
class ListResult:
    """A listing (``tunnel list``, ``uplink list``): items with ``to_json()``."""

    key: str
    items: List[Any] = field(default_factory=list)

    def to_json(self) -> Dict[str, Any]:
        return {self.key: [i.to_json() for i in self.items]}


_CHECKS: Dict[str, Callable[[Any], bool]] = {
    "str": lambda v: isinstance(v, str),
    "opt-str": lambda v: v is None or isinstance(v, str),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "opt-bool": lambda v: v is None or isinstance(v, bool),
    # A number the CLI passes as typed text and programs pass as a number (MTU, VLAN, key, port).
    "opt-num": lambda v: v is None or isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool)),
    "list": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
}


def _check_params(op: Operation, params: Mapping[str, Any]) -> Dict[str, Any]:
    if not isinstance(params, Mapping):
        raise InvalidInput(f"the parameters of {op.name} are not an object")
    unknown = sorted(set(params) - set(op.params))
    if unknown:
        raise InvalidInput(f"{op.name} has no parameter {', '.join(unknown)}",
                           f"its parameters: {', '.join(sorted(op.params))}")
    for name in op.required:
        if params.get(name) is None:
            raise InvalidInput(f"{op.name} needs {name}")
    for name, value in params.items():
        if value is not None and not _CHECKS[op.params[name]](value):  # None: the default
            want = op.params[name].replace("opt-num", "a number").replace("opt-", "")
            raise InvalidInput(f"parameter {name} of {op.name} must be {want}, not {type(value).__name__}")
    return dict(params)


def operation(name: str) -> Operation:
    """The operation of that name; InvalidInput for an unknown one."""
    if not known(name):
        raise InvalidInput(f"there is no operation {name!r}", f"operations: {', '.join(sorted(OPERATIONS))}")
    return OPERATIONS[name]


def execute_many(name: str, params_list: Sequence[Mapping[str, Any]], ctx: Context,
                 timings: Optional[Dict[str, float]] = None) -> List[Any]:
    """Run many requests of one operation in one context: a result or an OvsfabError for each, in order.

    ``attach`` (plain, not OVN) shares ONE OVSDB transaction among all its
    requests (ovsfab.ops.attach.attach_many): the agent's group commit.
    Anything else runs one request after the other.  ``timings``: see
    :func:`ovsfab.ops.attach.attach_many`.
    """
    op = operation(name)
    if name != "attach":
        out: List[Any] = []
        for params in params_list:
            try:
                out.append(op.run(_check_params(op, params), ctx))
            except OvsfabError as exc:
                out.append(exc)
        return out
    group = AttachGroup(ctx, timings)
    for params in params_list:
        group.add(params)
    return group.commit()


def _is_linux_bridge(bridge: str) -> bool:
    from ovsfab.backends.factory import resolve_kind  # noqa: PLC0415

    return resolve_kind("auto", bridge) == "linux"


class AttachGroup:
    """Plain attaches in one context, added one by one, committed in ONE OVSDB transaction.

    The agent's group commit (:class:`ovsfab.ops.attach.AttachBatch`): each
    request is validated and its link work done when it is added; a bad one
    gets its error in its place.  :meth:`commit` plugs them all and returns
    a result or an OvsfabError for each, in the order added; it closes the
    backend, and so does :meth:`abort`.
    """

    def __init__(self, ctx: Context, timings: Optional[Dict[str, float]] = None) -> None:
        from ovsfab.ops.attach import AttachBatch  # noqa: PLC0415

        self._op = operation("attach")
        self._ctx = ctx
        self._slots: List[Any] = []
        self._kinds: Dict[str, bool] = {}
        self._backend = ctx.backend_factory()()
        try:
            self._batch = AttachBatch(self._backend, ctx.fault, ctx.docker_host, timings)
        except BaseException:
            self._backend.close()
            raise

    def __len__(self) -> int:
        return len(self._slots)

    def _linux(self, bridge: str) -> bool:
        """Whether ``auto`` makes ``bridge`` a Linux bridge; asked once per bridge and group (a netlink
        request each time cost the agent ~10 % of its CPU in a burst of 100, cProfile)."""
        if bridge not in self._kinds:
            self._kinds[bridge] = _is_linux_bridge(bridge)
        return self._kinds[bridge]

    def add(self, params: Mapping[str, Any]) -> None:
        """Validate one attach's parameters and do its link work (its error, if any, is its result)."""
        try:
            p = _check_params(self._op, params)
            if p.get("network") is not None or p.get("bridge") is None:
                raise InvalidInput("only plain attaches share a transaction")
            req = _attach_request(p)
            if self._ctx.backend == "auto" and self._linux(req.bridge):
                # auto on a Linux bridge: not this group's OVS transaction; served on its own, in order.
                self._slots.append(self._op.run(p, self._ctx))
                return
        except Exception as exc:  # noqa: BLE001 - an error (or a bug) of this request is its result alone
            self._slots.append(exc)
            return
        self._slots.append(None)
        self._batch.add(req)

    def commit(self) -> List[Any]:
        """Plug every port in one transaction; a result or an OvsfabError per request, in order."""
        try:
            done = iter(self._batch.commit())
        finally:
            self._backend.close()
        return [slot if slot is not None else next(done) for slot in self._slots]

    def abort(self, exc: BaseException) -> None:
        """Undo every request added (nothing plugged), and close the backend."""
        try:
            self._batch.abort(exc)
        finally:
            self._backend.close()


def execute(name: str, params: Mapping[str, Any], ctx: Context) -> Any:
    """Run operation ``name`` with ``params`` in ``ctx``; its result (``to_json()``) or an OvsfabError."""
    op = operation(name)
    return op.run(_check_params(op, params), ctx)


# ---------------------------------------------------------------------------
# The operations (adapters from parameters to the op modules' functions)
# ---------------------------------------------------------------------------
def _get(p: Dict[str, Any], key: str, default: Any) -> Any:
    """A parameter, or its default when absent or None (an empty string is a value, and is validated)."""
    value = p.get(key)
    return default if value is None else value


def _attach_request(p: Dict[str, Any]) -> Any:  # -> ovsfab.model.AttachRequest
    """A plain attach's parameters validated into its request (``mtu`` auto is unset: attach computes it)."""
    from ovsfab.model import AttachRequest  # noqa: PLC0415

    mtu = p.get("mtu")
    return AttachRequest.parse(p["bridge"], p["container"], p.get("addresses") or [],
                               ifname=_get(p, "ifname", "eth1"), mac=p.get("mac"),
                               mtu=None if mtu in (None, "auto") else str(mtu), vlan=p.get("vlan"),
                               datapath=_get(p, "datapath", "auto"), persist=not p.get("no_persist", False))


def _attach(p: Dict[str, Any], ctx: Context) -> Any:
    mtu = p.get("mtu")
    mtu = None if mtu in (None, "auto") else str(mtu)  # auto == unset: ops/attach.py computes it
    if p.get("network") is not None:  # OVN: the bridge is br-int, the port a logical one
        if p.get("vlan") is not None:
            raise InvalidInput("--vlan does not apply to OVN networks", "leave it out with --network")
        from ovsfab.ops.ovn_network import attach_network  # noqa: PLC0415

        return attach_network(p["network"], p["container"], p.get("addresses") or [],
                              ifname=_get(p, "ifname", "eth1"), mac=p.get("mac"), mtu=mtu,
                              persist=not p.get("no_persist", False), ovs_remote=ctx.db, fault=ctx.fault)
    from ovsfab.ops.attach import attach  # noqa: PLC0415

    if p.get("bridge") is None:
        raise InvalidInput("attach needs a bridge", "ovsfab attach BRIDGE CONTAINER ADDR...")
    req = _attach_request(p)
    return attach(req, ctx.backend_factory(req.bridge), fault=ctx.fault, docker_host=ctx.docker_host)


def _detach(p: Dict[str, Any], ctx: Context) -> Any:
    if p.get("container") is None:
        raise InvalidInput("no container given", "ovsfab detach BRIDGE CONTAINER")
    if p.get("network") is not None:
        from ovsfab.ops.ovn_network import detach_network  # noqa: PLC0415

        return detach_network(p["network"], p["container"], _get(p, "ifname", "eth1"),
                              bool(p.get("if_exists")), ovs_remote=ctx.db, fault=ctx.fault)
    from ovsfab.ops.detach import detach  # noqa: PLC0415

    if p.get("bridge") is None:
        raise InvalidInput("detach needs a bridge", "ovsfab detach BRIDGE CONTAINER")
    return detach(p["bridge"], p["container"], _get(p, "ifname", "eth1"), bool(p.get("if_exists")),
                  ctx.backend_factory(p["bridge"]), fault=ctx.fault, docker_host=ctx.docker_host)


def _tunnel_add(p: Dict[str, Any], ctx: Context) -> Any:
    from ovsfab.ops.tunnel import TunnelRequest, tunnel_add  # noqa: PLC0415

    req = TunnelRequest.parse(p["bridge"], p["remote"], _get(p, "tun_type", "vxlan"), p.get("key"), p.get("name"),
                              p.get("dstport"), p.get("local_ip"), p.get("csum"), _get(p, "datapath", "auto"),
                              p.get("bfd"))
    return tunnel_add(req, ctx.backend_factory(req.bridge), fault=ctx.fault)


def _tunnel_del(p: Dict[str, Any], ctx: Context) -> Any:
    from ovsfab.ops.tunnel import tunnel_del  # noqa: PLC0415

    return tunnel_del(p["bridge"], p.get("remote"), p.get("name"), p.get("key"), p.get("tun_type"),
                      bool(p.get("if_exists")), ctx.backend_factory(p["bridge"]))


def _tunnel_list(p: Dict[str, Any], ctx: Context) -> Any:
    from ovsfab.ops.tunnel import tunnel_list  # noqa: PLC0415

    return ListResult("tunnels", tunnel_list(p.get("bridge"), ctx.backend_factory(p.get("bridge"))))


def _uplink_add(p: Dict[str, Any], ctx: Context) -> Any:
    from ovsfab.ops.uplink import uplink_add  # noqa: PLC0415

    return uplink_add(p["bridge"], p["nic"], bool(p.get("force")), _get(p, "datapath", "auto"),
                      ctx.backend_factory(p["bridge"]), fault=ctx.fault)


def _uplink_del(p: Dict[str, Any], ctx: Context) -> Any:
    from ovsfab.ops.uplink import uplink_del  # noqa: PLC0415

    return uplink_del(p["bridge"], p["nic"], bool(p.get("if_exists")), ctx.backend_factory(p["bridge"]),
                      fault=ctx.fault)


def _uplink_list(p: Dict[str, Any], ctx: Context) -> Any:
    from ovsfab.ops.uplink import uplink_list  # noqa: PLC0415

    return ListResult("uplinks", uplink_list(p.get("bridge"), ctx.backend_factory(p.get("bridge"))))


def _check(p: Dict[str, Any], ctx: Context) -> Any:
    from ovsfab.ops.check import check  # noqa: PLC0415

    wait = float(p.get("wait") or 0.0)
    if not 0 <= wait <= 3600:
        raise InvalidInput(f"--wait {wait:g} is outside 0..3600 seconds")
    return check(ctx.backend_factory(), ctx.db, wait=wait)


def _show(p: Dict[str, Any], ctx: Context) -> Any:
    from ovsfab.backends.factory import auto_unavailable, resolve_kind  # noqa: PLC0415
    from ovsfab.ops.inspect import show  # noqa: PLC0415

    # auto: a Linux bridge of that name is shown without OVSDB (a host without OVS)
    with_ovs = resolve_kind(ctx.backend, p.get("bridge")) == "ovs"
    try:
        return show(p.get("bridge"), remote=ctx.db, with_ovs=with_ovs, warm=ctx.warm_session,
                    docker_host=ctx.docker_host)
    except Unavailable as exc:
        raise (auto_unavailable(exc) if ctx.backend == "auto" else exc) from exc


def _inspect(p: Dict[str, Any], ctx: Context) -> Any:
    from ovsfab.ops.inspect import inspect  # noqa: PLC0415

    return inspect(p["container"], remote=ctx.db, warm=ctx.warm_session, docker_host=ctx.docker_host)


OPERATIONS: Dict[str, Operation] = {op.name: op for op in (
    Operation("attach", {"bridge": "opt-str", "container": "str", "addresses": "list", "ifname": "opt-str",
                         "network": "opt-str", "mac": "opt-str", "mtu": "opt-num", "vlan": "opt-num",
                         "datapath": "opt-str", "no_persist": "bool"},
              _attach, required=("container",),
              doc="a veth into the container, addresses, a port on the bridge"),
    Operation("detach", {"bridge": "opt-str", "container": "opt-str", "ifname": "opt-str", "network": "opt-str",
                         "if_exists": "bool"},
              _detach, doc="remove a container's interface and its port"),
    Operation("tunnel.add", {"bridge": "str", "remote": "str", "tun_type": "opt-str", "key": "opt-num",
                             "name": "opt-str", "dstport": "opt-num", "local_ip": "opt-str", "csum": "opt-bool",
                             "datapath": "opt-str", "bfd": "opt-bool"},
              _tunnel_add, required=("bridge", "remote"), doc="an overlay tunnel to another host"),
    Operation("tunnel.del", {"bridge": "str", "remote": "opt-str", "name": "opt-str", "key": "opt-num",
                             "tun_type": "opt-str", "if_exists": "bool"},
              _tunnel_del, required=("bridge",), doc="remove a tunnel"),
    Operation("tunnel.list", {"bridge": "opt-str"}, _tunnel_list, changes=False, doc="the tunnels ovsfab made"),
    Operation("uplink.add", {"bridge": "str", "nic": "str", "force": "bool", "datapath": "opt-str"},
              _uplink_add, required=("bridge", "nic"), doc="a host NIC into a bridge, its L3 moved along"),
    Operation("uplink.del", {"bridge": "str", "nic": "str", "if_exists": "bool"},
              _uplink_del, required=("bridge", "nic"), doc="the NIC back, exactly as it was"),
    Operation("uplink.list", {"bridge": "opt-str"}, _uplink_list, changes=False, doc="the uplinks ovsfab made"),
    Operation("check", {"wait": "float"}, _check, changes=False, doc="prove this host's tunnels and ports"),
    Operation("show", {"bridge": "opt-str"}, _show, changes=False, doc="every bridge, its ports and owners"),
    Operation("inspect", {"container": "str"}, _inspect, changes=False, required=("container",),
              doc="a container's interfaces, host peers and bridges"),
)}


def describe() -> List[Dict[str, Any]]:
    """The operations and their parameters (for docs and for clients)."""
    _load_extensions()
    return [{"name": op.name, "params": dict(op.params), "required": list(op.required), "changes": op.changes,
             "doc": op.doc} for op in OPERATIONS.values()]


#: Operations of the other front ends, registered when first asked for, so a
#: plain attach does not import them (module, attribute holding a list of Operation).
EXTENSIONS = (("ovsfab.ops.cni", "OPERATIONS"),        # the CNI plugin (issue #19)
              ("ovsfab.ops.endpoint", "OPERATIONS"))   # the Docker driver (issue #18)
_extended = False


def _load_extensions() -> None:
    global _extended
    if _extended:
        return
    import importlib  # noqa: PLC0415

    for module, attr in EXTENSIONS:
        OPERATIONS.update({op.name: op for op in getattr(importlib.import_module(module), attr)})
    _extended = True


def known(name: str) -> bool:
    """Whether ``name`` is an operation (loading the front ends' operations if needed)."""
    if name not in OPERATIONS:
        _load_extensions()
    return name in OPERATIONS

