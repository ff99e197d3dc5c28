"""Failure injection: OVSFAB_INJECT_FAULT=<step> fails right after <step>.

Contract: a failed attach leaves no residue (every done step undone, bridge
created by this attach included); a failed detach leaves the attachment fully
present (and a plain detach afterwards still works).

The step lists come from the product.  If they cannot be imported the tests
FAIL (a missing hook must not silently turn into skipped tests).
"""
import pytest

import testbed as tb

pytestmark = pytest.mark.docker

try:
    from ovsfab.ops.attach import ATTACH_STEPS
    _ATTACH_ERR = None
except Exception as e:  # noqa: BLE001 - reported by the test
    ATTACH_STEPS, _ATTACH_ERR = ("<import-failed>",), repr(e)

try:
    from ovsfab.ops.detach import DETACH_STEPS
    _DETACH_ERR = None
except Exception as e:  # noqa: BLE001
    DETACH_STEPS, _DETACH_ERR = ("<import-failed>",), repr(e)


def _steps_ok(steps, err, what):
    if err is not None:
        pytest.fail(f"cannot import {what}: {err}", pytrace=False)
    assert isinstance(steps, tuple) and steps, f"{what} must be a non-empty tuple"
    assert all(isinstance(s, str) and s for s in steps), steps
    assert len(set(steps)) == len(steps), f"duplicate step names in {what}: {steps}"


def test_step_lists_importable():
    _steps_ok(ATTACH_STEPS, _ATTACH_ERR, "ovsfab.ops.attach.ATTACH_STEPS")
    _steps_ok(DETACH_STEPS, _DETACH_ERR, "ovsfab.ops.detach.DETACH_STEPS")


@pytest.mark.parametrize("step", ATTACH_STEPS)
def test_attach_fault_leaves_no_residue(step, ovs_host, containers):
    _steps_ok(ATTACH_STEPS, _ATTACH_ERR, "ovsfab.ops.attach.ATTACH_STEPS")
    c = containers()
    before = tb.snapshot(ovs_host, [c])
    cp = ovs_host.ovsfab("attach", "br0", c.name, "10.1.0.10/24@10.1.0.1",
                         "--vlan", "7", "--mtu", "1400",
                         env={"OVSFAB_INJECT_FAULT": step})
    tb.assert_clean_error(cp)
    tb.assert_no_residue(ovs_host, before, [c])
    # and the same attach without the fault still works afterwards
    ovs_host.ovsfab("attach", "br0", c.name, "10.1.0.10/24@10.1.0.1",
                    "--vlan", "7", "--mtu", "1400", check=True)
    assert "10.1.0.10/24" in tb.addrs_in(c)["eth1"]


@pytest.mark.parametrize("step", ATTACH_STEPS)
def test_attach_fault_existing_bridge_kept(step, ovs_host, netns_targets):
    """With a pre-existing bridge (and another attachment on it), a failed
    attach must not touch the bridge or the other attachment."""
    _steps_ok(ATTACH_STEPS, _ATTACH_ERR, "ovsfab.ops.attach.ATTACH_STEPS")
    other, t = netns_targets(), netns_targets()
    ovs_host.ovsfab("attach", "br0", other.target, "10.1.0.20/24", check=True)
    before = tb.snapshot(ovs_host, [other, t])
    cp = ovs_host.ovsfab("attach", "br0", t.target, "10.1.0.10/24",
                         env={"OVSFAB_INJECT_FAULT": step})
    tb.assert_clean_error(cp)
    tb.assert_no_residue(ovs_host, before, [other, t])


@pytest.mark.parametrize("step", DETACH_STEPS)
def test_detach_fault_keeps_attachment(step, ovs_host, containers):
    _steps_ok(DETACH_STEPS, _DETACH_ERR, "ovsfab.ops.detach.DETACH_STEPS")
    c, peer = containers(), containers()
    ovs_host.ovsfab("attach", "br0", c.name, "10.1.0.10/24", "--vlan", "7", check=True)
    ovs_host.ovsfab("attach", "br0", peer.name, "10.1.0.20/24", "--vlan", "7", check=True)
    attached = tb.snapshot(ovs_host, [c, peer])
    cp = ovs_host.ovsfab("detach", "br0", c.name, env={"OVSFAB_INJECT_FAULT": step})
    tb.assert_clean_error(cp)
    tb.assert_no_residue(ovs_host, attached, [c, peer])
    # still fully working, and still recognised as the same attachment
    assert tb.ping(peer, "10.1.0.10")
    again = ovs_host.ovsfab("attach", "br0", c.name, "10.1.0.10/24", "--vlan", "7")
    assert again.returncode == 0 and "already" in (again.stdout + again.stderr).lower(), again.stderr
    ovs_host.ovsfab("detach", "br0", c.name, check=True)
    assert "eth1" not in tb.links_in(c)
    assert tb.ovs_port_for(ovs_host, container_name=c.name) is None
