"""``python -m ovsfab``."""
from ovsfab.cli.fast import main  # the agent when one serves the command, else the typer CLI

main()
