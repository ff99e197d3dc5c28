"""Fuzz of CNI requests (issues 19 and 22): generated and mutated network configurations and CNI_* environments.

Whatever the runtime sends, the plugin answers with a CNI error object (a
spec code, or ovsfab's 100 + exit code; never 999, the "internal error" of a
bug) and a non-zero exit -- or, for VERSION, the version object.  Volume runs
in-process through :func:`ovsfab.ops.cni_request.handle`; a few examples go
through the installed binary (exit code, one JSON line on stdout, no
traceback on stderr).

Nothing here can change the machine: every OVSDB remote the request could use
is a socket that does not exist, CNI_PATH is an empty directory (no IPAM
plugin runs), and the namespaces named do not exist (or are this one, which
ADD refuses before it touches anything).  The only thing ever written is
ovsfab's own IPAM's empty lock file.
"""
from __future__ import annotations

import json
import os
import subprocess
import tempfile

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cni_schema
from ovsfab import errors
from ovsfab.ops.cni_request import handle

NOWHERE = "unix:/nonexistent-ovsfab-fuzz/db.sock"
CNI_PATH = tempfile.mkdtemp(prefix="ovsfab-fuzz-cnipath-")
PLUGIN = "/usr/lib/cni/ovsfab"
#: The spec's codes the plugin uses, and ovsfab's own (100 + exit code).
CODES = {1, 2, 3, 4, 5, 6, 7, 11, 50} | {100 + c.exit_code for c in vars(errors).values()
                                         if isinstance(c, type) and issubclass(c, errors.OvsfabError)}
VERSIONS = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]

_junk = st.none() | st.booleans() | st.integers(-5, 70000) | st.text(max_size=20) | st.floats(allow_nan=False)
_json = st.recursive(_junk, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                       max_size=3), max_leaves=8)


def usually(good, bad=_junk):
    """``good`` five times in six, else ``bad``: deep enough to get past the first checks."""
    return st.integers(0, 5).flatmap(lambda n: bad if n == 5 else good)


_name = st.sampled_from(["br0", "eth0", "", "x" * 16, "a/b", "a:b", "ok.1", " sp"]) | st.text(max_size=17)
_ipam = st.fixed_dictionaries({"type": usually(st.sampled_from(["host-local", "static", "dhcp", "ovsfab", "ovsfab", "", "../x"]))}, optional={
    "subnet": usually(st.sampled_from(["10.9.0.0/24", "10.9.0.0/31", "fd00::/64", "nope"])),
    "rangeStart": usually(st.sampled_from(["10.9.0.5", "10.8.0.1", "fd00::5"])),
    "rangeEnd": usually(st.sampled_from(["10.9.0.9", "10.9.0.255"])),
    "gateway": usually(st.sampled_from(["10.9.0.1", "fd00::1"])),
    "ranges": usually(st.just([[{"subnet": "10.9.0.0/24"}]]), _json),
    "routes": usually(st.just([{"dst": "0.0.0.0/0"}]) | st.just([{"dst": "nope"}]), _json),
}) | _json
_prev = st.fixed_dictionaries({}, optional={
    "cniVersion": usually(st.sampled_from(VERSIONS)),
    "interfaces": st.just([{"name": "eth0", "sandbox": "/run/netns/nonexistent-ovsfab-fuzz"}]) | _json,
    "ips": st.just([{"address": "10.9.0.5/24", "interface": 0}]) | st.just([{"address": "nope"}]) | _json,
    "routes": _json}) | _json

CONFIG = st.fixed_dictionaries({
    "cniVersion": usually(st.sampled_from(VERSIONS)), "name": usually(st.just("net1")),
    "type": st.just("ovsfab"), "bridge": usually(_name), "ovsdb": st.just(NOWHERE),
}, optional={
    "vlan": usually(st.integers(-2, 4100)), "mtu": usually(st.integers(0, 70000)),
    "trunk": st.lists(st.fixed_dictionaries({}, optional={"id": st.integers(-1, 4100) | _junk,
                                                           "minID": st.integers(-1, 4100), "maxID": st.integers(-1, 4100)}),
                      max_size=3) | _json,
    "mac": usually(st.sampled_from(["02:00:00:00:00:01", "01:00:00:00:00:01", "zz"])),
    "ofport_request": usually(st.integers(-1, 70000)), "ipam": _ipam, "prevResult": _prev,
    "runtimeConfig": st.just({"mac": "02:00:00:00:00:02"}) | _json,
    "configuration_path": usually(st.sampled_from(["", "", "/nonexistent-ovsfab-fuzz/ovs.conf"])),
    "socket_file": usually(st.sampled_from(["/nonexistent-ovsfab-fuzz/db.sock", "tcp:"])),
    "ovs_netns": usually(st.sampled_from(["nonexistent-ovsfab-fuzz", "/nonexistent-ovsfab-fuzz", "", "/proc/1/ns/net"])),
    "network": usually(st.none(), _json), "deviceID": usually(st.none(), _json), "cni.dev/valid-attachments": st.just([{"containerID": "c", "ifname": "e"}])
    | _json,
})

