"""Resolve a target (Docker container, ``netns:NAME``, ``pid:N``) to its namespace."""

from __future__ import annotations

import logging
import os
from typing import Dict, Optional

from ovsfab import defaults
from ovsfab.errors import Conflict, NotFound, PermissionDenied, Unavailable
from ovsfab.model import Target, parse_target_spec
from ovsfab.plumbing import dockerapi
from ovsfab.plumbing.netns import named_path

LOG = logging.getLogger(__name__)

DOCKER_TIMEOUT = 10


def docker_url(docker_host: Optional[str] = None) -> str:
    """dockerd's API address: the request's, else this process's DOCKER_HOST, else the standard socket."""
    return defaults.docker_host(os.environ, docker_host)


def _docker_client(docker_host: Optional[str] = None):
    """A low-level Docker API client (the SDK is imported only here)."""
    import docker  # noqa: PLC0415 - lazy: ~160 ms of imports

    return docker.APIClient(base_url=docker_url(docker_host), timeout=DOCKER_TIMEOUT)


#: One client per DOCKER_HOST for lookups, kept for the life of the process:
#: making one asks dockerd for its API version (a round trip), which the
#: agent would otherwise pay on every attach.  Only _inspect_docker uses it.
_INSPECT_CLIENTS: Dict[str, object] = {}


def _inspect_client(docker_host: Optional[str] = None):  # -> docker.APIClient
    base_url = docker_url(docker_host)
    client = _INSPECT_CLIENTS.get(base_url)
    if client is None:
        client = _INSPECT_CLIENTS[base_url] = _docker_client(base_url)
    return client


def _inspect_docker(ref: str, docker_host: Optional[str] = None) -> dict:
    """``docker inspect REF``: over dockerd's unix socket directly, else through the SDK."""
    url = docker_url(docker_host)
    if dockerapi.unix_path(url):
        try:
            status, info = dockerapi.get_json(url, f"/containers/{ref}/json")
        except PermissionError:
            raise PermissionDenied("cannot talk to dockerd: permission denied", "run ovsfab as root") from None
        except OSError as exc:
            raise Unavailable(f"cannot reach dockerd to look up {ref!r}: {dockerapi.unreachable(exc, url)}",
                              "start dockerd, set DOCKER_HOST, or use netns:NAME / pid:N") from None
        if status == 404:
            raise NotFound(f"no Docker container named {ref!r}",
                           "check `docker ps -a`, or use netns:NAME / pid:N for non-Docker targets")
        if status != 200 or not isinstance(info, dict):
            message = info.get("message") if isinstance(info, dict) else None
            raise Unavailable(f"dockerd answered {status} looking up {ref!r}" + (f": {message}" if message else ""),
                              "check dockerd's log")
        return info
    return _inspect_with_sdk(ref, docker_host)


def _inspect_with_sdk(ref: str, docker_host: Optional[str]) -> dict:
    import docker.errors  # noqa: PLC0415
    import requests.exceptions  # noqa: PLC0415

    try:
        return _inspect_client(docker_host).inspect_container(ref)
    except docker.errors.NotFound:
        raise NotFound(f"no Docker container named {ref!r}",
                       "check `docker ps -a`, or use netns:NAME / pid:N for non-Docker targets") from None
    except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
        if isinstance(exc, PermissionError) or "Permission denied" in str(exc):
            raise PermissionDenied("cannot talk to dockerd: permission denied", "run ovsfab as root") from None
        raise Unavailable(f"cannot reach dockerd to look up {ref!r}: "
                          f"{dockerapi.unreachable(exc, docker_url(docker_host))}",
                          "start dockerd, set DOCKER_HOST, or use netns:NAME / pid:N") from None


def resolve(spec: str, require_running: bool = True, docker_host: Optional[str] = None) -> Target:
    """Find the network namespace a target refers to.

    Raises NotFound for unknown targets and Conflict for containers that are
    not running or share the host's network namespace.
    """
    kind, ref = parse_target_spec(spec)
    if kind == "netns":
        path = named_path(ref)
        if not os.path.exists(path):
            raise NotFound(f"no network namespace named {ref!r} in /run/netns",
                           "create it with `ip netns add` or check the name")
        target = Target("netns", f"netns:{ref}", ref, None, path)
    elif kind == "cni":
        # Only the CNI plugin knows the namespace (CNI_NETNS); it builds the Target itself.
        raise NotFound(f"{spec} is a CNI attachment: its network namespace is known only to the runtime",
                       "let the container runtime remove it (CNI DEL)")
    elif kind == "pid":
        pid = int(ref)
        path = f"/proc/{pid}/ns/net"
        if not os.path.exists(path):
            raise NotFound(f"no process with PID {pid}", "check the PID")
        target = Target("pid", f"pid:{pid}", _comm(pid) or f"pid{pid}", pid, path)
    else:
        info = _inspect_docker(ref, docker_host)
        state = info.get("State") or {}
        name = (info.get("Name") or ref).lstrip("/")
        pid = int(state.get("Pid") or 0)
        if require_running and (not state.get("Running") or state.get("Restarting") or pid <= 0):
            status = state.get("Status") or "not running"
            raise Conflict(f"container {name} is {status}", f"start it first: docker start {name}")
        target = Target("docker", info["Id"], name, pid, f"/proc/{pid}/ns/net")
        if not require_running:
            return target
    _refuse_host_namespace(target)
    return target


def _comm(pid: int) -> Optional[str]:
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as fh:
            return fh.read().strip()
    except OSError:
        return None


def _refuse_host_namespace(target: Target) -> None:
    try:
        same = os.stat(target.netns_path).st_ino == os.stat("/proc/thread-self/ns/net").st_ino
    except FileNotFoundError:
        raise NotFound(f"the network namespace of {target.name} is gone",
                       "check the container is running") from None
    if same:
        raise Conflict(f"{target.name} shares this host's network namespace",
                       "attach containers that have their own (e.g. docker run --network none)")


def still_alive(target: Target, inode: int) -> bool:
    """True while the target's process still owns the namespace we opened."""
    if target.pid is None:
        return os.path.exists(target.netns_path)
    try:
        return os.stat(target.netns_path).st_ino == inode
    except OSError:
        return False
