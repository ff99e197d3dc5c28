"""ovsfab's CLI.  Thin: parse arguments, call one operation, render the result.

Heavy imports (python-ovs, pyroute2, docker) happen inside the commands, so
``ovsfab --help`` stays fast.
"""

from __future__ import annotations

import logging
import sys
from typing import List, Optional

import typer

from ovsfab import __version__
from ovsfab.cli.argv import hoist_globals, params_for
from ovsfab.cli.common import STATE, execute, run

app = typer.Typer(
    name="ovsfab",
    help="Connect containers across hosts over Open vSwitch.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ovsfab {__version__}")
        raise typer.Exit(0)


@app.callback()
def _global(
    db: Optional[str] = typer.Option(None, "--db", envvar="OVSFAB_DB",
                                     help="OVSDB remote (default: unix:$OVS_RUNDIR/db.sock "
                                          "or unix:/var/run/openvswitch/db.sock)."),
    backend: Optional[str] = typer.Option(None, "--backend", envvar="OVSFAB_BACKEND",
                                          help="ovs, linux or auto (default: backend in "
                                               "/etc/ovsfab/config.toml, else auto: a Linux bridge "
                                               "of that name if there is one, else ovs)."),
    debug: bool = typer.Option(False, "--debug", help="Log each step; show tracebacks."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Connect containers across hosts over Open vSwitch."""
    STATE.db = db
    STATE.debug = debug
    if backend is not None and backend not in ("ovs", "linux", "auto"):
        typer.echo(f"ovsfab: error: backend {backend!r} is unknown; use --backend ovs, linux or auto", err=True)
        raise typer.Exit(2)
    STATE.backend = backend
    # Library chatter (pyroute2, urllib3, python-ovs) stays at WARNING even
    # with --debug: the steps ovsfab logs are what an operator needs.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, force=True,
                        format="ovsfab: %(levelname)s: %(message)s")
    if debug:
        logging.getLogger("ovsfab").setLevel(logging.DEBUG)


@app.command()
def attach(
    bridge: str = typer.Argument(..., help="Bridge name (created if missing)."),
    container: str = typer.Argument(..., help="Docker container name or ID, netns:NAME or pid:N."),
    addresses: List[str] = typer.Argument(None, help="ADDR/PREFIX[@GATEWAY], IPv4 or IPv6; several allowed."),
    ifname: str = typer.Option("eth1", "--ifname", help="Interface name inside the container."),
    network: Optional[str] = typer.Option(None, "--network", help="OVN network (see `ovsfab ovn`): the "
                                          "arguments are then CONTAINER ADDR..., the bridge is br-int."),
    mac: Optional[str] = typer.Option(None, "--mac", help="MAC address of the container interface."),
    mtu: Optional[str] = typer.Option(None, "--mtu", help="MTU of both veth ends (68..65535), or auto "
                                      "(the default: on a bridge with tunnels, underlay MTU minus tunnel overhead)."),
    vlan: Optional[str] = typer.Option(None, "--vlan", help="VLAN tag of the port (0..4095)."),
    datapath: str = typer.Option("auto", "--datapath", help="auto, system or netdev (for a new bridge)."),
    no_persist: bool = typer.Option(False, "--no-persist", help="One-shot: never restored by "
                                    "`ovsfab reconcile` / `ovsfab agent` after a restart."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Give a container a veth interface with addresses, plugged into BRIDGE."""

    values = {"bridge": bridge, "container": container, "addresses": addresses, "ifname": ifname,
              "network": network, "mac": mac, "mtu": mtu, "vlan": vlan, "datapath": datapath,
              "no_persist": no_persist}
    run(lambda: execute("attach", params_for("attach", values), as_json))


@app.command()
def detach(
    bridge: str = typer.Argument(..., help="Bridge name."),
    container: str = typer.Argument(None, help="Docker container name or ID, netns:NAME or pid:N."),
    ifname: str = typer.Option("eth1", "--ifname", help="Interface name inside the container."),
    network: Optional[str] = typer.Option(None, "--network", help="OVN network: the argument is then "
                                          "CONTAINER (its logical port goes too)."),
    if_exists: bool = typer.Option(False, "--if-exists", help="Succeed when nothing is attached."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Remove a container's interface from BRIDGE (port and veth)."""

    values = {"bridge": bridge, "container": container, "ifname": ifname, "network": network,
              "if_exists": if_exists}
    run(lambda: execute("detach", params_for("detach", values), as_json))


# -- sub-commands from other modules are registered below (one line each) --
from ovsfab.cli import crosshost_cmd, inspect_cmd, lab_cmd  # noqa: E402

app.add_typer(crosshost_cmd.uplink_app, name="uplink")
app.add_typer(crosshost_cmd.tunnel_app, name="tunnel")
inspect_cmd.register(app)
app.add_typer(lab_cmd.lab_app, name="lab")
from ovsfab.cli import agent_cmd  # noqa: E402

app.command("reconcile")(agent_cmd.reconcile)
app.command("agent")(agent_cmd.agent)
from ovsfab.cli import apply_cmd; apply_cmd.register(app)  # noqa: E402,E702 - ovsfab apply FILE
from ovsfab.cli import ovn_cmd; app.add_typer(ovn_cmd.ovn_app, name="ovn")  # noqa: E402,E702 - ovsfab ovn ...
from ovsfab.cli import check_cmd; app.command("check")(check_cmd.check)  # noqa: E402,E702 - ovsfab check


def main() -> None:
    """Console entry point of the typer CLI (``ovsfab.cli.fast.main`` tries the agent first)."""
    if sys.argv[1:] in ([], ["-h"], ["--help"]):
        # The command list in click's plain format: typer's rich renderer
        # imports rich (~400 ms), and `ovsfab --help` must stay under 150 ms.
        # A command's own --help keeps the rich one (argument descriptions
        # need it with click >= 8.2).
        import typer.main  # noqa: PLC0415

        group = typer.main.get_command(app)
        group.rich_markup_mode = None  # type: ignore[attr-defined]
        group(prog_name="ovsfab")
        return
    argv = sys.argv[1:]
    app(args=hoist_globals(argv, keep=_own_options(argv)), prog_name="ovsfab")


def _own_options(argv: List[str]) -> set:
    """The options the command named in ``argv`` defines itself (they are its, not the globals')."""
    import click  # noqa: PLC0415
    import typer.main  # noqa: PLC0415

    cmd = typer.main.get_command(app)
    words = iter(argv)
    for word in words:
        if word in ("--db", "--backend"):
            next(words, None)  # a global option's value, not a command
            continue
        if word.startswith("-"):
            continue
        if not isinstance(cmd, click.Group) or word not in cmd.commands:
            break
        cmd = cmd.commands[word]
    if isinstance(cmd, click.Group):
        return set()
    return {o for p in cmd.params for o in (*p.opts, *getattr(p, "secondary_opts", []))}
from ovsfab.cli import driver_cmd; app.command("docker-driver")(driver_cmd.docker_driver)  # noqa: E402,E702 - issue #18
