"""The ``ovsfab-cni`` executable: one CNI command per process.

ADD: IPAM first (the delegated plugin, when ``ipam`` is configured), then
``cni.add`` with its addresses and routes; if ``cni.add`` fails, IPAM's
allocation is released (IPAM DEL) so nothing is left behind.  DEL: ``cni.del``
(idempotent: nothing there, or a namespace already gone, is success), then
IPAM DEL.  CHECK: IPAM CHECK, then ``cni.check`` against prevResult.
VERSION, STATUS and GC (1.1.0) as the spec says.

Success: the result on stdout, exit 0.  Failure: the error object on
stdout, exit 1.  Log lines go to stderr only (the runtime keeps stdout).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any, Dict, Mapping, Optional, Tuple

from ovsfab.cni import config, result
from ovsfab.cni.delegate import delegate
from ovsfab.cni.errors import INVALID_CONFIG, CniError
from ovsfab.cni.run import run_operation
from ovsfab.errors import OvsfabError
from ovsfab.ops.context import Context

LOG = logging.getLogger("ovsfab.cni")


def _context(req: config.Request, environ: Mapping[str, str]) -> Context:
    # The test hook travels like the CLI's: from the environment, into the context.
    return Context(db=req.db, backend="ovs", fault=environ.get("OVSFAB_INJECT_FAULT") or None)


def _common(req: config.Request) -> Dict[str, Any]:
    return {"container_id": req.container_id, "ifname": req.ifname, "bridge": req.bridge,
            "ovs_netns": req.ovs_netns}


def cmd_add(req: config.Request, environ: Mapping[str, str]) -> Dict[str, Any]:
    """ADD: IPAM, then the attachment; IPAM released again if the attachment fails."""
    ipam: Optional[Dict[str, Any]] = None
    if req.ipam_type:
        ipam = delegate(req.ipam_type, "ADD", req.netconf, environ)
    addresses, routes = result.ipam_params(result.normalize(ipam, req.cni_version)) if ipam else ([], [])
    params = {**_common(req), "netns": req.netns, "addresses": addresses, "routes": routes, "vlan": req.vlan,
              "trunk": req.trunk, "mtu": req.mtu, "mac": req.mac, "ofport_request": req.ofport_request,
              "network_name": req.name, "name": req.pod_name}
    try:
        added = run_operation("cni.add", params, _context(req, environ))
    except Exception:
        if req.ipam_type:
            try:
                delegate(req.ipam_type, "DEL", req.netconf, environ)
            except CniError as exc:  # the first error is the one to report
                LOG.error("releasing the IPAM allocation failed too: %s", exc.msg)
        raise
    return result.add_result(req.cni_version, req.prev_result, ipam, added, req.ifname)


def cmd_del(req: config.Request, environ: Mapping[str, str]) -> None:
    """DEL: the attachment, then IPAM; both are no-ops when there is nothing."""
    run_operation("cni.del", _common(req), _context(req, environ))
    if req.ipam_type:
        delegate(req.ipam_type, "DEL", req.netconf, environ)


def cmd_check(req: config.Request, environ: Mapping[str, str]) -> None:
    """CHECK: IPAM's own check, then the attachment against prevResult."""
    if req.prev_result is None:
        raise CniError(INVALID_CONFIG, "CHECK needs prevResult", "the runtime passes ADD's result")
    if req.ipam_type:
        delegate(req.ipam_type, "CHECK", req.netconf, environ)
    prev = result.normalize(req.prev_result, req.cni_version)
    params = {**_common(req), "netns": req.netns, "addresses": result.own_addresses(prev, req.ifname, req.netns),
              "vlan": req.vlan, "trunk": req.trunk, "mtu": req.mtu}
    run_operation("cni.check", params, _context(req, environ))


def cmd_gc(req: config.Request, environ: Mapping[str, str]) -> None:
    """GC: this network's attachments not in cni.dev/valid-attachments; then IPAM's GC."""
    run_operation("cni.gc", {"network_name": req.name, "valid": req.valid_attachments,
                             "bridge": req.bridge or None, "ovs_netns": req.ovs_netns}, _context(req, environ))
    _optional_ipam(req, "GC", environ)


def cmd_status(req: config.Request, environ: Mapping[str, str]) -> None:
    """STATUS: OVSDB answers (50, "not available", when it does not)."""
    try:
        run_operation("cni.status", {"bridge": req.bridge or None, "ovs_netns": req.ovs_netns},
                      _context(req, environ))
    except OvsfabError as exc:
        raise CniError.from_ovsfab(exc, status=True) from None
    _optional_ipam(req, "STATUS", environ)


def _optional_ipam(req: config.Request, command: str, environ: Mapping[str, str]) -> None:
    """GC and STATUS of an IPAM plugin that may predate them: asked only when its VERSION says 1.1.0.

    Older plugins do not refuse an unknown command cleanly (host-local 1.1
    answers GC with "missing containerID"), so their VERSION decides.
    """
    if not req.ipam_type:
        return
    versions = (delegate(req.ipam_type, "VERSION", req.netconf, environ) or {}).get("supportedVersions") or []
    if "1.1.0" not in versions:
        LOG.info("IPAM plugin %s predates %s (spec 1.1.0): skipped", req.ipam_type, command)
        return
    delegate(req.ipam_type, command, req.netconf, environ)


def handle(stdin: bytes, environ: Mapping[str, str]) -> Tuple[int, Optional[Dict[str, Any]]]:
    """One request: (exit code, what to print).  Never raises."""
    version = config.version_of(stdin)
    try:
        req = config.parse(stdin, environ)
        if req.command == "VERSION":
            return 0, {"cniVersion": req.cni_version, "supportedVersions": list(config.SUPPORTED_VERSIONS)}
        if req.command == "ADD":
            return 0, cmd_add(req, environ)
        {"DEL": cmd_del, "CHECK": cmd_check, "GC": cmd_gc, "STATUS": cmd_status}[req.command](req, environ)
        return 0, None
    except CniError as exc:
        return 1, exc.to_json(version)
    except OvsfabError as exc:
        return 1, CniError.from_ovsfab(exc).to_json(version)
    except Exception as exc:  # a bug: still an error object, never a traceback on stdout
        LOG.exception("ovsfab-cni: internal error")
        return 1, CniError(999, f"internal error: {type(exc).__name__}: {exc}",
                           "a bug in ovsfab-cni: report it with the log on stderr").to_json(version)


def main() -> int:
    """The console entry point ``ovsfab-cni``."""
    logging.basicConfig(stream=sys.stderr, level=logging.DEBUG if os.environ.get("OVSFAB_CNI_DEBUG") else
                        logging.WARNING, format="ovsfab-cni: %(message)s")
    stdin = sys.stdin.buffer.read()
    code, out = handle(stdin, os.environ)
    if out is not None:
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()
    return code
