"""``ovsfab docker-driver``: serve ovsfab as a Docker network and IPAM plugin (see docs/docker-driver.md)."""

from __future__ import annotations

import logging
import socket
from typing import Optional

import typer

from ovsfab.cli.common import STATE, context, run


def docker_driver(
    name: str = typer.Option("ovsfab", "--name", help="The plugin name: docker network create -d NAME."),
    socket_path: Optional[str] = typer.Option(None, "--socket",
                                              help="Listen here (default /run/docker/plugins/NAME.sock; "
                                                   "elsewhere, a spec file tells Docker where)."),
    spec_dir: str = typer.Option("/etc/docker/plugins", "--spec-dir", help="Where the spec file goes."),
    host_id: Optional[str] = typer.Option(None, "--host-id",
                                          help="What this host's IPAM range is derived from (default: hostname)."),
    docker_netns: Optional[str] = typer.Option(None, "--docker-netns",
                                               help="dockerd's network namespace (default: from /var/run/docker.pid)."),
) -> None:
    """Serve the Docker remote network driver and IPAM API until SIGTERM."""
    from dataclasses import replace  # noqa: PLC0415

    from ovsfab.driver.handlers import Driver, WarmBackend, docker_netns as find_netns  # noqa: PLC0415
    from ovsfab.driver.server import Serving  # noqa: PLC0415

    logging.basicConfig(level=logging.DEBUG if STATE.debug else logging.INFO,
                        format="ovsfab docker-driver: %(message)s")
    ctx = run(context)  # --db/--backend, else the environment: read once, passed with every request
    warm = WarmBackend(ctx.db)
    ctx = replace(ctx, warm_backend=warm)
    driver = Driver(context=lambda: ctx, host_id=host_id or socket.gethostname(),
                    netns=(lambda: docker_netns) if docker_netns else find_netns)
    serving = run(lambda: Serving(name, driver, socket_path, spec_dir))
    try:
        serving.serve_forever()
    finally:
        warm.close()
