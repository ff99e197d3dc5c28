"""OVN networks in the northbound database: logical switches, their ports, routers' ports.

An OVN network is a logical switch.  A container's logical switch port
carries its MAC and addresses in ``addresses`` (so OVN answers ARP/ND for it
locally on every host) and in ``port_security`` (so a container that changes
its own MAC or IP is cut off).  Attaching and detaching containers are
operations, in :mod:`ovsfab.ops.ovn_network`; this module is the NB access
they use.

Ownership: everything written to NB carries ``ovsfab-owner=ovsfab``; lookups
use those tags and the ``ovsfab-network`` tag, never name patterns.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from ovsfab.errors import Conflict, InvalidInput, NotFound, OperationFailed
from ovsfab.model import (KEY_CONTAINER_NAME, KEY_NETWORK, OVN_GENEVE_OPTIONS, OWNER_KEY, OWNER_VALUE, AddressSpec,
                          tunnel_overhead)
from ovsfab.ovn.control import KEY_NB, joined_settings
from ovsfab.ovn.idl import NB_COLUMNS, NB_DB, OvnSession, opt

LOG = logging.getLogger(__name__)


KEY_ROUTER = "ovsfab-router"
KEY_CHASSIS = "ovsfab-chassis"
#: On a logical port the Docker driver's IPAM made for an address Docker has not yet put in an
#: endpoint: when it was made (Unix seconds).  CreateEndpoint adopts it; ReleaseAddress or
#: :func:`gc_pending` removes it.
KEY_IPAM_PENDING = "ovsfab-ipam-pending"

def tunnel_mtu(underlay_mtu: int, encap: str, ipv6_underlay: bool = False) -> int:
    """The container MTU that fits one of OVN's encapsulated frames (Geneve with its
    8-byte option, or VXLAN) into the underlay MTU: 1500 - 58 = 1442 for Geneve, as measured."""
    return underlay_mtu - tunnel_overhead(encap if encap in ("geneve", "vxlan") else "geneve", ipv6_underlay,
                                          geneve_options=OVN_GENEVE_OPTIONS)


def parse_network(name: str) -> str:
    """Network names are logical switch names: short, printable, no spaces or dots."""
    if not isinstance(name, str) or not name or len(name) > 64 or not all(
            c.isalnum() or c in "-_" for c in name):
        raise InvalidInput(f"network name {name!r} is not valid",
                           "use 1..64 letters, digits, '-' or '_', e.g. blue")
    return name


def default_mac(iface_id: str, addresses: Sequence[AddressSpec]) -> str:
    """A stable MAC for a logical port: 0a:58 + the IPv4 address (ovn-kubernetes' scheme), else a hash."""
    v4 = [a.interface.ip for a in addresses if a.version == 4]
    if v4:
        return "0a:58:" + ":".join(f"{b:02x}" for b in v4[0].packed)
    digest = hashlib.sha256(iface_id.encode()).digest()
    return "0a:" + ":".join(f"{b:02x}" for b in digest[:5])


def lport_addresses(mac: str, addresses: Sequence[AddressSpec]) -> str:
    """``MAC IP...``: the value of both ``addresses`` and ``port_security``."""
    return " ".join([mac] + [str(a.interface.ip) for a in addresses])


#: NB_COLUMNS plus what ovn-northd writes back for a port with ``dynamic`` addresses.
_NB_COLUMNS = dict(NB_COLUMNS, Logical_Switch_Port=list(NB_COLUMNS["Logical_Switch_Port"]) + ["dynamic_addresses"])


def nb_session(remote: str, timeout: float = 10.0) -> OvnSession:
    """An IDL session on the northbound database."""
    return OvnSession(remote, NB_DB, _NB_COLUMNS, timeout)


def is_dynamic(lsp) -> bool:  # noqa: ANN001
    """Whether a logical port asks ovn-northd for its address (``dynamic`` or ``MAC dynamic``)."""
    return any(entry.split()[-1:] == ["dynamic"] for entry in lsp.addresses)


def _assigned(lsp) -> Optional[str]:  # noqa: ANN001
    """``MAC IP`` that ovn-northd assigned to a dynamic port, or None (not yet, or not this IDL's columns)."""
    value = opt(getattr(lsp, "dynamic_addresses", None))
    return str(value) if value and len(str(value).split()) > 1 else None


def _owned(row) -> bool:  # noqa: ANN001
    return row.external_ids.get(OWNER_KEY) == OWNER_VALUE


def find_switch(nbs: OvnSession, network: str):  # noqa: ANN201 - IDL row or None
    """The logical switch ovsfab made for ``network`` (by tag), or None."""
    for ls in nbs.rows("Logical_Switch"):
        if _owned(ls) and ls.external_ids.get(KEY_NETWORK) == network:
            return ls
    return None


def _serialise(nbs: OvnSession) -> None:
    """Make concurrent creators of the same switch/router conflict (TRY_AGAIN).

    Logical_Switch names are not unique in the NB schema: two hosts attaching
    the first containers of a network at once would make two switches.
    Every creation verifies and bumps a counter in NB_Global, so the second
    transaction is rebuilt, and its rebuild finds the first one's switch.
    """
    root = nbs.first("NB_Global")
    if root is None:
        return
    root.verify("external_ids")
    gen = root.external_ids.get("ovsfab-generation", "0")
    root.setkey("external_ids", "ovsfab-generation", str(int(gen) + 1 if gen.isdigit() else 1))


def _insert_switch(nbs: OvnSession, txn, network: str, other_config: Dict[str, str]) -> None:  # noqa: ANN001
    """Insert ovsfab's logical switch for ``network`` in ``txn``; refuse a same-named switch of another tool."""
    for other in nbs.rows("Logical_Switch"):
        if other.name == network:
            raise Conflict(f"OVN already has a logical switch named {network} that ovsfab did not make",
                           "choose another network name or remove it from the northbound DB")
    _serialise(nbs)
    ls = txn.insert(nbs.idl.tables["Logical_Switch"])
    ls.name = network
    ls.external_ids = {OWNER_KEY: OWNER_VALUE, KEY_NETWORK: network}
    if other_config:
        ls.other_config = other_config


def ensure_switch(nbs: OvnSession, network: str, subnet: Optional[str] = None) -> bool:
    """Create the network's logical switch if missing; returns True if created."""
    def build(txn):  # noqa: ANN001, ANN202
        ls = find_switch(nbs, network)
        if ls is not None:
            if subnet and ls.other_config.get("subnet") != subnet:
                ls.setkey("other_config", "subnet", subnet)
            return False
        # Informational (shown by ovn status); ovsfab assigns addresses itself.
        _insert_switch(nbs, txn, network, {"subnet": subnet} if subnet else {})
        return True

    created, _ = nbs.transact(build, wait_applied=False, comment=f"ovsfab: network {network}")
    return bool(created)


def delete_switch_if_empty(nbs: OvnSession, network: str) -> bool:
    """Remove the network's switch when no port is left on it."""
    def build(txn):  # noqa: ANN001, ANN202
        ls = find_switch(nbs, network)
        if ls is None or ls.ports:
            return False
        ls.verify("ports")
        ls.delete()
        return True

    done, _ = nbs.transact(build, wait_applied=False, comment=f"ovsfab: remove network {network}")
    return bool(done)


def find_lport(nbs: OvnSession, name: str):  # noqa: ANN201
    """A logical switch port by name (names are unique in NB), with its switch."""
    for ls in nbs.rows("Logical_Switch"):
        for lsp in ls.ports:
            if lsp.name == name:
                return ls, lsp
    return None, None


@dataclass(frozen=True)
class LportSpec:
    """A logical switch port to create: name, network, MAC, addresses and tags."""

    network: str
    name: str
    mac: str
    addresses: Tuple[AddressSpec, ...]
    external_ids: Dict[str, str]
    #: The chassis (system-id) whose pending IPAM ports (KEY_IPAM_PENDING) may hand this port their
    #: address: removed in the same transaction, so the address is never free in between.
    adopt_from: Optional[str] = None


def add_lports(nbs: OvnSession, specs: Sequence[LportSpec]) -> List[str]:
    """Create logical ports, all in ONE transaction; returns the names created.

    Idempotent per port (one that exists with the same addresses is left
    alone).  Raises Conflict, creating none, when a port exists with other
    settings or another port of the network already has one of the addresses.
    """
    def build(txn):  # noqa: ANN001, ANN202
        created: List[str] = []
        by_name = {lsp.name: lsp for ls in nbs.rows("Logical_Switch") for lsp in ls.ports}
        taken: Dict[str, Dict[str, str]] = {}  # network -> ip -> holder, built once per network
        switches: Dict[str, object] = {}
        for spec in specs:
            value = lport_addresses(spec.mac, spec.addresses)
            existing = by_name.get(spec.name)
            if existing is not None:
                same = list(existing.addresses) == [value] or (is_dynamic(existing) and _assigned(existing) == value)
                if same and list(existing.port_security) == [value]:
                    continue  # a dynamic port counts with the address northd gave it (CNI's ipam type ovn)
                raise Conflict(f"logical port {spec.name} exists with other addresses "
                               f"({' '.join(existing.addresses)})", "detach it first")
            ls = switches.get(spec.network)
            if ls is None:
                ls = find_switch(nbs, spec.network)
                if ls is None:
                    raise NotFound(f"OVN network {spec.network} vanished while attaching", "run it again")
                switches[spec.network] = ls
                ls.verify("ports")
                used: Dict[str, str] = {}
                for lsp in ls.ports:
                    for entry in list(lsp.addresses) + list(lsp.port_security) + [_assigned(lsp) or ""]:
                        for ip in entry.split()[1:]:
                            if ip == "dynamic":
                                continue
                            used[ip] = lsp.external_ids.get(KEY_CONTAINER_NAME) or lsp.name
                taken[spec.network] = used
            used = taken[spec.network]
            if spec.adopt_from:
                _adopt(ls, spec, used)
            for a in spec.addresses:
                ip = str(a.interface.ip)
                if ip in used:
                    raise Conflict(f"address {ip} is already used on network {spec.network} by {used[ip]}",
                                   "choose another address")
                used[ip] = spec.external_ids.get(KEY_CONTAINER_NAME) or spec.name
            lsp = txn.insert(nbs.idl.tables["Logical_Switch_Port"])
            lsp.name = spec.name
            lsp.addresses = [value]
            lsp.port_security = [value]
            lsp.external_ids = dict(spec.external_ids, **{OWNER_KEY: OWNER_VALUE, KEY_NETWORK: spec.network})
            ls.addvalue("ports", lsp.uuid)
            by_name[spec.name] = lsp
            created.append(spec.name)
        return created

    if not specs:
        return []
    what = specs[0].name if len(specs) == 1 else f"{len(specs)} ports"
    created, _ = nbs.transact(build, wait_applied=False, comment=f"ovsfab: {what}")
    return list(created or [])


def _adopt(ls, spec: LportSpec, used: Dict[str, str]) -> None:  # noqa: ANN001
    """Remove the pending IPAM ports of ``spec.adopt_from`` that hold one of spec's addresses (in the
    caller's transaction) and mark those addresses free for spec."""
    wanted = {str(a.interface.ip) for a in spec.addresses}
    for lsp in list(ls.ports):
        if not _owned(lsp) or KEY_IPAM_PENDING not in lsp.external_ids \
                or lsp.external_ids.get(KEY_CHASSIS) != spec.adopt_from:
            continue
        held = set((_assigned(lsp) or "").split()[1:])
        if held & wanted:
            ls.delvalue("ports", lsp.uuid)
            lsp.delete()
            for ip in held:
                used.pop(ip, None)


def add_lport(nbs: OvnSession, network: str, name: str, mac: str, addresses: Sequence[AddressSpec],
              external_ids: Dict[str, str], adopt_from: Optional[str] = None) -> bool:
    """Create one logical port (idempotent); returns True if created.  See :func:`add_lports`."""
    return bool(add_lports(nbs, [LportSpec(network, name, mac, tuple(addresses), external_ids, adopt_from)]))


def pending_lports(nbs: OvnSession, network: str, chassis: str) -> List[Tuple[str, Optional[str], float]]:
    """(name, assigned IP or None, made at) of the chassis' pending IPAM ports on ``network``."""
    ls = find_switch(nbs, network)
    out = []
    for lsp in (ls.ports if ls is not None else []):
        ids = lsp.external_ids
        if _owned(lsp) and KEY_IPAM_PENDING in ids and ids.get(KEY_CHASSIS) == chassis:
            assigned = _assigned(lsp)
            try:
                made = float(ids[KEY_IPAM_PENDING])
            except ValueError:
                made = 0.0
            out.append((lsp.name, assigned.split()[1] if assigned else None, made))
    return out


def del_lports(nbs: OvnSession, names: Sequence[str]) -> Dict[str, Dict[str, object]]:
    """Remove ovsfab logical ports in ONE transaction; returns what each was (for an undo)."""
    def build(txn):  # noqa: ANN001, ANN202
        records: Dict[str, Dict[str, object]] = {}
        wanted = set(names)
        for ls in nbs.rows("Logical_Switch"):
            for lsp in list(ls.ports):
                if lsp.name not in wanted or not _owned(lsp):
                    continue
                records[lsp.name] = {"network": lsp.external_ids.get(KEY_NETWORK, ls.name),
                                     "addresses": list(lsp.addresses), "port_security": list(lsp.port_security),
                                     "external_ids": dict(lsp.external_ids)}
                ls.delvalue("ports", lsp.uuid)
                lsp.delete()
        return records

    names = [n for n in names if n]
    if not names:
        return {}
    what = names[0] if len(names) == 1 else f"{len(names)} ports"
    records, _ = nbs.transact(build, wait_applied=False, comment=f"ovsfab: remove {what}")
    return dict(records or {})


def del_lport(nbs: OvnSession, name: str) -> Optional[Dict[str, object]]:
    """Remove an ovsfab logical port; returns what it was (for an undo), or None."""
    return del_lports(nbs, [name]).get(name)


def restore_lports(nbs: OvnSession, records: Dict[str, Dict[str, object]]) -> None:
    """Put back ports :func:`del_lports` removed (an undo), in one transaction."""
    def build(txn):  # noqa: ANN001, ANN202
        have = {lsp.name for ls in nbs.rows("Logical_Switch") for lsp in ls.ports}
        for name, record in records.items():
            ls = find_switch(nbs, str(record["network"]))
            if ls is None or name in have:
                continue
            lsp = txn.insert(nbs.idl.tables["Logical_Switch_Port"])
            lsp.name = name
            lsp.addresses = record["addresses"]
            lsp.port_security = record["port_security"]
            lsp.external_ids = record["external_ids"]
            ls.addvalue("ports", lsp.uuid)

    if records:
        nbs.transact(build, wait_applied=False, comment="ovsfab: restore ports")


def ensure_dynamic_switch(nbs: OvnSession, network: str, subnet: Optional[str],
                          exclude: Optional[str] = None) -> Tuple[bool, str]:
    """The network's switch, ready for ovn-northd's dynamic IPv4 addresses: (created, its subnet).

    ovn-northd allocates only on a switch with ``other_config:subnet``: a switch
    without one gets ``subnet`` (and ``exclude_ips``: ``exclude``, the
    gateway); one that has another subnet is refused rather than renumbered
    under its other ports.  Neither gives one: InvalidInput.
    """
    def build(txn):  # noqa: ANN001, ANN202
        ls = find_switch(nbs, network)
        have = ls.other_config.get("subnet") if ls is not None else None
        if have and subnet and ipaddress.ip_network(have, strict=False) != ipaddress.ip_network(subnet):
            raise InvalidInput(f"OVN network {network} has subnet {have}, the configuration says {subnet}",
                               f"use subnet {have}, or drop subnet")
        if not have and not subnet:
            raise InvalidInput(f"OVN network {network} has no subnet for dynamic addresses",
                               'give one, e.g. "ipam": {"type": "ovn", "subnet": "10.96.0.0/24"}')
        if ls is not None:
            if not have:
                ls.verify("other_config")
                ls.setkey("other_config", "subnet", subnet)
                if exclude:
                    ls.setkey("other_config", "exclude_ips", exclude)
            return False, have or subnet
        _insert_switch(nbs, txn, network, dict({"subnet": str(subnet)}, **({"exclude_ips": exclude} if exclude else {})))
        return True, str(subnet)

    out, _ = nbs.transact(build, wait_applied=False, comment=f"ovsfab: network {network} (dynamic)")
    return bool(out[0]), str(out[1])


def add_dynamic_lport(nbs: OvnSession, network: str, name: str, mac: Optional[str],
                      external_ids: Dict[str, str]) -> bool:
    """Create a logical port whose address ovn-northd assigns (``MAC dynamic``, or ``dynamic``
    for a MAC from northd too); returns True if created, False if it exists with dynamic addresses.

    ``port_security`` stays empty until :func:`secure_lport` sets the assigned address.
    """
    def build(txn):  # noqa: ANN001, ANN202
        _, existing = find_lport(nbs, name)
        if existing is not None:
            if is_dynamic(existing):
                return False
            raise Conflict(f"logical port {name} exists with static addresses ({' '.join(existing.addresses)})",
                           "detach it first")
        ls = find_switch(nbs, network)
        if ls is None:
            raise NotFound(f"OVN network {network} vanished while attaching", "run it again")
        lsp = txn.insert(nbs.idl.tables["Logical_Switch_Port"])
        lsp.name = name
        lsp.addresses = [f"{mac} dynamic" if mac else "dynamic"]
        lsp.external_ids = dict(external_ids, **{OWNER_KEY: OWNER_VALUE, KEY_NETWORK: network})
        ls.addvalue("ports", lsp.uuid)
        return True

    created, _ = nbs.transact(build, wait_applied=False, comment=f"ovsfab: {name} (dynamic)")
    return bool(created)


def wait_assigned(nbs: OvnSession, name: str, timeout: float) -> Tuple[str, str]:
    """(MAC, IP) ovn-northd assigned to the dynamic port ``name``; OperationFailed after ``timeout``."""
    def assigned() -> bool:
        _, lsp = find_lport(nbs, name)
        return lsp is not None and _assigned(lsp) is not None

    if not nbs.wait_for(assigned, timeout, f"ovn-northd to assign {name} an address"):
        raise OperationFailed(f"ovn-northd assigned logical port {name} no address within {timeout:g} s",
                              "check that ovn-northd runs (ovsfab ovn status) and the subnet has free addresses")
    _, lsp = find_lport(nbs, name)
    mac, ip = str(_assigned(lsp)).split()[:2]
    return mac, ip


def secure_lport(nbs: OvnSession, name: str, mac: str, ip: str) -> None:
    """Pin a dynamic port's ``port_security`` to the address northd gave it (a container that
    changes its MAC or IP is cut off, as for a static port)."""
    def build(txn):  # noqa: ANN001, ANN202
        _, lsp = find_lport(nbs, name)
        if lsp is None:
            raise NotFound(f"logical port {name} vanished while attaching", "run it again")
        lsp.port_security = [f"{mac} {ip}"]

    nbs.transact(build, wait_applied=False, comment=f"ovsfab: {name} port security")


def wait_up(nbs: OvnSession, name: str, timeout: float) -> bool:
    """Wait until ovn-northd reports the port bound (``up``) by a chassis."""
    def up() -> bool:
        _, lsp = find_lport(nbs, name)
        return lsp is not None and bool(opt(lsp.up))

    return nbs.wait_for(up, timeout, f"logical port {name} to come up")


def joined(ovs_remote: Optional[str], why: str = "") -> Dict[str, str]:
    """This host's OVN join settings (with the NB remote and system-id); refuses a host that has not joined.

    ``why``: what needed them, added to the error (e.g. "network red is mode ovn").
    """
    settings = joined_settings(ovs_remote)
    if not settings.get(KEY_NB) or not settings.get("system-id"):
        raise NotFound("this host has not joined an OVN central" + (f" ({why})" if why else ""),
                       "run ovsfab ovn join CENTRAL_IP first")
    return settings


def underlay_mtu(encap_ip: str) -> Optional[int]:
    """MTU of the link that holds the encapsulation address (this namespace)."""
    from ovsfab.plumbing.links import L3Handle  # noqa: PLC0415

    handle = L3Handle()
    try:
        owner = handle.address_owners().get(str(ipaddress.ip_address(encap_ip)))
        if not owner:
            return None
        info = handle.link(owner)
        return int(info["mtu"]) if info else None
    finally:
        handle.close()


def iface_id_for(network: str, system_id: str, port: str) -> str:
    """The logical port name: unique per network, chassis and veth."""
    return f"{network}.{system_id}.{port}"


