"""The command line: typer commands that parse, call one operation, render."""
