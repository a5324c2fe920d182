"""`leasewatch cloud`: run the ingestor and the API."""

from __future__ import annotations

import asyncio
import signal
from typing import Annotated

import typer

from cloud.runtime import CloudRuntime, bind_listener
from cloud.settings import CloudSettings, SettingsError, load_settings
from leasewatch.logs import configure_logging

app = typer.Typer(no_args_is_help=True)

LogLevel = Annotated[str, typer.Option(help="Log level.")]


def _settings() -> CloudSettings:
    try:
        return load_settings()
    except SettingsError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(2) from err


@app.command()
def ingest(log_level: LogLevel = "INFO") -> None:
    """Consume gateway messages and store them (settings from LEASEWATCH_* variables)."""
    configure_logging(log_level)
    asyncio.run(_main(_settings(), ingest=True, api=False))


@app.command()
def api(log_level: LogLevel = "INFO") -> None:
    """Serve the HTTP API and dashboards on LEASEWATCH_API_HOST:LEASEWATCH_API_PORT."""
    configure_logging(log_level)
    asyncio.run(_main(_settings(), ingest=False, api=True))


@app.command()
def run(log_level: LogLevel = "INFO") -> None:
    """Ingestor and API in one process."""
    configure_logging(log_level)
    asyncio.run(_main(_settings(), ingest=True, api=True))


async def _main(settings: CloudSettings, *, ingest: bool, api: bool) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runtime = CloudRuntime(settings)
    await runtime.open()
    sock = bind_listener(settings.api_host, settings.api_port, fall_back=False) if api else None
    if sock is not None:
        host, port = sock.getsockname()[:2]
        typer.echo(f"LeaseWatch API on http://{host}:{port}/", err=True)
    try:
        await runtime.run(stop, ingest=ingest, api_socket=sock)
    finally:
        await runtime.close()
