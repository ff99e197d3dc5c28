"""Where a CNI network configuration says Open vSwitch is: its OVSDB remote and ovs-vswitchd's namespace.

Standard library only, and no import at run time beyond :mod:`os`: the lean
plugin (ovsfab/cni/plugin.py) reads these before it knows whether an agent
will take the request, and :mod:`ovsfab.ops.cni_config` checks the same
keys with errors.  One definition for both, so the plugin asks the agent of
the OVSDB the request will use.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:  # no typing import at run time (the lean plugin's start-up cost)
    from typing import Any, Mapping, Optional

#: Where ovs-cni looks for its flat configuration file when none is named.
FLATFILE_DEFAULTS = ("/etc/kubernetes/cni/net.d/ovs.d/ovs.conf", "/etc/cni/net.d/ovs.d/ovs.conf")
#: ovs-cni's default OVSDB socket.
DEFAULT_SOCKET = "/var/run/openvswitch/db.sock"


def remote_in(source: "Mapping[str, Any]") -> "Optional[str]":
    """The OVSDB remote ``source`` names: ``ovsdb``, else ovs-cni's ``socket_file``; None when neither.

    Values that are not strings are skipped here (the checked parse refuses them).
    """
    remote = source.get("ovsdb")
    if isinstance(remote, str) and remote:
        return remote
    sock = source.get("socket_file")
    if isinstance(sock, str) and sock:
        return sock if sock.startswith(("unix:", "tcp:", "ssl:")) else "unix:" + sock
    return None


def netns_path(value: "Optional[str]") -> "Optional[str]":
    """``ovs_netns`` as a path: a name means /run/netns/NAME; empty means the caller's (None)."""
    if not value:
        return None
    return value if "/" in value else os.path.join("/run/netns", value)


def lookup(conf: "Mapping[str, Any]", load: "Any") -> "tuple":
    """(remote, ovs_netns path) of a configuration, forgiving: what the checked parse would use when
    the configuration is valid, a default otherwise.  ``load`` reads a JSON file object (``json.load``)."""
    flat: "Mapping[str, Any]" = {}
    path = conf.get("configuration_path")
    for candidate in ([path] if isinstance(path, str) and path else FLATFILE_DEFAULTS):
        try:
            with open(candidate, encoding="utf-8") as fh:
                doc = load(fh)
        except (OSError, ValueError):
            continue
        flat = doc if isinstance(doc, dict) else {}
        break
    remote = remote_in(conf) or remote_in(flat) or "unix:" + DEFAULT_SOCKET
    ns = conf.get("ovs_netns") if isinstance(conf.get("ovs_netns"), str) else None
    ns = ns or (flat.get("ovs_netns") if isinstance(flat.get("ovs_netns"), str) else None)
    return remote, netns_path(ns)
