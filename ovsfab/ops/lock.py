"""One lock per attachment, so attach and detach of the same interface do not interleave.

Why: a detach that finds no record may still find the veth of a detach that
was killed after removing the port (docs/reliability.md), and deletes it.
Without a lock, that veth could instead belong to an attach of the same
interface that is running right now: deleted between its creation and the
record, the attach would report success for a port without a link.  attach
holds the lock of its host-end name (:func:`~ovsfab.model.host_ifname`) from
before it reads the record until it is done or undone; detach takes it only
on that "no record" path, and looks again under it.

``flock`` on a file per host-end name, in the Open vSwitch run directory
(``OVS_RUNDIR``, else ``/run/ovsfab``): one lock space per Open vSwitch, like
the names themselves.  The kernel drops the lock when its holder dies, even
by SIGKILL, so a crash never leaves it held.  The files (empty) stay, one
per name ever attached; removing them safely would need a second lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from typing import Iterator, Optional

from ovsfab.errors import OperationFailed

DEFAULT_DIR = "/run/ovsfab"


def lock_path(port: str, base: Optional[str] = None) -> str:
    """The lock file of a host-end name (``base``: the directory, else the Open vSwitch run directory)."""
    base = base or os.environ.get("OVS_RUNDIR") or DEFAULT_DIR
    return os.path.join(base, "ovsfab-locks", port)


@contextlib.contextmanager
def attachment_lock(port: str, base: Optional[str] = None) -> Iterator[None]:
    """Hold the lock of host-end name ``port`` (blocks while another process holds it)."""
    path = lock_path(port, base)
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise OperationFailed(f"cannot open the lock file {path}: {exc.strerror}",
                              "check that the directory is writable (set OVS_RUNDIR?)") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock
