"""Command line of the firmware_sim part."""

import typer

app = typer.Typer(no_args_is_help=True)
