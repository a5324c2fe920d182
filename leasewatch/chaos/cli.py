"""`leasewatch chaos`: run the faults against a real stack and print faults x outcome."""

from __future__ import annotations

import asyncio
import json
import signal
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from leasewatch.chaos.faults import ChaosOptions, Fault
from leasewatch.chaos.report import figures, outcome_table
from leasewatch.chaos.run import ChaosReport, run_chaos
from leasewatch.services.process import ServiceError


async def _stoppable(options: ChaosOptions, workdir: Path) -> ChaosReport:
    """The run, cancelled (and so cleaned up: every started process stopped) on SIGTERM."""
    task = asyncio.current_task()
    if task is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await run_chaos(options, workdir)


app = typer.Typer(no_args_is_help=False, invoke_without_command=True)


@app.callback()
def chaos(
    fault: Annotated[
        list[Fault] | None, typer.Option(help="A fault to run (repeat; default: all, in order).")
    ] = None,
    repetitions: Annotated[int, typer.Option(min=1, help="Restarts and kills per fault.")] = 3,
    store_down: Annotated[float, typer.Option(help="Seconds VictoriaMetrics stays down.")] = 60.0,
    cut: Annotated[float, typer.Option(help="Seconds the gateway's network is cut.")] = 600.0,
    disk_full: Annotated[float, typer.Option(help="Seconds the gateway's disk stays full.")] = 60.0,
    clock_jump: Annotated[float, typer.Option(help="Seconds the gateway's clock steps.")] = 3600.0,
    clock_hold: Annotated[float, typer.Option(help="Seconds it stays stepped.")] = 60.0,
    settle: Annotated[float, typer.Option(help="Seconds of recovery after each fault.")] = 15.0,
    workdir: Annotated[Path | None, typer.Option(help="Keep logs and data here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Run broker restarts, kills, outages, a network cut, a full disk and a clock jump."""
    options = ChaosOptions(
        faults=tuple(fault or Fault), repetitions=repetitions, store_down_s=store_down,
        cut_s=cut, disk_full_s=disk_full, clock_jump_s=clock_jump, clock_hold_s=clock_hold,
        settle_s=settle,
    )  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="lw-chaos-") as scratch:
        where = workdir or Path(scratch)
        where.mkdir(parents=True, exist_ok=True)
        try:
            report = asyncio.run(_stoppable(options, where))
        except asyncio.CancelledError as err:
            typer.echo("chaos: stopped by SIGTERM; every process it started is stopped", err=True)
            raise typer.Exit(1) from err
        except (ServiceError, TimeoutError) as err:
            typer.echo(f"chaos: {err}", err=True)
            raise typer.Exit(1) from err
    if as_json:
        typer.echo(json.dumps(report.as_json(), indent=2))
        return
    console = Console(width=200)
    console.print(outcome_table(report))
    for line in figures(report):
        console.print(line)
