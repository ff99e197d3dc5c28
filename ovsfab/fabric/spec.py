"""The fabric file: YAML -> a validated :class:`Fabric`, errors with file and line.

The file (see docs/fabric.md)::

    name: lab                      # optional: the fabric's name (default "default")
    hosts:
      docker-test1: {underlay: 192.168.77.5, uplink: eth1}
    networks:
      blue: {bridge: br0, mode: vxlan, key: 5001, subnet: 10.77.0.0/16, gateway: 10.77.0.1}
    attachments:
      - {container: web, network: blue, host: docker-test1, address: 10.77.0.10}

Everything is checked here, before anything on the host is looked at, so a
bad file changes nothing.  Every error names ``FILE:LINE`` (the line of the
offending value, taken from the YAML node marks) and what would fix it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple, Union

from ovsfab.errors import InvalidInput
from ovsfab.model import (AddressSpec, IPAddress, parse_mac, parse_mtu, parse_name, parse_target_spec,
                          parse_vlan)

IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

#: Network modes: ``vxlan`` (full mesh of tunnels between the hosts of the
#: network) or ``uplink`` / ``l2`` (each host's uplink NIC plugged into the bridge).
MODES = ("vxlan", "uplink", "l2", "ovn")
#: ``ovn``: an OVN logical switch (ovsfab/ovn, docs/ovn.md); its bridge is br-int.
OVN_BRIDGE = "br-int"
MAX_VNI = (1 << 24) - 1
DEFAULT_NAME = "default"


class FabricError(InvalidInput):
    """An error in the fabric file; its message starts with ``FILE:LINE:``."""


# ---------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class HostSpec:
    """One host of the fabric."""

    name: str
    underlay: str
    uplink: Optional[str]
    line: int


@dataclass(frozen=True)
class NetworkSpec:
    """One network: a bridge on every host that takes part, joined by tunnels or an uplink."""

    name: str
    bridge: str
    mode: str                    # "vxlan" | "uplink" (l2 is read as uplink)
    key: Optional[int]
    subnet: IPNetwork
    gateway: Optional[IPAddress]
    mtu: Optional[int]
    hosts: Tuple[str, ...]       # hosts named explicitly (besides those with attachments)
    line: int

    @property
    def l2(self) -> bool:
        return self.mode == "uplink"


@dataclass(frozen=True)
class AttachmentSpec:
    """One attachment as written (address may be None: IPAM fills it in)."""

    container: str
    network: str
    host: str
    ifname: str
    address: Optional[IPAddress]
    mac: Optional[str]
    vlan: Optional[int]
    line: int
    index: int                   # position in the file, for messages


@dataclass(frozen=True)
class RouterSpec:
    """An OVN logical router between mode-ovn networks, on each network's gateway address."""

    name: str
    networks: Tuple[str, ...]
    line: int


@dataclass
class Fabric:
    """A validated fabric file, with every attachment's address allocated."""

    path: str
    name: str
    hosts: Dict[str, HostSpec]
    networks: Dict[str, NetworkSpec]
    attachments: List[AttachmentSpec]
    #: (network, host, container, ifname) -> the address (given or allocated).
    addresses: Dict[Tuple[str, str, str, str], IPAddress] = field(default_factory=dict)
    #: OVN logical routers (``routers:``), each between mode-ovn networks.
    routers: Dict[str, "RouterSpec"] = field(default_factory=dict)

    def address_of(self, att: AttachmentSpec) -> AddressSpec:
        """The attachment's address with the network's prefix and gateway."""
        net = self.networks[att.network]
        ip = self.addresses[(att.network, att.host, att.container, att.ifname)]
        iface = ipaddress.ip_interface(f"{ip}/{net.subnet.prefixlen}")
        return AddressSpec(iface, net.gateway)

    def hosts_of(self, network: str) -> List[str]:
        """The hosts that take part in a network: named in its ``hosts`` or with an attachment in it."""
        names = set(self.networks[network].hosts)
        names.update(a.host for a in self.attachments if a.network == network)
        return sorted(names)


