"""``ovsfab lab up --driver``: the lab's Docker path built with ovsfab's Docker driver.

Instead of ``docker run --network none`` plus ``ovsfab attach``, each host
runs ``ovsfab docker-driver`` in its namespace (plugin ``ovsfab-lab-HOST``:
one dockerd serves every simulated host, so each host's driver has its own
name, its socket where dockerd looks for it), the lab creates one Docker
network per host on that host's br0 (the same subnet everywhere, each host its
own ``--ip-range``), and the container is started on it with its address:
Docker asks the driver for the interface.

What is made is recorded in the lab's state before it exists (driver pid
files, network and container names), so ``lab down`` removes it even after an
interrupted ``up``: containers, then networks (their endpoints go through the
still running drivers), then the drivers.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import sys
import time
from typing import Any, Callable, List

from ovsfab.errors import Conflict, OperationFailed, OvsfabError, Unavailable
from ovsfab.plumbing.daemons import pid_of, spawn_background, stop_pid
from ovsfab.plumbing.netns import Namespace

PLUGIN_PREFIX = "ovsfab-lab-"
#: How long a driver may take to listen (a Python start-up on a loaded host).
DRIVER_START_TIMEOUT = 30.0
#: Docker API calls that reach the driver (network create, container start) wait for it:
#: the first one starts it up (imports, OVSDB session), on a loaded host well past the lab's 10 s.
DRIVER_CALL_TIMEOUT = 120


def plugin_name(host_name: str, lab_dir: str, default_dir: str) -> str:
    """The plugin name of one lab host: ``docker network create -d NAME``.

    ``ovsfab-lab-HOST`` for the lab in its default directory.  dockerd keeps
    the address of a plugin name it once activated until it restarts; the
    socket is always ``/run/docker/plugins/NAME.sock``, so that address does
    not change, and a lab elsewhere (OVSFAB_LAB_DIR, e.g. a test's) adds a
    digest of its directory to the name, so it never depends on what dockerd
    remembers of other labs' drivers.
    """
    if os.path.abspath(lab_dir) == os.path.abspath(default_dir):
        return PLUGIN_PREFIX + host_name
    digest = hashlib.sha256(os.path.abspath(lab_dir).encode()).hexdigest()[:8]
    return f"{PLUGIN_PREFIX}{digest}-{host_name}"


def network_name(host_name: str) -> str:
    """The Docker network of one lab host (named like its container)."""
    return PLUGIN_PREFIX + host_name


#: Where dockerd looks for a plugin by name (no spec file needed).
PLUGINS_DIR = "/run/docker/plugins"


def _socket(name: str) -> str:
    return os.path.join(PLUGINS_DIR, f"{name}.sock")


def _pidfile(rundir: str) -> str:
    return os.path.join(rundir, "docker-driver.pid")


def ip_range(subnet: str, index: int) -> str:
    """Host ``index``'s (1-based) share of the subnet for the IPAM: an /29 in its upper half, so the
    lab's own addresses (.10, .20, …) stay outside every range."""
    net = ipaddress.ip_network(subnet)
    base = int(net.network_address) + net.num_addresses // 2
    return f"{ipaddress.ip_address(base + 8 * (index - 1))}/29"


def docker_error(exc: Exception, what: str, remedy: str) -> OvsfabError:
    """A Docker API error as one of ovsfab's one-line errors (a name in use is a conflict)."""
    text = str(getattr(exc, "explanation", None) or exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status == 409 or "already in use" in line or "already exists" in line:
        return Conflict(f"{what}: {line}", remedy)
    return OperationFailed(f"{what}: {line}", remedy)


def start_driver(state: Any, host: Any, ns: Namespace, progress: Callable[[str], None]) -> None:
    """``ovsfab docker-driver`` as this host (its namespace, its OVS), until ``lab down``."""
    name = host.plugin
    sock, pidfile = _socket(name), _pidfile(host.rundir)
    argv = [sys.executable, "-m", "ovsfab", "--db", host.remote, "docker-driver", "--name", name,
            "--socket", sock, "--host-id", host.name]
    progress(f"{host.name}: ovsfab docker-driver --name {name}")
    state.drivers.append(host.rundir)  # before it exists: down stops what the pid file names
    state.save()
    env = {k: v for k, v in os.environ.items() if k not in ("OVSFAB_DB", "OVS_RUNDIR", "OVSFAB_INJECT_FAULT")}
    with ns.entered():  # the child is born in the host's namespace
        spawn_background(argv, env, os.path.join(host.rundir, "docker-driver.log"), pidfile)
    deadline = time.monotonic() + DRIVER_START_TIMEOUT
    while not os.path.exists(sock):
        if pid_of(pidfile) is None:
            raise OperationFailed(f"the Docker driver of {host.name} exited at start",
                                  f"see {os.path.join(host.rundir, 'docker-driver.log')}")
        if time.monotonic() > deadline:
            raise OperationFailed(f"the Docker driver of {host.name} did not listen within "
                                  f"{DRIVER_START_TIMEOUT:g} s", f"see {host.rundir}/docker-driver.log")
        time.sleep(0.05)


def stop_drivers(state: Any) -> List[str]:
    """Stop the drivers ``up`` started (SIGTERM: each removes its socket and spec file)."""
    removed = []
    for rundir in reversed(state.drivers):
        pid = pid_of(_pidfile(rundir))
        if pid is not None:
            stop_pid(pid, "ovsfab docker-driver")
            removed.append(f"docker-driver of {os.path.basename(rundir)}")
    return removed


def network_and_container(state: Any, client: Any, host: Any, index: int, subnet: str, options: dict,
                          image: str, label: str, progress: Callable[[str], None]) -> None:
    """The host's Docker network (this host's driver and IPAM) and its container on it, at its address."""
    import docker.errors  # noqa: PLC0415 - the client's SDK
    import docker.types  # noqa: PLC0415
    import requests.exceptions  # noqa: PLC0415 - what the SDK raises on a timeout

    errors = (docker.errors.APIError, requests.exceptions.RequestException)
    client.timeout = max(client.timeout or 0, DRIVER_CALL_TIMEOUT)
    name, plugin = network_name(host.name), host.plugin
    rng = ip_range(subnet, index)
    opts = " ".join(f"-o {k}={v}" for k, v in options.items())
    progress(f"{host.name}: docker network create -d {plugin} --ipam-driver {plugin} {opts} "
             f"--subnet {subnet} --ip-range {rng} {name}")
    state.networks.append(name)
    state.save()
    ipam = docker.types.IPAMConfig(driver=plugin, pool_configs=[docker.types.IPAMPool(subnet=subnet, iprange=rng)])
    try:
        client.create_network(name, driver=plugin, options=options, ipam=ipam, labels={label: host.name},
                              check_duplicate=True)
    except errors as exc:
        state.networks.remove(name)  # not ours: down must not remove it
        state.save()
        raise docker_error(exc, f"cannot create Docker network {name}",
                           f"remove what is left of an earlier lab: docker network rm {name}") from None
    ip = host.address.split("/")[0]
    cname = f"ovsfab-lab-{host.name}"
    progress(f"{host.name}: docker run -d --network {name} --ip {ip} --name {cname} {image}")
    try:
        created = client.create_container(
            image, ["/bin/sleep", "1000000000"], name=cname, labels={label: host.name}, hostname=f"{host.name}-c1",
            host_config=client.create_host_config(network_mode=name),
            networking_config=client.create_networking_config({name: client.create_endpoint_config(ipv4_address=ip)}))
    except errors as exc:
        raise docker_error(exc, f"cannot create container {cname}",
                           f"remove what is left of an earlier lab: docker rm -f {cname}") from None
    state.containers.append(cname)
    state.save()
    try:
        client.start(created["Id"])
    except errors as exc:
        raise docker_error(exc, f"cannot start container {cname} on network {name}",
                           f"see {host.rundir}/docker-driver.log") from None
    host.container = cname


def remove_networks(state: Any, client: Any) -> List[str]:
    """``docker network rm`` of the lab's networks (after their containers, before the drivers)."""
    import docker.errors  # noqa: PLC0415
    import requests.exceptions  # noqa: PLC0415

    client.timeout = max(client.timeout or 0, DRIVER_CALL_TIMEOUT)
    removed = []
    for name in reversed(state.networks):
        try:
            client.remove_network(name)
            removed.append(f"network {name}")
        except docker.errors.NotFound:
            pass
        except (docker.errors.APIError, requests.exceptions.RequestException) as exc:
            raise docker_error(exc, f"cannot remove Docker network {name}",
                               "run ovsfab lab down again, or docker network rm it") from None
    return removed


def require_docker(client: Any) -> None:
    if client is None:
        raise Unavailable("lab up --driver needs dockerd (the driver is Docker's plugin)",
                          "start dockerd, or leave out --driver (plain namespaces then)")
