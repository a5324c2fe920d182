"""`leasewatch sim modbus`: a fleet of simulated assets on ptys, faults, stopped by SIGTERM."""

from __future__ import annotations

import asyncio
import re
import signal
import sys

import minimalmodbus
import pytest
from typer.testing import CliRunner

from firmware_sim.asset_types import ASSET_TYPES
from firmware_sim.cli import app, fleet
from firmware_sim.register_map import held_values
from tests.firmware_sim.masters import read_registers

ASSET_LINE = re.compile(r"^(asset-\d{3}) unit=(\d+) port=(\S+) type=(\w+)$")


def test_fleet_follows_from_the_seed() -> None:
    assert fleet(3, seed=5) == fleet(3, seed=5)
    assert fleet(3, seed=5) != fleet(3, seed=6)
    assert [a.name for a in fleet(3, seed=5)] == ["asset-001", "asset-002", "asset-003"]
    assert len({a.seed for a in fleet(50, seed=5)}) == 50
    assert {a.asset_type for a in fleet(3, seed=5)} == {"generic"}


def test_a_mixed_fleet_cycles_the_types_with_the_same_seeds() -> None:
    mixed = fleet(6, seed=5, asset_type="mixed")
    assert [a.asset_type for a in mixed] == [
        "truck",
        "excavator",
        "cnc",
        "compressor",
        "truck",
        "excavator",
    ]
    assert [a.seed for a in mixed] == [a.seed for a in fleet(6, seed=5)]
    with pytest.raises(ValueError, match="unknown asset type 'forklift'"):
        fleet(1, seed=5, asset_type="forklift")


def _read_run_hours(port: str, unit_id: int) -> float:
    """Read the machine's registers with minimalmodbus and return its run-hour meter."""
    instrument = minimalmodbus.Instrument(port, unit_id, close_port_after_each_call=True)
    instrument.serial.baudrate = 19200
    instrument.serial.timeout = 1.0
    return held_values(instrument.read_registers(0, 7, functioncode=3))["run_hours"]


async def _start(*args: str) -> asyncio.subprocess.Process:
    """`leasewatch sim modbus ARGS` in a child process."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from firmware_sim.cli import app; app()",
        "modbus",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def _lines(process: asyncio.subprocess.Process, count: int) -> list[str]:
    """The next `count` lines the process prints."""
    assert process.stdout is not None
    return [
        (await asyncio.wait_for(process.stdout.readline(), timeout=15)).decode().strip()
        for _ in range(count)
    ]


async def test_sim_modbus_serves_each_asset_until_sigterm() -> None:
    process = await _start("--assets", "2", "--seed", "5", "--unit-id", "4")
    try:
        lines = await _lines(process, 2)
        assets = [ASSET_LINE.fullmatch(line) for line in lines]
        assert all(assets), lines
        for match, expected in zip(assets, fleet(2, seed=5), strict=True):
            assert match is not None
            assert (match[1], match[2], match[4]) == (expected.name, "4", "generic")
            run_hours = await asyncio.to_thread(_read_run_hours, match[3], 4)
            assert run_hours >= expected.initial_run_hours
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(process.communicate(), timeout=10)
    assert process.returncode == 0, err.decode()


def _read_type(port: str, asset_type: str) -> dict[str, float]:
    """Read an asset's whole register map with minimalmodbus (blocking)."""
    rmap = ASSET_TYPES[asset_type].register_map
    return held_values(read_registers(port, rmap.start, rmap.count), rmap)


def _silent(port: str) -> bool:
    """Whether unit 1 on `port` does not answer (blocking)."""
    master = minimalmodbus.Instrument(port, 1, close_port_after_each_call=True)
    master.serial.timeout = 0.3
    try:
        master.read_register(0)
    except minimalmodbus.NoResponseError:
        return True
    return False


async def test_a_mixed_fleet_with_a_fault_that_sigusr1_switches_off() -> None:
    process = await _start("--assets", "4", "--type", "mixed", "--fault", "asset-002=timeout")
    try:
        matches = [ASSET_LINE.fullmatch(line) for line in await _lines(process, 4)]
        assert await _lines(process, 2) == [
            "asset-002 faults on: timeout",
            "serving 4 asset(s); Ctrl-C to stop",
        ]
        ports = {m[1]: (m[3], m[4]) for m in matches if m is not None}
        assert [t for _, t in ports.values()] == ["truck", "excavator", "cnc", "compressor"]
        for name in ("asset-001", "asset-003", "asset-004"):
            values = await asyncio.to_thread(_read_type, *ports[name])
            assert values["controller_time"] > 1.7e9
        assert await asyncio.to_thread(_silent, ports["asset-002"][0])
        process.send_signal(signal.SIGUSR1)
        assert await _lines(process, 1) == ["asset-002 faults off: timeout"]
        assert await asyncio.to_thread(_read_type, *ports["asset-002"])
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(process.communicate(), timeout=10)
    assert process.returncode == 0, err.decode()
    assert out.decode().splitlines() == ["asset-002 injected timeout=1"]


def test_help_explains_types_and_faults() -> None:
    result = CliRunner().invoke(app, ["modbus", "--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0
    for words in ("--type", "mixed", "clock-skew:SECONDS", "asset-003=timeout", "USR1", "mbpoll"):
        assert words in result.output


def test_print_map_lists_each_types_registers() -> None:
    result = CliRunner().invoke(app, ["modbus", "--type", "mixed", "--assets", "4", "--print-map"])
    assert result.exit_code == 0
    assert "compressor: holding registers 1000..1011 (function 3)" in result.output
    assert "   1005       1006  run_hours            u32     0.01  h     little" in result.output


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("asset-009=timeout", "no asset 'asset-009'"),
        ("asset-001=flood", "unknown fault 'flood'"),
        ("asset-001=clock-skew:60", "no controller_time register"),
    ],
)
def test_a_bad_fault_is_a_usage_error(fault: str, message: str) -> None:
    result = CliRunner().invoke(app, ["modbus", "--fault", fault], env={"COLUMNS": "200"})
    assert result.exit_code == 2
    assert message in result.output
