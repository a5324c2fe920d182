"""`leasewatch edge`: run or check the gateway's edge agent."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Annotated

import typer

from edge.agent import EdgeAgent
from edge.config import ConfigError, EdgeConfig, load_config, sample_config
from leasewatch.logs import configure_logging

app = typer.Typer(no_args_is_help=True, invoke_without_command=True)


@app.callback()
def edge(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Option(help="Agent configuration file (TOML).")] = None,
    check: Annotated[bool, typer.Option(help="Validate the configuration and exit.")] = False,
    log_level: Annotated[str, typer.Option(help="Log level.")] = "INFO",
) -> None:
    """Run the edge agent with a configuration file until SIGINT/SIGTERM."""
    if ctx.invoked_subcommand is not None:
        return
    if config is None:
        raise typer.BadParameter("--config is required", param_hint="--config")
    try:
        settings = load_config(config)
    except ConfigError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(2) from err
    if check:
        typer.echo(f"{config}: configuration is valid ({_summary(settings)})")
        return
    configure_logging(log_level)
    asyncio.run(_run(settings))


@app.command("sample-config")
def print_sample_config() -> None:
    """Print the documented sample configuration."""
    typer.echo(sample_config(), nl=False)


def _summary(config: EdgeConfig) -> str:
    slaves = sum(len(bus.slaves) for bus in config.modbus_rtu)
    buses = len(config.modbus_rtu)
    return f"device {config.gateway.device}, {buses} Modbus bus(es), {slaves} slave(s)"


async def _run(config: EdgeConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await EdgeAgent(config).run(stop)
