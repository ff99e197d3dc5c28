"""Crash consistency: SIGKILL at every step of attach, detach and apply, then converge.

``OVSFAB_INJECT_FAULT=kill:<step>`` makes the product SIGKILL itself right
after <step> (ovsfab/ops/plan.py): no undo, no cleanup, what ``kill -9`` or a
crash leaves.  For every kill point the test proves, with ``ip -j`` and
``ovs-vsctl`` only:

* the process really died there (exit -9) and left the residue expected of
  that point (so the kill is not a no-op or a rollback in disguise);
* the next run of the same command (``attach``, ``detach``, ``apply``) -- or
  ``reconcile`` once the record exists -- exits 0 and leaves exactly the
  state a clean run leaves (links, addresses, routes inside the targets,
  host links, Bridge/Port/Interface rows and their external_ids, MACs
  aside since the kernel picks new ones), with every interface up in
  ovs-vswitchd (ofport > 0, no error).

The reference states come from clean runs on a fresh simulated host with the
same targets (host-end names derive from the target, so they match).
"""
from __future__ import annotations

import signal
import time

import pytest

import testbed as tb

from ovsfab.ops.apply import APPLY_STEPS
from ovsfab.ops.attach import ATTACH_STEPS
from ovsfab.ops.detach import DETACH_STEPS
from ovsfab.model import host_ifname

KILLED = -signal.SIGKILL
FAULT = "OVSFAB_INJECT_FAULT"
ATTACH_ARGS = ("br0", "10.1.0.10/24@10.1.0.1", "--vlan", "7", "--mtu", "1400")
#: Needs OVN daemons (tests/test_ovn.py has them); every other apply step is killed here.
APPLY_UNREACHABLE = ("ovn-ports",)
APPLY_KILLED = tuple(s for s in APPLY_STEPS if s not in APPLY_UNREACHABLE)


def kill_env(step: str) -> dict:
    return {FAULT: f"kill:{step}"}


def _volatile(key: str) -> bool:
    """external_ids that hold a MAC the kernel picked: differ between any two runs."""
    return "mac" in key or "hwaddr" in key


def norm_snapshot(host: tb.OvsHost, targets) -> dict:
    """tb.snapshot without kernel-chosen MACs, plus vswitchd's view of each interface."""
    snap = tb.snapshot(host, targets)
    strip = lambda ids: [(k, v) for k, v in ids if not _volatile(k)]  # noqa: E731
    health = sorted((r["name"], isinstance(r["ofport"], int) and r["ofport"] > 0, r["error"] in ([], "", None))
                    for r in tb.ovs_table(host, "Interface", ["name", "ofport", "error"]))
    return {
        "host_links": snap.host_links,
        "bridges": snap.bridges,
        "ports": sorted((n, strip(ids), tag) for n, ids, tag in snap.ports),
        "interfaces": sorted((n, strip(ids), typ) for n, ids, typ in snap.interfaces),
        "targets": snap.targets,
        "health": health,
    }


def assert_same(got: dict, want: dict) -> None:
    diff = [f"{k}:\n  want={want[k]!r}\n  got ={got[k]!r}" for k in want if got[k] != want[k]]
    assert not diff, "not converged:\n" + "\n".join(diff)
    bad = [h for h in got["health"] if not (h[1] and h[2])]
    assert not bad, f"interfaces not working in ovs-vswitchd: {bad}"


def wait_gone(targets, ifname: str = "eth1", timeout: float = 10.0) -> None:
    """A closed host's namespace takes its veths along, asynchronously: wait for the peers to go."""
    deadline = time.monotonic() + timeout
    for t in targets:
        while ifname in tb.links_in(t):
            assert time.monotonic() < deadline, f"{t.name} still has {ifname}"
            time.sleep(0.05)


# ---------------------------------------------------------------- attach / detach
@pytest.fixture(scope="module")
def target():
    t = tb.make_netns()
    yield t
    tb.delete_netns(t.name)


@pytest.fixture(scope="module")
def attach_refs(target):
    """(attached, detached): what a clean attach and a clean detach leave on a fresh host."""
    with tb.OvsHost() as h:
        h.ovsfab("attach", ATTACH_ARGS[0], target.target, *ATTACH_ARGS[1:], check=True)
        attached = norm_snapshot(h, [target])
        h.ovsfab("detach", "br0", target.target, check=True)
        detached = norm_snapshot(h, [target])
    wait_gone([target])
    # the references themselves are what they claim to be
    port = host_ifname(target.target, "eth1")
    assert port in attached["host_links"] and "eth1" in attached["targets"][target.name][0]
    assert "10.1.0.10/24" in attached["targets"][target.name][1]["eth1"]
    assert port not in detached["host_links"] and "eth1" not in detached["targets"][target.name][0]
    assert [p[0] for p in detached["ports"]] == ["br0"]
    return attached, detached


