"""`leasewatch cloud`: run the ingestor and the API, migrate the state store."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Collection
from pathlib import Path
from typing import Annotated

import typer

from cloud.access.commands import register as register_access_commands
from cloud.broker_tls import BrokerTlsError, make_broker_certificates
from cloud.detection.context import ContextFileError
from cloud.detection.settings import DetectionSettings, load_detection_settings
from cloud.runtime import CloudRuntime, bind_listener
from cloud.settings import (
    API_SECRETS,
    INGEST_SECRETS,
    CloudSettings,
    SettingsError,
    load_settings,
)
from cloud.state import StateStore
from leasewatch.logs import configure_logging

app = typer.Typer(no_args_is_help=True)
register_access_commands(app)

LogLevel = Annotated[str, typer.Option(help="Log level.")]


def _detection() -> DetectionSettings:
    try:
        settings = load_detection_settings()
        settings.context_source()  # a bad context file fails here, with its reason
    except (SettingsError, ContextFileError) as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(2) from err
    return settings


def _settings(needed: Collection[str]) -> CloudSettings:
    try:
        return load_settings(needed)
    except SettingsError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(2) from err


@app.command()
def ingest(log_level: LogLevel = "INFO") -> None:
    """Consume gateway messages, store them and run the detectors on what was stored.

    Settings from LEASEWATCH_* variables; LEASEWATCH_DETECT_ENABLED=false only stores. With
    LEASEWATCH_OPS_PORT set, also serve /healthz and /metrics on that port.
    """
    configure_logging(log_level)
    settings = _settings(INGEST_SECRETS)
    detection = _detection()
    asyncio.run(
        _main(settings, ingest=True, api=False, detect=detection if detection.enabled else None)
    )


@app.command()
def api(log_level: LogLevel = "INFO") -> None:
    """Serve the HTTP API and dashboards on LEASEWATCH_API_HOST:LEASEWATCH_API_PORT."""
    configure_logging(log_level)
    asyncio.run(_main(_settings(API_SECRETS), ingest=False, api=True))


@app.command()
def detect(log_level: LogLevel = "INFO") -> None:
    """Only the detection sweep (silence, daily utilization); subscribes to no gateway topic.

    `cloud ingest` runs the detectors on what it stores, and the sweep too; this process adds
    sweeps (several are safe) or serves them when ingest processes run with detection off.
    With LEASEWATCH_OPS_PORT set, serves /healthz and /metrics too.
    """
    configure_logging(log_level)
    asyncio.run(_main(_settings(INGEST_SECRETS), ingest=False, api=False, detect=_detection()))


@app.command()
def run(log_level: LogLevel = "INFO") -> None:
    """Ingestor, detection and API in one process."""
    configure_logging(log_level)
    asyncio.run(
        _main(_settings(INGEST_SECRETS + API_SECRETS), ingest=True, api=True, detect=_detection())
    )


@app.command()
def migrate() -> None:
    """Bring the state store (LEASEWATCH_STATE_URL) to the newest schema, then exit."""
    settings = _settings(())
    StateStore(settings.state_url).close()
    typer.echo("state store is at the newest schema")


@app.command("broker-certs")
def broker_certs(
    out: Annotated[Path, typer.Option(help="Directory for ca.crt, ca.key, server.crt/.key.")],
    host: Annotated[list[str], typer.Option(help="Host name or IP gateways dial (repeatable).")],
    days: Annotated[int, typer.Option(min=1, max=3650, help="Server certificate days.")] = 825,
) -> None:
    """Make the broker's TLS files: a private CA (reused if present) and a server certificate."""
    try:
        files = make_broker_certificates(out, host, days=days)
    except BrokerTlsError as err:
        typer.echo(f"broker-certs: {err}", err=True)
        raise typer.Exit(2) from err
    typer.echo(f"wrote {files.server_cert} and {files.server_key} for {', '.join(host)}")
    typer.echo(f"gateways trust {files.ca_cert}; keep {files.ca_key} offline")


async def _main(
    settings: CloudSettings, *, ingest: bool, api: bool, detect: DetectionSettings | None = None
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runtime = CloudRuntime(settings, detection=detect)
    await runtime.open_with_retries(stop)
    if stop.is_set():
        return
    port = settings.api_port if api else settings.ops_port
    sock = bind_listener(settings.api_host, port, fall_back=False) if (api or port) else None
    if sock is not None:
        host, bound = sock.getsockname()[:2]
        what = "API" if api else "ops endpoints (/healthz, /metrics)"
        typer.echo(f"LeaseWatch {what} on http://{host}:{bound}/", err=True)
    try:
        await runtime.run(
            stop, ingest=ingest, api_socket=sock, ops_only=not api, detect=detect is not None
        )
    finally:
        await runtime.close()
