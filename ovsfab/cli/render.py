"""How every operation's result is printed: the one place that turns result JSON into text.

The in-process CLI and the lean client (which gets the result JSON from the
agent) both call :func:`render`, so their output is the same by construction.
Standard library only: the lean client imports this before anything else.
"""

from __future__ import annotations

from ovsfab.agent import wire

TYPE_CHECKING = False
if TYPE_CHECKING:  # no typing import at run time (start-up cost of the lean client)
    from typing import Any, Callable, Dict, List, Optional, Tuple


class Output:
    """What a command prints: stdout text (one block) and stderr lines, in order."""

    def __init__(self, stdout: str, stderr: "List[str]") -> None:
        self.stdout = stdout
        self.stderr = stderr


def _notes(data: "Dict[str, Any]") -> "List[str]":
    return [f"ovsfab: note: {n}" for n in data.get("notes") or []]


def _attach(d: "Dict[str, Any]") -> str:
    addrs = ", ".join(d.get("addresses") or [])
    if d.get("datapath") == "ovn":
        bound = "bound" if d.get("bound") else "not bound yet"
        if d["changed"]:
            return (f"attached {d['container']} {d['ifname']} ({addrs}) to OVN network {d['network']} "
                    f"as logical port {d['iface_id']} ({bound})")
        return f"{d['container']} {d['ifname']} is already on OVN network {d['network']} ({bound})"
    if d["changed"]:
        # A Linux bridge has no OpenFlow ports: its backend reports the port's ifindex.
        number = f"ifindex {d['ofport']}" if d.get("datapath") == "linux" else f"ofport {d['ofport']}"
        return (f"attached {d['container']} {d['ifname']} ({addrs}) to {d['bridge']} "
                f"as port {d['port']} ({number})")
    return f"{d['container']} {d['ifname']} is already attached to {d['bridge']} as port {d['port']}"


def _detach(d: "Dict[str, Any]", p: "Dict[str, Any]") -> str:
    ifname = p.get("ifname") or "eth1"
    if p.get("network") is not None:
        if "port" not in d:
            return f"{p['container']} has no {ifname} on OVN network {p['network']}; nothing to do"
        return f"detached {d['container']} {ifname} from OVN network {p['network']}"
    if "port" not in d:
        return f"{p['container']} has no {ifname} on {p['bridge']}; nothing to do"
    return f"detached {d['container']} {d['ifname']} from {d['bridge']} (port {d['port']} removed)"


def _tunnel_add(d: "Dict[str, Any]", p: "Dict[str, Any]") -> str:
    if d["changed"]:
        return f"added {d['type']} tunnel {d['name']} on {p['bridge']} to {d['remote']} (key {d['key']})"
    return f"{d['type']} tunnel {d['name']} on {p['bridge']} to {d['remote']} (key {d['key']}) already exists"


def _tunnel_del(d: "Dict[str, Any]", p: "Dict[str, Any]") -> str:
    if "name" in d:
        return f"removed {d['type']} tunnel {d['name']} from {p['bridge']}"
    return f"no such tunnel on {p['bridge']}; nothing to do"


def liveness_summary(b: "Dict[str, Any]") -> str:
    """A tunnel's liveness in a word or two (``bfd up``, ``bfd off``, ``no bfd (linux: carrier up)``)."""
    if not b.get("available"):
        return "no bfd (linux: " + ("carrier up" if b.get("carrier") else "no carrier") + ")"
    if not b.get("enabled"):
        return "bfd off"
    text = f"bfd {b.get('state') or 'pending'}"
    if b.get("state") != "up" and b.get("diagnostic") and b["diagnostic"] != "No Diagnostic":
        text += f" ({b['diagnostic']})"
    return text


def _tunnel_list(d: "Dict[str, Any]") -> str:
    lines = [f"{t['bridge']}\t{t['name']}\t{t['type']}\t{t['remote']}\tkey={t['key']}\t{liveness_summary(t['bfd'])}"
             + (f"\terror: {t['error']}" if t.get("error") else "") for t in d["tunnels"]]
    return "\n".join(lines) if lines else "no tunnels"


