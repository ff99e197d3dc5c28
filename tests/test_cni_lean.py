"""The plugin's start-up: standard library only until the request is with the agent (issue 19, speed).

Pure logic (no OVS, no root): the path a request takes to the agent --
reading the configuration, finding the OVSDB and the agent socket, building
the message -- imports nothing heavy, and builds what the agent runs.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ovsfab.ops.cni_request import environ_of
from ovsfab.ops.cni_where import lookup

pytestmark = pytest.mark.unprivileged

#: json pulls in re and enum; the rest are what the in-process run imports.
HEAVY = {"json", "re", "enum", "typing", "dataclasses", "logging", "subprocess", "ipaddress", "ovs", "pyroute2"}


def test_the_hand_off_path_imports_nothing_heavy(tmp_path):
    conf = tmp_path / "ovs.conf"
    conf.write_text(json.dumps({"socket_file": "/nonexistent/db.sock"}))
    code = ("import sys\nfrom ovsfab.cni import plugin\n"
            f"stdin = b'{{\"cniVersion\": \"1.0.0\", \"name\": \"n\", \"bridge\": \"br0\", "
            f"\"configuration_path\": \"{conf}\"}}'\n"
            "assert plugin.via_agent(stdin, {'CNI_COMMAND': 'ADD'}) is None  # no agent listens there\n"
            "msg = plugin.message(stdin, {'CNI_COMMAND': 'ADD'})\n"
            "assert msg['context']['db'] == 'unix:/nonexistent/db.sock', msg\n"
            f"print(sorted(set({sorted(HEAVY)!r}) & {{m.split('.')[0] for m in sys.modules}}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out


def test_the_message_carries_the_raw_request():
    from ovsfab.cni import plugin

    stdin = '{"cniVersion": "1.0.0", "name": "n", "bridge": "br0", "ovsdb": "unix:/x/db.sock", "k": "\\u00e9"}'
    env = {"CNI_COMMAND": "DEL", "CNI_ARGS": "A=1;B=2", "OVSFAB_INJECT_FAULT": "plug"}
    msg = plugin.message(stdin.encode(), env)
    assert msg["op"] == "cni.request" and msg["params"]["stdin"].encode() == stdin.encode()
    assert environ_of(msg["params"]["env"]) == env
    assert msg["context"] == {"db": "unix:/x/db.sock", "backend": "auto", "fault": "plug", "docker_host": None}
    assert plugin.message(b"[1]", env) is None and plugin.message(b"\xff{", env) is None


@pytest.mark.parametrize("conf,want", [
    ({}, ("unix:/var/run/openvswitch/db.sock", None)),
    ({"socket_file": "/r/db.sock", "ovs_netns": "h1"}, ("unix:/r/db.sock", "/run/netns/h1")),
    ({"socket_file": "tcp:1.2.3.4:6640", "ovsdb": "unix:/o/db.sock"}, ("unix:/o/db.sock", None)),
    ({"ovsdb": 5, "ovs_netns": "/proc/1/ns/net"}, ("unix:/var/run/openvswitch/db.sock", "/proc/1/ns/net")),
    ({"configuration_path": "/nonexistent/ovs.conf"}, ("unix:/var/run/openvswitch/db.sock", None)),
])
def test_lookup_agrees_with_the_checked_parse(conf, want):
    """The lean lookup picks the OVSDB and namespace the checked parse picks (where the parse accepts)."""
    from ovsfab.ops import cni_config
    from ovsfab.ops.cni_errors import CniError

    assert lookup(conf, json.load) == want
    doc = {"cniVersion": "1.0.0", "name": "n", "bridge": "br0", **conf}
    try:
        req = cni_config.parse(json.dumps(doc).encode(), {"CNI_COMMAND": "DEL", "CNI_CONTAINERID": "c",
                                                          "CNI_IFNAME": "eth0"})
    except CniError:
        assert conf.get("ovsdb") == 5 or "configuration_path" in conf
        return
    assert (req.db, req.ovs_netns) == want


def test_the_integration_bridge_is_ovns():
    """cni_config keeps its own copy of the name (importing ovn.control costs python-ovs)."""
    from ovsfab.ops import cni_config
    from ovsfab.ovn.control import INTEGRATION_BRIDGE

    assert cni_config.INTEGRATION_BRIDGE == INTEGRATION_BRIDGE
