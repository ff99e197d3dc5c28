"""The request: the network configuration (stdin) and ``CNI_*`` (environment), checked.

Options, and what ovs-cni users keep (docs/cni.md has the table):

* ``bridge`` (required), ``vlan``, ``trunk`` (ovs-cni's list of ``{"id"}`` /
  ``{"minID", "maxID"}``), ``mtu``, ``ofport_request``, ``configuration_path``,
  ``socket_file``: as in ovs-cni.
* ``mac``: the container end's MAC (also ``runtimeConfig.mac`` and
  ``CNI_ARGS`` ``MAC=``).
* ``ovsdb``: an OVSDB remote as ovsfab takes it (``unix:PATH``, ``tcp:H:P``);
  wins over ``socket_file``.
* ``ovs_netns``: the network namespace ovs-vswitchd runs in (a path, or a
  name in /run/netns); the veths' host ends are made there.  Default: the
  plugin's own (the host's).
* ``network``: an OVN logical switch (ovsfab/ops/cni_ovn.py); the port goes
  on ``br-int`` (``bridge``, when given, must say so).  With it,
  ``"ipam": {"type": "ovn", "subnet", "gateway", "routes"}`` asks for OVN's
  dynamic addresses (ovn-northd assigns them) instead of an IPAM plugin.

Unknown keys are ignored, as the spec lets plugins of a chain do.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

from ovsfab.ops.cni_errors import (DECODE_FAILURE, INCOMPATIBLE_VERSION, INVALID_CONFIG, INVALID_ENV,
                                   UNSUPPORTED_FIELD, CniError)
from ovsfab.ops.cni_where import DEFAULT_SOCKET, FLATFILE_DEFAULTS, netns_path, remote_in

#: OVN's integration bridge: ovsfab.ovn.control.INTEGRATION_BRIDGE, which is not imported here because
#: that module loads python-ovs (~180 ms) and every request parses (tests/test_cni_lean.py checks they agree).
INTEGRATION_BRIDGE = "br-int"
#: The spec versions this plugin speaks (results are given in the request's).
SUPPORTED_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
COMMANDS = ("ADD", "DEL", "CHECK", "VERSION", "STATUS", "GC")
#: Commands that act on one container's interface.
CONTAINER_COMMANDS = ("ADD", "DEL", "CHECK")
#: Commands that came with spec 1.1.0.
V11_COMMANDS = ("STATUS", "GC")


@dataclass
class Request:
    """One CNI request, checked; the raw configuration goes to the IPAM plugin unchanged."""

    command: str
    cni_version: str
    netconf: Dict[str, Any]
    name: str = ""
    container_id: str = ""
    netns: str = ""
    ifname: str = ""
    bridge: str = ""
    vlan: Optional[int] = None
    trunk: List[str] = field(default_factory=list)
    mtu: Optional[int] = None
    mac: Optional[str] = None
    ofport_request: Optional[int] = None
    db: str = "unix:" + DEFAULT_SOCKET
    ovs_netns: Optional[str] = None
    ipam_type: Optional[str] = None
    prev_result: Optional[Dict[str, Any]] = None
    pod_name: Optional[str] = None
    valid_attachments: List[str] = field(default_factory=list)
    #: The OVN logical switch (``network``), None for a bridge.
    network: Optional[str] = None
    #: ``"ipam": {"type": "ovn"}``: the subnet (for a switch that has none) and gateway, checked.
    ovn_subnet: Optional[str] = None
    ovn_gateway: Optional[str] = None

    @staticmethod
    def vlan_like(conf: Mapping[str, Any]) -> bool:
        """Whether the configuration sets what only a bridge port has."""
        return any(conf.get(k) is not None for k in ("vlan", "trunk", "ofport_request"))


def version_of(stdin: bytes) -> str:
    """The cniVersion of a configuration, for error objects (the newest when unreadable)."""
    try:
        doc = json.loads(stdin or b"{}")
        version = doc.get("cniVersion") if isinstance(doc, dict) else None
    except ValueError:
        version = None
    return version if isinstance(version, str) and version in SUPPORTED_VERSIONS else SUPPORTED_VERSIONS[-1]


def _int(conf: Mapping[str, Any], key: str) -> Optional[int]:
    value = conf.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise CniError(INVALID_CONFIG, f"{key} must be an integer, not {type(value).__name__}")
    return value


def _str(conf: Mapping[str, Any], key: str) -> Optional[str]:
    value = conf.get(key)
    if value is not None and not isinstance(value, str):
        raise CniError(INVALID_CONFIG, f"{key} must be a string, not {type(value).__name__}")
    return value


def _trunk(value: Any) -> List[str]:
    """ovs-cni's trunk list into ``"42"`` / ``"1000-1010"`` items."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise CniError(INVALID_CONFIG, "trunk must be a list", 'e.g. [{"id": 42}, {"minID": 100, "maxID": 200}]')
    out = []
    for item in value:
        if not isinstance(item, dict):
            raise CniError(INVALID_CONFIG, f"trunk item {item!r} is not an object", 'e.g. {"id": 42}')
        nums = {k: item.get(k) for k in ("id", "minID", "maxID") if item.get(k) is not None}
        if any(not isinstance(v, int) or isinstance(v, bool) for v in nums.values()):
            raise CniError(INVALID_CONFIG, f"trunk item {item!r} has a non-integer VLAN")
        if "id" in nums and len(nums) == 1:
            out.append(str(nums["id"]))
        elif set(nums) == {"minID", "maxID"}:
            out.append(f"{nums['minID']}-{nums['maxID']}")
        else:
            raise CniError(INVALID_CONFIG, f"trunk item {item!r} is neither {{id}} nor {{minID, maxID}}")
    return out


