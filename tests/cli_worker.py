"""In-process CLI runner for the property-based tests.

Started once per test module *inside a simulated host's netns*, in private
mount + pid namespaces where /run/netns is an empty tmpfs, /run/docker.sock is
masked and DOCKER_HOST points nowhere: whatever random arguments hypothesis
invents, the product cannot reach the machine's real namespaces, containers
or OVS (``--db`` always points at the test host).

Protocol: one JSON list of argv strings per stdin line; one JSON object per
result line on the original stdout (the product's own output is captured by
typer's CliRunner).
"""
import json
import os
import sys
import traceback


def main() -> None:
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # stray writes to fd 1 must not corrupt the protocol

    from typer.testing import CliRunner  # noqa: PLC0415

    from ovsfab.cli.main import app  # noqa: PLC0415

    runner = CliRunner()
    proto.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        argv = json.loads(line)
        try:
            res = runner.invoke(app, argv, catch_exceptions=True)
            exc = res.exception
            tb = ""
            if exc is not None and not isinstance(exc, SystemExit):
                tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            try:
                stderr = res.stderr
            except (ValueError, AttributeError):
                stderr = ""
            out = {"exit_code": res.exit_code, "stdout": res.stdout,
                   "stderr": stderr, "exception": tb}
        except BaseException as e:  # noqa: BLE001 - report everything
            out = {"exit_code": -1, "stdout": "", "stderr": "",
                   "exception": "".join(traceback.format_exception(type(e), e, e.__traceback__))}
        proto.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