# ---------------------------------------------------------------------------
# YAML with line numbers
# ---------------------------------------------------------------------------
class _Map(dict):
    """A mapping that remembers the line of itself and of each key."""

    line: int = 0
    key_lines: Dict[Any, int]


class _Seq(list):
    """A sequence that remembers its line."""

    line: int = 0


def load_yaml(text: str, path: str) -> Any:
    """Parse YAML into plain values, mappings and sequences carrying line numbers.

    Built on yaml's composer (node marks hold the positions); duplicate keys,
    which PyYAML would silently collapse, are refused.
    """
    import yaml  # noqa: PLC0415 - lazy: only `apply` needs it

    loader_cls = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when available: faster
    try:
        node = yaml.compose(text, Loader=loader_cls)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark is not None else 1
        # At the end of the text (an unclosed bracket or quote) the mark is on
        # the line after the last one, which no editor shows: name the last.
        line = min(line, max(1, len(text.splitlines())))
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise FabricError(f"{path}:{line}: bad YAML: {problem}",
                          "fix the syntax (indentation, colons, brackets)") from None
    if node is None:
        raise FabricError(f"{path}:1: the file is empty", "describe hosts, networks and attachments")
    constructor = yaml.constructor.SafeConstructor()

    def convert(n: Any) -> Any:
        line = n.start_mark.line + 1
        if isinstance(n, yaml.MappingNode):
            out = _Map()
            out.line = line
            out.key_lines = {}
            for knode, vnode in n.value:
                key = convert(knode)
                if isinstance(key, (dict, list)):
                    raise FabricError(f"{path}:{knode.start_mark.line + 1}: a key must be a plain value")
                if key in out:
                    raise FabricError(f"{path}:{knode.start_mark.line + 1}: {key!r} is given twice "
                                      f"(first on line {out.key_lines[key]})", "keep one of them")
                out[key] = convert(vnode)
                out.key_lines[key] = knode.start_mark.line + 1
            return out
        if isinstance(n, yaml.SequenceNode):
            seq = _Seq(convert(item) for item in n.value)
            seq.line = line
            return seq
        try:
            return constructor.construct_object(n, deep=True)
        except yaml.YAMLError as exc:
            raise FabricError(f"{path}:{line}: bad value: {getattr(exc, 'problem', exc)}") from None

    return convert(node)


def line_of(obj: Any, key: Any = None, default: int = 1) -> int:
    """The line of a mapping's key (or of the mapping / sequence itself)."""
    if key is not None and isinstance(obj, _Map) and key in obj.key_lines:
        return obj.key_lines[key]
    return getattr(obj, "line", default) or default


# ---------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------
class _Checker:
    """Validation helpers that prefix every message with FILE:LINE."""

    def __init__(self, path: str) -> None:
        self.path = path

    def fail(self, line: int, message: str, remedy: Optional[str] = None) -> "FabricError":
        return FabricError(f"{self.path}:{line}: {message}", remedy)

    def mapping(self, value: Any, what: str, line: int) -> _Map:
        if not isinstance(value, dict):
            raise self.fail(line, f"{what} must be a mapping (key: value)", f"e.g. {_EXAMPLES.get(what, '{...}')}")
        return value  # type: ignore[return-value]

    def keys(self, value: _Map, allowed: Tuple[str, ...], what: str) -> None:
        for key in value:
            if key not in allowed:
                raise self.fail(line_of(value, key), f"{what}: unknown field {key!r}",
                                f"use {', '.join(allowed)}")

    def text(self, value: _Map, key: str, what: str, required: bool = True) -> Optional[str]:
        if key not in value or value[key] is None:
            if required:
                raise self.fail(line_of(value), f"{what} has no {key}", f"add {key}: ...")
            return None
        v = value[key]
        if isinstance(v, (dict, list)) or isinstance(v, bool):
            raise self.fail(line_of(value, key), f"{what}: {key} must be a plain value, not {v!r}")
        return str(v)

    def wrap(self, line: int, what: str, fn: Any, *args: Any) -> Any:
        """Run a model parser; re-raise its InvalidInput with FILE:LINE and context."""
        try:
            return fn(*args)
        except InvalidInput as exc:
            raise self.fail(line, f"{what}: {exc.message}", exc.remedy) from None