def test_every_step_is_a_kill_point():
    """The lists the kill tests run over are the product's own, and non-trivial."""
    assert len(ATTACH_STEPS) >= 8 and "plug" in ATTACH_STEPS and "create_veth" in ATTACH_STEPS
    assert DETACH_STEPS == ("find", "del_port")
    assert set(APPLY_KILLED) | set(APPLY_UNREACHABLE) == set(APPLY_STEPS)


@pytest.mark.parametrize("step", ATTACH_STEPS)
def test_attach_killed_then_attach_converges(step, ovs_host, target, attach_refs):
    attached, _ = attach_refs
    wait_gone([target])
    port = host_ifname(target.target, "eth1")
    cp = ovs_host.ovsfab("attach", ATTACH_ARGS[0], target.target, *ATTACH_ARGS[1:], env=kill_env(step))
    assert cp.returncode == KILLED, (step, cp.returncode, cp.stderr)
    # the residue of that point: the veth from create_veth on, the port from plug on
    i = ATTACH_STEPS.index(step)
    assert (port in ovs_host.links()) == (i >= ATTACH_STEPS.index("create_veth")), step
    assert (port in tb.ovs_ports(ovs_host)) == (i >= ATTACH_STEPS.index("plug")), step
    if i >= ATTACH_STEPS.index("plug"):
        # recorded: reconcile alone converges
        rc = ovs_host.ovsfab("reconcile")
        assert rc.returncode == 0, rc.stderr
        assert_same(norm_snapshot(ovs_host, [target]), attached)
    cp = ovs_host.ovsfab("attach", ATTACH_ARGS[0], target.target, *ATTACH_ARGS[1:])
    assert cp.returncode == 0, cp.stderr
    tb.assert_no_traceback(cp)
    assert_same(norm_snapshot(ovs_host, [target]), attached)


@pytest.mark.parametrize("step", DETACH_STEPS)
def test_detach_killed_then_detach_converges(step, ovs_host, target, attach_refs):
    attached, detached = attach_refs
    wait_gone([target])
    port = host_ifname(target.target, "eth1")
    ovs_host.ovsfab("attach", ATTACH_ARGS[0], target.target, *ATTACH_ARGS[1:], check=True)
    cp = ovs_host.ovsfab("detach", "br0", target.target, env=kill_env(step))
    assert cp.returncode == KILLED, (step, cp.returncode, cp.stderr)
    assert port in ovs_host.links()                                   # the veth is deleted last
    assert (port in tb.ovs_ports(ovs_host)) == (step == "find"), step
    cp = ovs_host.ovsfab("detach", "br0", target.target)
    assert cp.returncode == 0, cp.stderr
    assert_same(norm_snapshot(ovs_host, [target]), detached)
    # and nothing is left for a later detach to find
    again = ovs_host.ovsfab("detach", "br0", target.target)
    tb.assert_clean_error(again, codes=(3,))


@pytest.mark.docker
@pytest.mark.parametrize("op, step", [("attach", "configure"), ("detach", "del_port")])
def test_docker_container_killed_mid_operation_converges(op, step, ovs_host, containers):
    """The same with a Docker container (resolved through dockerd on the retry)."""
    c = containers()
    empty = norm_snapshot(ovs_host, [c])
    if op == "detach":
        ovs_host.ovsfab("attach", "br0", c.name, "10.1.0.10/24", check=True)
    cp = ovs_host.ovsfab(op, "br0", c.name, *(("10.1.0.10/24",) if op == "attach" else ()), env=kill_env(step))
    assert cp.returncode == KILLED, cp.stderr
    assert host_ifname(c.id, "eth1") in ovs_host.links()
    cp = ovs_host.ovsfab(op, "br0", c.name, *(("10.1.0.10/24",) if op == "attach" else ()))
    assert cp.returncode == 0, cp.stderr
    got = norm_snapshot(ovs_host, [c])
    if op == "attach":
        assert got["targets"][c.name][1].get("eth1") == ["10.1.0.10/24"]
        assert [p[0] for p in got["ports"]] == ["br0", host_ifname(c.id, "eth1")]
        assert all(h[1] and h[2] for h in got["health"]), got["health"]
    else:
        assert "eth1" not in got["targets"][c.name][0]
        assert [p[0] for p in got["ports"]] == ["br0"]
        assert set(got["host_links"]) - set(empty["host_links"]) == {"br0", "ovs-netdev"}


# ---------------------------------------------------------------- apply
HOSTS = """name: crash
hosts:
  h1: {underlay: 192.168.77.5, uplink: eth1}
  h2: {underlay: 192.168.77.6}
"""