ENV = st.fixed_dictionaries({
    "CNI_COMMAND": usually(st.sampled_from(["ADD", "DEL", "CHECK", "VERSION", "STATUS", "GC"]),
                           st.sampled_from(["add", ""]) | st.text(max_size=6)),
    # None: not set (dropped by _env)
    "CNI_CONTAINERID": usually(st.sampled_from(["c1", "c2"]), st.none() | st.sampled_from(["x" * 300, "a/b", ""])
                               | st.text(max_size=20)),
    "CNI_IFNAME": usually(st.just("eth0"), st.none() | _name),
    "CNI_NETNS": usually(st.sampled_from(["/run/netns/nonexistent-ovsfab-fuzz", "/proc/self/ns/net"]),
                         st.none() | st.sampled_from(["relative", ""]) | st.text(max_size=12)),
    "CNI_ARGS": usually(st.sampled_from(["K8S_POD_NAME=p;MAC=02:00:00:00:00:03", "MAC=zz", ";;=", "IgnoreUnknown=1"]),
                        st.none() | st.text(max_size=20)),
})


def _mutate(conf: dict, how: int, data: st.DataObject) -> bytes:
    """The configuration as the runtime would send it (``how`` 0 or above 5), or broken in one of a few ways."""
    if how == 1:
        conf.pop(data.draw(st.sampled_from(sorted(conf))), None)
    elif how == 2:
        conf[data.draw(st.sampled_from(sorted(conf)))] = data.draw(_json)
    # OVSDB stays out of reach whatever was drawn: a remote that is a string
    # is replaced (a non-string one is refused before anything connects).
    for key in ("ovsdb", "socket_file"):
        if isinstance(conf.get(key), str) and conf[key]:
            conf[key] = NOWHERE
    text = json.dumps(conf).encode()
    if how == 3:
        return text[:data.draw(st.integers(0, len(text)))]
    if how == 4:
        return json.dumps([conf]).encode()
    if how == 5:
        return data.draw(st.binary(max_size=40))
    return text


def _env(env: dict) -> dict:
    return {**{k: v for k, v in env.items() if v is not None}, "CNI_PATH": CNI_PATH, "OVSFAB_NO_AGENT": "1"}


def _check(code: int, out, command: str) -> None:
    if code == 0:
        assert command == "VERSION", (command, out)
        jsonschema.validate(out, cni_schema.VERSION)
        return
    assert code == 1
    jsonschema.validate(out, cni_schema.ERROR)
    assert out["code"] in CODES, out


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conf=CONFIG, env=ENV, how=st.integers(0, 11), data=st.data())
def test_any_request_gets_a_cni_error_object_or_the_version(conf, env, how, data):
    stdin = _mutate(conf, how, data)
    code, out = handle(stdin, _env(env))
    _check(code, out, env["CNI_COMMAND"])


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conf=CONFIG, env=ENV, how=st.integers(0, 11), data=st.data())
def test_the_binary_exits_non_zero_with_one_error_line(conf, env, how, data):
    if not os.access(PLUGIN, os.X_OK):
        pytest.fail(f"{PLUGIN} is missing: run scripts/setup.sh", pytrace=False)
    stdin = _mutate(conf, how, data)
    env = {k: v.replace("\0", "") if v is not None else v for k, v in env.items()}  # no NUL in an environment
    cp = subprocess.run([PLUGIN], input=stdin, env={"PATH": os.environ["PATH"], **_env(env)}, capture_output=True,
                        timeout=60)
    assert b"Traceback" not in cp.stderr, cp.stderr.decode(errors="replace")
    assert cp.stdout.count(b"\n") == 1, cp.stdout
    _check(cp.returncode, json.loads(cp.stdout), env["CNI_COMMAND"])
