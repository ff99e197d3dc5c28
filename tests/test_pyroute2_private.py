"""Guard tests: the pyroute2 internals in plumbing/pyroute2_private.py still work.

They fail when a pyroute2 upgrade changes what that module relies on (the
package layout that lets its ``__init__`` wait, the name-mangled decoding
table of ifinfmsg), rather than ovsfab silently taking the slow path or
misreading links.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import testbed as tb

from ovsfab.ops.inspect_links import LINK_ATTRS, parse_link
from ovsfab.plumbing.netns import Namespace
from ovsfab.plumbing.pyroute2_private import lean_link_message
from ovsfab.netlink.rtnl import RTEXT_FILTER_SKIP_STATS, RTM_GETLINK, Rtnl

_LOADED = ("import sys\n"
           "import pyroute2.netlink.rtnl.ifinfmsg, pyroute2.netlink.rtnl.ifaddrmsg, pyroute2.netlink.rtnl.nsidmsg\n"
           "print(sorted(m for m in sys.modules if m.startswith('pyroute2')))\n")


def _modules(prefix: str) -> set:
    cp = subprocess.run([sys.executable, "-c", prefix + _LOADED], capture_output=True, text=True, check=True)
    return set(eval(cp.stdout))  # noqa: S307 - our own child's repr of a list of str


@pytest.mark.unprivileged
def test_deferred_init_imports_much_less_and_the_package_still_works():
    deferred = _modules("from ovsfab.plumbing.pyroute2_private import defer_package_init\n"
                        "assert defer_package_init()\n")
    full = _modules("")
    # The measured saving (~130 ms) is these modules not being imported.
    assert len(full - deferred) >= 50, (len(full), len(deferred))
    assert not deferred - full
    check = ("import sys\n"
             "from ovsfab.plumbing.pyroute2_private import defer_package_init\n"
             "assert defer_package_init() and not defer_package_init()\n"
             "import pyroute2.netlink.rtnl.ifinfmsg\n"
             "assert '__getattr__' in vars(sys.modules['pyroute2']), 'the __init__ ran at a submodule import'\n"
             "from pyroute2 import IPRoute, config\n"  # a package-level name runs the real __init__, once
             "import pyroute2, pyroute2.iproute.linux\n"
             "assert '__getattr__' not in vars(pyroute2) and pyroute2.IPRoute is IPRoute\n"
             "assert pyroute2.config is sys.modules['pyroute2.config']\n"
             "with IPRoute() as ipr: assert any(l.get_attr('IFLA_IFNAME') == 'lo' for l in ipr.get_links())\n")
    subprocess.run([sys.executable, "-c", check], check=True)


@pytest.fixture
def many_kinds():
    """A netns holding links of every kind show reads facts from, and a veth to another netns."""
    a, b = tb.make_netns(), tb.make_netns()
    ip = ["ip", "-n", a.name]
    for cmd in (["link", "add", "br9", "type", "bridge"],
                ["link", "add", "v0", "type", "veth", "peer", "name", "v1", "netns", b.name],
                ["link", "set", "v0", "master", "br9", "up"],
                ["link", "set", "v0", "alias", "ovsfab:some record"],
                ["link", "add", "vx9", "type", "vxlan", "id", "42", "remote", "192.0.2.7", "local", "192.0.2.1",
                 "dstport", "4789"],
                ["link", "add", "w0", "type", "veth", "peer", "name", "w1"]):
        tb.run(ip + cmd)
    # Not every kernel has geneve and gre (this one may not): checked when they are there.
    tb.run(ip + ["link", "add", "gnv9", "type", "geneve", "id", "7", "remote", "192.0.2.8"], check=False)
    tb.run(ip + ["link", "add", "gre9", "type", "gre", "remote", "192.0.2.9", "local", "192.0.2.1", "okey", "5"],
           check=False)
    yield a
    tb.delete_netns(a.name)
    tb.delete_netns(b.name)


def _dump(ns: Namespace, cls: type) -> dict:
    with ns.entered():
        sock = Rtnl()
    with sock:
        msg = cls()
        msg["attrs"] = [("IFLA_EXT_MASK", RTEXT_FILTER_SKIP_STATS)]
        return {m["index"]: parse_link(m) for m in sock.dump(msg, RTM_GETLINK)}


def test_lean_link_message_gives_the_facts_pyroute2s_own_class_gives(many_kinds):
    from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

    lean = lean_link_message(LINK_ATTRS)
    assert lean is not None, "pyroute2's ifinfmsg internals changed: lean decoding is off (~85 ms per dump)"
    ns = Namespace.open(many_kinds.netns_path)
    try:
        full, mine = _dump(ns, ifinfmsg), _dump(ns, lean)
    finally:
        ns.close()
    assert mine == full, [(full[i], mine.get(i)) for i in full if full[i] != mine.get(i)][:3]
    by_name = {ln.name: ln for ln in mine.values()}
    assert {"br9", "v0", "vx9", "w0", "w1", "lo"} <= set(by_name)
    assert by_name["w0"].link_netnsid is None and by_name["w0"].link_index == by_name["w1"].index
    v0 = by_name["v0"]
    assert v0.kind == "veth" and v0.master == by_name["br9"].index and v0.link_netnsid is not None
    assert v0.alias == "ovsfab:some record" and v0.mac and v0.mtu == 1500
    assert by_name["vx9"].tunnel == {"type": "vxlan", "remote_ip": "192.0.2.7", "local_ip": "192.0.2.1",
                                     "key": "42", "dst_port": "4789", "bfd": None}
    if "gnv9" in by_name:
        assert by_name["gnv9"].tunnel["remote_ip"] == "192.0.2.8" and by_name["gnv9"].tunnel["key"] == "7"
    if "gre9" in by_name:
        assert by_name["gre9"].tunnel["remote_ip"] == "192.0.2.9" and by_name["gre9"].tunnel["key"] == "5"
