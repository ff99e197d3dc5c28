"""This host's part of a fabric (pure: computed from the file alone).

A network is on a host when the host has an attachment in it or is named in
the network's ``hosts``.  On each such host:

* ``vxlan``: the network's bridge, and a VXLAN tunnel (the network's key) to
  the underlay address of every *other* host the network is on -- a full
  mesh; ovsfab marks tunnel ports protected, so the mesh has no L2 loop;
* ``uplink``: the network's bridge with the host's uplink NIC plugged in;
* ``ovn``: nothing per host but the attachments, which go into ``br-int``
  (ovn-controller's bridge) with a logical port each
  (:mod:`ovsfab.ops.apply` writes those to the northbound database).

Whether a vxlan host also needs its uplink NIC on an OVS bridge (the
userspace datapath routes the underlay only through OVS bridges) depends on
the datapath, which only the host knows: :mod:`ovsfab.ops.apply` decides.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Tuple

from ovsfab.errors import InvalidInput
from ovsfab.fabric.spec import AttachmentSpec, Fabric, HostSpec, NetworkSpec
from ovsfab.model import AddressSpec


@dataclass(frozen=True)
class WantTunnel:
    """A tunnel this host should have."""

    network: str
    bridge: str
    remote: str
    remote_host: str
    key: int


@dataclass(frozen=True)
class WantAttachment:
    """An attachment this host should have."""

    spec: AttachmentSpec
    bridge: str
    address: AddressSpec

    @property
    def network(self) -> str:
        return self.spec.network


@dataclass
class HostPart:
    """Everything the file asks of one host."""

    host: HostSpec
    networks: List[NetworkSpec] = field(default_factory=list)
    tunnels: List[WantTunnel] = field(default_factory=list)
    #: (bridge, nic) for uplink-mode networks.
    uplinks: List[Tuple[str, str]] = field(default_factory=list)
    attachments: List[WantAttachment] = field(default_factory=list)

    @property
    def bridges(self) -> List[str]:
        return [n.bridge for n in self.networks]

    def network_of_bridge(self, bridge: str) -> Optional[NetworkSpec]:
        for net in self.networks:
            if net.bridge == bridge:
                return net
        return None


def host_part(fabric: Fabric, host: str) -> HostPart:
    """This host's bridges, uplinks, tunnels and attachments."""
    if host not in fabric.hosts:
        raise InvalidInput(f"host {host!r} is not in {fabric.path}'s hosts ({', '.join(sorted(fabric.hosts))})",
                           "pass --host NAME with this host's name in the file")
    part = HostPart(fabric.hosts[host])
    for net in fabric.networks.values():
        members = fabric.hosts_of(net.name)
        if host not in members:
            continue
        part.networks.append(net)
        if net.mode == "ovn":
            continue  # ovn-controller builds the tunnels; no uplink NIC in the bridge
        if net.l2:
            nic = fabric.hosts[host].uplink
            assert nic is not None  # spec.parse_fabric refuses an uplink network without one
            part.uplinks.append((net.bridge, nic))
        else:
            assert net.key is not None
            for other in members:
                if other != host:
                    part.tunnels.append(WantTunnel(net.name, net.bridge, fabric.hosts[other].underlay, other, net.key))
    for att in fabric.attachments:
        if att.host == host:
            part.attachments.append(WantAttachment(att, fabric.networks[att.network].bridge,
                                                   fabric.address_of(att)))
    return part


def named_anywhere(fabric: Fabric, network: str, container: str, ifname: str) -> Optional[AttachmentSpec]:
    """The file's attachment of (network, container, ifname) on any host, if any."""
    for att in fabric.attachments:
        if att.network == network and att.container == container and att.ifname == ifname:
            return att
    return None
