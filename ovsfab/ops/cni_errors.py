"""The CNI error object and the spec's error codes (CNI spec 1.0.0, "Error")."""

from __future__ import annotations

from typing import Any, Dict, Optional

from ovsfab.errors import InvalidInput, OvsfabError, Unavailable

#: Well-known error codes of the spec (0-99 are reserved for it).
INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENV = 4
IO_FAILURE = 5
DECODE_FAILURE = 6
INVALID_CONFIG = 7
TRY_AGAIN_LATER = 11
NOT_AVAILABLE = 50
#: Plugin-specific codes start at 100: ovsfab's own exit code (ovsfab/errors.py) plus 100.
OVSFAB_BASE = 100


class CniError(Exception):
    """A failure to report as ``{"cniVersion", "code", "msg", "details"}``."""

    def __init__(self, code: int, msg: str, details: Optional[str] = None) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.details = details

    def to_json(self, cni_version: str) -> Dict[str, Any]:
        out: Dict[str, Any] = {"cniVersion": cni_version, "code": self.code, "msg": self.msg}
        if self.details:
            out["details"] = self.details
        return out

    @classmethod
    def from_ovsfab(cls, exc: OvsfabError, status: bool = False) -> "CniError":
        """The CNI form of an ovsfab error: invalid input is invalid config, unreachable is "try later".

        ``status``: for STATUS, an unreachable OVSDB means the plugin is not available (50).
        """
        if isinstance(exc, InvalidInput):
            code = INVALID_CONFIG
        elif isinstance(exc, Unavailable):
            code = NOT_AVAILABLE if status else TRY_AGAIN_LATER
        else:
            code = OVSFAB_BASE + exc.exit_code
        return cls(code, exc.message, exc.remedy)
