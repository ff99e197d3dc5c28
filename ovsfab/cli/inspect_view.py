"""How ``ovsfab inspect`` / ``ovsfab show`` print, and their typer-free path.

Everything here imports the standard library only (the facts come from
:mod:`ovsfab.ops.inspect`, imported when a command runs), so that the three
ways of running the commands print the very same text:

* the typer commands (:mod:`ovsfab.cli.inspect_cmd`), for everything typer
  must parse or render (``--help``, usage errors, ``--debug``);
* :func:`direct`, called by the console entry (:mod:`ovsfab.cli.fast`) when
  no agent serves the command and the command line is a plain one: it skips
  importing typer, click and every other command (~150-200 ms per call);
* the agent (:mod:`ovsfab.agent.server`), which runs the typer command for a
  client whose terminal is not its own: :data:`CLIENT_STDOUT_TTY` tells
  :func:`use_colour` what the client's stdout is.

The tree is for people, in the spirit of docker-network-inspect; ``--json``
prints the same facts in the schema documented in docs/json.md.  Colour is
used only on a terminal, and never when NO_COLOR is set.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence, TextIO, Tuple

# Tree drawing, as in docker-network-inspect.
TEE, ELBOW, PIPE, BLANK = "├── ", "└── ", "│   ", "    "
ARROW = "→"

_ANSI = {"bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33", "cyan": "36"}

#: The order the tree lists a bridge's ports in (JSON keeps name order).
_CLASS_ORDER = {"attachment": 0, "ovs-docker": 1, "foreign": 2, "patch": 3, "internal": 4,
                "uplink": 5, "tunnel": 6}


#: Set by the agent for the one command it runs for a client: whether the
#: *client's* stdout is a terminal (the agent's own stdout is a buffer).
#: None: this process's own stdout decides.
CLIENT_STDOUT_TTY: Optional[bool] = None


def use_colour(stream: Optional[TextIO] = None) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (no-color.org)."""
    if "NO_COLOR" in os.environ:
        return False
    if stream is None and CLIENT_STDOUT_TTY is not None:
        return CLIENT_STDOUT_TTY
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
#: echo(text, err): print one line, as typer.echo would (stdout, or stderr when err).
Echo = Callable[[str, bool], None]


def _print_notes(notes: List[str], echo: Echo) -> None:
    for note in notes:
        echo(f"ovsfab: note: {note}", True)


def run_inspect(container: str, as_json: bool, db: Optional[str], echo: Echo) -> None:
    """``ovsfab inspect``: collect, then print the tree (notes on stderr) or JSON.

    Raises OvsfabError for the caller to report.
    """
    from ovsfab.ops.inspect import inspect as do_inspect  # noqa: PLC0415 - pyroute2, python-ovs

    data = do_inspect(container, remote=db).to_json()
    _emit(data, as_json, render_inspect, echo)


def run_show(bridge: Optional[str], as_json: bool, db: Optional[str], backend: Optional[str],
             echo: Echo) -> None:
    """``ovsfab show``: collect, then print the tree (notes on stderr) or JSON.

    Raises OvsfabError for the caller to report.
    """
    from ovsfab.backends.factory import configured_kind  # noqa: PLC0415
    from ovsfab.ops.inspect import show as do_show  # noqa: PLC0415 - pyroute2, python-ovs

    data = do_show(bridge, remote=db, with_ovs=configured_kind(backend) != "linux").to_json()
    _emit(data, as_json, render_show, echo)


def _emit(data: Dict[str, Any], as_json: bool, render: Callable[[Dict[str, Any], Painter], str],
          echo: Echo) -> None:
    if as_json:
        echo(json.dumps(data, sort_keys=True), False)
        return
    text = render(data, Painter(use_colour()))
    _print_notes(data["notes"], echo)
    echo(text, False)


#: Global options a direct command line may carry (each takes a value).
_GLOBAL_OPTS = ("--db", "--backend")
_BACKENDS = ("ovs", "linux", "auto")


def parse_direct(argv: List[str]) -> Optional[Tuple[str, Optional[str], bool, Optional[str], Optional[str]]]:
    """(command, argument, --json, db, backend) for a plain command line, else None.

    Plain: ``[--db X] [--backend X] show [BRIDGE] [--json]`` or ``... inspect
    CONTAINER [--json]`` with a valid backend.  Anything else (help, --debug,
    ``--``, an unknown option, a missing or extra argument, a repeated or
    invalid global option) is left to typer, which parses and reports it.
    """
    opts: Dict[str, str] = {}
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        name, eq, value = argv[i].partition("=")
        if name not in _GLOBAL_OPTS or name in opts:
            return None
        if not eq:
            if i + 1 >= len(argv):
                return None
            value = argv[i + 1]
            i += 1
        if value.startswith("-"):
            return None
        opts[name] = value
        i += 1
    if i >= len(argv) or argv[i] not in ("show", "inspect"):
        return None
    command, rest = argv[i], argv[i + 1:]
    positional = [a for a in rest if a != "--json"]
    if any(a.startswith("-") for a in positional):
        return None
    if len(positional) != 1 and (command == "inspect" or len(positional) > 1):
        return None
    # As the typer options read them (click ignores an empty environment variable).
    db = opts.get("--db", os.environ.get("OVSFAB_DB") or None)
    backend = opts.get("--backend", os.environ.get("OVSFAB_BACKEND") or None)
    if backend is not None and backend not in _BACKENDS:
        return None  # typer's callback reports it
    return command, (positional[0] if positional else None), len(positional) != len(rest), db, backend


def _direct_echo(text: str, err: bool) -> None:
    stream = sys.stderr if err else sys.stdout
    stream.write(text + "\n")
    stream.flush()


def direct(argv: List[str]) -> Optional[int]:
    """Run a plain ``show`` / ``inspect`` in-process without typer; the exit code, or None.

    None means "not a plain command line": the caller runs the typer CLI.
    Messages and exit codes are those of the typer commands (see
    ``ovsfab.cli.common.run`` and the global callback in ``ovsfab.cli.main``).
    """
    parsed = parse_direct(argv)
    if parsed is None:
        return None
    command, arg, as_json, db, backend = parsed
    import logging  # noqa: PLC0415

    from ovsfab.errors import OvsfabError  # noqa: PLC0415

    # As the typer CLI's global callback sets it up.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, force=True,
                        format="ovsfab: %(levelname)s: %(message)s")
    try:
        if command == "show":
            run_show(arg, as_json, db, backend, _direct_echo)
        else:
            assert arg is not None
            run_inspect(arg, as_json, db, _direct_echo)
    except OvsfabError as exc:
        _direct_echo(f"ovsfab: error: {exc}", True)
        return exc.exit_code
    except KeyboardInterrupt:
        _direct_echo("ovsfab: interrupted; the change was rolled back", True)
        return 130
    except BrokenPipeError:
        # As click does: a reader that went away (| head) is not an error
        # message.  What is still buffered would fail again at exit: send it
        # to /dev/null (the recipe of Python's signal module documentation).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except Exception as exc:  # noqa: BLE001 - a bug: one line, as common.run says it
        _direct_echo(f"ovsfab: internal error: {type(exc).__name__}: {exc} "
                     "(rerun with --debug and report it)", True)
        return 1
    return 0