_EXAMPLES = {
    "the file": "hosts: {...}, networks: {...}, attachments: [...]",
    "hosts": "docker-test1: {underlay: 192.168.77.5, uplink: eth1}",
    "networks": "blue: {bridge: br0, mode: vxlan, key: 5001, subnet: 10.77.0.0/16}",
}


def parse_fabric(text: str, path: str) -> Fabric:
    """Validate a fabric file's text; allocate missing addresses.  Raises FabricError."""
    from ovsfab.fabric.ipam import allocate  # noqa: PLC0415

    ck = _Checker(path)
    doc = load_yaml(text, path)
    doc = ck.mapping(doc, "the file", line_of(doc))
    ck.keys(doc, ("name", "hosts", "networks", "attachments", "routers"), "the file")
    name = ck.text(doc, "name", "the file", required=False) or DEFAULT_NAME
    if not name.replace("-", "").replace("_", "").replace(".", "").isalnum() or len(name) > 64:
        raise ck.fail(line_of(doc, "name"), f"fabric name {name!r} is not valid",
                      "use up to 64 letters, digits, '-', '_' or '.'")

    # -- hosts ---------------------------------------------------------------
    if "hosts" not in doc:
        raise ck.fail(line_of(doc), "the file has no hosts", "add hosts: {NAME: {underlay: IP, uplink: NIC}}")
    raw_hosts = ck.mapping(doc["hosts"], "hosts", line_of(doc, "hosts"))
    hosts: Dict[str, HostSpec] = {}
    underlays: Dict[str, str] = {}
    for hname, hval in raw_hosts.items():
        hline = line_of(raw_hosts, hname)
        hname = str(hname)
        what = f"host {hname}"
        hval = ck.mapping(hval, "hosts", hline)
        ck.keys(hval, ("underlay", "uplink"), what)
        underlay_text = ck.text(hval, "underlay", what)
        try:
            underlay = ipaddress.ip_address(underlay_text)
        except ValueError:
            raise ck.fail(line_of(hval, "underlay"), f"{what}: underlay {underlay_text!r} is not an IP address",
                          "give the host's underlay address, e.g. 192.168.77.5") from None
        if str(underlay) in underlays:
            raise ck.fail(line_of(hval, "underlay"),
                          f"{what}: underlay {underlay} is also the underlay of host {underlays[str(underlay)]}",
                          "give each host its own underlay address")
        underlays[str(underlay)] = hname
        uplink = ck.text(hval, "uplink", what, required=False)
        if uplink is not None:
            ck.wrap(line_of(hval, "uplink"), what, parse_name, uplink, "uplink NIC name")
        hosts[hname] = HostSpec(hname, str(underlay), uplink, hline)

    # -- networks ------------------------------------------------------------
    raw_nets = ck.mapping(doc.get("networks") or _Map(), "networks", line_of(doc, "networks"))
    networks: Dict[str, NetworkSpec] = {}
    bridges: Dict[str, str] = {}
    keys: Dict[int, str] = {}
    for nname, nval in raw_nets.items():
        nline = line_of(raw_nets, nname)
        nname = str(nname)
        what = f"network {nname}"
        nval = ck.mapping(nval, "networks", nline)
        ck.keys(nval, ("bridge", "mode", "key", "subnet", "gateway", "mtu", "hosts"), what)
        is_ovn = nval.get("mode") == "ovn"
        # OVN networks all live on br-int (ovn-controller's integration bridge).
        bridge = ck.text(nval, "bridge", what, required=not is_ovn) or OVN_BRIDGE
        ck.wrap(line_of(nval, "bridge"), what, parse_name, bridge, "bridge name")
        if is_ovn and bridge != OVN_BRIDGE:
            raise ck.fail(line_of(nval, "bridge"), f"{what} (mode ovn): the bridge is always {OVN_BRIDGE}",
                          "remove bridge:")
        if bridge in bridges and not is_ovn:
            # One network per bridge: two keys on one bridge would join two
            # overlays into one L2 segment (see docs/fabric.md).
            raise ck.fail(line_of(nval, "bridge"), f"{what}: bridge {bridge} is also the bridge of network "
                          f"{bridges[bridge]}", "give each network its own bridge")
        if not is_ovn:
            bridges[str(bridge)] = nname
        mode = ck.text(nval, "mode", what, required=False) or "vxlan"
        if mode not in MODES:
            raise ck.fail(line_of(nval, "mode"), f"{what}: mode {mode!r} is unknown", "use vxlan, uplink, l2 or ovn")
        mode = "uplink" if mode == "l2" else mode
        key: Optional[int] = None
        if mode == "vxlan":
            if "key" not in nval:
                raise ck.fail(nline, f"{what} (vxlan) has no key", "add key: N (the VNI, 1..16777215)")
            raw_key = nval["key"]
            if isinstance(raw_key, bool) or not isinstance(raw_key, int) or not 1 <= raw_key <= MAX_VNI:
                raise ck.fail(line_of(nval, "key"), f"{what}: key {raw_key!r} is not a VNI",
                              f"give a number in 1..{MAX_VNI}")
            if raw_key in keys:
                raise ck.fail(line_of(nval, "key"), f"{what}: key {raw_key} is also the key of network "
                              f"{keys[raw_key]}", "give each network its own key")
            keys[raw_key] = nname
            key = raw_key
        elif "key" in nval:
            raise ck.fail(line_of(nval, "key"), f"{what}: a key only applies to mode vxlan",
                          "remove it, or use mode: vxlan")
        subnet_text = ck.text(nval, "subnet", what)
        try:
            subnet = ipaddress.ip_network(subnet_text, strict=True)
        except ValueError as exc:
            raise ck.fail(line_of(nval, "subnet"), f"{what}: subnet {subnet_text!r} is not a network ({exc})",
                          "e.g. 10.77.0.0/16 (host bits zero)") from None
        if subnet.num_addresses < 4:
            raise ck.fail(line_of(nval, "subnet"), f"{what}: subnet {subnet} is too small", "use /30 or larger")
        gateway = None
        gw_text = ck.text(nval, "gateway", what, required=False)
        if gw_text is not None:
            try:
                gateway = ipaddress.ip_address(gw_text)
            except ValueError:
                raise ck.fail(line_of(nval, "gateway"), f"{what}: gateway {gw_text!r} is not an IP address") from None
            if gateway not in subnet or gateway in _reserved(subnet):
                raise ck.fail(line_of(nval, "gateway"), f"{what}: gateway {gateway} is not a host address of {subnet}",
                              "give an address inside the subnet")
        mtu = None
        if nval.get("mtu") is not None:
            mtu = ck.wrap(line_of(nval, "mtu"), what, parse_mtu, nval["mtu"])
        nhosts: List[str] = []
        if nval.get("hosts") is not None:
            seq = nval["hosts"]
            if not isinstance(seq, list):
                raise ck.fail(line_of(nval, "hosts"), f"{what}: hosts must be a list", "e.g. hosts: [docker-test1]")
            for h in seq:
                if str(h) not in hosts:
                    raise ck.fail(line_of(nval, "hosts"), f"{what}: host {h!r} is not in hosts",
                                  f"add it to hosts or use one of {', '.join(sorted(hosts))}")
                nhosts.append(str(h))
        networks[nname] = NetworkSpec(nname, str(bridge), mode, key, subnet, gateway, mtu, tuple(nhosts), nline)

    # -- attachments ---------------------------------------------------------
    raw_atts = doc.get("attachments") or _Seq()
    if not isinstance(raw_atts, list):
        raise ck.fail(line_of(doc, "attachments"), "attachments must be a list",
                      "e.g. - {container: web, network: blue, host: docker-test1}")
    atts: List[AttachmentSpec] = []
    seen: Dict[Tuple[str, str, str], int] = {}
    given: Dict[Tuple[str, str], int] = {}
    macs: Dict[str, int] = {}
    for i, aval in enumerate(raw_atts, start=1):
        aline = line_of(aval, default=line_of(raw_atts))
        what = f"attachment {i}"
        if not isinstance(aval, dict):
            raise ck.fail(aline, f"{what} must be a mapping",
                          "e.g. - {container: web, network: blue, host: docker-test1}")
        ck.keys(aval, ("container", "network", "host", "address", "ifname", "mac", "vlan"), what)
        container = ck.text(aval, "container", what)
        ck.wrap(line_of(aval, "container"), what, parse_target_spec, container)
        what = f"attachment {i} ({container})"
        net_name = ck.text(aval, "network", what)
        if net_name not in networks:
            raise ck.fail(line_of(aval, "network"), f"{what}: network {net_name!r} is not in networks",
                          f"define it or use one of {', '.join(sorted(networks)) or '(none defined)'}")
        host = ck.text(aval, "host", what)
        if host not in hosts:
            raise ck.fail(line_of(aval, "host"), f"{what}: host {host!r} is not in hosts",
                          f"add it to hosts or use one of {', '.join(sorted(hosts))}")
        ifname = ck.text(aval, "ifname", what, required=False) or "eth1"
        ck.wrap(line_of(aval, "ifname"), what, parse_name, ifname, "ifname")
        ident = (host, container, ifname)
        if ident in seen:
            raise ck.fail(aline, f"{what}: {container} {ifname} on {host} is also attachment {seen[ident]}",
                          "attach a container once per interface; give another ifname for a second network")
        seen[ident] = i
        net = networks[net_name]
        address = None
        addr_text = ck.text(aval, "address", what, required=False)
        if addr_text is not None:
            address = _parse_address(ck, line_of(aval, "address"), what, addr_text, net)
            if (net_name, str(address)) in given:
                raise ck.fail(line_of(aval, "address"), f"{what}: address {address} is also the address of "
                              f"attachment {given[(net_name, str(address))]}", "give each attachment its own address")
            given[(net_name, str(address))] = i
        mac = None
        if aval.get("mac") is not None:
            mac = ck.wrap(line_of(aval, "mac"), what, parse_mac, str(aval["mac"]))
            if mac in macs:
                raise ck.fail(line_of(aval, "mac"), f"{what}: MAC {mac} is also the MAC of attachment {macs[mac]}",
                              "give each attachment its own MAC, or leave it out")
            macs[mac] = i
        vlan = None
        if aval.get("vlan") is not None:
            vlan = ck.wrap(line_of(aval, "vlan"), what, parse_vlan, aval["vlan"])
        atts.append(AttachmentSpec(container, net_name, host, ifname, address, mac, vlan, aline, i))

    # -- per host: an uplink NIC serves one L2 network -------------------------
    for net in networks.values():
        if not net.l2:
            continue
        for att in atts:
            if att.network == net.name and hosts[att.host].uplink is None:
                raise ck.fail(att.line, f"network {net.name} (mode uplink) needs host {att.host}'s uplink NIC",
                              f"add uplink: NIC to host {att.host} (line {hosts[att.host].line})")
    fabric = Fabric(path, name, hosts, networks, atts)
    fabric.routers = _parse_routers(ck, doc, networks)
    for hname in hosts:
        l2 = [n for n in networks.values() if n.l2 and hname in fabric.hosts_of(n.name)]
        if len(l2) > 1:
            raise ck.fail(l2[1].line, f"networks {l2[0].name} and {l2[1].name} (mode uplink) would both need host "
                          f"{hname}'s uplink {hosts[hname].uplink}", "use mode vxlan for one of them")
        if l2 and hosts[hname].uplink is None:
            raise ck.fail(hosts[hname].line, f"network {l2[0].name} (mode uplink) needs host {hname}'s uplink NIC",
                          "add uplink: NIC to the host")
    allocate(fabric, ck.fail)
    return fabric