def _uplink_add(d: "Dict[str, Any]", p: "Dict[str, Any]") -> str:
    if d["changed"]:
        moved = ", ".join(d.get("addresses") or []) or "no addresses"
        return (f"{p['nic']} is now the uplink of {p['bridge']} ({moved} and {len(d.get('routes') or [])} "
                f"route(s) moved to {p['bridge']})")
    return f"{p['nic']} is already the uplink of {p['bridge']}"


def _uplink_del(d: "Dict[str, Any]", p: "Dict[str, Any]") -> str:
    if "nic" not in d:
        return f"{p['nic']} is not an uplink of {p['bridge']}; nothing to do"
    return f"{p['nic']} removed from {p['bridge']}; its addresses and routes are back on {p['nic']}"


def _uplink_list(d: "Dict[str, Any]") -> str:
    lines = [f"{u['bridge']}\t{u['nic']}\t{u['mac']}\t{','.join(u['addresses']) or '-'}" for u in d["uplinks"]]
    return "\n".join(lines) if lines else "no uplinks"


def _check(d: "Dict[str, Any]") -> str:
    lines = []
    for t in d["tunnels"]:
        rtt = f"{t['underlay_rtt_ms']:.2f} ms" if t.get("underlay_rtt_ms") is not None else "no answer"
        neigh = f", neighbour {t['neighbour_mac']}" if t.get("neighbour_mac") else ""
        lines.append(f"tunnel {t['name']} {t['type']}→{t['remote']}: underlay {rtt}{neigh}, "
                     f"{liveness_summary(t['bfd'])}, path MTU {t['path_mtu']}")
    for pr in d["problems"]:
        lines.append(f"problem: {pr['subject']}: {pr['message']}; {pr['remedy']}")
    lines.append(f"{len(d['tunnels'])} tunnel(s), {d['attachments']} attachment(s): "
                 + ("ok" if d["ok"] else f"{len(d['problems'])} problem(s)"))
    return "\n".join(lines)


#: op -> (text of the result, whether the result's notes go to stderr first)
_TEXT: "Dict[str, Callable[[Dict[str, Any], Dict[str, Any]], str]]" = {
    "attach": lambda d, p: _attach(d),
    "detach": _detach,
    "tunnel.add": _tunnel_add,
    "tunnel.del": _tunnel_del,
    "tunnel.list": lambda d, p: _tunnel_list(d),
    "uplink.add": _uplink_add,
    "uplink.del": _uplink_del,
    "uplink.list": lambda d, p: _uplink_list(d),
    "check": lambda d, p: _check(d),
}


def render(op: str, params: "Dict[str, Any]", data: "Dict[str, Any]", as_json: bool, colour: bool = False) -> Output:
    """The output of operation ``op`` run with ``params``, whose result JSON is ``data``."""
    if as_json:  # notes still go to stderr, except for show/inspect, whose JSON is the whole answer
        return Output(wire.dumps(data, sort_keys=True), [] if op in ("show", "inspect") else _notes(data))
    if op in ("show", "inspect"):
        from ovsfab.cli.inspect_view import Painter, render_inspect, render_show  # noqa: PLC0415 - stdlib only

        text = (render_show if op == "show" else render_inspect)(data, Painter(colour))
        return Output(text, _notes(data))
    return Output(_TEXT[op](data, params), _notes(data))


def render_error(message: str) -> str:
    """The one line every error is printed as."""
    return f"ovsfab: error: {message}"


def verdict(params: "Dict[str, Any]", data: "Dict[str, Any]") -> "Tuple[str, int]":
    """The closing error line and exit code of a result that is not a success (a failed check), else ("", 0)."""
    if data.get("action") == "check" and not data.get("ok"):
        wait = params.get("wait") or 0
        return (render_error(f"{len(data['problems'])} problem(s) found" + (f" after {wait:g} s" if wait else "")
                             + "; each is listed above with its remedy"), 8)
    return "", 0


def failure(exc: BaseException) -> "Tuple[str, Optional[int]]":
    """The one line and exit code every front end prints for an exception (None: let it propagate)."""
    from ovsfab.errors import OvsfabError  # noqa: PLC0415 - stdlib only

    if isinstance(exc, OvsfabError):
        return render_error(str(exc)), exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        return "ovsfab: interrupted; the change was rolled back", 130
    if not isinstance(exc, Exception):  # SystemExit, GeneratorExit
        return "", None
    return (f"ovsfab: internal error: {type(exc).__name__}: {exc} (rerun with --debug and report it)", 1)
