"""One error hierarchy for the whole tool.

Every error carries a one-line message that names the cause and, where there
is one, the remedy.  The CLI prints ``ovsfab: error: <message>`` and exits with
the class's ``exit_code``; library code never calls ``exit()``.

Exit codes (documented in docs/cli.md):

====  ==========================================================
 0    success (also: already in the requested state)
 1    unexpected internal error (a bug: run with --debug and report it)
 2    invalid input (rejected before any change)
 3    not found (container, attachment, bridge)
 4    conflict (exists with other settings, name clash)
 5    a service is unreachable (OVSDB, dockerd)
 6    the operation failed (vswitchd, netlink or the kernel refused it)
 7    permission denied (not root / missing CAP_NET_ADMIN)
 8    not converged: ``ovsfab check`` (or a ``--wait``) found problems
====  ==========================================================
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # no typing import at run time: the lean client imports this module
    from typing import Optional


class OvsfabError(Exception):
    """Base class: a failure the user can act on."""

    exit_code = 1

    def __init__(self, message: str, remedy: "Optional[str]" = None) -> None:
        super().__init__(message)
        self.message = message
        self.remedy = remedy

    def __str__(self) -> str:
        if self.remedy:
            return f"{self.message}; {self.remedy}"
        return self.message


class InvalidInput(OvsfabError):
    """An argument is malformed; nothing was changed."""

    exit_code = 2


class NotFound(OvsfabError):
    """A container, attachment or bridge does not exist."""

    exit_code = 3


class Conflict(OvsfabError):
    """Something exists already with other settings."""

    exit_code = 4


class Unavailable(OvsfabError):
    """A service (OVSDB, dockerd) cannot be reached."""

    exit_code = 5


class OperationFailed(OvsfabError):
    """vswitchd, netlink or the kernel refused a change."""

    exit_code = 6


class PermissionDenied(OvsfabError):
    """The caller lacks the privileges (root / CAP_NET_ADMIN)."""

    exit_code = 7


class NotConverged(OvsfabError):
    """The fabric is not (yet) in a working state: ``ovsfab check`` found problems."""

    exit_code = 8


class InjectedFault(OperationFailed):
    """Raised by the test hook OVSFAB_INJECT_FAULT after a named step."""


def from_errno(exc: BaseException, what: str) -> OvsfabError:
    """The ovsfab error for a kernel (netlink, ioctl) failure, by its errno.

    pyroute2's NetlinkError carries the errno in ``code``, an OSError in
    ``errno``.  Shared by the netlink plumbing and the Linux backend.
    """
    import errno  # noqa: PLC0415
    import os  # noqa: PLC0415

    code = getattr(exc, "code", None) or getattr(exc, "errno", None) or 0
    reason = os.strerror(code) if code else str(exc)
    if code == errno.EPERM:
        return PermissionDenied(f"{what}: {reason}", "run ovsfab as root")
    if code == errno.EEXIST:
        return Conflict(f"{what}: an interface of that name exists")
    if code in (errno.ENODEV, errno.ENOENT):
        return NotFound(f"{what}: {reason}")
    return OperationFailed(f"{what}: {reason}")

