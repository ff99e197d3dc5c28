"""``ovsfab lab``: the walkthrough's two hosts, simulated on this machine.

Topology (``--hosts N``, default 2)::

    [switch netns: Linux bridge "wire"] ── veth ── eth1 [host netns docker-test1: private OVS] ── container
                                        ── veth ── eth1 [host netns docker-test2: private OVS] ── container

Hosts get the walkthrough's underlay addresses (192.168.77.5, .6, …) on eth1.
``--mode uplink``: eth1 becomes br0's uplink and the containers get
192.168.77.10, .20, … on the same L2 segment.  ``--mode vxlan``: eth1 is the
uplink of ``br-ul`` (which holds the underlay address, as the userspace
datapath needs), br0 carries a VXLAN mesh, containers get 10.77.0.10, .20, …
with the MTU left for the tunnel.  Every address lives inside the lab's
namespaces only.

What ``up`` creates is recorded, resource by resource, in a state file, so
``down`` removes exactly that, even after an interrupted ``up``.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import sys
import tarfile
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, NoReturn, Optional

from ovsfab import defaults
from ovsfab.errors import Conflict, InvalidInput, NotFound, OperationFailed, OvsfabError
from ovsfab.lab.daemons import OvsDaemons
from ovsfab.plumbing.netns import Namespace, named_path

LOG = logging.getLogger(__name__)

DEFAULT_LAB_DIR = "/run/ovsfab-lab"
LAB_DIR = os.environ.get("OVSFAB_LAB_DIR", DEFAULT_LAB_DIR)
SWITCH_NS = "ovsfab-lab-switch"
WIRE = "wire"
IMAGE = "ovsfab-lab:busybox"
LABEL = "ovsfab-lab"
MODES = ("uplink", "vxlan", "ovn")
# --mode ovn: a central (its own namespace on the wire) plus the hosts, each
# with ovn-controller; containers on the OVN network "lab" (ovsfab/ovn).
CENTRAL_NS = "ovsfab-lab-central"
CENTRAL_UNDERLAY = "192.168.77.4/24"
OVN_NETWORK = "lab"
VNI = 5001


def _state_path() -> str:
    return os.path.join(LAB_DIR, "lab.json")


@dataclass
class LabHost:
    """One simulated host."""

    name: str
    netns: str
    rundir: str
    underlay: str
    container: str = ""      # target spec: Docker name or netns:NAME
    address: str = ""        # the container's address
    plugin: str = ""         # --driver: the host's Docker driver (plugin name)

    @property
    def remote(self) -> str:
        return f"unix:{os.path.join(self.rundir, 'db.sock')}"


@dataclass
class LabState:
    """What the lab consists of; written after every created resource."""

    mode: str
    backend: str = "ovs"
    hosts: List[LabHost] = field(default_factory=list)
    namespaces: List[str] = field(default_factory=list)
    rundirs: List[str] = field(default_factory=list)
    containers: List[str] = field(default_factory=list)
    results: Dict[str, object] = field(default_factory=dict)
    #: --mode ovn: rundirs where OVN daemons run (central first), stopped by down.
    ovn_rundirs: List[str] = field(default_factory=list)
    #: What ``ovsfab check`` found on hosts that did not converge (one line each).
    problems: List[str] = field(default_factory=list)
    #: --driver: the Docker path through ovsfab's Docker driver (ovsfab/lab/driver.py):
    #: rundirs of hosts whose driver runs, and the Docker networks made.
    driver: bool = False
    drivers: List[str] = field(default_factory=list)
    networks: List[str] = field(default_factory=list)

    def save(self) -> None:
        os.makedirs(LAB_DIR, mode=0o750, exist_ok=True)
        tmp = _state_path() + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(asdict(self), fh, indent=2)
        os.replace(tmp, _state_path())

    @classmethod
    def load(cls) -> Optional["LabState"]:
        try:
            with open(_state_path(), encoding="utf-8") as fh:
                raw = json.load(fh)
        except FileNotFoundError:
            return None
        hosts = [LabHost(**h) for h in raw.pop("hosts", [])]
        return cls(hosts=hosts, **raw)


# -- building blocks ----------------------------------------------------------
def _create_netns(state: LabState, name: str) -> Namespace:
    from pyroute2 import netns as pr_netns  # noqa: PLC0415

    if os.path.exists(named_path(name)):
        raise Conflict(f"network namespace {name} exists already", "remove it or run ovsfab lab down")
    pr_netns.create(name)
    state.namespaces.append(name)
    state.save()
    ns = Namespace.open(named_path(name))
    from ovsfab.plumbing.links import NetlinkHandle  # noqa: PLC0415

    handle = NetlinkHandle(ns)
    try:
        lo = handle.index("lo")
        if lo is not None:
            handle.set_up(lo)
    finally:
        handle.close()
    return ns


def _docker_client():  # -> docker.APIClient or None
    try:
        import docker  # noqa: PLC0415

        client = docker.APIClient(base_url=defaults.docker_host(os.environ),
                                  timeout=10)
        client.ping()
        return client
    except Exception as exc:  # no dockerd: the lab uses plain namespaces
        LOG.debug("dockerd not reachable (%s): containers will be plain namespaces", exc)
        return None


def _ensure_image(client) -> None:
    if client.images(name=IMAGE):
        return
    busybox = shutil.which("busybox") or "/bin/busybox"
    if not os.path.exists(busybox):
        raise NotFound("busybox is not installed (needed for the lab's container image)",
                       "apt-get install busybox-static")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(busybox, arcname="bin/busybox")
        for applet in ("sh", "sleep", "ip", "ping", "ping6", "nc", "ifconfig", "cat"):
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type = tarfile.SYMTYPE
            info.linkname = "busybox"
            tar.addfile(info)
    client.import_image_from_data(buf.getvalue(), repository=IMAGE.split(":")[0], tag=IMAGE.split(":")[1])


def _start_container(state: LabState, client, host: LabHost) -> str:
    import docker.errors  # noqa: PLC0415 - the client's SDK
    from ovsfab.lab.driver import docker_error  # noqa: PLC0415

    name = f"ovsfab-lab-{host.name}"
    cfg = client.create_host_config(network_mode="none")
    try:
        created = client.create_container(IMAGE, ["/bin/sleep", "1000000000"], name=name, host_config=cfg,
                                          labels={LABEL: host.name}, hostname=f"{host.name}-c1")
    except docker.errors.APIError as exc:  # e.g. a container of an earlier lab: not ours to remove
        raise docker_error(exc, f"cannot create container {name}",
                           f"remove what is left of an earlier lab: docker rm -f {name}") from None
    state.containers.append(name)
    state.save()
    client.start(created["Id"])
    return name


# -- the verbs ----------------------------------------------------------------
def up(hosts: int = 2, mode: str = "uplink", progress: Callable[[str], None] = lambda s: None,
       bare: bool = False, backend: str = "ovs", driver: bool = False) -> LabState:
    """Build the lab, connect it, ping across; roll everything back on failure.

    ``bare``: hosts, their OVS and containers only — connecting them is left
    to the user (docs/walkthrough.md does it step by step).  ``driver``: the
    containers join through ovsfab's Docker driver, one per host
    (ovsfab/lab/driver.py); with ``bare``, the drivers run and no container
    is made.
    """
    from ovsfab.ops.attach import require_root  # noqa: PLC0415

    if mode not in MODES:
        raise InvalidInput(f"lab mode {mode!r} is unknown", "use uplink, vxlan or ovn")
    if backend not in ("ovs", "linux"):
        raise InvalidInput(f"lab backend {backend!r} is unknown", "use ovs or linux")
    if not 2 <= hosts <= 9:
        raise InvalidInput(f"--hosts {hosts} is outside 2..9")
    if driver and (mode == "ovn" or backend != "ovs"):
        raise InvalidInput("lab up --driver builds uplink or vxlan labs on OVS",
                           "use --mode uplink or vxlan with --backend ovs")
    require_root()
    if LabState.load() is not None:
        raise Conflict("a lab is up already", "run ovsfab lab down first (ovsfab lab status shows it)")
    if driver:  # before anything is built
        from ovsfab.lab.driver import require_docker  # noqa: PLC0415

        require_docker(_docker_client())
    state = LabState(mode=mode, backend=backend, driver=driver)
    state.save()
    try:
        _build(state, hosts, progress, bare)
    except BaseException:
        progress("failed: removing what was built")
        down(quiet=True)
        raise
    return state


def _build(state: LabState, count: int, progress: Callable[[str], None], bare: bool) -> None:
    from ovsfab.plumbing.links import NetlinkHandle  # noqa: PLC0415

    switch = _create_netns(state, SWITCH_NS)
    sw = NetlinkHandle(switch)
    try:
        sw.ipr.link("add", ifname=WIRE, kind="bridge")
        sw.set_up(sw.index(WIRE))
        if state.mode == "ovn":
            from ovsfab.lab.ovn import build_central  # noqa: PLC0415

            build_central(state, sw, progress)
        for i in range(1, count + 1):
            name = f"docker-test{i}"
            host = LabHost(name=name, netns=name, rundir=os.path.join(LAB_DIR, name),
                           underlay=f"192.168.77.{4 + i}/24")
            progress(f"host {name}: namespace, eth1 {host.underlay} on the wire, private OVS")
            ns = _create_netns(state, name)
            sw.create_veth(f"wire{i}", "eth1", ns, None, None)
            sw.ipr.link("set", index=sw.index(f"wire{i}"), master=sw.index(WIRE))
            sw.set_up(sw.index(f"wire{i}"))
            inner = NetlinkHandle(ns)
            try:
                from ovsfab.model import parse_address  # noqa: PLC0415

                if state.mode == "ovn":
                    # ovn-controller's own TCP session to the SB DB crosses
                    # these veths and the userspace datapath: see ovsfab/lab/ovn.py.
                    sw.disable_tx_checksum(f"wire{i}")
                    inner.disable_tx_checksum("eth1")
                idx = inner.index("eth1")
                inner.add_address(idx, parse_address(host.underlay))
                inner.set_up(idx)
            finally:
                inner.close()
            state.hosts.append(host)
            state.save()
            if state.backend == "ovs":  # a Linux-bridge host needs no daemons
                state.rundirs.append(host.rundir)
                state.save()
                OvsDaemons(host.rundir).start(ns)
            ns.close()
    finally:
        sw.close()
        switch.close()

    client = _docker_client()
    if client is not None:
        _ensure_image(client)
    if state.driver:
        from ovsfab.lab import driver  # noqa: PLC0415

        driver.require_docker(client)
        for host in state.hosts:
            host.plugin = driver.plugin_name(host.name, LAB_DIR, DEFAULT_LAB_DIR)
            with Namespace.open(named_path(host.netns)) as ns:
                driver.start_driver(state, host, ns, progress)
    for i, host in enumerate(state.hosts, start=1):
        if state.driver:  # made on its Docker network once the fabric is up (_connect)
            host.container = ""
        elif client is not None:
            host.container = _start_container(state, client, host)
        else:
            tname = f"{host.name}-c1"
            _create_netns(state, tname).close()
            host.container = f"netns:{tname}"
        host.address = (f"192.168.77.{10 * i}/24" if state.mode == "uplink" else f"10.77.0.{10 * i}/24")
        if state.mode == "ovn":  # the OVN network "lab" (a logical switch), not the underlay
            host.address = f"10.78.0.{10 * i}/24"
        state.save()
    if bare:
        return
    for i, host in enumerate(state.hosts, start=1):
        _connect(state, host, progress)
        if state.driver:
            _join_with_driver(state, client, host, i, progress)
    for host in state.hosts:
        _converge(state, host, progress)
    state.results = _ping_all(state, progress)
    state.save()


#: How long ``lab up`` waits for every host's ``ovsfab check`` to pass.
CONVERGE_TIMEOUT = 30.0


def _converge(state: LabState, host: LabHost, progress: Callable[[str], None]) -> None:
    """``ovsfab check --wait`` as that host: BFD up, one ARP answerer, neighbour caches right."""
    from ovsfab.ops.check import check  # noqa: PLC0415

    if state.mode == "ovn":  # OVN's own tunnels: ovn-controller's business (ovn status)
        return
    if state.backend == "linux":
        from ovsfab.backends.linux import LinuxBackend  # noqa: PLC0415

        factory: Callable[[], object] = LinuxBackend
    else:
        from ovsfab.backends.ovs.backend import OvsBackend  # noqa: PLC0415

        factory = lambda: OvsBackend(host.remote)  # noqa: E731
    with Namespace.open(named_path(host.netns)) as ns, ns.entered():
        res = check(factory, host.remote, wait=CONVERGE_TIMEOUT)  # type: ignore[arg-type]
    if not res.ok:  # kept, not raised: the lab stays up for a look
        state.problems.extend(f"{host.name}: {p.line()}" for p in res.problems)
        progress(f"{host.name}: ovsfab check: {len(res.problems)} problem(s) after {res.elapsed:.1f} s")
        return
    progress(f"{host.name}: ovsfab check: {len(res.tunnels)} tunnel(s) converged in {res.elapsed:.1f} s")


def _connect(state: LabState, host: LabHost, progress: Callable[[str], None]) -> None:
    """Uplink/tunnels and the attachment, with ovsfab's own operations, as that host."""
    from ovsfab.backends.ovs.backend import OvsBackend  # noqa: PLC0415
    from ovsfab.model import AttachRequest  # noqa: PLC0415
    from ovsfab.ops.attach import attach  # noqa: PLC0415
    from ovsfab.ops.tunnel import TunnelRequest, tunnel_add  # noqa: PLC0415
    from ovsfab.ops.uplink import uplink_add  # noqa: PLC0415

    if state.backend == "linux":
        from ovsfab.backends.linux import LinuxBackend  # noqa: PLC0415

        factory = LinuxBackend
    else:
        factory = lambda: OvsBackend(host.remote)  # noqa: E731
    if state.mode == "ovn":
        from ovsfab.lab.ovn import connect_host  # noqa: PLC0415

        connect_host(state, host, progress)
        return
    with Namespace.open(named_path(host.netns)) as ns, ns.entered():
        if state.mode == "uplink":
            progress(f"{host.name}: ovsfab uplink add br0 eth1")
            uplink_add("br0", "eth1", False, "auto", factory)
        else:
            if state.backend == "ovs":
                # The userspace datapath sends tunnel packets itself: the
                # underlay address must sit on an OVS bridge.  Kernel VXLAN
                # (the Linux backend) routes through eth1 as it is.
                progress(f"{host.name}: ovsfab uplink add br-ul eth1")
                uplink_add("br-ul", "eth1", False, "auto", factory)
            for other in state.hosts:
                if other is not host:
                    remote = other.underlay.split("/")[0]
                    progress(f"{host.name}: ovsfab tunnel add br0 {remote} --key {VNI}")
                    tunnel_add(TunnelRequest.parse("br0", remote, "vxlan", str(VNI)), factory)
        if state.driver:  # Docker asks the driver for the interface (_join_with_driver)
            return
        progress(f"{host.name}: ovsfab attach br0 {host.container} {host.address}")
        attach(AttachRequest.parse("br0", host.container, [host.address]), factory)


