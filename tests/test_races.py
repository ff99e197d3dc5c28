"""Races: two things at once end in ONE consistent state, with honest exit codes.

Each case starts the contenders as real processes at (nearly) the same time,
or lets one act when the other is visibly mid-way (its veth exists on the
host), then checks the end state with ``ip -j`` and ``ovs-vsctl`` only.  A
state is consistent when it is exactly one of the states the exit codes
allow -- e.g. "attached" (record + veth + address + ofport) or "detached"
(none of them) -- never a mix.  bench/bench_reliability.py repeats each race
many times (figures in docs/reliability.md).
"""
from __future__ import annotations

import subprocess
import time
from typing import List, Sequence, Tuple

import pytest

import testbed as tb

from ovsfab.model import host_ifname

ERRORS = (3, 4, 5, 6)


def start(host: tb.OvsHost, *args: str) -> subprocess.Popen:
    return subprocess.Popen(host.ovsfab_cmd(*map(str, args)), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=tb.clean_env(), cwd=str(tb.REPO))


def finish(proc: subprocess.Popen, timeout: float = 120) -> subprocess.CompletedProcess:
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def wait_link(host: tb.OvsHost, name: str, proc: subprocess.Popen, timeout: float = 30) -> bool:
    """Poll until ``name`` exists in the host namespace (True) or ``proc`` ended first (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if tb.run(["ip", "-n", host.name, "link", "show", "dev", name], check=False).returncode == 0:
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.002)
    raise AssertionError(f"{name} never appeared")


def attachment_state(host: tb.OvsHost, target, port: str, address: str) -> str:
    """'attached' or 'detached' from the oracles; fails on anything in between."""
    row = tb.ovs_row(host, "Interface", port)
    facts = {
        "port row": port in tb.ovs_ports(host),
        "interface ok": row is not None and isinstance(row["ofport"], int) and row["ofport"] > 0
        and row["error"] in ([], "", None),
        "host veth": port in host.links(),
        "container end": "eth1" in tb.links_in(target),
        "address": address in tb.addrs_in(target).get("eth1", []),
    }
    if all(facts.values()):
        return "attached"
    if not any(facts.values()):
        return "detached"
    raise AssertionError(f"inconsistent end state of {port}: {facts}")


def clean_error(cp: subprocess.CompletedProcess) -> None:
    tb.assert_clean_error(cp, codes=ERRORS)


# ---------------------------------------------------------------- attach vs detach
@pytest.mark.parametrize("first, delay", [("attach", 0.0), ("attach", 0.15), ("detach", 0.1)])
def test_attach_and_detach_at_once(first, delay, ovs_host, netns_targets):
    t = netns_targets()
    port = host_ifname(t.target, "eth1")
    runs = {"attach": ("attach", "br0", t.target, "10.3.0.10/24"), "detach": ("detach", "br0", t.target)}
    procs = {first: start(ovs_host, *runs[first])}
    time.sleep(delay)
    second = "detach" if first == "attach" else "attach"
    procs[second] = start(ovs_host, *runs[second])
    a, d = procs["attach"], procs["detach"]
    ra, rd = finish(a), finish(d)
    tb.assert_no_traceback(ra)
    tb.assert_no_traceback(rd)
    state = attachment_state(ovs_host, t, port, "10.3.0.10/24")
    if state == "attached":
        # detach came first and found nothing: it must say so
        assert ra.returncode == 0, ra.stderr
        assert rd.returncode == 3 and "has no eth1 attached" in rd.stderr, (rd.returncode, rd.stderr)
    else:
        # detach removed it: after a complete attach, or from under a running one (which then fails cleanly)
        assert rd.returncode == 0, rd.stderr
        if ra.returncode != 0:
            clean_error(ra)
    # whatever happened, the survivor's view is true: the next commands agree with it
    again = ovs_host.ovsfab("detach", "br0", t.target)
    assert again.returncode == (0 if state == "attached" else 3), again.stderr
    assert attachment_state(ovs_host, t, port, "10.3.0.10/24") == "detached"


# ---------------------------------------------------------------- two applies
def _fabric(name: str, targets, subnet: str) -> str:
    lines = [f"name: {name}", "hosts:", "  h1: {underlay: 192.168.77.5}", "networks:",
             f"  net: {{bridge: br0, mode: vxlan, key: 5001, subnet: {subnet}.0/24}}", "attachments:"]
    lines += [f"  - {{container: '{t.target}', network: net, host: h1, address: {subnet}.{10 + i}}}"
              for i, t in enumerate(targets)]
    return "\n".join(lines) + "\n"


def test_two_applies_of_different_files_at_once(ovs_host, netns_targets, tmp_path):
    """Two fabrics on the same bridge (neither exists yet), applied at the same moment."""
    sets = {"red": [netns_targets() for _ in range(6)], "green": [netns_targets() for _ in range(6)]}
    nets = {"red": "10.41.0", "green": "10.42.0"}
    files = {}
    for name, ts in sets.items():
        files[name] = tmp_path / f"{name}.yaml"
        files[name].write_text(_fabric(name, ts, nets[name]))
    procs = {name: start(ovs_host, "apply", f, "--host", "h1") for name, f in files.items()}
    results = {name: finish(p) for name, p in procs.items()}
    for name, cp in results.items():
        tb.assert_no_traceback(cp)
        if cp.returncode != 0:
            clean_error(cp)  # refused honestly ...
    # ... and then each file's state is all-or-nothing, matching its exit code
    for name, ts in sets.items():
        states = {attachment_state(ovs_host, t, host_ifname(t.target, "eth1"), f"{nets[name]}.{10 + i}/24")
                  for i, t in enumerate(ts)}
        want = "attached" if results[name].returncode == 0 else "detached"
        assert states == {want}, (name, results[name].returncode, results[name].stderr, states)
    ports = tb.ovs_ports(ovs_host)
    assert len(ports) == len(set(ports)) and tb.ovs_bridges(ovs_host) in ([], ["br0"])
    # a run that lost the race succeeds when repeated; then neither file has anything left to do
    for name, f in files.items():
        if results[name].returncode != 0:
            ovs_host.ovsfab("apply", f, "--host", "h1", check=True)
    for name, f in files.items():
        cp = ovs_host.ovsfab("apply", f, "--host", "h1", check=True)
        assert "nothing to do" in cp.stdout, (name, cp.stdout)
    assert len(tb.ovs_ports(ovs_host)) == 13  # br0 + 12 attachments
    assert tb.ping(sets["red"][0], f"{nets['red']}.11", count=1)


# ---------------------------------------------------------------- docker
@pytest.mark.docker
def test_docker_rm_during_attach(ovs_host, docker_image):
    c = tb.start_container(image=docker_image)
    port = host_ifname(c.id, "eth1")
    before = tb.snapshot(ovs_host)
    try:
        a = start(ovs_host, "attach", "br0", c.name, "10.4.0.10/24")
        mid_way = wait_link(ovs_host, port, a)
        tb.docker("rm", "-f", c.name)
        ra = finish(a)
    finally:
        tb.remove_containers([c.name])
    tb.assert_no_traceback(ra)
    assert mid_way, f"attach ended before its veth was seen: {ra.returncode} {ra.stderr}"
    if ra.returncode != 0:
        # it noticed: one line, and nothing of it left
        clean_error(ra)
        assert "stopped" in ra.stderr or "vanished" in ra.stderr or "not" in ra.stderr, ra.stderr
        tb.assert_no_residue(ovs_host, before)
    else:
        # it finished first: the record stays (the container's namespace took the veth), and
        # reconcile, which knows the container is gone, removes it
        assert port in tb.ovs_ports(ovs_host) and port not in ovs_host.links()
        rc = ovs_host.ovsfab("reconcile")
        assert rc.returncode == 0, rc.stderr
        assert "removed" in rc.stdout, rc.stdout
        assert port not in tb.ovs_ports(ovs_host)
        assert sorted(set(ovs_host.links()) - set(before.host_links)) == ["br0", "ovs-netdev"]


@pytest.mark.docker
def test_docker_restart_during_apply(ovs_host, module_containers, netns_targets, tmp_path):
    """`docker restart` of one container while apply wires it and others: reconcile + re-apply converge."""
    cs = [module_containers() for _ in range(3)]
    ns = [netns_targets() for _ in range(6)]
    names: List[Tuple[object, str, str]] = [(c, c.name, c.id) for c in cs] + [(t, t.target, t.target) for t in ns]
    f = tmp_path / "fabric.yaml"
    f.write_text("name: restart\nhosts:\n  h1: {underlay: 192.168.77.5}\nnetworks:\n"
                 "  net: {bridge: br0, mode: vxlan, key: 7, subnet: 10.43.0.0/24}\nattachments:\n"
                 + "".join(f"  - {{container: '{n}', network: net, host: h1, address: 10.43.0.{10 + i}}}\n"
                           for i, (_o, n, _k) in enumerate(names)))
    victim = cs[1]
    a = start(ovs_host, "apply", f, "--host", "h1")
    mid_way = wait_link(ovs_host, host_ifname(victim.id, "eth1"), a)
    tb.docker("restart", "-t", "0", victim.name)
    ra = finish(a)
    tb.assert_no_traceback(ra)
    assert mid_way, f"apply ended before the victim's veth was seen: {ra.returncode} {ra.stderr}"
    if ra.returncode != 0:
        clean_error(ra)
    # The restarted container has a new namespace: look it up again for the oracles.
    pid = int(tb.docker("inspect", "-f", "{{.State.Pid}}", victim.id).stdout)
    targets: Sequence = [tb.Container(c.name, c.id, pid if c is victim else c.pid) for c in cs] + ns
    # reconcile first: apply alone may take the restarted container's old veth, whose
    # namespace is still being torn down, for healthy (docs/reliability.md, known limits)
    rc = ovs_host.ovsfab("reconcile")
    assert rc.returncode == 0, rc.stderr
    re = ovs_host.ovsfab("apply", f, "--host", "h1")
    assert re.returncode == 0, re.stderr
    for i, ((_o, _n, key), t) in enumerate(zip(names, targets)):
        assert attachment_state(ovs_host, t, host_ifname(key, "eth1"), f"10.43.0.{10 + i}/24") == "attached"
    assert "nothing to do" in ovs_host.ovsfab("apply", f, "--host", "h1", check=True).stdout
    assert tb.ping(targets[1], "10.43.0.15", count=1)
