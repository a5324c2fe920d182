"""`leasewatch edge`: run or check the gateway's edge agent, or benchmark it."""

from __future__ import annotations

import asyncio
import signal
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from edge.agent import EdgeAgent
from edge.bench import BenchOptions, report, run_bench
from edge.buffer import BufferSchemaError
from edge.config import ConfigError, EdgeConfig, load_config, sample_config
from edge.scheduler import bus_budgets
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
        for budget in bus_budgets(settings):
            typer.echo(f"  {budget.describe()}")
        return
    configure_logging(log_level)
    try:
        asyncio.run(_run(settings))
    except BufferSchemaError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(3) from err


@app.command("sample-config")
def print_sample_config() -> None:
    """Print the documented sample configuration."""
    typer.echo(sample_config(), nl=False)


@app.command("bench")
def bench(
    slaves: Annotated[int, typer.Option(min=1, max=247, help="Modbus slaves on the bus.")] = 8,
    registers: Annotated[int, typer.Option(min=8, max=125, help="Registers per slave.")] = 16,
    rate: Annotated[float, typer.Option(min=0.1, max=100, help="Polls per second.")] = 10.0,
    duration: Annotated[float, typer.Option(min=5, help="Seconds of steady polling.")] = 30.0,
    backlog: Annotated[int, typer.Option(min=0, help="Backlog readings to replay.")] = 1_000_000,
    replay_rate: Annotated[float, typer.Option(help="Replay pace cap, readings/s.")] = 100_000.0,
    compress: Annotated[bool, typer.Option(help="zlib-compress messages.")] = False,
    port: Annotated[int, typer.Option(help="Port of the bench's own Mosquitto.")] = 18830,
    workdir: Annotated[Path | None, typer.Option(help="Working directory (kept).")] = None,
) -> None:
    """Measure the agent: N slaves polled over ptys, then a backlog replayed while polling."""
    configure_logging("WARNING")
    directory = workdir or Path(tempfile.mkdtemp(prefix="leasewatch-bench-"))
    options = BenchOptions(
        workdir=directory,
        slaves=slaves,
        registers=registers,
        rate_hz=rate,
        duration_s=duration,
        backlog_readings=backlog,
        replay_readings_per_second=replay_rate,
        compress=compress,
    )
    typer.echo(f"bench in {directory} (agent log: {directory / 'agent.log'})")
    figures = asyncio.run(run_bench(options, port))
    typer.echo(report(options, figures))


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


if __name__ == "__main__":  # `python -m edge.cli`: the agent without the cloud's imports
    app()
