"""Fuzz: 1,000 generated fabric files; only ovsfab's own errors, each naming its line.

Pure logic (no root, no daemons, ~5 s): the file is parsed and validated by
:func:`ovsfab.fabric.spec.parse_fabric` (YAML, fields, IPAM) and, when valid,
split per host by :func:`ovsfab.fabric.desired.host_part`; ``load_fabric``
reads it from disk as ``ovsfab apply`` does.  Three families:

* 500 well-formed files (hosts, vxlan / uplink / ovn networks, routers,
  attachments with and without address, MAC, VLAN, ifname) with ONE value
  made invalid on a known line (or none): a valid file must load, and a
  broken one must fail with ``FabricError`` ``FILE:LINE:`` naming exactly
  the broken line;
* 300 arbitrary YAML documents (nested mappings / lists / scalars of every
  type, some shaped like a fabric file);
* 200 arbitrary texts, most of them made of YAML punctuation.

For the last two: nothing but :class:`~ovsfab.errors.OvsfabError` may escape
(no KeyError, TypeError, yaml error... i.e. never a traceback from the CLI,
which prints an OvsfabError as one line), and its message starts with
``FILE:LINE:`` where LINE is within the file.

Runs without root, e.g. as an unmapped user: ``unshare --user .venv/bin/python -m pytest
--noconftest tests/test_fuzz_fabric.py``
(the suite's conftest insists on root for the other modules).
"""
from __future__ import annotations

import pytest

import re
from dataclasses import dataclass
from typing import List, Optional, Tuple

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ovsfab.errors import OvsfabError
from ovsfab.fabric.desired import host_part
from ovsfab.fabric.spec import Fabric, FabricError, load_fabric, parse_fabric

pytestmark = pytest.mark.unprivileged

PATH = "fuzz.yaml"
LINE_RE = re.compile(rf"^{re.escape(PATH)}:(\d+): ")
SETTINGS = dict(deadline=None, database=None, derandomize=True,
                suppress_health_check=list(HealthCheck))


def error_line(exc: OvsfabError, text: str) -> int:
    """The line an error names; fails unless it is a FabricError with a line inside the file."""
    assert isinstance(exc, FabricError), f"{type(exc).__name__} is not a FabricError: {exc}"
    m = LINE_RE.match(str(exc))
    assert m, f"error does not start with {PATH}:LINE: -> {exc}"
    line = int(m.group(1))
    assert 1 <= line <= max(1, len(text.splitlines())), f"line {line} is outside the file: {exc}"
    assert "\n" not in str(exc), f"error is more than one line: {exc!r}"
    return line


def parse_or_error(text: str) -> Tuple[Optional[Fabric], Optional[int]]:
    """(fabric, None) or (None, the line the error names); anything else fails the test."""
    try:
        fabric = parse_fabric(text, PATH)
    except OvsfabError as exc:
        return None, error_line(exc, text)
    for h in fabric.hosts:  # the per-host split is validation too (unknown host, etc.)
        try:
            host_part(fabric, h)
        except OvsfabError as exc:
            raise AssertionError(f"a file that loaded fails for its own host {h}: {exc}") from None
    return fabric, None


# ---------------------------------------------------------------- well-formed files with one defect
@dataclass
class Entry:
    """One line of the generated file: a flow mapping whose fields can be broken one at a time."""

    section: str                    # hosts | networks | attachments | routers
    key: Optional[str]              # mapping key (None: a list item)
    fields: List[Tuple[str, str]]   # (field, YAML text of the value)

    def render(self) -> str:
        body = "{" + ", ".join(f"{k}: {v}" for k, v in self.fields) + "}"
        return f"  {self.key}: {body}" if self.key is not None else f"  - {body}"


