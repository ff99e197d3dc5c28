"""podman is the client: a CNI conflist naming ``ovsfab``, on a simulated host.

The simulated host (tests/testbed.py ``OvsHost``) runs ovs-vswitchd with the
netdev datapath in its own namespace; the conflist names that namespace
(``ovs_netns``) and its OVSDB (``ovsdb``), so podman's containers get their
veths' host ends there.  Traffic is proven with ping and a 4 MB TCP transfer
(checksummed) between two podman containers, and between a podman container
and a Docker container that `ovsfab attach` put on the same bridge.
"""
from __future__ import annotations

import pytest

import podmanbed
import testbed as tb

pytestmark = pytest.mark.slow


@pytest.fixture
def podman():
    reason = podmanbed.podman_available()
    if reason is not None:
        pytest.fail(reason, pytrace=False)
    p = podmanbed.Podman()
    p.image()
    yield p
    p.close()


def test_podman_containers_and_a_docker_container_talk_over_ovsfab(podman, ovs_host, containers):
    br = "brpod"
    ovs_host.vsctl("add-br", br, "--", "set", "bridge", br, "datapath_type=netdev")
    net = tb.unique("net")
    podman.network(net, {"type": "ovsfab", "bridge": br, "ovsdb": ovs_host.db_url, "ovs_netns": ovs_host.name},
                   "10.83.0.0/24")
    before_links = set(ovs_host.links())

    a, b = podman.start(net), podman.start(net)
    ns_a, ns_b = podman.netns(a), podman.netns(b)
    ip_a, ip_b = podman.address(a, net), podman.address(b, net)
    assert ns_a.startswith("/run/netns/") and tb.addrs_in(ns_a)["eth0"] == [f"{ip_a}/24"]
    # Two ports of ours on the bridge, each recorded for its podman container.
    ports = [r for r in tb.ovs_table(ovs_host, "Port") if r["external_ids"].get("ovsfab-cni-network") == net]
    assert len(ports) == 2
    assert tb.ping(ns_a, ip_b) and tb.ping(ns_b, ip_a)
    assert tb.tcp_transfer(ns_a, ns_b, ip_b)

    docker_c = containers()
    ovs_host.ovsfab("attach", br, docker_c.name, "10.83.0.250/24", check=True)
    assert tb.ping(ns_a, "10.83.0.250") and tb.ping(docker_c, ip_a)
    assert tb.tcp_transfer(docker_c, ns_a, ip_a)
    assert tb.tcp_transfer(ns_b, docker_c, "10.83.0.250", port=5202)

    # podman rm runs CNI DEL: the ports and host ends go.
    podman.remove(a)
    podman.remove(b)
    assert [r["name"] for r in tb.ovs_table(ovs_host, "Port")
            if r["external_ids"].get("ovsfab-cni-network") == net] == []
    ovs_host.ovsfab("detach", br, docker_c.name, check=True)
    assert set(ovs_host.links()) == before_links
    assert tb.ovs_ports(ovs_host) == [br]
