"""``ovsfab reconcile`` and ``ovsfab agent``: restore recorded attachments.

Registered in cli/main.py; the work is in :mod:`ovsfab.ops.reconcile` and
:mod:`ovsfab.agent` (imported inside the commands: they pull in python-ovs,
pyroute2 and the docker SDK).
"""

from __future__ import annotations

import logging
import sys

import typer

from ovsfab.cli.common import STATE, context, emit, ovs_factory, run


def reconcile(
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would be done; change nothing."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Make every recorded attachment true again (after docker restart, a reboot, docker rm).

    Running container without its link: re-created exactly.  Removed
    container (or netns / process gone): port and record deleted.  Stopped
    container: record kept.  Idempotent.
    """

    def op() -> None:
        from ovsfab.errors import Unavailable  # noqa: PLC0415
        from ovsfab.ops.reconcile import reconcile as do_reconcile  # noqa: PLC0415
        from ovsfab.ops.reconcile_view import OK, RESULTS  # noqa: PLC0415

        result = do_reconcile(ovs_factory(), dry_run=dry_run, fault=context().fault)
        lines = [a.text(dry_run) for a in result.actions if a.result != OK]
        counts = result.summary()
        parts = ", ".join(f"{counts[r]} {r}" for r in RESULTS if counts[r])
        head = "dry run: " if dry_run else ""
        lines.append(f"{head}{len(result.actions)} attachment(s)" + (f": {parts}" if parts else ""))
        emit(result.to_json(), as_json, "\n".join(lines))
        failures = result.failures()
        if failures:
            first = failures[0]
            err = first.error
            raise type(err)(f"{len(failures)} attachment(s) could not be reconciled; first: "
                            f"{first.text(dry_run)}", None)
        if result.docker == "unavailable":
            raise Unavailable("dockerd is unreachable: Docker attachments were not reconciled",
                              "start dockerd (or set DOCKER_HOST) and run ovsfab reconcile again")

    run(op)


def agent(
    interval: float = typer.Option(30.0, "--interval", min=1.0,
                                   help="Seconds between full reconcile passes (events are handled at once)."),
) -> None:
    """Run until SIGTERM: follow Docker events and keep attachments restored.

    Reconciles everything at start, every --interval seconds and whenever the
    connection to dockerd or OVSDB comes back; a container's attachments
    within a second of its start/restart/die/destroy event.  One log line per
    action on stderr.
    """

    def op() -> None:
        from ovsfab.agent.loop import Agent  # noqa: PLC0415
        from ovsfab.ops.attach import require_root  # noqa: PLC0415

        require_root()
        # One line per action, timestamped (journald adds its own, but a
        # terminal or a log file has none).  Library chatter stays at WARNING.
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr, force=True,
                            format="%(asctime)s ovsfab agent: %(levelname)s: %(message)s")
        logging.getLogger("ovsfab").setLevel(logging.DEBUG if STATE.debug else logging.INFO)
        code = Agent(STATE.db, interval=interval).run()
        if code:
            raise typer.Exit(code)

    run(op)
