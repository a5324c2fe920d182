"""Command line of the firmware_sim part: `leasewatch sim ...`."""

from __future__ import annotations

import asyncio
import enum
import random
import signal
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Annotated

import typer

from firmware_sim.asset_types import ASSET_TYPES, MIXED, asset_type
from firmware_sim.faults import FaultSetting, FaultSwitch, parse_fault
from firmware_sim.modbus_slave import ModbusRtuSlave
from firmware_sim.pty_pair import PtyPair
from firmware_sim.register_map import RegisterMap
from firmware_sim.scenarios.commands import app as scenario_app
from firmware_sim.scenarios.commands import bench_command, fleet_command
from leasewatch.logs import configure_logging

app = typer.Typer(no_args_is_help=True)


@app.callback()
def sim() -> None:
    """Simulate devices and fleets."""


@dataclass(frozen=True, slots=True)
class SimulatedAsset:
    """One simulated asset: its name, model seed, run-hour meter at start and asset type."""

    name: str
    seed: int
    initial_run_hours: float
    asset_type: str = "generic"


def fleet(assets: int, seed: int, asset_type: str = "generic") -> list[SimulatedAsset]:
    """`assets` assets whose seeds and meters follow from `seed` alone; "mixed" cycles the types."""
    types = MIXED if asset_type == "mixed" else (asset_type,)
    if unknown := [t for t in types if t not in ASSET_TYPES]:
        raise ValueError(f"unknown asset type {unknown[0]!r}; known: {', '.join(ASSET_TYPES)}")
    fleet_rng = random.Random(seed)
    return [
        SimulatedAsset(
            name=f"asset-{i:03d}",
            seed=fleet_rng.getrandbits(32),
            initial_run_hours=round(fleet_rng.uniform(200.0, 15_000.0), 3),
            asset_type=types[(i - 1) % len(types)],
        )
        for i in range(1, assets + 1)
    ]


class TypeChoice(enum.StrEnum):
    """What `--type` accepts: a registered asset type, or "mixed"."""

    GENERIC = "generic"
    TRUCK = "truck"
    EXCAVATOR = "excavator"
    CNC = "cnc"
    COMPRESSOR = "compressor"
    MIXED = "mixed"


@app.command("modbus")
def modbus(
    assets: Annotated[int, typer.Option(min=1, max=500, help="Number of assets.")] = 1,
    type_: Annotated[
        TypeChoice, typer.Option("--type", help="Asset type; mixed cycles truck..compressor.")
    ] = TypeChoice.GENERIC,
    seed: Annotated[int, typer.Option(help="Fleet seed; same seed, same assets.")] = 1,
    unit_id: Annotated[int, typer.Option(min=1, max=247, help="Modbus unit id of each.")] = 1,
    baudrate: Annotated[int, typer.Option(help="Baud rate the slaves open the port with.")] = 19200,
    fault: Annotated[
        list[str] | None,
        typer.Option(metavar="ASSET=FAULT", help="Inject a fault (see above); repeatable."),
    ] = None,
    faults_paused: Annotated[
        bool, typer.Option("--faults-paused", help="Start with the faults off.")
    ] = False,
    print_map: Annotated[
        bool, typer.Option("--print-map", help="Print the register maps, then exit.")
    ] = False,
    log_level: Annotated[str, typer.Option(help="Log level.")] = "WARNING",
) -> None:
    r"""Serve N simulated assets, each a Modbus RTU slave on its own pty, until Ctrl-C.

    Prints a line per asset: name, unit id, the port a master opens, type:
    asset-001 unit=1 port=/dev/pts/7 type=truck

    --print-map lists each type's registers; read them with e.g. (a truck)
    mbpoll -m rtu -a 1 -b 19200 -P none -t 4 -r 1 -c 11 -1 /dev/pts/7

    Faults: --fault ASSET=FAULT\[:ARG]\[@PROBABILITY], where FAULT is one of
    timeout, crc, garbage\[:BYTES], illegal-address, stuck\[:METRIC],
    out-of-range:METRIC\[:VALUE], clock-skew:SECONDS. Examples:
    --fault asset-003=timeout --fault asset-001=crc@0.2
    --fault asset-002=stuck:coolant_temp

    Faults are on from the start (off with --faults-paused); kill -USR1 PID
    switches them all on or off. The count of requests each fault affected
    prints at exit.
    """
    configure_logging(log_level)
    chosen = fleet(assets, seed, type_.value)
    if print_map:
        for name in dict.fromkeys(a.asset_type for a in chosen):
            typer.echo(describe_map(asset_type(name).register_map))
        return
    plan: dict[str, list[FaultSetting]] = {}
    for spec in fault or []:
        try:
            name, setting = _checked_fault(spec, chosen)
        except ValueError as err:
            raise typer.BadParameter(str(err), param_hint="--fault") from err
        plan.setdefault(name, []).append(setting)
    asyncio.run(_serve(chosen, unit_id, baudrate, plan, paused=faults_paused))


