"""Command line of the firmware_sim part: `leasewatch sim ...`."""

from __future__ import annotations

import asyncio
import random
import signal
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Annotated

import typer

from firmware_sim.machine import MachineModel
from firmware_sim.modbus_slave import ModbusRtuSlave
from firmware_sim.pty_pair import PtyPair
from leasewatch.logs import configure_logging

app = typer.Typer(no_args_is_help=True)


@app.callback()
def sim() -> None:
    """Simulate devices and fleets."""


@dataclass(frozen=True, slots=True)
class SimulatedAsset:
    """One simulated machine: its name, model seed and run-hour meter at start."""

    name: str
    seed: int
    initial_run_hours: float


def fleet(assets: int, seed: int) -> list[SimulatedAsset]:
    """`assets` machines whose seeds and meters follow from `seed` alone."""
    fleet_rng = random.Random(seed)
    return [
        SimulatedAsset(
            name=f"asset-{i:03d}",
            seed=fleet_rng.getrandbits(32),
            initial_run_hours=round(fleet_rng.uniform(200.0, 15_000.0), 3),
        )
        for i in range(1, assets + 1)
    ]


@app.command("modbus")
def modbus(
    assets: Annotated[int, typer.Option(min=1, max=500, help="Number of machines.")] = 1,
    seed: Annotated[int, typer.Option(help="Fleet seed; same seed, same machines.")] = 1,
    unit_id: Annotated[int, typer.Option(min=1, max=247, help="Modbus unit id of each.")] = 1,
    baudrate: Annotated[int, typer.Option(help="Baud rate the slaves open the port with.")] = 19200,
    log_level: Annotated[str, typer.Option(help="Log level.")] = "WARNING",
) -> None:
    """Serve N simulated machines, each a Modbus RTU slave on its own pty, until SIGINT/SIGTERM."""
    configure_logging(log_level)
    asyncio.run(_serve(fleet(assets, seed), unit_id, baudrate))


async def _serve(assets: list[SimulatedAsset], unit_id: int, baudrate: int) -> None:
    """Open one pty pair and slave per asset, print where to connect, wait for a signal."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with AsyncExitStack() as stack:
            for asset in assets:
                pair = await stack.enter_async_context(PtyPair())
                model = MachineModel(asset.seed, initial_run_hours=asset.initial_run_hours)
                await stack.enter_async_context(
                    ModbusRtuSlave(model, pair.device_path, unit_id=unit_id, baudrate=baudrate)
                )
                typer.echo(f"{asset.name} unit={unit_id} port={pair.client_path}")
            typer.echo(f"serving {len(assets)} machine(s); Ctrl-C to stop")
            await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