def _parse_routers(ck: _Checker, doc: _Map, networks: Dict[str, NetworkSpec]) -> Dict[str, RouterSpec]:
    """``routers: {NAME: {networks: [a, b]}}``: OVN logical routers between mode-ovn networks."""
    raw = ck.mapping(doc.get("routers") or _Map(), "routers", line_of(doc, "routers"))
    out: Dict[str, RouterSpec] = {}
    used: Dict[str, str] = {}
    for rname, rval in raw.items():
        rline = line_of(raw, rname)
        rname = str(rname)
        what = f"router {rname}"
        if not rname.replace("-", "").replace("_", "").isalnum() or len(rname) > 64:
            raise ck.fail(rline, f"{what}: the name is not valid", "use letters, digits, '-' or '_'")
        rval = ck.mapping(rval, "routers", rline)
        ck.keys(rval, ("networks",), what)
        nets = rval.get("networks")
        if not isinstance(nets, list) or len(nets) < 2:
            raise ck.fail(line_of(rval, "networks", rline), f"{what}: networks must list two or more networks",
                          "e.g. networks: [red, blue]")
        names: List[str] = []
        for n in nets:
            n = str(n)
            net = networks.get(n)
            if net is None or net.mode != "ovn":
                raise ck.fail(line_of(rval, "networks"), f"{what}: {n!r} is not a network with mode ovn",
                              "routers connect OVN networks only")
            if net.gateway is None:
                raise ck.fail(net.line, f"network {n} has no gateway, which {what} needs as its address there",
                              "add gateway: IP")
            if n in used or n in names:
                raise ck.fail(line_of(rval, "networks"), f"{what}: network {n} is already on router "
                              f"{used.get(n, rname)}", "one router per network")
            names.append(n)
        for n in names:
            used[n] = rname
        out[rname] = RouterSpec(rname, tuple(names), rline)
    return out


