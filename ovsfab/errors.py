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

from typing import Optional


class OvsfabError(Exception):
    """Base class: a failure the user can act on."""

    exit_code = 1

    def __init__(self, message: str, remedy: Optional[str] = None) -> None:
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
