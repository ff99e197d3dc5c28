"""``ovsfab lab up|down|status|exec``: simulated hosts on this machine."""

from __future__ import annotations

from typing import List

import typer

from ovsfab.cli.common import emit, run

lab_app = typer.Typer(help="Simulated hosts on this machine: see the fabric work before owning two.",
                      no_args_is_help=True)


def _say(line: str) -> None:
    # Progress is the lab's output (stdout); stderr is kept for the one-line error.
    typer.echo(f"lab: {line}")


@lab_app.command("up")
def up(
    hosts: int = typer.Option(2, "--hosts", help="How many simulated hosts (2..9)."),
    mode: str = typer.Option("uplink", "--mode", help="uplink (one L2 segment), vxlan (overlay) or ovn "
                             "(OVN central + ovn-controller per host)."),
    backend: str = typer.Option("ovs", "--backend", help="ovs (private OVS per host) or linux (Linux bridges)."),
    bare: bool = typer.Option(False, "--bare", help="Only hosts, their OVS and containers: connect them yourself."),
    driver: bool = typer.Option(False, "--driver", help="Containers join through ovsfab's Docker driver "
                                "(docker network create -d ovsfab-lab-HOST), not ovsfab attach."),
    as_json: bool = typer.Option(False, "--json", help="Print the lab's status as JSON."),
) -> None:
    """Build hosts, start a container on each, connect them, ping across, show the tree."""

    def op() -> None:
        from ovsfab.cli.inspect_cmd import Painter, render_inspect, use_colour  # noqa: PLC0415
        from ovsfab.errors import NotConverged, OperationFailed  # noqa: PLC0415
        from ovsfab.lab import lab  # noqa: PLC0415
        from ovsfab.ops.inspect import inspect as do_inspect  # noqa: PLC0415
        from ovsfab.plumbing.netns import Namespace, named_path  # noqa: PLC0415

        state = lab.up(hosts=hosts, mode=mode, progress=(lambda s: None) if as_json else _say, bare=bare,
                       backend=backend, driver=driver)
        if bare and driver and not as_json:
            for h in state.hosts:
                typer.echo(f"{h.name}: Docker driver {h.plugin}, suggested address {h.address}")
            typer.echo(f"next: build the fabric, then docker network create -d {state.hosts[0].plugin} ... "
                       "(docs/walkthrough.md)")
        elif bare and not as_json:
            for h in state.hosts:
                typer.echo(f"{h.name}: container {h.container}, suggested address {h.address}")
            typer.echo("next: ovsfab lab exec docker-test1 -- ovsfab attach br0 ... (docs/walkthrough.md)")
        elif not as_json:
            first = state.hosts[0]
            with Namespace.open(named_path(first.netns)) as ns, ns.entered():
                data = do_inspect(first.container, remote=first.remote).to_json()
            typer.echo(f"\n{first.name}:")
            typer.echo(render_inspect(data, Painter(use_colour())))
            typer.echo("\nnext: ovsfab lab exec docker-test1 -- ovsfab show;  ovsfab lab down")
        failed = [k for k, v in state.results.items() if v is None]
        if as_json:
            emit(lab.status() or {}, True, "")
        if state.problems:
            for line in state.problems:
                typer.echo(f"ovsfab: problem: {line}", err=True)
            raise NotConverged(f"{len(state.problems)} problem(s) after {lab.CONVERGE_TIMEOUT:g} s"
                               + (f", and no ping reply on {', '.join(failed)}" if failed else ""),
                               "the lab stays up for a look (ovsfab lab exec docker-test1 -- ovsfab check); "
                               "ovsfab lab down removes it")
        if failed:
            raise OperationFailed(f"no ping reply on {', '.join(failed)}",
                                  "the lab stays up for a look (ovsfab lab status); ovsfab lab down removes it")

    run(op)


@lab_app.command("down")
def down(as_json: bool = typer.Option(False, "--json", help="Print what was removed as JSON.")) -> None:
    """Remove every trace of the lab: containers, daemons, namespaces, rundirs."""

    def op() -> None:
        from ovsfab.lab import lab  # noqa: PLC0415
        from ovsfab.ops.attach import require_root  # noqa: PLC0415

        require_root()
        removed = lab.down()
        text = "no lab is up; nothing to do" if not removed else "removed: " + ", ".join(removed)
        emit({"removed": removed, "changed": bool(removed)}, as_json, text)

    run(op)


@lab_app.command("status")
def status(as_json: bool = typer.Option(False, "--json", help="Print the status as JSON.")) -> None:
    """Show the lab's hosts, their daemons, containers and the last ping results."""

    def op() -> None:
        from ovsfab.lab import lab  # noqa: PLC0415

        data = lab.status()
        if data is None:
            emit({"up": False}, as_json, "no lab is up")
            return
        lines = [f"lab mode {data['mode']}, backend {data.get('backend', 'ovs')}"
                 + (", containers through the Docker driver" if data.get("driver") else "")]
        for h in data["hosts"]:
            if data.get("backend") == "linux":
                lines.append(f"  {h['name']}  eth1 {h['underlay']}  Linux bridges")
            else:
                alive = "running" if h["ovsdb_server_pid"] and h["ovs_vswitchd_pid"] else "OVS DOWN"
                lines.append(f"  {h['name']}  eth1 {h['underlay']}  OVS {alive}  {h['db']}")
            lines.append(f"    container {h['container']}  {h['address']}")
        if data.get("ovn"):  # --mode ovn: the central and each host's ovn-controller
            ovn = data["ovn"]
            alive = "running" if all(ovn["central"]["pids"].values()) else "DOWN"
            lines.append(f"  OVN central {ovn['central']['address']} ({ovn['central']['netns']}): {alive}; "
                         f"network {ovn['network']}")
            for name, pid in ovn["controllers"].items():
                lines.append(f"  ovn-controller {name}: {'pid ' + str(pid) if pid else 'NOT RUNNING'}")
        for pair, rtt in (data.get("ping") or {}).items():
            lines.append(f"  ping {pair}: {'no reply' if rtt is None else f'{rtt} ms'}")
        emit(dict(data, up=True), as_json, "\n".join(lines))

    run(op)


@lab_app.command("exec", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def exec_(
    host: str = typer.Argument(..., help="Lab host, e.g. docker-test1."),
    command: List[str] = typer.Argument(..., help="The command, after --, e.g. -- ovsfab show."),
) -> None:
    """Run a command as a lab host (inside its namespace, with its OVS)."""

    def op() -> None:
        from ovsfab.lab import lab  # noqa: PLC0415

        lab.exec_as(host, list(command))

    run(op)
