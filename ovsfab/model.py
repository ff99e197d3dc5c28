"""Value types and their validation.

Everything here is pure: no I/O, no heavy imports, so the CLI can reject bad
input before it opens a single socket.  Parsers raise
:class:`ovsfab.errors.InvalidInput` with a message that says what is wrong and
what a right value looks like.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence, Tuple, Union

from ovsfab.errors import InvalidInput

IPInterface = Union[ipaddress.IPv4Interface, ipaddress.IPv6Interface]
IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]

#: Linux IFNAMSIZ - 1.
MAX_IFNAME = 15
MIN_MTU = 68
MAX_MTU = 65535
MAX_VLAN = 4095

#: external_ids keys.  OWNER_KEY=OWNER_VALUE marks a row as ovsfab's; the
#: rest records the attachment's desired state so it can be checked and
#: restored without any other store.  ovs-docker's two keys are written too,
#: so tools that follow its convention find ovsfab's ports.
OWNER_KEY = "ovsfab-owner"
OWNER_VALUE = "ovsfab"
KEY_CONTAINER_ID = "ovsfab-container-id"
KEY_CONTAINER_NAME = "ovsfab-container-name"
KEY_IFNAME = "ovsfab-ifname"
KEY_ADDRESSES = "ovsfab-addresses"
KEY_MAC = "ovsfab-mac"
KEY_MTU = "ovsfab-mtu"
KEY_VLAN = "ovsfab-vlan"
KEY_TARGET = "ovsfab-target"
#: "false" marks a one-shot attachment (attach --no-persist): reconcile never restores it.
KEY_PERSIST = "ovsfab-persist"
#: OVN networks (ovsfab/ovn): the network's name, and OVN's own key naming the
#: logical switch port -- ovn-controller binds the Interface that carries it.
KEY_NETWORK = "ovsfab-network"
KEY_IFACE_ID = "iface-id"
#: What makes an object a fabric's (``ovsfab apply``): on OVSDB rows and on NB rows alike.
KEY_FABRIC = "ovsfab-fabric"
KEY_FABRIC_NETWORK = "ovsfab-fabric-network"
OVS_DOCKER_CONTAINER_ID = "container_id"
OVS_DOCKER_CONTAINER_IFACE = "container_iface"

_MAC_RE = re.compile(r"^[0-9a-fA-F]{2}([:-])[0-9a-fA-F]{2}(\1[0-9a-fA-F]{2}){4}$")


def parse_name(value: str, what: str = "interface name") -> str:
    """Validate a Linux interface or OVS bridge name.

    The kernel takes at most 15 bytes and no ``/``, whitespace or ``:``
    (``:`` is the old alias separator); ``.`` and ``..`` are path names.
    """
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"{what} is empty", "give 1 to 15 characters, e.g. eth1")
    if len(value.encode("utf-8", "surrogatepass")) > MAX_IFNAME:
        raise InvalidInput(
            f"{what} {value!r} is longer than {MAX_IFNAME} bytes",
            "use a shorter name",
        )
    if value in (".", "..") or any(c in value for c in "/:") or any(
        c.isspace() or not c.isprintable() or ord(c) > 126 for c in value
    ):
        raise InvalidInput(
            f"{what} {value!r} is not a valid interface name",
            "use ASCII letters, digits, '-', '_' or '.', without '/', ':' or spaces",
        )
    return value


@dataclass(frozen=True)
class AddressSpec:
    """One address for a container interface, with an optional gateway."""

    interface: IPInterface
    gateway: Optional[IPAddress] = None

    @property
    def version(self) -> int:
        return self.interface.version

    def __str__(self) -> str:
        text = self.interface.with_prefixlen
        return f"{text}@{self.gateway}" if self.gateway is not None else text


def parse_address(value: str) -> AddressSpec:
    """Parse ``ADDR/PREFIX`` or ``ADDR/PREFIX@GATEWAY`` (IPv4 or IPv6)."""
    example = "e.g. 10.1.0.5/24, 10.1.0.5/24@10.1.0.1 or 2001:db8::5/64"
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput("address is empty", example)
    text, sep, gw_text = value.partition("@")
    if "/" not in text:
        raise InvalidInput(f"address {value!r} has no prefix length", example)
    try:
        iface = ipaddress.ip_interface(text)
    except ValueError:
        raise InvalidInput(f"address {value!r} is not an IP address with prefix", example) from None
    ip = iface.ip
    if ip.is_multicast or ip.is_unspecified or ip.is_loopback:
        raise InvalidInput(f"address {value!r} is not a unicast host address", example)
    net = iface.network
    if ip.version == 4 and net.prefixlen < 31 and ip in (net.network_address, net.broadcast_address):
        raise InvalidInput(
            f"address {value!r} is the network or broadcast address of {net}", example
        )
    gateway: Optional[IPAddress] = None
    if sep:
        try:
            gateway = ipaddress.ip_address(gw_text)
        except ValueError:
            raise InvalidInput(f"gateway {gw_text!r} in {value!r} is not an IP address", example) from None
        if gateway.version != ip.version:
            raise InvalidInput(f"gateway {gateway} and address {iface} differ in IP version", example)
        if gateway not in net or gateway == ip:
            raise InvalidInput(
                f"gateway {gateway} is not another address inside {net}",
                "give a gateway on the address's own subnet",
            )
    return AddressSpec(iface, gateway)


def parse_addresses(values: Sequence[str]) -> Tuple[AddressSpec, ...]:
    """Parse several addresses; at most one gateway per IP version."""
    specs = tuple(parse_address(v) for v in values)
    if not specs:
        raise InvalidInput("no address given", "give at least one, e.g. 10.1.0.5/24")
    seen: Dict[int, AddressSpec] = {}
    ips = set()
    for spec in specs:
        if spec.interface.ip in ips:
            raise InvalidInput(f"address {spec.interface.ip} is given twice")
        ips.add(spec.interface.ip)
        if spec.gateway is not None:
            if spec.version in seen:
                raise InvalidInput(
                    f"two IPv{spec.version} gateways given ({seen[spec.version].gateway} "
                    f"and {spec.gateway})",
                    "give at most one default gateway per IP version",
                )
            seen[spec.version] = spec
    return specs


def parse_mac(value: str) -> str:
    """Validate a unicast MAC address; returns it lower-case with colons."""
    if not isinstance(value, str) or not _MAC_RE.match(value):
        raise InvalidInput(f"MAC address {value!r} is malformed", "e.g. 02:00:00:00:00:05")
    mac = value.lower().replace("-", ":")
    first = int(mac[:2], 16)
    if first & 1:
        raise InvalidInput(f"MAC address {mac} is a multicast address", "use a unicast one, e.g. 02:00:00:00:00:05")
    if mac == "00:00:00:00:00:00":
        raise InvalidInput("MAC address 00:00:00:00:00:00 is not usable", "e.g. 02:00:00:00:00:05")
    return mac


def parse_mtu(value: Union[int, str]) -> int:
    """Validate an MTU between 68 and 65535."""
    try:
        mtu = int(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"MTU {value!r} is not a number", f"give {MIN_MTU}..{MAX_MTU}") from None
    if not MIN_MTU <= mtu <= MAX_MTU:
        raise InvalidInput(f"MTU {mtu} is outside {MIN_MTU}..{MAX_MTU}")
    return mtu


def parse_vlan(value: Union[int, str]) -> int:
    """Validate a VLAN tag between 0 and 4095."""
    try:
        vlan = int(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"VLAN {value!r} is not a number", f"give 0..{MAX_VLAN}") from None
    if not 0 <= vlan <= MAX_VLAN:
        raise InvalidInput(f"VLAN {vlan} is outside 0..{MAX_VLAN}")
    return vlan


def host_ifname(container_key: str, ifname: str) -> str:
    """The deterministic host-side name of an attachment's veth end.

    Derived from the container's identity and the container-side ifname, so a
    retry after a crash finds (and clears) its own leftovers.  ``ovf`` + 12 hex
    digits = 15 characters, the kernel's limit.
    """
    digest = hashlib.sha256(f"{container_key}\0{ifname}".encode()).hexdigest()
    return "ovf" + digest[:12]


@dataclass(frozen=True)
class Target:
    """What an attachment plugs into: a Docker container, a named netns or a PID.

    ``key`` identifies it stably (the full Docker container ID, ``netns:NAME``
    or ``pid:N``); ``netns_path`` is the namespace file ovsfab opens.
    """

    kind: str  # "docker" | "netns" | "pid" | "cni"
    key: str
    name: str
    pid: Optional[int]
    netns_path: str


@dataclass
class AttachRequest:
    """The desired state of one attachment, as the user asked for it."""

    bridge: str
    target_spec: str
    addresses: Tuple[AddressSpec, ...]
    ifname: str = "eth1"
    mac: Optional[str] = None
    mtu: Optional[int] = None
    vlan: Optional[int] = None
    datapath: str = "auto"
    persist: bool = True  # False: attach --no-persist (never restored by reconcile)
    network: Optional[str] = None   # OVN network (attach --network), see ovsfab/ops/ovn_network.py
    iface_id: Optional[str] = None  # its logical switch port, recorded as external_ids:iface-id

    @classmethod
    def parse(
        cls,
        bridge: str,
        target: str,
        addresses: Sequence[str],
        ifname: str = "eth1",
        mac: Optional[str] = None,
        mtu: Optional[Union[int, str]] = None,
        vlan: Optional[Union[int, str]] = None,
        datapath: str = "auto",
        persist: bool = True,
    ) -> "AttachRequest":
        """Validate every argument; raises InvalidInput before anything changes."""
        if datapath not in ("auto", "system", "netdev"):
            raise InvalidInput(f"datapath {datapath!r} is unknown", "use auto, system or netdev")
        parse_target_spec(target)
        return cls(
            bridge=parse_name(bridge, "bridge name"),
            target_spec=target,
            addresses=parse_addresses(addresses),
            ifname=parse_name(ifname, "interface name"),
            mac=parse_mac(mac) if mac is not None else None,
            mtu=parse_mtu(mtu) if mtu is not None else None,
            vlan=parse_vlan(vlan) if vlan is not None else None,
            datapath=datapath,
            persist=persist,
        )


def parse_target_spec(value: str) -> Tuple[str, str]:
    """Split a target into (kind, reference): docker name/ID, netns:NAME, pid:N."""
    if not isinstance(value, str) or not value or value != value.strip():
        raise InvalidInput(f"container {value!r} is empty or has surrounding spaces",
                           "give a container name or ID, netns:NAME or pid:N")
    if value.startswith("netns:"):
        name = value[len("netns:"):]
        if not name or "/" in name or name in (".", "..") or any(c.isspace() or not c.isprintable() for c in name):
            raise InvalidInput(f"netns name in {value!r} is not valid", "give netns:NAME as listed in /run/netns")
        return "netns", name
    if value.startswith("cni:"):
        # A CNI attachment: the runtime's container ID is the stable key (the
        # host-end name derives from it), the netns path comes with each
        # request (CNI_NETNS), so it is not part of the spec.  Charset: the
        # CNI spec's rule for CNI_CONTAINERID.
        ref = value[len("cni:"):]
        if not re.match(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$", ref) or len(ref) > 255:
            raise InvalidInput(f"CNI container ID in {value!r} is not valid",
                               "letters, digits, '_', '.' and '-', starting with a letter or digit")
        return "cni", ref
    if value.startswith("pid:"):
        text = value[len("pid:"):]
        if not text.isascii() or not text.isdigit() or int(text) <= 0:
            raise InvalidInput(f"{value!r} does not name a process", "give pid:N with N a positive process ID")
        return "pid", str(int(text))
    # Docker's own rule for names, plus hex IDs (which match it too).
    if not re.match(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]*$", value) or len(value) > 255:
        raise InvalidInput(f"container {value!r} is not a valid Docker container name or ID",
                           "give a container name or ID, netns:NAME or pid:N")
    return "docker", value.lstrip("/")


@dataclass
class Attachment:
    """An attachment as recorded in OVSDB (or the Linux backend's store)."""

    bridge: str
    port: str
    container_key: str
    container_name: str
    ifname: str
    addresses: Tuple[AddressSpec, ...]
    mac: Optional[str]
    mtu: Optional[int]
    vlan: Optional[int]
    target: str = ""
    ofport: Optional[int] = None
    error: Optional[str] = None
    external_ids: Dict[str, str] = field(default_factory=dict)
    persist: bool = True  # False: recorded as ovsfab-persist=false, never restored
    network: str = ""   # OVN network; "" for ordinary bridges
    iface_id: str = ""  # OVN logical switch port bound to this interface

    def to_external_ids(self) -> Dict[str, str]:
        """The external_ids that record this attachment."""
        ids = {
            OWNER_KEY: OWNER_VALUE,
            KEY_CONTAINER_ID: self.container_key,
            KEY_CONTAINER_NAME: self.container_name,
            KEY_IFNAME: self.ifname,
            KEY_TARGET: self.target,
            KEY_ADDRESSES: ",".join(str(a) for a in self.addresses),
            OVS_DOCKER_CONTAINER_ID: self.container_key,
            OVS_DOCKER_CONTAINER_IFACE: self.ifname,
        }
        if self.mac:
            ids[KEY_MAC] = self.mac
        if self.mtu:
            ids[KEY_MTU] = str(self.mtu)
        if self.vlan is not None:
            ids[KEY_VLAN] = str(self.vlan)
        if not self.persist:
            ids[KEY_PERSIST] = "false"
        if self.network:
            ids[KEY_NETWORK] = self.network
        if self.iface_id:
            ids[KEY_IFACE_ID] = self.iface_id
        return ids

    @classmethod
    def from_external_ids(cls, bridge: str, port: str, ids: Dict[str, str]) -> "Attachment":
        """Rebuild an attachment from its recorded external_ids."""
        addrs = tuple(parse_address(a) for a in ids.get(KEY_ADDRESSES, "").split(",") if a)
        return cls(
            bridge=bridge,
            port=port,
            container_key=ids.get(KEY_CONTAINER_ID, ""),
            container_name=ids.get(KEY_CONTAINER_NAME, ""),
            ifname=ids.get(KEY_IFNAME, ""),
            addresses=addrs,
            mac=ids.get(KEY_MAC) or None,
            mtu=int(ids[KEY_MTU]) if ids.get(KEY_MTU, "").isdigit() else None,
            vlan=int(ids[KEY_VLAN]) if ids.get(KEY_VLAN, "").isdigit() else None,
            target=ids.get(KEY_TARGET, ""),
            external_ids=dict(ids),
            persist=ids.get(KEY_PERSIST) != "false",
            network=ids.get(KEY_NETWORK, ""),
            iface_id=ids.get(KEY_IFACE_ID, ""),
        )

    def to_json(self) -> Dict[str, object]:
        """The attachment as a JSON-ready dict (schema in docs/json.md)."""
        return {
            "bridge": self.bridge,
            "port": self.port,
            "container": self.container_name,
            "container_id": self.container_key,
            "target": self.target,
            "ifname": self.ifname,
            "addresses": [str(a) for a in self.addresses],
            "mac": self.mac,
            "mtu": self.mtu,
            "vlan": self.vlan,
            "ofport": self.ofport,
        }


#: OVN's Geneve carries one 8-byte option (the logical ports' metadata).
OVN_GENEVE_OPTIONS = 8


def tunnel_overhead(tun_type: str, ipv6_underlay: bool, key: int = 0, csum: bool = False,
                    geneve_options: int = 0) -> int:
    """Bytes a tunnel adds to a container's IP packet (inner Ethernet included).

    VXLAN: outer IP + UDP 8 + VXLAN 8 + inner Ethernet 14 = 50 over IPv4.
    Geneve: the same 50 plus its options (OVN's: 8, so 1500 - 58 = 1442).
    GRE (gretap): outer IP + GRE 4 + inner Ethernet 14 = 38 over IPv4, plus 4
    for a key and 4 for a checksum.  An IPv6 underlay header is 20 bytes
    longer than IPv4's.  The one place this arithmetic lives: OVS tunnels,
    Linux tunnel devices and OVN all use it.
    """
    ip_extra = 20 if ipv6_underlay else 0
    if tun_type == "vxlan":
        return 50 + ip_extra
    if tun_type == "geneve":
        return 50 + geneve_options + ip_extra
    if tun_type == "gre":
        return 38 + (4 if key else 0) + (4 if csum else 0) + ip_extra
    raise InvalidInput(f"tunnel type {tun_type!r} is unknown", "use vxlan, gre or geneve")

