"""`leasewatch sim modbus`: a fleet of simulated machines on ptys, stopped by SIGTERM."""

from __future__ import annotations

import asyncio
import re
import signal
import sys

import minimalmodbus

from firmware_sim.cli import fleet
from firmware_sim.register_map import held_values

ASSET_LINE = re.compile(r"^(asset-\d{3}) unit=(\d+) port=(\S+)$")


def test_fleet_follows_from_the_seed() -> None:
    assert fleet(3, seed=5) == fleet(3, seed=5)
    assert fleet(3, seed=5) != fleet(3, seed=6)
    assert [a.name for a in fleet(3, seed=5)] == ["asset-001", "asset-002", "asset-003"]
    assert len({a.seed for a in fleet(50, seed=5)}) == 50


def _read_run_hours(port: str, unit_id: int) -> float:
    """Read the machine's registers with minimalmodbus and return its run-hour meter."""
    instrument = minimalmodbus.Instrument(port, unit_id, close_port_after_each_call=True)
    instrument.serial.baudrate = 19200
    instrument.serial.timeout = 1.0
    return held_values(instrument.read_registers(0, 7, functioncode=3))["run_hours"]


async def test_sim_modbus_serves_each_asset_until_sigterm() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from firmware_sim.cli import app; app()",
        "modbus",
        "--assets",
        "2",
        "--seed",
        "5",
        "--unit-id",
        "4",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    try:
        lines = [
            (await asyncio.wait_for(process.stdout.readline(), timeout=15)).decode().strip()
            for _ in range(2)
        ]
        assets = [ASSET_LINE.fullmatch(line) for line in lines]
        assert all(assets), lines
        for match, expected in zip(assets, fleet(2, seed=5), strict=True):
            assert match is not None
            assert (match[1], match[2]) == (expected.name, "4")
            run_hours = await asyncio.to_thread(_read_run_hours, match[3], 4)
            assert run_hours >= expected.initial_run_hours
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(process.communicate(), timeout=10)
    assert process.returncode == 0, err.decode()