#: Values that are wrong whatever the rest of the file says, per field (the
#: error must be reported on the line of that field).
BAD = {
    "underlay": ["300.1.1.1", "not-an-ip", "[1, 2]", "{a: 1}", "true"],
    "uplink": ["abcdefghijklmnopq", "'a b'", "'x/y'", "'a:b'"],
    "bridge": ["abcdefghijklmnopq", "'b r'", "'.'", "[br0]"],
    "mode": ["vxlam", "'L2 '", "7"],
    "key": ["0", "16777216", "'abc'", "true", "-5", "1.5"],
    "subnet": ["10.9.0.1/24", "nope", "10.9.0.0/31", "'::1/128'", "[10.0.0.0/8]"],
    "mtu": ["10", "70000", "'big'"],
    "container": ["'bad name!'", "'netns:'", "'pid:0'", "'netns:a/b'", "'-x'"],
    "ifname": ["abcdefghijklmnopq", "'e 1'", "'..'"],
    "mac": ["'zz:zz:zz:zz:zz:zz'", "'01:00:5e:00:00:01'", "'00:00:00:00:00:00'", "'02:00'"],
    "vlan": ["4096", "-1", "'v7'"],
    "address": ["not-an-ip", "192.0.2.300", "'1.2.3.4/8'"],
}
UNKNOWN_FIELDS = ["color", "adress", "ip", "vni"]


@st.composite
def fabric_files(draw) -> Tuple[str, Optional[int]]:
    """A fabric file and the line of its one defect (None: the file is valid)."""
    n_hosts = draw(st.integers(1, 4))
    n_nets = draw(st.integers(0, 4))
    modes = draw(st.lists(st.sampled_from(["vxlan", "vxlan", "uplink", "l2", "ovn"]),
                          min_size=n_nets, max_size=n_nets))
    # at most one uplink-mode network: each host's one uplink NIC serves one L2 network
    seen_l2 = False
    for i, m in enumerate(modes):
        if m in ("uplink", "l2"):
            modes[i] = "vxlan" if seen_l2 else m
            seen_l2 = True
    hosts = [f"h{i}" for i in range(n_hosts)]
    entries: List[Entry] = []
    for i, h in enumerate(hosts):
        f = [("underlay", f"192.168.77.{i + 1}" if draw(st.booleans()) else f"'fd00::{i + 1}'")]
        if seen_l2 or draw(st.booleans()):
            f.append(("uplink", "eth1"))
        entries.append(Entry("hosts", h, f))
    nets = []
    for i, mode in enumerate(modes):
        v6 = draw(st.booleans())
        subnet = f"'fd{i:02x}::/64'" if v6 else f"10.{i}.0.0/24"
        f: List[Tuple[str, str]] = []
        if mode != "ovn":
            f.append(("bridge", f"br{i}"))
        if mode != "vxlan" or draw(st.booleans()):
            f.append(("mode", mode))
        if mode == "vxlan":
            f.append(("key", str(100 + i)))
        f.append(("subnet", subnet))
        gw = draw(st.booleans()) or mode == "ovn"
        if gw:
            f.append(("gateway", f"'fd{i:02x}::1'" if v6 else f"10.{i}.0.1"))
        if draw(st.booleans()):
            f.append(("mtu", str(draw(st.sampled_from([1280, 1400, 1450, 9000])))))
        if draw(st.booleans()):
            f.append(("hosts", "[" + ", ".join(draw(st.lists(st.sampled_from(hosts), max_size=3,
                                                               unique=True))) + "]"))
        entries.append(Entry("networks", f"n{i}", f))
        nets.append((f"n{i}", v6, mode))
    ovn_gw = [n for n, _v6, m in nets if m == "ovn"]
    if len(ovn_gw) >= 2 and draw(st.booleans()):
        entries.append(Entry("routers", "r0", [("networks", "[" + ", ".join(ovn_gw) + "]")]))
    if nets:
        for j in range(draw(st.integers(0, 8))):
            net, v6, _m = draw(st.sampled_from(nets))
            k = nets.index((net, v6, _m))
            container = draw(st.sampled_from([f"c{j}", f"'netns:ns{j}'", f"'pid:{100 + j}'"]))
            f = [("container", container), ("network", net), ("host", draw(st.sampled_from(hosts)))]
            if draw(st.booleans()):
                f.append(("address", f"'fd{k:02x}::{10 + j:x}'" if v6 else f"10.{k}.0.{10 + j}"))
            if draw(st.booleans()):
                f.append(("ifname", draw(st.sampled_from(["eth1", "eth2", "net0", "a.b"]))))
            if draw(st.booleans()):
                f.append(("mac", f"'02:00:00:00:{k:02x}:{j:02x}'"))
            if draw(st.booleans()):
                f.append(("vlan", str(draw(st.integers(0, 4095)))))
            entries.append(Entry("attachments", None, f))

    # at most one defect, on one entry
    bad_line: Optional[int] = None
    if draw(st.integers(0, 9)) > 0:
        idx = draw(st.integers(0, len(entries) - 1))
        e = entries[idx]
        choices = [i for i, (k, _v) in enumerate(e.fields) if k in BAD]
        how = draw(st.sampled_from(["value", "value", "value", "unknown", "twice"]))
        if how == "value" and choices:
            i = draw(st.sampled_from(choices))
            e.fields[i] = (e.fields[i][0], draw(st.sampled_from(BAD[e.fields[i][0]])))
        elif how == "twice":
            e.fields.append(e.fields[0])
        else:
            e.fields.append((draw(st.sampled_from(UNKNOWN_FIELDS)), "1"))
        bad_line = idx  # resolved to a line number below

    lines = [draw(st.sampled_from(["", "# generated\n"])) + "name: fuzz"]
    line_of_entry = {}
    for section in ("hosts", "networks", "routers", "attachments"):
        sec = [i for i, e in enumerate(entries) if e.section == section]
        if not sec and section in ("routers", "attachments"):
            continue
        lines.append(f"{section}:" + ("" if sec else " {}"))
        for i in sec:
            lines.append(entries[i].render())
            line_of_entry[i] = "\n".join(lines).count("\n") + 1
    text = "\n".join(lines) + "\n"
    return text, (line_of_entry[bad_line] if bad_line is not None else None)


