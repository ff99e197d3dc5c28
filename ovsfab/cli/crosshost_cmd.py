"""``ovsfab uplink`` and ``ovsfab tunnel``: joining hosts (L2 uplink or overlay).

Thin like the rest of the CLI: parse, call one operation, render.  Heavy
imports happen inside the commands.
"""

from __future__ import annotations

from typing import Optional

import typer

from ovsfab.cli.common import emit, ovs_factory, run

uplink_app = typer.Typer(help="Plug a host NIC into a bridge (its addresses and routes move along).",
                         no_args_is_help=True)
tunnel_app = typer.Typer(help="Overlay tunnels (VXLAN, GRE, Geneve) to other hosts.", no_args_is_help=True)


def _notes(notes: list) -> None:
    for note in notes:
        typer.echo(f"ovsfab: note: {note}", err=True)


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

    def op() -> None:
        from ovsfab.ops.uplink import uplink_add  # noqa: PLC0415

        res = uplink_add(bridge, nic, force, datapath, ovs_factory(bridge))
        _notes(res.notes)
        up = res.uplink
        assert up is not None
        if res.changed:
            moved = ", ".join(f"{a['address']}/{a['prefixlen']}" for a in up.addresses) or "no addresses"
            text = f"{nic} is now the uplink of {bridge} ({moved} and {len(up.routes)} route(s) moved to {bridge})"
        else:
            text = f"{nic} is already the uplink of {bridge}"
        emit(res.to_json(), as_json, text)

    run(op)


@uplink_app.command("del")
def uplink_del_cmd(
    bridge: str = typer.Argument(..., help="Bridge name."),
    nic: str = typer.Argument(..., help="The uplink NIC."),
    if_exists: bool = typer.Option(False, "--if-exists", help="Succeed when it is not an uplink."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Take NIC out of BRIDGE; its addresses and routes go back exactly as they were."""

    def op() -> None:
        from ovsfab.ops.uplink import uplink_del  # noqa: PLC0415

        res = uplink_del(bridge, nic, if_exists, ovs_factory(bridge))
        if res.uplink is None:
            text = f"{nic} is not an uplink of {bridge}; nothing to do"
        else:
            text = f"{nic} removed from {bridge}; its addresses and routes are back on {nic}"
        emit(res.to_json(), as_json, text)

    run(op)


@uplink_app.command("list")
def uplink_list_cmd(
    bridge: Optional[str] = typer.Argument(None, help="Only this bridge."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """List the uplinks ovsfab added."""

    def op() -> None:
        from ovsfab.ops.uplink import uplink_list  # noqa: PLC0415

        ups = uplink_list(bridge, ovs_factory(bridge))
        lines = [f"{u.bridge}\t{u.nic}\t{u.mac}\t{','.join(u.to_json()['addresses']) or '-'}" for u in ups]
        emit({"uplinks": [u.to_json() for u in ups]}, as_json, "\n".join(lines) if lines else "no uplinks")

    run(op)


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

    def op() -> None:
        from ovsfab.ops.tunnel import TunnelRequest, tunnel_add  # noqa: PLC0415

        req = TunnelRequest.parse(bridge, remote, tun_type, key, name, dstport, local_ip, csum, datapath, bfd)
        res = tunnel_add(req, ovs_factory(bridge))
        _notes(res.notes)
        tun = res.tunnel
        assert tun is not None
        if res.changed:
            text = f"added {tun.tun_type} tunnel {tun.name} on {bridge} to {tun.remote} (key {tun.key})"
        else:
            text = f"{tun.tun_type} tunnel {tun.name} on {bridge} to {tun.remote} (key {tun.key}) already exists"
        emit(res.to_json(), as_json, text)

    run(op)


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

    def op() -> None:
        from ovsfab.ops.tunnel import tunnel_del  # noqa: PLC0415

        res = tunnel_del(bridge, remote, name, key, tun_type, if_exists, ovs_factory(bridge))
        tun = res.tunnel
        text = (f"removed {tun.tun_type} tunnel {tun.name} from {bridge}" if tun is not None
                else f"no such tunnel on {bridge}; nothing to do")
        emit(res.to_json(), as_json, text)

    run(op)


@tunnel_app.command("list")
def tunnel_list_cmd(
    bridge: Optional[str] = typer.Argument(None, help="Only this bridge."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """List the tunnels ovsfab added."""

    def op() -> None:
        from ovsfab.ops.tunnel import tunnel_list  # noqa: PLC0415

        tuns = tunnel_list(bridge, ovs_factory(bridge))
        lines = [f"{t.bridge}\t{t.name}\t{t.tun_type}\t{t.remote}\tkey={t.key}\t{t.liveness.summary()}"
                 + (f"\terror: {t.error}" if t.error else "") for t in tuns]
        emit({"tunnels": [t.to_json() for t in tuns]}, as_json, "\n".join(lines) if lines else "no tunnels")

    run(op)