def _join_with_driver(state: LabState, client, host: LabHost, index: int, progress: Callable[[str], None]) -> None:
    """The host's Docker network on br0 and its container on it (instead of ovsfab attach)."""
    import ipaddress  # noqa: PLC0415

    from ovsfab.lab import driver  # noqa: PLC0415

    subnet = str(ipaddress.ip_interface(host.address).network)
    options = {"bridge": "br0"}
    if state.mode == "vxlan":
        options.update({"mode": "vxlan", "key": str(VNI)})
    driver.network_and_container(state, client, host, index, subnet, options, IMAGE, LABEL, progress)


def _target_ns(host: LabHost) -> Namespace:
    from ovsfab.plumbing import containers  # noqa: PLC0415

    return Namespace.open(containers.resolve(host.container).netns_path)


def _ping_all(state: LabState, progress: Callable[[str], None]) -> Dict[str, object]:
    from ovsfab.plumbing.probe import ping  # noqa: PLC0415

    results: Dict[str, object] = {}
    for src in state.hosts:
        with _target_ns(src) as ns:
            for dst in state.hosts:
                if dst is src:
                    continue
                addr = dst.address.split("/")[0]
                rtt = ping(ns, addr, count=5, timeout=1.0)
                key = f"{src.name}->{dst.name}"
                results[key] = None if rtt is None else round(rtt * 1000, 3)
                progress(f"ping {src.container} -> {addr}: "
                         + ("no reply" if rtt is None else f"{rtt * 1000:.2f} ms"))
    return results