@settings(max_examples=500, **SETTINGS)
@given(fabric_files())
def test_one_defect_is_reported_on_its_line(case):
    text, bad_line = case
    fabric, line = parse_or_error(text)
    if bad_line is None:
        assert fabric is not None, f"a valid file was refused (line {line}):\n{text}"
        assert all(a.line >= 1 for a in fabric.attachments)
    else:
        assert fabric is None, f"the defect on line {bad_line} was not noticed:\n{text}"
        assert line == bad_line, f"error names line {line}, the defect is on line {bad_line}:\n{text}"


# ---------------------------------------------------------------- arbitrary YAML
scalars = st.one_of(st.none(), st.booleans(), st.integers(-2 ** 70, 2 ** 70), st.floats(allow_nan=True),
                    st.text(max_size=20), st.sampled_from(["vxlan", "uplink", "ovn", "10.0.0.0/24", "10.0.0.1",
                                                           "fd00::/64", "eth1", "br0", "netns:x", "pid:1"]))
words = st.sampled_from(["name", "hosts", "networks", "attachments", "routers", "underlay", "uplink", "bridge",
                         "mode", "key", "subnet", "gateway", "mtu", "container", "network", "host", "address",
                         "ifname", "mac", "vlan", "h1", "blue"])
keys = st.one_of(words, st.text(max_size=8), st.integers(), st.none(), st.booleans())
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(keys, inner, max_size=4)),
                      max_leaves=25)
documents = st.one_of(values, st.dictionaries(words, values, max_size=6))


@settings(max_examples=300, **SETTINGS)
@given(documents, st.sampled_from([None, True, False]))
def test_arbitrary_yaml_only_fabric_errors(doc, flow):
    text = yaml.safe_dump(doc, default_flow_style=flow, allow_unicode=True)
    parse_or_error(text)


# ---------------------------------------------------------------- arbitrary text
texts = st.one_of(st.text(max_size=200),
                  st.text(alphabet=st.sampled_from(list("{}[]:,-#&*!|>'\"%@` \n\t\\?abc019.")), max_size=200),
                  st.binary(max_size=100).map(lambda b: b.decode("latin-1")))


@settings(max_examples=200, **SETTINGS)
@given(texts)
def test_arbitrary_text_only_fabric_errors(text):
    parse_or_error(text)


def test_unreadable_files_name_the_file(tmp_path):
    """load_fabric: missing file, a directory, bad UTF-8 -- FabricError naming the path."""
    (tmp_path / "bin.yaml").write_bytes(b"hosts: \xff\xfe\n")
    for p in (tmp_path / "missing.yaml", tmp_path, tmp_path / "bin.yaml"):
        try:
            load_fabric(str(p))
        except FabricError as exc:
            assert str(exc).startswith(f"{p}:"), str(exc)
        else:
            raise AssertionError(f"{p} loaded")