def describe_map(register_map: RegisterMap) -> str:
    """A register map as a table a tester can point mbpoll at."""
    last = register_map.start + register_map.count - 1
    lines = [
        f"{register_map.name}: holding registers {register_map.start}..{last} (function 3)",
        "address  mbpoll -r  metric               kind   scale  unit  32-bit word order",
    ]
    for f in register_map.fields:
        words = "" if f.width == 1 else f.word_order.value
        lines.append(
            f"{f.address:>7}  {f.address + 1:>9}  {f.metric:<20} {f.kind.value:<4} {f.scale:>7g}"
            f"  {f.unit or '-':<5} {words}".rstrip()
        )
    lines.append("(word order big: high word first, mbpoll -B; little: mbpoll's default)")
    return "\n".join(lines)


def _checked_fault(spec: str, assets: Sequence[SimulatedAsset]) -> tuple[str, FaultSetting]:
    """The asset and fault `spec` names, checked against that asset's register map."""
    name, setting = parse_fault(spec)
    types = {a.name: a.asset_type for a in assets}
    if name not in types:
        names = list(types)
        raise ValueError(f"fault {spec!r}: no asset {name!r}; assets: {names[0]}..{names[-1]}")
    FaultSwitch(asset_type(types[name]).register_map).apply(setting)
    return name, setting


async def _serve(
    assets: list[SimulatedAsset],
    unit_id: int,
    baudrate: int,
    plan: dict[str, list[FaultSetting]],
    *,
    paused: bool,
) -> None:
    """Open one pty pair and slave per asset, print where to connect, wait for a signal."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with AsyncExitStack() as stack:
            slaves: dict[str, ModbusRtuSlave] = {}
            for asset in assets:
                pair = await stack.enter_async_context(PtyPair())
                slaves[asset.name] = await stack.enter_async_context(
                    _slave(asset, pair.device_path, unit_id, baudrate)
                )
                typer.echo(
                    f"{asset.name} unit={unit_id} port={pair.client_path} type={asset.asset_type}"
                )
            switch = _FaultToggle(slaves, plan, on=not paused)
            loop.add_signal_handler(signal.SIGUSR1, switch.toggle)
            typer.echo(f"serving {len(assets)} asset(s); Ctrl-C to stop")
            await stop.wait()
            switch.report()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1):
            loop.remove_signal_handler(sig)


def _slave(asset: SimulatedAsset, port: str, unit_id: int, baudrate: int) -> ModbusRtuSlave:
    """The slave serving one asset's model with its type's register map."""
    kind = asset_type(asset.asset_type)
    model = kind.model(asset.seed, initial_run_hours=asset.initial_run_hours)
    return ModbusRtuSlave(
        model,
        port,
        unit_id=unit_id,
        baudrate=baudrate,
        register_map=kind.register_map,
        fault_seed=asset.seed,
    )


class _FaultToggle:
    """The command line's faults: all on or all off, toggled by SIGUSR1."""

    def __init__(
        self, slaves: dict[str, ModbusRtuSlave], plan: dict[str, list[FaultSetting]], *, on: bool
    ) -> None:
        """Arm the planned faults; switch them on unless `on` is False."""
        self.slaves = slaves
        self.plan = plan
        self.on = False
        if on and plan:
            self.toggle()

    def toggle(self) -> None:
        """Switch the planned faults on if they are off, off if they are on."""
        self.on = not self.on
        for name, settings in self.plan.items():
            faults = self.slaves[name].faults
            faults.clear()
            for setting in settings if self.on else ():
                faults.apply(setting)
            listed = ", ".join(s.fault.value for s in settings)
            typer.echo(f"{name} faults {'on' if self.on else 'off'}: {listed}")

    def report(self) -> None:
        """Print how many requests each fault affected, per asset."""
        for name, slave in self.slaves.items():
            if counts := slave.faults.injected:
                listed = " ".join(f"{f.value}={n}" for f, n in counts.items())
                typer.echo(f"{name} injected {listed}")


# Scenarios with ground truth, fleet mode and its benchmark (firmware_sim.scenarios.commands).
app.add_typer(scenario_app, name="scenario", help="Scenarios with ground truth: list, check, run.")
app.command("fleet")(fleet_command)
app.command("bench")(bench_command)
