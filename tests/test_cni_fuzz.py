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


#: A value of any JSON type, each type about as likely (a recursive strategy favours containers).
_wrong = st.one_of(st.none(), st.booleans(), st.integers(-5, 70000), st.floats(allow_nan=False), st.text(max_size=10),
                   st.lists(_junk, max_size=2), st.dictionaries(st.text(max_size=5), _junk, max_size=2))


def usually(good, bad=_wrong, one_in: int = 16):
    """``good``, and ``bad`` about once in ``one_in``: a request with ~15 keys must often get past all checks.

    The bad draw is a value inside the range: hypothesis favours the bounds.
    """
    return st.integers(0, one_in - 1).flatmap(lambda n: bad if n == one_in // 2 else good)


def optional(good):
    """Absent (None reads as absent), or ``good``, or now and then any JSON value."""
    return usually(st.none() | good)


_name = st.sampled_from(["br0", "eth0", "", "x" * 16, "a/b", "a:b", "ok.1", " sp"]) | st.text(max_size=17)
_ipam = st.fixed_dictionaries({
    "type": usually(st.just("ovsfab"), st.sampled_from(["host-local", "static", "dhcp", "", "../x"]) | _wrong, one_in=4),
    "subnet": usually(st.sampled_from(["10.9.0.0/24", "fd00::/64", "10.9.0.0/31", "nope"])),
    "rangeStart": optional(st.sampled_from(["10.9.0.5", "10.8.0.1", "fd00::5"])),
    "rangeEnd": optional(st.sampled_from(["10.9.0.9", "10.9.0.255"])),
    "gateway": optional(st.sampled_from(["10.9.0.1", "fd00::1"])),
    "ranges": optional(st.just([[{"subnet": "10.9.0.0/24"}]]) | st.just([[{"subnet": "10.9.0.0/24"}, 5]])),
    "routes": optional(st.lists(st.sampled_from([{"dst": "0.0.0.0/0"}, {"dst": "nope"}, {"gw": 1}]) | _wrong,
                                max_size=2)),
})
_prev = st.fixed_dictionaries({
    "cniVersion": usually(st.sampled_from(VERSIONS)),
    "interfaces": optional(st.just([{"name": "eth0", "sandbox": "/run/netns/nonexistent-ovsfab-fuzz"}])),
    "ips": optional(st.just([{"address": "10.9.0.5/24", "interface": 0}]) | st.just([{"address": "nope"}])
                    | st.lists(_wrong, max_size=2)),
    "routes": optional(st.just([{"dst": "10.0.0.0/8"}]) | st.just([{"dst": 3}]))})

CONFIG = st.fixed_dictionaries({
    "cniVersion": usually(st.sampled_from(VERSIONS)), "name": usually(st.just("net1")),
    "type": st.just("ovsfab"), "bridge": usually(_name), "ovsdb": st.just(NOWHERE),
    "vlan": optional(st.integers(-2, 4100)), "mtu": optional(st.integers(0, 70000)),
    "trunk": optional(st.lists(st.fixed_dictionaries({}, optional={
        "id": usually(st.integers(-1, 4100)), "minID": st.integers(-1, 4100), "maxID": st.integers(-1, 4100)})
        | _wrong, max_size=3)),
    "mac": optional(st.sampled_from(["02:00:00:00:00:01", "01:00:00:00:00:01", "zz"])),
    "ofport_request": optional(st.integers(-1, 70000)), "ipam": optional(_ipam), "prevResult": optional(_prev),
    "runtimeConfig": optional(st.just({"mac": "02:00:00:00:00:02"}) | st.just({"mac": 5})),
    "configuration_path": usually(st.none() | st.just(""), st.just("/nonexistent-ovsfab-fuzz/ovs.conf") | _wrong),
    "socket_file": optional(st.sampled_from(["/nonexistent-ovsfab-fuzz/db.sock", "tcp:"])),
    "ovs_netns": optional(st.sampled_from(["nonexistent-ovsfab-fuzz", "/nonexistent-ovsfab-fuzz", "/proc/1/ns/net"])),
    "network": usually(st.none()), "deviceID": usually(st.none()),
    "cni.dev/valid-attachments": optional(st.just([{"containerID": "c", "ifname": "e"}]) | st.lists(_wrong, max_size=2)),
})

ENV = st.fixed_dictionaries({
    "CNI_COMMAND": usually(st.sampled_from(["ADD", "DEL", "CHECK", "VERSION", "STATUS", "GC"]),
                           st.sampled_from(["add", ""]) | st.text(max_size=6), one_in=8),
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
        conf[data.draw(st.sampled_from(sorted(conf)))] = data.draw(_wrong | _json)
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
@given(conf=CONFIG, env=ENV, how=st.integers(0, 19), data=st.data())
def test_any_request_gets_a_cni_error_object_or_the_version(conf, env, how, data):
    stdin = _mutate(conf, how, data)
    code, out = handle(stdin, _env(env))
    _check(code, out, env["CNI_COMMAND"])


#: A request that passes every check before IPAM and prevResult: the tests below vary only those.
VALID = {"cniVersion": "1.0.0", "name": "net1", "type": "ovsfab", "bridge": "br0", "ovsdb": NOWHERE}
VALID_ENV = {"CNI_CONTAINERID": "c1", "CNI_IFNAME": "eth0", "CNI_NETNS": "/run/netns/nonexistent-ovsfab-fuzz"}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ipam=_ipam | st.dictionaries(st.sampled_from(["type", "subnet", "ranges", "routes", "gateway"]),
                                    _wrong | _json, max_size=4).map(lambda d: {**d, "type": "ovsfab"}),
       command=st.sampled_from(["ADD", "ADD", "ADD", "DEL", "CHECK"]))
def test_any_ipam_configuration(ipam, command):
    """ovsfab's own IPAM (and the delegated ones) see every shape of ``ipam``."""
    conf = {**VALID, "ipam": ipam, "prevResult": {"cniVersion": "1.0.0", "ips": []}}
    code, out = handle(json.dumps(conf).encode(), _env({**VALID_ENV, "CNI_COMMAND": command}))
    _check(code, out, command)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prev=_prev | _json, version=st.sampled_from(VERSIONS), command=st.sampled_from(["ADD", "CHECK"]))
def test_any_prev_result(prev, version, command):
    """A chained plugin's prevResult, whatever its shape, as ADD passes it on and CHECK reads it."""
    conf = {**VALID, "cniVersion": version, "prevResult": prev}
    code, out = handle(json.dumps(conf).encode(), _env({**VALID_ENV, "CNI_COMMAND": command}))
    _check(code, out, command)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conf=CONFIG, env=ENV, how=st.integers(0, 19), data=st.data())
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
