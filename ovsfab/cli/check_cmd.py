"""``ovsfab check``: the typer command (the checks live in :mod:`ovsfab.ops.check`)."""

from __future__ import annotations

import json

import typer

from ovsfab.cli.common import STATE, ovs_factory, run


def check(
    wait: float = typer.Option(0.0, "--wait", help="Repeat until every check passes, for at most this many "
                               "seconds (0: check once)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Prove what this host can: tunnel underlays answer, neighbour caches hold the right MAC,
    BFD is up, MTUs fit the tunnels, no attachment is stale.  Exit 8 when anything is wrong."""

    def op() -> None:
        from ovsfab.errors import InvalidInput, NotConverged  # noqa: PLC0415
        from ovsfab.ops.check import check as do_check  # noqa: PLC0415

        if not 0 <= wait <= 3600:
            raise InvalidInput(f"--wait {wait} is outside 0..3600 seconds")
        res = do_check(ovs_factory(), STATE.db, wait=wait)
        if as_json:
            typer.echo(json.dumps(res.to_json(), sort_keys=True))
        else:
            for rep in res.tunnels:
                t = rep.tunnel
                rtt = f"{rep.underlay_rtt_ms:.2f} ms" if rep.underlay_rtt_ms is not None else "no answer"
                neigh = f", neighbour {rep.neighbour}" if rep.neighbour else ""
                typer.echo(f"tunnel {t.name} {t.tun_type}→{t.remote}: underlay {rtt}{neigh}, "
                           f"{t.liveness.summary()}, path MTU {rep.path_mtu}")
            for problem in res.problems:
                typer.echo(f"problem: {problem.line()}")
            typer.echo(f"{len(res.tunnels)} tunnel(s), {res.attachments} attachment(s): "
                       + ("ok" if res.ok else f"{len(res.problems)} problem(s)"))
        if not res.ok:
            raise NotConverged(f"{len(res.problems)} problem(s) found" + (f" after {wait:g} s" if wait else ""),
                               "each is listed above with its remedy")

    run(op)