def down(quiet: bool = False) -> List[str]:
    """Remove everything the state file records, newest first."""
    from pyroute2 import netns as pr_netns  # noqa: PLC0415

    state = LabState.load()
    if state is None:
        return []
    removed: List[str] = []
    if state.containers:
        client = _docker_client()
        if client is not None and state.driver:  # a removal waits for the driver's Leave/DeleteEndpoint
            from ovsfab.lab.driver import DRIVER_CALL_TIMEOUT  # noqa: PLC0415

            client.timeout = DRIVER_CALL_TIMEOUT
        for name in reversed(state.containers):
            if client is None:
                LOG.warning("cannot remove container %s: dockerd is not reachable", name)
                continue
            import docker.errors  # noqa: PLC0415 - the client above imported the SDK

            try:
                # One at a time: dockerd 20.10 deadlocks on parallel removal.
                client.remove_container(name, force=True)
                removed.append(f"container {name}")
            except docker.errors.NotFound:  # gone already is fine
                pass
            except Exception as exc:  # noqa: BLE001 - keep removing the rest; say what stayed
                LOG.warning("cannot remove container %s: %s", name, exc)
    if state.networks or state.drivers:  # networks while their drivers still answer, then the drivers
        from ovsfab.lab import driver  # noqa: PLC0415

        client = _docker_client()
        if state.networks and client is not None:
            try:
                removed.extend(driver.remove_networks(state, client))
            except OvsfabError as exc:  # keep removing the rest; say what stayed
                LOG.warning("%s", exc)
        removed.extend(driver.stop_drivers(state))
    if state.ovn_rundirs:  # before the OVS daemons ovn-controller talks to
        from ovsfab.lab.ovn import stop_ovn  # noqa: PLC0415

        removed.extend(stop_ovn(state))
    for rundir in reversed(state.rundirs):
        OvsDaemons(rundir).remove()
        removed.append(f"OVS of {os.path.basename(rundir)}")
    for name in reversed(state.namespaces):
        if os.path.exists(named_path(name)):
            try:
                pr_netns.remove(name)
                removed.append(f"netns {name}")
            except OSError as exc:
                LOG.warning("cannot remove netns %s: %s", name, exc)
    os.unlink(_state_path())
    try:
        os.rmdir(LAB_DIR)
    except OSError:
        pass
    return removed


