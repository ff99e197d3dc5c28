"""How ``ovsfab inspect`` / ``ovsfab show`` draw their trees (called by :mod:`ovsfab.cli.render`).

Standard library only: the lean client renders with it, whether the agent or
this process ran the operation, so every path prints the very same text.
The tree is for people, in the spirit of docker-network-inspect; ``--json``
prints the same facts in the schema documented in docs/json.md.  Colour is
used only on a terminal, and never when NO_COLOR is set.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # no typing import at run time (the lean client's start-up cost)
    from typing import Any, Dict, List, Optional, Sequence, TextIO

# Tree drawing, as in docker-network-inspect.
TEE, ELBOW, PIPE, BLANK = "├── ", "└── ", "│   ", "    "
ARROW = "→"

_ANSI = {"bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33", "cyan": "36"}

#: The order the tree lists a bridge's ports in (JSON keeps name order).
_CLASS_ORDER = {"attachment": 0, "ovs-docker": 1, "foreign": 2, "patch": 3, "internal": 4,
                "uplink": 5, "tunnel": 6}




def use_colour(stream: Optional[TextIO] = None) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (no-color.org)."""
    if "NO_COLOR" in os.environ:
        return False
    stream = stream if stream is not None else sys.stdout
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Painter:
    """Wraps text in ANSI codes when colour is on; a no-op otherwise."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, text: str, *styles: str) -> str:
        if not self.enabled or not styles or not text:
            return text
        codes = ";".join(_ANSI[s] for s in styles)
        return f"\x1b[{codes}m{text}\x1b[0m"


def tree(root: str, children: Sequence[Any]) -> List[str]:
    """Lines of a tree; ``children`` are (label, [children...]) pairs."""
    lines = [root]

    def walk(nodes: Sequence[Any], prefix: str) -> None:
        for i, (label, kids) in enumerate(nodes):
            last = i == len(nodes) - 1
            lines.append(prefix + (ELBOW if last else TEE) + label)
            walk(kids, prefix + (BLANK if last else PIPE))

    walk(children, "")
    return lines


def _join(*parts: Optional[str], sep: str = "  ") -> str:
    return sep.join(p for p in parts if p)


# -- ports -------------------------------------------------------------------
def _tunnel_text(tun: Optional[Dict[str, Any]]) -> str:
    if not tun:
        return "tunnel"
    text = f"tunnel {tun.get('type') or '?'}"
    if tun.get("remote_ip"):
        text += f"{ARROW}{tun['remote_ip']}"
    if tun.get("key"):
        text += f" key {tun['key']}"
    bfd = tun.get("bfd")
    if bfd:
        text += f"  bfd {bfd.get('state') or 'pending'}"
        if bfd.get("state") != "up" and bfd.get("diagnostic") not in (None, "No Diagnostic"):
            text += f" ({bfd['diagnostic']})"
    return text


def _stale_text(port: Dict[str, Any], paint: Painter) -> Optional[str]:
    if not port.get("stale"):
        return None
    reasons = ", ".join(r.replace("-", " ") for r in port["stale_reasons"])
    return paint(f"STALE ({reasons})", "red", "bold")


def _owner_text(port: Dict[str, Any], paint: Painter) -> Optional[str]:
    owner = port.get("owner")
    if not owner:
        return None
    text = f"{paint(owner['container'] or owner['container_id'], 'green')} {owner['ifname']}".rstrip()
    return text + (" (ovs-docker)" if owner["tool"] == "ovs-docker" else "")


def port_line(port: Dict[str, Any], paint: Painter) -> str:
    """One port of ``show``: name, OpenFlow facts, owner or class, health."""
    cls = port["class"]
    if cls in ("attachment", "ovs-docker"):
        what = _owner_text(port, paint)
    elif cls == "tunnel":
        what = paint(_tunnel_text(port.get("tunnel")), "cyan")
        if port.get("link_state"):
            what += f" {port['link_state']}"
    elif cls == "patch":
        what = f"patch{ARROW}{port.get('patch_peer') or '?'}"
    elif cls == "foreign":
        what = paint("foreign", "dim")
    else:
        what = paint(cls, "cyan") if cls == "uplink" else cls
    return _join(port["name"],
                 f"ofport {port['ofport']}" if port.get("ofport") is not None else None,
                 f"vlan {port['vlan']}" if port.get("vlan") is not None else None,
                 what, _stale_text(port, paint))


def _bridge_label(br: Dict[str, Any], paint: Painter) -> str:
    if br["kind"] == "ovs":
        desc = f"ovs {br['datapath']}" + (", ovsfab" if br.get("ovsfab_owned") else "")
    else:
        desc = "linux bridge"
    return f"{paint(br['name'], 'bold')} ({desc})"


def render_show(data: Dict[str, Any], paint: Painter) -> str:
    """The ``show`` tree: one root per bridge."""
    out: List[str] = []
    for br in data["bridges"]:
        # The bridge's own local port (named after it) is noise for people; JSON has it.
        ports = [p for p in br["ports"] if not (p["class"] == "internal" and p["name"] == br["name"])]
        ports.sort(key=lambda p: (_CLASS_ORDER.get(p["class"], 9), p["name"]))
        kids = [(port_line(p, paint), []) for p in ports]
        if not kids:
            kids = [(paint("no ports", "dim"), [])]
        out.extend(tree(_bridge_label(br, paint), kids))
    if not out:
        out.append("no bridges")
    return "\n".join(out)


# -- inspect -----------------------------------------------------------------
def _state_text(iface: Dict[str, Any], paint: Painter) -> str:
    if iface["state"] != "up":
        return paint("down", "red")
    if iface["oper_state"] in ("up", "unknown"):
        return "up"
    return paint(f"up, {iface['oper_state']}", "yellow")


def _peer_node(iface: Dict[str, Any], ovs_status: str, paint: Painter) -> Any:
    peer = iface["peer"]
    if peer["in_container"]:
        return (f"{peer['name'] or '?'} (ifindex {peer['ifindex']}) inside the container", [])
    if not peer["in_host_namespace"]:
        return (paint(f"peer ifindex {peer['ifindex']} in another namespace (netnsid {peer['netnsid']})",
                      "dim"), [])
    head = f"{peer['name']} (ifindex {peer['ifindex']}) ─ "
    br = peer["bridge"]
    if br is None:
        if ovs_status == "unavailable":
            return (head + paint("bridge unknown (OVS unavailable)", "yellow"), [])
        return (head + paint("no bridge", "dim"), [])
    port = br.get("port") or {}
    head += _join(_bridge_label(br, paint),
                  f"ofport {port['ofport']}" if port.get("ofport") is not None else None,
                  f"vlan {port['vlan']}" if port.get("vlan") is not None else None,
                  "(ovs-docker)" if port.get("class") == "ovs-docker" else None,
                  _stale_text(port, paint), sep=" ")
    kids = [(_join(f"{paint('uplink', 'cyan')} {u['name']}", _stale_text(u, paint)), [])
            for u in br["uplinks"]]
    for t in br["tunnels"]:
        kids.append((_join(paint(_tunnel_text(t.get("tunnel")), "cyan"), t.get("link_state"),
                           _stale_text(t, paint)), []))
    return (head, kids)


def render_inspect(data: Dict[str, Any], paint: Painter) -> str:
    """The ``inspect`` tree: container, interfaces, peers, bridges."""
    c = data["container"]
    if c["kind"] == "docker":
        ident = [c["short_id"], f"pid {c['pid']}" if c["pid"] else None]
    elif c["kind"] == "pid":
        ident = [f"pid {c['pid']}"]
    else:
        ident = [c["target"]]
    root = f"{paint(c['name'], 'bold')} ({', '.join(p for p in ident + [c['state']] if p)})"
    kids = []
    for iface in data["interfaces"]:
        label = _join(paint(iface["name"], "bold"),
                      f"[{iface['kind']}]" if iface["kind"] not in (None, "veth") else None,
                      " ".join(iface["addresses"]) or None, iface["mac"],
                      f"mtu {iface['mtu']}", _state_text(iface, paint),
                      f"(docker network {iface['docker_network']})" if iface["docker_network"] else None)
        sub = [_peer_node(iface, data["ovs"]["status"], paint)] if iface["peer"] else []
        kids.append((label, sub))
    if not kids:
        kids = [(paint("no interfaces", "dim"), [])]
    return "\n".join(tree(root, kids))


# -- the commands, without typer ----------------------------------------------
