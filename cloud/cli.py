"""Command line of the cloud part."""

import typer

app = typer.Typer(no_args_is_help=True)
