"""Where a request acts when it does not say: the OVSDB remote and the backend kind.

Standard library only (the lean client resolves these before anything is
imported).  Each function takes the environment as an argument: front ends
pass their process's environment, and nothing below them reads it.
"""

from __future__ import annotations

from ovsfab.errors import InvalidInput

TYPE_CHECKING = False
if TYPE_CHECKING:  # no typing import at run time: the lean client imports this module
    from typing import Mapping, Optional

KINDS = ("ovs", "linux", "auto")
CONFIG_ENV = "OVSFAB_CONFIG"
DEFAULT_CONFIG = "/etc/ovsfab/config.toml"
STANDARD_RUNDIR = "/var/run/openvswitch"


def default_db(environ: "Mapping[str, str]") -> str:
    """``OVSFAB_DB``, else ``unix:$OVS_RUNDIR/db.sock``, else the standard socket."""
    db = environ.get("OVSFAB_DB")
    if db:
        return db
    return f"unix:{environ.get('OVS_RUNDIR') or STANDARD_RUNDIR}/db.sock"


def docker_host(environ: "Mapping[str, str]", given: "Optional[str]" = None) -> str:
    """dockerd's API address: the one given, else ``DOCKER_HOST``, else the standard socket."""
    return given or environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def check_kind(kind: str) -> str:
    """Validate a backend kind (rejected before anything is touched)."""
    if kind not in KINDS:
        raise InvalidInput(f"backend {kind!r} is unknown", "use --backend ovs, linux or auto")
    return kind


def backend_kind(environ: "Mapping[str, str]", option: "Optional[str]" = None) -> str:
    """The backend kind from the option, ``OVSFAB_BACKEND``, the config file, or ``auto``.

    ``auto`` (ovsfab/backends/factory.py ``resolve_kind``): a Linux bridge of
    the request's name is used as one, anything else goes to OVS.
    """
    if option:
        return check_kind(option)
    env = environ.get("OVSFAB_BACKEND")
    if env:
        return check_kind(env)
    path = environ.get(CONFIG_ENV) or DEFAULT_CONFIG
    try:
        with open(path, "rb") as fh:
            import tomllib  # noqa: PLC0415 - only when there is a file

            try:
                doc = tomllib.load(fh)
            except tomllib.TOMLDecodeError as exc:
                raise InvalidInput(f"{path} is not valid TOML ({exc})", "fix or remove it") from None
    except FileNotFoundError:
        return "auto"
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}", "fix its permissions or remove it") from None
    value = doc.get("backend", "auto")
    if not isinstance(value, str) or value not in KINDS:
        raise InvalidInput(f"{path}: backend = {value!r} is unknown", 'use backend = "ovs", "linux" or "auto"')
    return value