def fabric_v1(t) -> str:
    return (HOSTS + "networks:\n  blue: {bridge: br0, mode: vxlan, key: 5001, subnet: 10.77.0.0/24, "
            "gateway: 10.77.0.1}\nattachments:\n"
            f"  - {{container: '{t[0].target}', network: blue, host: h1, address: 10.77.0.10}}\n"
            f"  - {{container: '{t[1].target}', network: blue, host: h1, address: 10.77.0.11}}\n"
            f"  - {{container: '{t[2].target}', network: blue, host: h1, address: 10.77.0.12}}\n")


def fabric_v2(t) -> str:
    """v1 edited: the network spans h2 (uplink + tunnel), one kept, one dropped, one changed, one new."""
    return (HOSTS + "networks:\n  blue: {bridge: br0, mode: vxlan, key: 5001, subnet: 10.77.0.0/24, "
            "gateway: 10.77.0.1, hosts: [h1, h2]}\nattachments:\n"
            f"  - {{container: '{t[0].target}', network: blue, host: h1, address: 10.77.0.10}}\n"
            f"  - {{container: '{t[2].target}', network: blue, host: h1, address: 10.77.0.22}}\n"
            f"  - {{container: '{t[3].target}', network: blue, host: h1, address: 10.77.0.13}}\n")


def apply_host() -> tb.OvsHost:
    """A fresh simulated host with an uplink NIC eth1 holding the underlay address."""
    h = tb.OvsHost()
    h.ip("link", "add", "eth1", "type", "veth", "peer", "name", "eth1p")
    h.ip("link", "set", "eth1p", "up")
    h.ip("link", "set", "eth1", "up")
    h.ip("addr", "add", "192.168.77.5/24", "dev", "eth1")
    return h


@pytest.fixture(scope="module")
def apply_targets():
    ts = [tb.make_netns() for _ in range(4)]
    yield ts
    for t in ts:
        tb.delete_netns(t.name)


@pytest.fixture(scope="module")
def fabric_files(apply_targets, tmp_path_factory):
    d = tmp_path_factory.mktemp("crash")
    v1, v2 = d / "v1.yaml", d / "v2.yaml"
    v1.write_text(fabric_v1(apply_targets))
    v2.write_text(fabric_v2(apply_targets))
    return v1, v2


@pytest.fixture(scope="module")
def apply_ref(apply_targets, fabric_files):
    """What a clean apply v1, then a clean apply --prune of v2, leave."""
    v1, v2 = fabric_files
    with apply_host() as h:
        h.ovsfab("apply", v1, "--host", "h1", check=True)
        h.ovsfab("apply", v2, "--host", "h1", "--prune", check=True)
        ref = norm_snapshot(h, apply_targets)
        again = h.ovsfab("apply", v2, "--host", "h1", "--prune", check=True)
        assert "nothing to do" in again.stdout, again.stdout
    wait_gone(apply_targets)
    tnames = [t.name for t in apply_targets]
    addrs = [ref["targets"][n][1].get("eth1") for n in tnames]
    assert addrs == [["10.77.0.10/24"], None, ["10.77.0.22/24"], ["10.77.0.13/24"]], addrs
    assert "br-eth1" in ref["bridges"] and any(p[0].startswith("vx") or "vxlan" in str(p) for p in ref["ports"])
    return ref


@pytest.mark.parametrize("step", APPLY_KILLED)
def test_apply_killed_then_reapply_converges(step, apply_targets, fabric_files, apply_ref):
    v1, v2 = fabric_files
    wait_gone(apply_targets)
    with apply_host() as h:
        h.ovsfab("apply", v1, "--host", "h1", check=True)
        v1_ports = tb.ovs_ports(h)
        cp = h.ovsfab("apply", v2, "--host", "h1", "--prune", env=kill_env(step))
        assert cp.returncode == KILLED, (step, cp.returncode, cp.stderr)
        # before the one commit transaction the kill leaves a half-done state;
        # from it on, everything that has state is done (announce/prune add none here)
        killed = norm_snapshot(h, apply_targets)
        committed = APPLY_STEPS.index(step) >= APPLY_STEPS.index("commit")
        assert (killed == apply_ref) == committed, step
        if step in ("prepare", "commit", "announce", "prune"):
            new_port = host_ifname(apply_targets[3].target, "eth1")
            assert new_port in killed["host_links"], "prepare's veths should be left by the kill"
        if step == "uplinks":
            assert "br-eth1" in tb.ovs_bridges(h) and tb.ovs_ports(h) != v1_ports
        t0 = time.monotonic()
        cp = h.ovsfab("apply", v2, "--host", "h1", "--prune")
        recover = time.monotonic() - t0
        assert cp.returncode == 0, cp.stderr
        tb.assert_no_traceback(cp)
        assert_same(norm_snapshot(h, apply_targets), apply_ref)
        print(f"apply killed after {step}: re-apply converged in {recover:.2f} s")