def _reserved(subnet: IPNetwork) -> Tuple[IPAddress, ...]:
    """Addresses no container gets: the network address and (IPv4) the broadcast address."""
    if subnet.version == 4 and subnet.prefixlen < 31:
        return (subnet.network_address, subnet.broadcast_address)
    return (subnet.network_address,)  # IPv6: the subnet-router anycast address


def _parse_address(ck: _Checker, line: int, what: str, text: str, net: NetworkSpec) -> IPAddress:
    """An attachment's address: inside the subnet (a prefix, if written, must be the subnet's)."""
    ip_text, _, prefix = text.partition("/")
    try:
        ip = ipaddress.ip_address(ip_text)
    except ValueError:
        raise ck.fail(line, f"{what}: address {text!r} is not an IP address",
                      f"give one inside {net.subnet}, or leave it out for IPAM") from None
    if prefix and prefix != str(net.subnet.prefixlen):
        raise ck.fail(line, f"{what}: address {text} has prefix /{prefix} but network {net.name} is {net.subnet}",
                      f"write {ip} (the prefix comes from the subnet)")
    if ip not in net.subnet:
        raise ck.fail(line, f"{what}: address {ip} is outside network {net.name}'s subnet {net.subnet}",
                      f"give one inside {net.subnet}, or leave it out for IPAM")
    if ip in _reserved(net.subnet):
        raise ck.fail(line, f"{what}: address {ip} is the network or broadcast address of {net.subnet}",
                      "give a host address")
    if net.gateway is not None and ip == net.gateway:
        raise ck.fail(line, f"{what}: address {ip} is network {net.name}'s gateway", "give another address")
    return ip


def load_fabric(path: str) -> Fabric:
    """Read and validate a fabric file."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        raise FabricError(f"{path}: no such file", "give the path of the fabric file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FabricError(f"{path}: cannot read it ({exc})", "check the path and its permissions") from None
    return parse_fabric(text, path)
