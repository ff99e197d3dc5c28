"""What ``show`` and ``inspect`` read from the kernel: link and address dumps, Linux bridges.

One rtnetlink link dump (plus one address dump) per namespace on ovsfab's
netlink socket (netlink/rtnl.py: timeouts, ENOBUFS), decoding only the
attributes read here (:func:`_link_request`).  In a one-shot CLI process
pyroute2 is imported without its package ``__init__``
(:func:`prepare_pyroute2`, plumbing/pyroute2_private.py).
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional

from ovsfab.backends.base import KEY_ROLE
from ovsfab.errors import OvsfabError
from ovsfab.model import KEY_VLAN
from ovsfab.ops.inspect_facts import LINUX_TUNNEL_KINDS, BridgeFacts, LinkFacts, PortFacts, is_uplink_link, owner_of

IFF_UP = 0x1
IFF_LOOPBACK = 0x8

# ---------------------------------------------------------------------------
# Netlink
# ---------------------------------------------------------------------------
def prepare_pyroute2() -> None:
    """Before this process's first pyroute2 import: its package ``__init__`` is deferred.

    ~130 ms of a one-shot ``show``/``inspect`` (see plumbing/pyroute2_private.py);
    a no-op in the agent, which has pyroute2 loaded.
    """
    from ovsfab.plumbing.pyroute2_private import defer_package_init  # noqa: PLC0415

    defer_package_init()


def _addr_text(value: object) -> Optional[str]:
    return str(value) if value not in (None, "", "0.0.0.0", "::") else None


def _linux_tunnel(kind: Optional[str], data: Any) -> Optional[Dict[str, Any]]:
    """Remote/local/key of a kernel tunnel link (best effort: attrs vary by kind)."""
    if kind not in LINUX_TUNNEL_KINDS:
        return None
    get = data.get_attr if data is not None and hasattr(data, "get_attr") else (lambda _k: None)
    if kind == "vxlan":
        remote = get("IFLA_VXLAN_GROUP") or get("IFLA_VXLAN_GROUP6")
        local = get("IFLA_VXLAN_LOCAL") or get("IFLA_VXLAN_LOCAL6")
        key = get("IFLA_VXLAN_ID")
    elif kind == "geneve":
        remote = get("IFLA_GENEVE_REMOTE") or get("IFLA_GENEVE_REMOTE6")
        local, key = None, get("IFLA_GENEVE_ID")
    else:
        remote, local = get("IFLA_GRE_REMOTE"), get("IFLA_GRE_LOCAL")
        key = get("IFLA_GRE_OKEY")
    port = get("IFLA_VXLAN_PORT") if kind == "vxlan" else None
    return {"type": kind, "remote_ip": _addr_text(remote), "local_ip": _addr_text(local),
            "key": str(key) if key not in (None, 0) else None,
            "dst_port": str(port) if port else None, "bfd": None}


def parse_link(msg: Any) -> LinkFacts:
    """LinkFacts from one pyroute2 ifinfmsg."""
    # One pass over the attributes: msg.get_attr() scans them all per name.
    slots: Dict[str, Any] = {}
    for slot in msg["attrs"]:
        slots.setdefault(slot[0], slot)  # the first of a name, as get_attr() returns

    def get(name: str) -> Any:
        slot = slots.get(name)
        return slot[1] if slot is not None else None

    info = get("IFLA_LINKINFO")
    kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
    data = info.get_attr("IFLA_INFO_DATA") if info is not None else None
    flags = int(msg["flags"])
    return LinkFacts(
        index=int(msg["index"]),
        name=get("IFLA_IFNAME"),
        kind=kind,
        mac=get("IFLA_ADDRESS"),
        mtu=get("IFLA_MTU"),
        admin_up=bool(flags & IFF_UP),
        oper_state=str(get("IFLA_OPERSTATE") or "UNKNOWN").lower(),
        loopback=bool(flags & IFF_LOOPBACK),
        link_index=get("IFLA_LINK"),
        link_netnsid=get("IFLA_LINK_NETNSID"),
        master=get("IFLA_MASTER"),
        tunnel=_linux_tunnel(kind, data),
        alias=get("IFLA_IFALIAS"),
    )


#: The link attributes :func:`parse_link` reads.
LINK_ATTRS = frozenset({"IFLA_IFNAME", "IFLA_ADDRESS", "IFLA_MTU", "IFLA_OPERSTATE", "IFLA_LINK",
                        "IFLA_LINK_NETNSID", "IFLA_MASTER", "IFLA_IFALIAS", "IFLA_LINKINFO"})


def _link_request() -> Any:
    """An RTM_GETLINK dump request whose replies decode only :data:`LINK_ATTRS`.

    The replies are decoded by the request's class: a lean ifinfmsg
    (plumbing/pyroute2_private.py, ~4x faster for a few hundred links) or,
    if pyroute2's internals changed, pyroute2's own.  Statistics are left out
    by the kernel (they are most of each message).
    """
    from ovsfab.plumbing.pyroute2_private import lean_link_message  # noqa: PLC0415
    from ovsfab.netlink.rtnl import RTEXT_FILTER_SKIP_STATS  # noqa: PLC0415

    cls = lean_link_message(LINK_ATTRS)
    if cls is None:
        from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg as cls  # noqa: PLC0415, N813
    msg = cls()
    msg["attrs"] = [("IFLA_EXT_MASK", RTEXT_FILTER_SKIP_STATS)]
    return msg


def _netlink_error(exc: OSError, what: str) -> OvsfabError:
    # Imported only on failure: plumbing.links is a big module (~20 ms) show does not otherwise need.
    from ovsfab.plumbing.links import netlink_error  # noqa: PLC0415

    return netlink_error(exc, what)


def dump_links(sock: Any) -> Dict[int, LinkFacts]:
    """All links of the namespace the :class:`~ovsfab.netlink.rtnl.Rtnl` ``sock`` lives in, by ifindex (one dump)."""
    from ovsfab.netlink.rtnl import RTM_GETLINK  # noqa: PLC0415

    try:
        return {lf.index: lf for lf in (parse_link(m) for m in sock.dump(_link_request(), RTM_GETLINK))}
    except OSError as exc:
        raise _netlink_error(exc, "cannot list links") from exc


def dump_addresses(sock: Any) -> Dict[int, List[str]]:
    """Global-scope addresses by ifindex, as ADDR/PREFIX (one dump)."""
    from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg  # noqa: PLC0415

    from ovsfab.netlink.rtnl import RTM_GETADDR  # noqa: PLC0415

    out: Dict[int, List[str]] = {}
    try:
        msgs = sock.dump(ifaddrmsg(), RTM_GETADDR)
    except OSError as exc:
        raise _netlink_error(exc, "cannot list addresses") from exc
    for msg in msgs:
        # Link-local and host-scope addresses are the kernel's own, not configuration.
        if msg["scope"] != 0:
            continue
        out.setdefault(int(msg["index"]), []).append(f"{msg.get_attr('IFA_ADDRESS')}/{msg['prefixlen']}")
    return out


def linux_bridges(links: Mapping[int, LinkFacts]) -> List[BridgeFacts]:
    """Every Linux bridge in this namespace, members classified by link kind (and ovsfab's alias record)."""
    out = []
    for br in links.values():
        if br.kind != "bridge":
            continue
        # Imported only when there is a Linux bridge (no pyroute2/ovs import, but a big module).
        from ovsfab.backends.linux_record import decode_record  # noqa: PLC0415
        ports = []
        for ln in links.values():
            if ln.master != br.index:
                continue
            cls = "foreign"
            if ln.tunnel is not None:
                cls = "tunnel"
            elif is_uplink_link(ln):
                cls = "uplink"
            # -- Linux-bridge backend: ownership recorded in the interface alias --
            ids = decode_record(ln.alias) or {}
            owner = owner_of(ids, {}) if ids else None
            role = ids.get(KEY_ROLE)
            if role in ("uplink", "tunnel"):
                cls = role
            elif owner is not None:
                cls = "attachment"
            vlan = ids.get(KEY_VLAN)
            ports.append(PortFacts(name=ln.name, cls=cls, interface_type=ln.kind or "system",
                                   ifindex=ln.index, link_state=ln.oper_state, tunnel=ln.tunnel,
                                   owner=owner, vlan=int(vlan) if vlan and vlan.isdigit() else None))
        # A bridge the Linux backend created carries its record in its alias;
        # any other Linux bridge (and what is plugged into it untagged) is foreign.
        owned = (decode_record(br.alias) or {}).get(KEY_ROLE) == "bridge"
        out.append(BridgeFacts(name=br.name, kind="linux", datapath=None, owned=owned,
                               ports=sorted(ports, key=lambda p: p.name)))
    return sorted(out, key=lambda b: b.name)


