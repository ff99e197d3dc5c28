"""One CNI request, whole: the runtime's stdin and environment in, the exit code and stdout document out.

This is the operation ``cni.request``: the lean plugin (ovsfab/cni/plugin.py)
hands the raw request to a running agent, which runs it here with its warm
OVSDB session, or runs it here in its own process when no agent takes it.
Either way the same code parses the configuration, runs the IPAM plugin and
the attachment operations, and builds the result or the error object.

ADD: IPAM first (the delegated plugin, when ``ipam`` is configured), then
``cni.add`` with its addresses and routes; if ``cni.add`` fails, IPAM's
allocation is released (IPAM DEL) so nothing is left behind.  DEL: ``cni.del``
(idempotent: nothing there, or a namespace already gone, is success), then
IPAM DEL.  CHECK: IPAM CHECK, then ``cni.check`` against prevResult.
VERSION, STATUS and GC (1.1.0) as the spec says.

The environment is an argument (the agent serves many plugin processes with
one environment of its own); nothing here reads ``os.environ``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any, Dict, List, Mapping, Optional, Tuple

from ovsfab.errors import OvsfabError
from ovsfab.ops import api
from ovsfab.ops import cni_config as config
from ovsfab.ops import cni_ipam
from ovsfab.ops import cni_result as result
from ovsfab.ops.cni_delegate import delegate
from ovsfab.ops.cni_errors import INVALID_CONFIG, CniError
from ovsfab.ops.cni import target_spec as cni_target_key
from ovsfab.ops.context import FAULT_ENV, Context

LOG = logging.getLogger("ovsfab.cni")


@dataclass
class CniRequestResult:
    """What the plugin process prints and exits with."""

    code: int
    out: Optional[Dict[str, Any]]

    def to_json(self) -> Dict[str, Any]:
        return {"action": "cni.request", "code": self.code, "out": self.out}


def _run(name: str, params: Dict[str, Any], ctx: Context) -> Dict[str, Any]:
    return api.execute(name, params, ctx).to_json()


def _common(req: config.Request) -> Dict[str, Any]:
    return {"container_id": req.container_id, "ifname": req.ifname, "bridge": req.bridge,
            "ovs_netns": req.ovs_netns}


def _own_ipam(req: config.Request, ctx: Context) -> Dict[str, Any]:
    """ovsfab's IPAM (ops/cni_ipam.py): this ADD's addresses as an IPAM result (under the pool's lock)."""
    pool = cni_ipam.parse_pool(req.netconf["ipam"])
    backend = ctx.backend_factory(req.bridge)()
    try:
        attachments = backend.list_attachments() + backend.journaled_attachments()
        mine = backend.find_attachment(cni_target_key(req.container_id), req.ifname)
    finally:
        backend.close()
    chosen = cni_ipam.choose(pool, cni_ipam.in_use(attachments),
                             [str(s.interface.with_prefixlen) for s in mine.addresses] if mine else [])
    return pool.result(chosen, req.cni_version)


def cmd_add(req: config.Request, environ: Mapping[str, str], ctx: Context) -> Dict[str, Any]:
    """ADD: IPAM, then the attachment; IPAM released again if the attachment fails."""
    if req.ipam_type == config.OVN_IPAM:
        # OVN's dynamic addresses: ovn-northd assigns while cni.ovn_add makes the port (ops/cni_ovn.py).
        _, routes = result.ipam_params({"routes": req.netconf["ipam"].get("routes")})
        added = _run("cni.ovn_add", {**_ovn_common(req, routes), "dynamic": True, "subnet": req.ovn_subnet,
                                     "gateway": req.ovn_gateway}, ctx)
        return result.add_result(req.cni_version, req.prev_result, added.get("ipam"), added, req.ifname)
    if req.ipam_type == cni_ipam.TYPE:
        # The choice and the record that makes it "used" happen under one lock;
        # a failed attach leaves no record, so nothing is to release.
        with cni_ipam.pool_lock(req.db, req.name):
            ipam = _own_ipam(req, ctx)
            added = _attach(req, ipam, ctx)
        return result.add_result(req.cni_version, req.prev_result, ipam, added, req.ifname)
    ipam: Optional[Dict[str, Any]] = None
    if req.ipam_type:
        ipam = delegate(req.ipam_type, "ADD", req.netconf, environ)
    try:
        added = _attach(req, ipam, ctx)
    except Exception:
        if req.ipam_type:
            try:
                delegate(req.ipam_type, "DEL", req.netconf, environ)
            except CniError as exc:  # the first error is the one to report
                LOG.error("releasing the IPAM allocation failed too: %s", exc.msg)
        raise
    return result.add_result(req.cni_version, req.prev_result, ipam, added, req.ifname)


def _attach(req: config.Request, ipam: Optional[Dict[str, Any]], ctx: Context) -> Dict[str, Any]:
    """cni.add (a bridge) or cni.ovn_add (an OVN network) with the request's options, IPAM's addresses
    and routes."""
    addresses, routes = result.ipam_params(result.normalize(ipam, req.cni_version)) if ipam else ([], [])
    common = {"container_id": req.container_id, "ifname": req.ifname, "ovs_netns": req.ovs_netns,
              "netns": req.netns, "addresses": addresses, "routes": routes, "mtu": req.mtu, "mac": req.mac,
              "network_name": req.name, "name": req.pod_name}
    if req.network is not None:
        return _run("cni.ovn_add", {**_ovn_common(req, routes), "addresses": addresses}, ctx)
    return _run("cni.add", {**common, "bridge": req.bridge, "vlan": req.vlan, "trunk": req.trunk,
                            "ofport_request": req.ofport_request}, ctx)


def _ovn_common(req: config.Request, routes: List[str]) -> Dict[str, Any]:
    """cni.ovn_add's parameters but the addresses."""
    return {"container_id": req.container_id, "ifname": req.ifname, "ovs_netns": req.ovs_netns,
            "netns": req.netns, "routes": routes, "mtu": req.mtu, "mac": req.mac, "network_name": req.name,
            "name": req.pod_name, "network": req.network}


def _delegated(req: config.Request) -> bool:
    """Whether IPAM is another plugin's (ovsfab's own, and OVN's, free an address with its port)."""
    return bool(req.ipam_type) and req.ipam_type not in (cni_ipam.TYPE, config.OVN_IPAM)


def cmd_del(req: config.Request, environ: Mapping[str, str], ctx: Context) -> None:
    """DEL: the attachment, then IPAM; both are no-ops when there is nothing."""
    if req.network is not None:
        _run("cni.ovn_del", {"container_id": req.container_id, "ifname": req.ifname, "network": req.network,
                             "ovs_netns": req.ovs_netns}, ctx)
    else:
        _run("cni.del", _common(req), ctx)
    if _delegated(req):
        delegate(req.ipam_type, "DEL", req.netconf, environ)


def cmd_check(req: config.Request, environ: Mapping[str, str], ctx: Context) -> None:
    """CHECK: IPAM's own check, then the attachment against prevResult."""
    if req.prev_result is None:
        raise CniError(INVALID_CONFIG, "CHECK needs prevResult", "the runtime passes ADD's result")
    if _delegated(req):
        delegate(req.ipam_type, "CHECK", req.netconf, environ)
    prev = result.normalize(req.prev_result, req.cni_version)
    params = {**_common(req), "netns": req.netns, "addresses": result.own_addresses(prev, req.ifname, req.netns),
              "vlan": req.vlan, "trunk": req.trunk, "mtu": req.mtu}
    _run("cni.check", params, ctx)


def cmd_gc(req: config.Request, environ: Mapping[str, str], ctx: Context) -> None:
    """GC: this network's attachments not in cni.dev/valid-attachments; then IPAM's GC."""
    _run("cni.gc", {"network_name": req.name, "valid": req.valid_attachments,
                    "bridge": req.bridge or None, "ovs_netns": req.ovs_netns}, ctx)
    _optional_ipam(req, "GC", environ)


def cmd_status(req: config.Request, environ: Mapping[str, str], ctx: Context) -> None:
    """STATUS: OVSDB answers (50, "not available", when it does not)."""
    try:
        _run("cni.status", {"bridge": req.bridge or None, "ovs_netns": req.ovs_netns}, ctx)
    except OvsfabError as exc:
        raise CniError.from_ovsfab(exc, status=True) from None
    _optional_ipam(req, "STATUS", environ)


def _optional_ipam(req: config.Request, command: str, environ: Mapping[str, str]) -> None:
    """GC and STATUS of an IPAM plugin that may predate them: asked only when its VERSION says 1.1.0.

    Older plugins do not refuse an unknown command cleanly (host-local 1.1
    answers GC with "missing containerID"), so their VERSION decides.
    """
    if not _delegated(req):
        return
    versions = (delegate(req.ipam_type, "VERSION", req.netconf, environ) or {}).get("supportedVersions") or []
    if "1.1.0" not in versions:
        LOG.info("IPAM plugin %s predates %s (spec 1.1.0): skipped", req.ipam_type, command)
        return
    delegate(req.ipam_type, command, req.netconf, environ)


COMMANDS = {"DEL": cmd_del, "CHECK": cmd_check, "GC": cmd_gc, "STATUS": cmd_status}


def handle(stdin: bytes, environ: Mapping[str, str], ctx: Optional[Context] = None) -> Tuple[int, Optional[Dict[str, Any]]]:
    """One request: (exit code, what to print).  Never raises.

    ``ctx``: the agent's (its warm OVSDB session); None in the plugin's own
    process.  The configuration's OVSDB remote and the environment's fault
    hook win over it: they are the request's.
    """
    version = config.version_of(stdin)
    try:
        req = config.parse(stdin, environ)
        if req.command == "VERSION":
            return 0, {"cniVersion": req.cni_version, "supportedVersions": list(config.SUPPORTED_VERSIONS)}
        fault = environ.get(FAULT_ENV) or None
        ctx = replace(ctx, db=req.db, backend="auto", fault=fault) if ctx is not None else \
            Context(db=req.db, backend="auto", fault=fault)
        if req.command == "ADD":
            return 0, cmd_add(req, environ, ctx)
        COMMANDS[req.command](req, environ, ctx)
        return 0, None
    except CniError as exc:
        return 1, exc.to_json(version)
    except OvsfabError as exc:
        return 1, CniError.from_ovsfab(exc).to_json(version)
    except Exception as exc:  # a bug: still an error object, never a traceback on stdout
        LOG.exception("ovsfab-cni: internal error")
        return 1, CniError(999, f"internal error: {type(exc).__name__}: {exc}",
                           "a bug in ovsfab-cni: report it with the log on stderr").to_json(version)


def environ_of(items: List[str]) -> Dict[str, str]:
    """``K=V`` items (the wire form of an environment) into a mapping."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if sep:
            out[key] = value
    return out


def cni_request(p: Dict[str, Any], ctx: Context) -> CniRequestResult:
    """The operation: ``stdin`` (the configuration, text) and ``env`` (``K=V`` items) of one plugin run."""
    environ = environ_of(p.get("env") or [])
    code, out = handle(p["stdin"].encode("utf-8", "surrogateescape"), environ, ctx)
    LOG.info("cni %s %s/%s -> %d", environ.get("CNI_COMMAND", "?"), environ.get("CNI_CONTAINERID", "")[:12],
             environ.get("CNI_IFNAME", ""), code)
    return CniRequestResult(code, out)
