"""Per-link sysctls (``/proc/sys/net/{ipv4,ipv6}/conf/LINK/KEY``).

There is no netlink attribute for ``arp_ignore``, ``arp_announce`` or
``disable_ipv6``.  The files under ``/proc/sys/net`` belong to the network
namespace of the thread that opens them, so a namespace is entered (this
thread only) just long enough to open the file.
"""

from __future__ import annotations

import os
from typing import Dict, Mapping, Optional

from ovsfab.errors import NotFound, OperationFailed, PermissionDenied
from ovsfab.plumbing.netns import Namespace

ROOT = "/proc/sys/net"


def _path(link: str, key: str) -> str:
    family, name = key.split("/", 1)  # "ipv4/arp_ignore"
    if "/" in link or link in (".", ".."):
        raise NotFound(f"no interface named {link}")
    return os.path.join(ROOT, family, "conf", link, name)


def _open(path: str, mode: str, ns: Optional[Namespace]):  # -> TextIO
    if ns is None:
        return open(path, mode, encoding="ascii")
    with ns.entered():
        return open(path, mode, encoding="ascii")


def family_present(family: str) -> bool:
    """False on a kernel built without that family (e.g. no IPv6)."""
    return os.path.isdir(os.path.join(ROOT, family, "conf"))


def read(link: str, key: str, ns: Optional[Namespace] = None) -> Optional[str]:
    """The value of ``KEY`` (``"ipv4/arp_ignore"``) on ``link``; None if the family is absent."""
    try:
        with _open(_path(link, key), "r", ns) as fh:
            return fh.read().strip()
    except FileNotFoundError:
        if not family_present(key.split("/", 1)[0]):
            return None
        raise NotFound(f"no interface named {link}", "check the name with `ip link`") from None
    except OSError as exc:
        raise OperationFailed(f"cannot read {key} of {link}: {exc.strerror}") from exc


def write(link: str, key: str, value: str, ns: Optional[Namespace] = None) -> bool:
    """Set ``KEY`` on ``link``; False when the kernel lacks that family (nothing to set)."""
    try:
        with _open(_path(link, key), "w", ns) as fh:
            fh.write(value)
    except FileNotFoundError:
        if not family_present(key.split("/", 1)[0]):
            return False
        raise NotFound(f"no interface named {link}", "check the name with `ip link`") from None
    except PermissionError as exc:
        raise PermissionDenied(f"cannot set {key} of {link}: {exc.strerror}", "run ovsfab as root") from exc
    except OSError as exc:
        raise OperationFailed(f"cannot set {key}={value} on {link}: {exc.strerror}") from exc
    return True


def read_many(link: str, keys: Mapping[str, str], ns: Optional[Namespace] = None) -> Dict[str, str]:
    """The current values of ``keys`` on ``link`` (absent families left out)."""
    out = {}
    for key in keys:
        value = read(link, key, ns)
        if value is not None:
            out[key] = value
    return out


def write_many(link: str, values: Mapping[str, str], ns: Optional[Namespace] = None) -> None:
    """Set several keys on ``link``, in the mapping's order."""
    for key, value in values.items():
        write(link, key, value, ns)
