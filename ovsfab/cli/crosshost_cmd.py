"""``ovsfab uplink`` and ``ovsfab tunnel``: joining hosts (L2 uplink or overlay).

Thin like the rest of the CLI: parameters in, one operation of the
operations API (ovsfab/ops/api.py), the result rendered by ovsfab/cli/render.py.
"""

from __future__ import annotations

from typing import Optional

import typer

from ovsfab.cli.common import execute, run

uplink_app = typer.Typer(help="Plug a host NIC into a bridge (its addresses and routes move along).",
                         no_args_is_help=True)
tunnel_app = typer.Typer(help="Overlay tunnels (VXLAN, GRE, Geneve) to other hosts.", no_args_is_help=True)


# -- uplink ------------------------------------------------------------------
@uplink_app.command("add")
def uplink_add_cmd(
    bridge: str = typer.Argument(..., help="Bridge name (created if missing)."),
    nic: str = typer.Argument(..., help="Host NIC to plug in, e.g. eth1."),
    force: bool = typer.Option(False, "--force", help="Also move the NIC that carries the default route."),
    datapath: str = typer.Option("auto", "--datapath", help="auto, system or netdev (for a new bridge)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Make NIC a port of BRIDGE; its addresses and routes move to the bridge's own port."""

    run(lambda: execute("uplink.add", {"bridge": bridge, "nic": nic, "force": force, "datapath": datapath},
                        as_json))


@uplink_app.command("del")
def uplink_del_cmd(
    bridge: str = typer.Argument(..., help="Bridge name."),
    nic: str = typer.Argument(..., help="The uplink NIC."),
    if_exists: bool = typer.Option(False, "--if-exists", help="Succeed when it is not an uplink."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Take NIC out of BRIDGE; its addresses and routes go back exactly as they were."""

    run(lambda: execute("uplink.del", {"bridge": bridge, "nic": nic, "if_exists": if_exists}, as_json))


@uplink_app.command("list")
def uplink_list_cmd(
    bridge: Optional[str] = typer.Argument(None, help="Only this bridge."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """List the uplinks ovsfab added."""

    run(lambda: execute("uplink.list", {"bridge": bridge}, as_json))


# -- tunnel ------------------------------------------------------------------
@tunnel_app.command("add")
def tunnel_add_cmd(
    bridge: str = typer.Argument(..., help="Bridge name (created if missing)."),
    remote: str = typer.Argument(..., help="The other host's underlay address."),
    tun_type: str = typer.Option("vxlan", "--type", help="vxlan, gre or geneve."),
    key: Optional[str] = typer.Option(None, "--key", help="Tunnel key / VNI (default 0)."),
    name: Optional[str] = typer.Option(None, "--name", help="Port name (default: derived, 15 characters)."),
    dstport: Optional[str] = typer.Option(None, "--dstport", help="UDP destination port (VXLAN, Geneve)."),
    local_ip: Optional[str] = typer.Option(None, "--local-ip", help="Local underlay address."),
    csum: Optional[bool] = typer.Option(None, "--csum/--no-csum", help="Outer checksum (default: OVS's)."),
    datapath: str = typer.Option("auto", "--datapath", help="auto, system or netdev (for a new bridge)."),
    bfd: Optional[bool] = typer.Option(None, "--bfd/--no-bfd", help="BFD liveness on the tunnel "
                                       "(default: on where the backend has it, i.e. OVS)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Add a tunnel from BRIDGE to REMOTE (idempotent)."""

    params = {"bridge": bridge, "remote": remote, "tun_type": tun_type, "key": key, "name": name,
              "dstport": dstport, "local_ip": local_ip, "csum": csum, "datapath": datapath, "bfd": bfd}
    run(lambda: execute("tunnel.add", params, as_json))


@tunnel_app.command("del")
def tunnel_del_cmd(
    bridge: str = typer.Argument(..., help="Bridge name."),
    remote: Optional[str] = typer.Argument(None, help="The other host's underlay address."),
    name: Optional[str] = typer.Option(None, "--name", help="The tunnel's port name."),
    key: Optional[str] = typer.Option(None, "--key", help="Only the tunnel with this key."),
    tun_type: Optional[str] = typer.Option(None, "--type", help="Only the tunnel of this type."),
    if_exists: bool = typer.Option(False, "--if-exists", help="Succeed when there is no such tunnel."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Remove a tunnel, by remote (and --key/--type) or by --name."""

    params = {"bridge": bridge, "remote": remote, "name": name, "key": key, "tun_type": tun_type,
              "if_exists": if_exists}
    run(lambda: execute("tunnel.del", params, as_json))


@tunnel_app.command("list")
def tunnel_list_cmd(
    bridge: Optional[str] = typer.Argument(None, help="Only this bridge."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """List the tunnels ovsfab added."""

    run(lambda: execute("tunnel.list", {"bridge": bridge}, as_json))
