"""ovsfab on the kernel (``system``) datapath, inside two qemu guests.

The host has no openvswitch module, so these scenarios run in guests booted
under TCG from Debian's cloud kernel (see tests/vm/vmrun.py and
docs/kernel-datapath.md).  One module fixture boots both guests once; each
test checks one scenario's result lines from both guests' serial consoles.

Skipped (with the reason) only when qemu or the kernel cannot be obtained;
with CI=true that is a failure instead.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import vmrun  # noqa: E402

pytestmark = pytest.mark.vm


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="module")
def vm_run():
    logdir = os.environ.get("OVSFAB_VM_LOGDIR")
    try:
        r = vmrun.run(logdir=Path(logdir) if logdir else None)
    except vmrun.Unavailable as exc:
        if _in_ci():
            pytest.fail(f"kernel-datapath VM tests cannot run in CI: {exc}")
        pytest.skip(f"kernel-datapath VM tests need qemu and Debian's cloud kernel: {exc}")
    print("\nvm timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in r.timings.items())
          + "\nvm logs: " + ", ".join(str(g.log) for g in r.guests))
    return r


def _check(r: "vmrun.Run", scenario: str) -> None:
    res = r.result(scenario)
    bad = {role: v for role, v in res.items() if v[0] != "PASS"}
    if bad:
        lines = [f"guest {role}: {status} {detail}" for role, (status, detail) in sorted(bad.items())]
        pytest.fail(f"scenario {scenario} on the kernel datapath:\n" + "\n".join(lines)
                    + f"\n\n{r.logs()}", pytrace=False)


def test_guests_booted_and_finished(vm_run):
    """Both guests loaded openvswitch.ko, ran every scenario and powered off."""
    missing = [g.role for g in vm_run.guests if not g.done]
    setup = {g.role: g.results["setup"] for g in vm_run.guests if "setup" in g.results}
    if missing or setup:
        pytest.fail(f"guests not finished: {missing}; setup failures: {setup}\n\n{vm_run.logs()}",
                    pytrace=False)


def test_attach_ping_tcp_detach(vm_run):
    """One host: two netns on br0 (system datapath) ping and move TCP data; detach leaves nothing."""
    _check(vm_run, "attach")


def test_uplink_two_hosts(vm_run):
    """Two hosts through `uplink add br0 eth0`: ping + TCP; `uplink del` restores eth0 exactly."""
    _check(vm_run, "uplink")


def test_vxlan_tunnel_two_hosts(vm_run):
    """Two hosts through a kernel-routed VXLAN: auto MTU 1450, DF 1422 passes, 1423 too long, TCP."""
    _check(vm_run, "tunnel")


def test_vlan_isolation_ovs_and_linux_bridge(vm_run):
    """--vlan: a pair per VLAN pings; across VLANs and untagged<->tagged nothing passes.

    Guest a: OVS on the system datapath; guest b: a Linux bridge with vlan_filtering."""
    _check(vm_run, "vlan")


def test_linux_bridge_uplink_two_hosts(vm_run):
    """`--backend linux uplink add brl eth0`: ping across; `uplink del` restores eth0's addr/route/link."""
    _check(vm_run, "linux-uplink")


def test_geneve_gre_tunnels_two_hosts(vm_run):
    """OVS Geneve and GRE on the system datapath: auto MTU, the DF boundary, ping and TCP."""
    _check(vm_run, "tunnels")


def test_linux_gretap_vxlan_two_hosts(vm_run):
    """Linux backend between the guests: a kernel VXLAN (attached without --backend: auto picks the
    Linux bridge), gretap with a key, ip6gretap and Geneve over an IPv6 underlay (DF boundary, TCP)."""
    _check(vm_run, "linux-tunnel")
