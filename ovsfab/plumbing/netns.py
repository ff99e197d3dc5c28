"""Entering network namespaces without ever creating one.

A netlink or packet socket belongs to the namespace it was created in, for
its whole life.  So ovsfab switches the *current thread* into a namespace
just long enough to create its sockets there, then switches back; all later
work goes through those sockets.  The namespace is always opened from an
existing file (``/proc/<pid>/ns/net`` or ``/run/netns/NAME``) with O_RDONLY,
never with O_CREAT, so a typo cannot conjure an empty namespace (pyroute2's
``netns=`` argument would create a missing named one).
"""

from __future__ import annotations

import ctypes
import errno
import os
from contextlib import contextmanager
from typing import Iterator, Optional

from ovsfab.errors import NotFound, OperationFailed, PermissionDenied

CLONE_NEWNET = 0x40000000
NETNS_RUN_DIR = "/run/netns"

_libc: Optional[ctypes.CDLL] = None


def _setns(fd: int) -> None:
    global _libc
    if hasattr(os, "setns"):  # Python >= 3.12
        os.setns(fd, CLONE_NEWNET)
        return
    if _libc is None:
        # The C library the interpreter already has loaded; find_library()
        # would run ldconfig in a subprocess.
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


class Namespace:
    """An open handle on a network namespace (holds it alive while open)."""

    def __init__(self, path: str, fd: int) -> None:
        self.path = path
        self.fd = fd

    @classmethod
    def open(cls, path: str) -> "Namespace":
        """Open an existing namespace file; raises NotFound if it is missing."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NotFound(f"network namespace {path} does not exist",
                           "check the container is running") from None
        except PermissionError:
            raise PermissionDenied(f"cannot open network namespace {path}", "run ovsfab as root") from None
        return cls(path, fd)

    @classmethod
    def current(cls) -> "Namespace":
        """The namespace this thread is in now."""
        return cls.open("/proc/thread-self/ns/net")

    def inode(self) -> int:
        return os.fstat(self.fd).st_ino

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> "Namespace":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def entered(self) -> Iterator[None]:
        """Run the body with the current thread inside this namespace."""
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            try:
                _setns(self.fd)
            except OSError as exc:
                if exc.errno == errno.EPERM:
                    raise PermissionDenied(f"cannot enter network namespace {self.path}",
                                           "run ovsfab as root") from None
                raise OperationFailed(f"cannot enter network namespace {self.path}: {exc.strerror}") from None
            try:
                yield
            finally:
                # Going home must not fail silently: a thread left in the
                # wrong namespace would configure the wrong host.
                _setns(home)
        finally:
            os.close(home)


def named_path(name: str) -> str:
    """The file of a named namespace (``ip netns add NAME``)."""
    return os.path.join(NETNS_RUN_DIR, name)