def status() -> Optional[Dict[str, object]]:
    """The lab as recorded, with what is alive now."""
    state = LabState.load()
    if state is None:
        return None
    hosts = []
    for host in state.hosts:
        daemons = OvsDaemons(host.rundir)
        hosts.append({
            "name": host.name,
            "netns": host.netns,
            "netns_present": os.path.exists(named_path(host.netns)),
            "underlay": host.underlay,
            "ovsdb_server_pid": daemons.pid("ovsdb-server") if state.backend == "ovs" else None,
            "ovs_vswitchd_pid": daemons.pid("ovs-vswitchd") if state.backend == "ovs" else None,
            "db": host.remote if state.backend == "ovs" else None,
            "container": host.container,
            "address": host.address,
            "plugin": host.plugin or None,
        })
    out: Dict[str, object] = {"mode": state.mode, "backend": state.backend, "driver": state.driver, "hosts": hosts,
                              "ping": state.results}
    if state.mode == "ovn":
        from ovsfab.lab.ovn import ovn_status  # noqa: PLC0415

        out["ovn"] = ovn_status(state)
    return out


def exec_as(host_name: str, argv: List[str]) -> NoReturn:
    """Replace this process with ``argv`` running as a lab host (its netns and OVS)."""
    state = LabState.load()
    if state is None:
        raise NotFound("no lab is up", "run ovsfab lab up")
    host = next((h for h in state.hosts if h.name == host_name), None)
    if host is None:
        raise NotFound(f"the lab has no host {host_name!r}",
                       "hosts: " + ", ".join(h.name for h in state.hosts))
    if not argv:
        raise InvalidInput("no command given", f"e.g. ovsfab lab exec {host_name} -- ovsfab show")
    if argv[0] == "ovsfab":
        argv = [sys.executable, "-m", "ovsfab"] + argv[1:]
    env = dict(os.environ, OVS_RUNDIR=host.rundir, OVN_RUNDIR=host.rundir)  # OVN: the host's ovn-controller
    env.pop("OVSFAB_DB", None)
    if state.backend == "linux":
        env["OVSFAB_BACKEND"] = "linux"
    ns = Namespace.open(named_path(host.netns))
    from ovsfab.plumbing.netns import _setns  # noqa: PLC0415

    _setns(ns.fd)  # for good: this process becomes the command
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as exc:
        raise OperationFailed(f"cannot run {argv[0]}: {exc.strerror}") from None


__all__ = ["up", "down", "status", "exec_as", "LabState", "LabHost", "OvsfabError"]