def _flatfile(path: Optional[str]) -> Dict[str, Any]:
    """ovs-cni's flat configuration file (``socket_file`` & co), or {} when there is none."""
    candidates = [path] if path else list(FLATFILE_DEFAULTS)
    for candidate in candidates:
        try:
            with open(candidate, encoding="utf-8") as fh:
                doc = json.load(fh)
        except FileNotFoundError:
            if path:
                raise CniError(INVALID_CONFIG, f"configuration_path {path} does not exist") from None
            continue
        except (OSError, ValueError) as exc:
            raise CniError(INVALID_CONFIG, f"cannot read configuration file {candidate}: {exc}") from None
        if not isinstance(doc, dict):
            raise CniError(INVALID_CONFIG, f"configuration file {candidate} is not a JSON object")
        return doc
    return {}


def _db(conf: Mapping[str, Any], flat: Mapping[str, Any]) -> str:
    """The OVSDB remote: ``ovsdb``, else ``socket_file`` (ovs-cni), from the config, else the flat file."""
    for source in (conf, flat):
        _str(source, "ovsdb")  # the type checks; the choice is cni_where's (the lean plugin's too)
        _str(source, "socket_file")
        remote = remote_in(source)
        if remote:
            return remote
    return "unix:" + DEFAULT_SOCKET


def _cni_args(text: str) -> Dict[str, str]:
    """``CNI_ARGS`` (``K=V;K=V``)."""
    out = {}
    for part in text.split(";"):
        key, sep, value = part.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


#: ``"ipam": {"type": "ovn"}``: OVN's dynamic addresses (ovsfab/ops/cni_ovn.py), not a delegated plugin.
OVN_IPAM = "ovn"


def _ovn_ipam(ipam: Mapping[str, Any], network: Optional[str]) -> Tuple[Optional[str], Optional[str]]:
    """(subnet, gateway) of ``"ipam": {"type": "ovn", ...}``: IPv4 (northd's other_config:subnet), both optional."""
    if network is None:
        raise CniError(INVALID_CONFIG, "ipam type ovn needs network (an OVN logical switch)",
                       'add "network": NAME, or use another ipam type')
    subnet, gateway = _str(ipam, "subnet"), _str(ipam, "gateway")
    net = None
    if subnet is not None:
        try:
            net = ipaddress.IPv4Network(subnet, strict=False)
        except ValueError:
            raise CniError(INVALID_CONFIG, f"ipam subnet {subnet!r} is not an IPv4 network",
                           "e.g. 10.96.0.0/24 (ovn-northd assigns IPv4 from other_config:subnet)") from None
        if net.prefixlen > 30:
            raise CniError(INVALID_CONFIG, f"ipam subnet {subnet} is too small", "give at least a /30")
        subnet = str(net)
    if gateway is not None:
        try:
            gw = ipaddress.IPv4Address(gateway)
        except ValueError:
            raise CniError(INVALID_CONFIG, f"ipam gateway {gateway!r} is not an IPv4 address") from None
        if net is not None and gw not in net:
            raise CniError(INVALID_CONFIG, f"ipam gateway {gateway} is not in subnet {subnet}")
    return subnet, gateway


