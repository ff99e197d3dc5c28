"""Running the IPAM plugin named in ``ipam.type``: this IS the CNI protocol.

CNI delegates address management to another plugin: the calling plugin
executes it with the same network configuration on stdin and the same
``CNI_*`` environment (``CNI_COMMAND`` as its own), and reads its result or
error object from stdout (CNI spec 1.0.0, "Delegated plugins").  Executing
``host-local``, ``static`` or ``dhcp`` here is that protocol, not
configuration through command-line tools: ovsfab still never runs ``ip``
or ``ovs-vsctl``.  The plugin is looked up in ``CNI_PATH`` only, run from an
argv list (never a shell), with a time limit.
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any, Dict, Mapping, Optional

from ovsfab.ops.cni_errors import DECODE_FAILURE, INCOMPATIBLE_VERSION, INVALID_CONFIG, INVALID_ENV, IO_FAILURE, CniError

#: The longest an IPAM plugin may take (dhcp waits for a lease; 60 s is its own limit).
TIMEOUT = 90.0


def find_plugin(plugin_type: str, cni_path: str) -> str:
    """The executable ``plugin_type`` in one of ``CNI_PATH``'s directories."""
    if not plugin_type or "/" in plugin_type or plugin_type in (".", ".."):
        raise CniError(INVALID_CONFIG, f"ipam type {plugin_type!r} is not a plugin name", "e.g. host-local")
    if not cni_path:
        raise CniError(INVALID_ENV, "CNI_PATH is not set", "the runtime sets it to its CNI bin directories")
    for directory in cni_path.split(os.pathsep):
        path = os.path.join(directory, plugin_type)
        if directory and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    raise CniError(INVALID_CONFIG, f"IPAM plugin {plugin_type!r} is not in CNI_PATH ({cni_path})",
                   "install it (Debian: containernetworking-plugins) or fix ipam.type")


def delegate(plugin_type: str, command: str, netconf: Mapping[str, Any],
             environ: Mapping[str, str]) -> Optional[Dict[str, Any]]:
    """Run the IPAM plugin for ``command``; its parsed result (None when it printed nothing).

    Its error object becomes a :class:`CniError` with the same code, so the
    runtime sees what the IPAM plugin said.
    """
    try:
        return _run(plugin_type, command, netconf, environ)
    except CniError as exc:
        # 1.1.0 changed no result type of ADD/DEL/CHECK, and Debian's IPAM
        # plugins (1.1.x) stop at 1.0.0: ask them in 1.0.0 rather than fail.
        if exc.code != INCOMPATIBLE_VERSION or netconf.get("cniVersion") != "1.1.0" \
                or command not in ("ADD", "DEL", "CHECK"):
            raise
    return _run(plugin_type, command, {**netconf, "cniVersion": "1.0.0"}, environ)


def _run(plugin_type: str, command: str, netconf: Mapping[str, Any],
         environ: Mapping[str, str]) -> Optional[Dict[str, Any]]:
    """One execution of the plugin (see :func:`delegate`)."""
    path = find_plugin(plugin_type, environ.get("CNI_PATH", ""))
    env = dict(environ)
    env["CNI_COMMAND"] = command
    try:
        proc = subprocess.run([path], input=json.dumps(netconf).encode(), env=env, capture_output=True,
                              timeout=TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise CniError(IO_FAILURE, f"IPAM plugin {plugin_type} did not answer {command} within {TIMEOUT:g} s",
                       "check the plugin (dhcp: is its daemon running?)") from None
    except OSError as exc:
        raise CniError(IO_FAILURE, f"cannot run IPAM plugin {path}: {exc.strerror}") from None
    out = proc.stdout.decode(errors="replace").strip()
    doc: Optional[Dict[str, Any]] = None
    if out:
        try:
            doc = json.loads(out)
        except ValueError:
            raise CniError(DECODE_FAILURE, f"IPAM plugin {plugin_type} printed no JSON for {command}",
                           out[:200]) from None
    if proc.returncode != 0:
        if isinstance(doc, dict) and isinstance(doc.get("code"), int):
            raise CniError(doc["code"], f"IPAM plugin {plugin_type}: {doc.get('msg', '')}", doc.get("details"))
        err = proc.stderr.decode(errors="replace").strip()
        raise CniError(IO_FAILURE, f"IPAM plugin {plugin_type} failed {command} (exit {proc.returncode})",
                       err[:200] or None)
    return doc if isinstance(doc, dict) else None
