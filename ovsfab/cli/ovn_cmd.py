"""``ovsfab ovn central | join | status`` and the OVN side of attach/detach --network."""

from __future__ import annotations

from typing import Optional

import typer

from ovsfab.cli.common import STATE, context, emit, run

ovn_app = typer.Typer(help="Scale out on OVN: a central control plane and ovn-controller on every host.",
                      no_args_is_help=True)


@ovn_app.command("central")
def central(
    address: Optional[str] = typer.Option(None, "--address",
                                          help="Underlay address the NB/SB databases listen on "
                                               "(default: this host's default-route source)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Start (or adopt) the OVN NB and SB databases and ovn-northd on this host."""

    def op() -> None:
        from ovsfab.ops.ovn_control import central as do_central  # noqa: PLC0415

        res = do_central(address, fault=context().fault)
        parts = []
        if res.started:
            parts.append("started " + ", ".join(res.started))
        if res.adopted:
            parts.append("adopted " + ", ".join(res.adopted))
        text = f"OVN central: {'; '.join(parts)}; NB {res.nb}, SB {res.sb}\nnext, on every host: " \
               f"ovsfab ovn join {res.address}"
        emit(res.to_json(), as_json, text)

    run(op)


@ovn_app.command("join")
def join(
    central_ip: str = typer.Argument(..., help="Underlay address of the OVN central."),
    encap: str = typer.Option("geneve", "--encap", help="Tunnel encapsulation: geneve or vxlan."),
    encap_ip: Optional[str] = typer.Option(None, "--encap-ip",
                                           help="This host's tunnel endpoint (default: the source address "
                                                "towards the central)."),
    system_id: Optional[str] = typer.Option(None, "--system-id",
                                            help="Chassis name (default: the existing system-id, else a new UUID)."),
    hostname: Optional[str] = typer.Option(None, "--hostname", help="Hostname recorded for the chassis."),
    datapath: str = typer.Option("auto", "--datapath", help="auto, system or netdev (br-int's datapath)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Make this host an OVN chassis: OVN settings in Open_vSwitch, ovn-controller running."""

    def op() -> None:
        from ovsfab.ops.ovn_control import join as do_join  # noqa: PLC0415

        res = do_join(central_ip, encap=encap, encap_ip=encap_ip, system_id=system_id, hostname=hostname,
                      datapath=datapath, ovs_remote=STATE.db, fault=context().fault)
        what = "joined" if res.changed else "already joined"
        text = (f"{what} OVN central {central_ip} as chassis {res.system_id} "
                f"({res.settings['ovn-encap-type']} from {res.settings['ovn-encap-ip']}); "
                f"ovn-controller pid {res.controller_pid}")
        emit(res.to_json(), as_json, text)

    run(op)


@ovn_app.command("status")
def status(
    nb: Optional[str] = typer.Option(None, "--nb", help="NB remote (default: from this host's join, "
                                     "else the local central)."),
    sb: Optional[str] = typer.Option(None, "--sb", help="SB remote (default: likewise)."),
    as_json: bool = typer.Option(False, "--json", help="Print the status as JSON."),
) -> None:
    """Chassis and their tunnel endpoints, OVN networks, and which port is bound where."""

    def op() -> None:
        from ovsfab.ovn.control import controller_status, status as do_status  # noqa: PLC0415

        data = do_status(nb, sb)
        data["local"] = controller_status(STATE.db)
        lines = [f"NB {data['nb']}  SB {data['sb']}"]
        local = data["local"]
        if local["joined"]:
            pid = local["controller_pid"]
            lines.append(f"this host: chassis {local['settings'].get('system-id')}, "
                         f"ovn-controller {'pid ' + str(pid) if pid else 'NOT RUNNING'}")
        lines.append(f"chassis ({len(data['chassis'])}):")
        for ch in data["chassis"]:
            encaps = ", ".join(f"{e['type']} {e['ip']}" for e in ch["encaps"])
            lines.append(f"  {ch['name']}  {ch['hostname']}  {encaps}")
        for ls in data["switches"]:
            lines.append(f"network {ls['name']}{'' if ls['owned'] else ' (not ovsfab)'}"
                         f"{'  ' + ls['subnet'] if ls['subnet'] else ''}:")
            for p in ls["ports"]:
                where = p["chassis"] or ("router" if p["type"] == "router" else "UNBOUND")
                lines.append(f"  {p['container'] or p['name']}  {' '.join(p['addresses'])}  -> {where}")
        for lr in data["routers"]:
            nets = ", ".join(n for p in lr["ports"] for n in p["networks"])
            lines.append(f"router {lr['name']}: {nets}")
        emit(data, as_json, "\n".join(lines))

    run(op)


@ovn_app.command("apply")
def apply(
    path: str = typer.Argument(..., help="Fabric file (docs/fabric.md)."),
    nb: Optional[str] = typer.Option(None, "--nb", help="NB remote (default: from this host's join, "
                                     "else the local central)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only print what would change."),
    prune: bool = typer.Option(False, "--prune", help="Also remove this fabric's routers the file no longer names."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Create the fabric file's OVN networks (mode: ovn) and routers in the northbound DB."""

    def op() -> None:
        from ovsfab.fabric.spec import load_fabric  # noqa: PLC0415
        from ovsfab.ops.ovn_fabric import sync_fabric  # noqa: PLC0415
        from ovsfab.ovn.fabric import nb_for  # noqa: PLC0415

        fabric = load_fabric(path)
        res = sync_fabric(fabric, nb_for(nb), dry_run=dry_run, prune=prune)
        if not res.changes:
            text = f"OVN part of {path} is in place; nothing to do"
        else:
            text = "\n".join(res.changes) + ("\n(dry run: nothing changed)" if dry_run else "")
        emit(res.to_json(), as_json, text)

    run(op)