def parse(stdin: bytes, environ: Mapping[str, str]) -> Request:
    """Check the environment and configuration of one request; CniError with the spec's code otherwise."""
    command = environ.get("CNI_COMMAND", "")
    if command not in COMMANDS:
        raise CniError(INVALID_ENV, f"CNI_COMMAND {command!r} is not one of {', '.join(COMMANDS)}")
    try:
        conf = json.loads(stdin or b"")
    except ValueError as exc:
        raise CniError(DECODE_FAILURE, f"the network configuration is not JSON: {exc}") from None
    if not isinstance(conf, dict):
        raise CniError(DECODE_FAILURE, "the network configuration is not a JSON object")
    version = conf.get("cniVersion")
    if version not in SUPPORTED_VERSIONS:
        raise CniError(INCOMPATIBLE_VERSION, f"cniVersion {version!r} is not supported",
                       f"supported: {', '.join(SUPPORTED_VERSIONS)}")
    req = Request(command=command, cni_version=version, netconf=conf)
    if command == "VERSION":
        return req
    if command in V11_COMMANDS and version != "1.1.0":
        raise CniError(INCOMPATIBLE_VERSION, f"{command} needs cniVersion 1.1.0, the configuration says {version}")
    if command == "CHECK" and version in ("0.3.0", "0.3.1"):
        raise CniError(INCOMPATIBLE_VERSION, f"CHECK needs cniVersion 0.4.0 or later, not {version}")
    name = _str(conf, "name")
    if not name:
        raise CniError(INVALID_CONFIG, "the network configuration has no name")
    req.name = name
    if conf.get("deviceID") is not None:
        raise CniError(UNSUPPORTED_FIELD, "deviceID (SR-IOV) is not supported by ovsfab-cni", "use a veth (no deviceID)")
    flat = _flatfile(_str(conf, "configuration_path"))
    req.db = _db(conf, flat)
    req.ovs_netns = netns_path(_str(conf, "ovs_netns") or _str(flat, "ovs_netns"))
    bridge = _str(conf, "bridge")
    req.network = _str(conf, "network")
    if req.network is not None:
        if not req.network:
            raise CniError(INVALID_CONFIG, "network is empty", "name the OVN logical switch, or drop network")
        if bridge not in (None, INTEGRATION_BRIDGE):
            raise CniError(INVALID_CONFIG, f"network {req.network} is OVN's: its ports are on {INTEGRATION_BRIDGE}, "
                           f"not bridge {bridge}", "drop bridge")
        if req.vlan_like(conf):
            raise CniError(INVALID_CONFIG, "vlan, trunk and ofport_request do not apply to an OVN network",
                           "drop them (OVN's logical switch is the segment)")
        bridge = INTEGRATION_BRIDGE
    if command != "GC" or bridge is not None:
        if not bridge and command != "STATUS":
            raise CniError(INVALID_CONFIG, "the network configuration has no bridge", 'e.g. "bridge": "br0"')
        req.bridge = bridge or ""
    req.vlan = _int(conf, "vlan")
    req.trunk = _trunk(conf.get("trunk"))
    req.mtu = _int(conf, "mtu")
    req.ofport_request = _int(conf, "ofport_request")
    req.mac = _str(conf, "mac")
    runtime = conf.get("runtimeConfig") or {}
    if isinstance(runtime, dict) and isinstance(runtime.get("mac"), str):
        req.mac = runtime["mac"]
    ipam = conf.get("ipam")
    if ipam is not None:
        if not isinstance(ipam, dict):
            raise CniError(INVALID_CONFIG, "ipam must be an object")
        if ipam:  # {} means none, as for the reference plugins
            req.ipam_type = _str(ipam, "type")
            if not req.ipam_type:
                raise CniError(INVALID_CONFIG, "ipam has no type", "e.g. host-local, static or dhcp")
            if req.ipam_type == OVN_IPAM:
                req.ovn_subnet, req.ovn_gateway = _ovn_ipam(ipam, req.network)
    prev = conf.get("prevResult")
    if prev is not None and not isinstance(prev, dict):
        raise CniError(INVALID_CONFIG, "prevResult must be an object")
    req.prev_result = prev
    if command == "GC":
        valid = conf.get("cni.dev/valid-attachments") or []
        if not isinstance(valid, list) or not all(isinstance(v, dict) for v in valid):
            raise CniError(INVALID_CONFIG, "cni.dev/valid-attachments must be a list of objects")
        req.valid_attachments = [f"{v.get('containerID', '')}/{v.get('ifname', '')}" for v in valid]
    if command in CONTAINER_COMMANDS:
        for var in ("CNI_CONTAINERID", "CNI_IFNAME"):
            if not environ.get(var):
                raise CniError(INVALID_ENV, f"{var} is not set", "the runtime sets it")
        req.container_id = environ["CNI_CONTAINERID"]
        req.ifname = environ["CNI_IFNAME"]
        req.netns = environ.get("CNI_NETNS", "")
        if command != "DEL" and not req.netns:
            raise CniError(INVALID_ENV, "CNI_NETNS is not set", f"{command} needs the container's namespace")
        args = _cni_args(environ.get("CNI_ARGS", ""))
        req.pod_name = args.get("K8S_POD_NAME")
        if args.get("MAC"):
            req.mac = args["MAC"]
    return req
