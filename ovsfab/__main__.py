"""``python -m ovsfab``."""
from ovsfab.cli.main import main

main()
