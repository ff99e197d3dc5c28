#!/usr/bin/env python3
"""What each private interface of a library buys, measured (issue #17, "Private interfaces").

Run inside a simulated host kept by ``bench/bench_show.py --hold --state FILE``
(300 attachments on ``br0``)::

    sudo .venv/bin/python bench/bench_private.py --reuse FILE [--runs 9]

For each private interface ovsfab uses (or used), the same work is timed
with it and with the library's public API, interleaved, and the median CPU
time (``time.process_time``; the machine is shared, CPU time moves much less
than wall time) and wall time are printed in ms:

``parser``
    One IDL sync of the columns ``show`` reads, python-ovs's own
    pure-Python JSON parser against :mod:`ovsfab.backends.ovs.fastjson`
    installed through ``ovs.json.Parser``.
``rows``
    Reading the rows ``show`` reads (``ops.inspect_ovsdb.ovs_bridges``): from the
    synced Datum (``Row._data``) against ``Row.__getattr__``.
``import``
    A fresh interpreter importing what a link dump needs: ``import
    pyroute2`` (its package ``__init__``) against the package initialised
    lazily.
``dump``
    One link dump of the host's namespace turned into ``LinkFacts``: pyroute2's
    IPRoute with its own ifinfmsg, IPRoute with a lean ifinfmsg subclass
    (name-mangled internals), and a bare rtnetlink socket asking the kernel to
    leave out statistics (``IFLA_EXT_MASK``), decoded by the public ifinfmsg.
``ethtool``
    Reading a veth's offload features in a container's namespace:
    ``IoctlEthtool.__new__`` on a socket made there, ``IoctlEthtool()``
    created while in the namespace, and ovsfab's kernel-ABI ethtool.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Tuple

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _time(fn: Callable[[], object]) -> Tuple[float, float]:
    c0, w0 = time.process_time(), time.perf_counter()
    fn()
    return (time.process_time() - c0) * 1000, (time.perf_counter() - w0) * 1000


def _rounds(variants: Dict[str, Callable[[], object]], runs: int) -> None:
    cpu: Dict[str, List[float]] = {k: [] for k in variants}
    wall: Dict[str, List[float]] = {k: [] for k in variants}
    for fn in variants.values():
        fn()  # warm: first-use costs (imports, class tables) are not what is compared
    for _ in range(runs):
        for name, fn in variants.items():
            c, w = _time(fn)
            cpu[name].append(c)
            wall[name].append(w)
    for name in variants:
        print(f"  {name:58s} CPU {statistics.median(cpu[name]):7.1f} ms"
              f"   wall {statistics.median(wall[name]):7.1f} ms"
              f" ({min(wall[name]):.1f}-{max(wall[name]):.1f})", flush=True)


def bench_parser(runs: int) -> None:
    import ovs.json

    from ovsfab.backends.ovs import fastjson, python_ovs_private
    from ovsfab.ops.inspect import open_ovsdb

    own = python_ovs_private.python_ovs_parser()

    def sync(parser: object) -> Callable[[], object]:
        def run() -> None:
            # IdlSession makes python-ovs use fastjson; that call is turned off
            # here so that each variant keeps the parser it names.
            saved = python_ovs_private.use_fast_parser
            python_ovs_private.use_fast_parser = lambda: False
            ovs.json.Parser = parser
            try:
                open_ovsdb(None, 30.0).close()
            finally:
                ovs.json.Parser = own
                python_ovs_private.use_fast_parser = saved
        return run

    print("parser: one IDL sync of show's columns (300 Port + 300 Interface rows)")
    _rounds({"python-ovs pure-Python parser (public)": sync(own),
             "fastjson through ovs.json.Parser (private)": sync(fastjson.StreamParser)}, runs)


def bench_rows(runs: int) -> None:
    from ovsfab.backends.ovs import python_ovs_private
    from ovsfab.ops import inspect

    session = inspect.open_ovsdb(None, 30.0)
    private = python_ovs_private._datum

    def read(datum: Callable[..., object]) -> Callable[[], object]:
        # _datum None: every reader takes its public fallback, getattr().
        def run() -> None:
            python_ovs_private._datum = datum
            try:
                inspect.ovs_bridges(session, {})
            finally:
                python_ovs_private._datum = private
        return run

    print("rows: ovs_bridges() over 300 ports")
    _rounds({"Row.__getattr__ (public)": read(lambda row, column: None),
             "Row._data (private)": read(private)}, runs)
    session.close()


def bench_import(runs: int) -> None:
    lazy = ("from ovsfab.plumbing import pyroute2_private; pyroute2_private.defer_package_init(); ")
    stmts = {
        "import pyroute2; IPRoute (public)": "from pyroute2 import IPRoute",
        "import pyroute2; rtnl messages only (public)":
            "import pyroute2.netlink.rtnl.ifinfmsg, pyroute2.netlink.rtnl.ifaddrmsg",
        "lazy package init; IPRoute (private)": lazy + "from pyroute2.iproute.linux import IPRoute",
        "lazy package init; rtnl messages only (private)":
            lazy + "import pyroute2.netlink.rtnl.ifinfmsg, pyroute2.netlink.rtnl.ifaddrmsg",
        "python -c pass": "pass",
    }

    def spawn(stmt: str) -> Callable[[], object]:
        def run() -> None:
            subprocess.run([sys.executable, "-c", stmt], check=True, cwd=REPO)
        return run

    print("import: a fresh interpreter (child CPU time)")
    cpu: Dict[str, List[float]] = {k: [] for k in stmts}
    for _ in range(runs):
        for name, stmt in stmts.items():
            before = os.times()
            spawn(stmt)()
            after = os.times()
            cpu[name].append(((after.children_user - before.children_user)
                              + (after.children_system - before.children_system)) * 1000)
    for name in stmts:
        print(f"  {name:58s} CPU {statistics.median(cpu[name]):7.1f} ms"
              f" ({min(cpu[name]):.0f}-{max(cpu[name]):.0f})", flush=True)


def bench_dump(runs: int) -> None:
    from pyroute2 import IPRoute

    from ovsfab.ops import inspect_links as inspect
    from ovsfab.netlink import rtnl

    def lean_class() -> type:
        from ovsfab.plumbing.pyroute2_private import lean_link_message

        return lean_link_message(inspect.LINK_ATTRS)

    def with_ipr(lean: bool) -> Callable[[], object]:
        def run() -> None:
            ipr = IPRoute()
            try:
                if lean:
                    # How ovsfab used it before it had its own socket: the marshal's map is per socket.
                    from pyroute2.netlink.rtnl import RTM_NEWLINK

                    ipr.marshal.msg_map[RTM_NEWLINK] = lean_class()
                links = {m["index"]: inspect.parse_link(m) for m in ipr.get_links()}
                assert len(links) > 300
            finally:
                ipr.close()
        return run

    def bare(lean: bool) -> Callable[[], object]:
        return lambda: _bare(lean)

    def _bare(lean: bool) -> None:
        from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

        with rtnl.Rtnl() as sock:
            msg = (lean_class() if lean else ifinfmsg)()
            msg["attrs"] = [("IFLA_EXT_MASK", rtnl.RTEXT_FILTER_SKIP_STATS)]
            links = {m["index"]: inspect.parse_link(m) for m in sock.dump(msg, rtnl.RTM_GETLINK)}
            assert len(links) > 300

    print("dump: one link dump of the host namespace (300+ links) into LinkFacts")
    variants = {"bare socket, IFLA_EXT_MASK, public ifinfmsg (public)": bare(False),
                "bare socket, IFLA_EXT_MASK, lean ifinfmsg (private)": bare(True),
                "IPRoute, pyroute2's ifinfmsg (public)": with_ipr(False)}
    variants["IPRoute, lean ifinfmsg subclass (private)"] = with_ipr(True)
    _rounds(variants, runs)


def bench_ethtool(runs: int, netns: str) -> None:
    import socket

    from pyroute2.ethtool.ioctl import IoctlEthtool

    from ovsfab.plumbing import ethtool
    from ovsfab.plumbing.netns import Namespace

    ns = Namespace.open(f"/run/netns/{netns}")

    def new_without_init() -> None:
        with ns.entered():
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        eth = IoctlEthtool.__new__(IoctlEthtool)
        eth.sock, eth.ifname, eth.ifreq, eth.stat_names = sock, None, None, None
        eth.change_ifname("eth1")
        eth.get_features()
        sock.close()

    def public() -> None:
        with ns.entered():
            eth = IoctlEthtool()
        eth.change_ifname("eth1")
        eth.get_features()
        eth.close()

    def own() -> None:
        with ns.entered():
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        ethtool.Ethtool(sock).features("eth1")
        sock.close()

    print(f"ethtool: read eth1's features in {netns}")
    _rounds({"IoctlEthtool.__new__ without __init__ (private)": new_without_init,
             "IoctlEthtool() made in the namespace (public)": public,
             "ovsfab.plumbing.ethtool, kernel ABI (public)": own}, runs)
    ns.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--reuse", metavar="STATE", required=True,
                    help="the state file of bench/bench_show.py --hold --state")
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--only", nargs="*", default=["parser", "rows", "import", "dump", "ethtool"])
    ap.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    state = json.loads(Path(args.reuse).read_text())
    if not args.inner:
        # Everything runs inside the simulated host's namespace, as a command would.
        cmd = ["ip", "netns", "exec", state["name"], "env", f"OVS_RUNDIR={state['rundir']}",
               sys.executable, __file__, "--inner", "--reuse", args.reuse, "--runs", str(args.runs),
               "--only", *args.only]
        return subprocess.call(cmd)
    netns = state["variants"]["inspect netns:NAME"][1][len("netns:"):]
    for part in args.only:
        if part == "ethtool":
            bench_ethtool(args.runs, netns)
        else:
            globals()[f"bench_{part}"](args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
