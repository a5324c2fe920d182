"""The edge's Modbus RTU driver over a pty, cross-checked against mbpoll (libmodbus)."""

from __future__ import annotations

import asyncio
import re
import shutil
import time
from collections.abc import AsyncIterator

import pytest

from edge.config import ModbusRtuBusConfig, ModbusSlaveConfig
from edge.decoding import decode_request
from edge.drivers.modbus_rtu import ModbusBus, ModbusSlaveDriver
from firmware_sim.machine import HeldMachine
from firmware_sim.modbus_slave import ModbusRtuSlave
from firmware_sim.pty_pair import PtyPair
from leasewatch.demo import machine_fields


@pytest.fixture
async def bus() -> AsyncIterator[tuple[str, HeldMachine, ModbusRtuSlave]]:
    """A held machine on unit 1 of a simulated bus; yields the client pty path."""
    machine = HeldMachine(
        running=True,
        motor_current=17.42,
        temperature=-12.3,
        vibration_rms=6.05,
        run_hours=98765.432,
        fault_code=3,
    )
    async with PtyPair() as pair, ModbusRtuSlave(machine, pair.device_path) as slave:
        yield pair.client_path, machine, slave


def _driver(port: str, *unit_ids: int, timeout: float = 0.3) -> list[ModbusSlaveDriver]:
    slaves = [
        ModbusSlaveConfig(sensor=f"unit{u}", unit_id=u, timeout=timeout, fields=machine_fields())
        for u in unit_ids
    ]
    modbus_bus = ModbusBus(ModbusRtuBusConfig(port=port, slaves=slaves))
    return [ModbusSlaveDriver(modbus_bus, s) for s in slaves]


async def _mbpoll_registers(port: str, start: int, count: int) -> list[int]:
    mbpoll = shutil.which("mbpoll")
    if mbpoll is None:
        pytest.fail("mbpoll is not installed: `apt-get install mbpoll` to run this test")
    process = await asyncio.create_subprocess_exec(
        mbpoll,
        "-m",
        "rtu",
        "-a",
        "1",
        "-b",
        "19200",
        "-P",
        "none",
        "-d",
        "8",
        "-s",
        "1",
        "-t",
        "4:hex",
        "-r",
        str(start + 1),
        "-c",
        str(count),
        "-1",
        "-o",
        "2",
        port,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=10)
    assert process.returncode == 0, f"mbpoll failed: {out.decode()} {err.decode()}"
    found = re.findall(r"^\[(\d+)\]:\s+0x([0-9A-Fa-f]+)", out.decode(), re.MULTILINE)
    return [int(value, 16) for _, value in found]


async def test_edge_driver_and_mbpoll_read_the_same_values(
    bus: tuple[str, HeldMachine, ModbusRtuSlave],
) -> None:
    port, _, slave = bus
    (driver,) = _driver(port, 1)
    readings = await driver.read()
    driver.bus.close()
    edge_values = {r.metric: r.value for r in readings}
    assert {r.unit for r in readings} == {"", "A", "degC", "mm/s", "h"}
    (request,) = driver.requests
    raw = await _mbpoll_registers(port, request.start, request.count)
    assert decode_request(request, raw) == edge_values
    assert edge_values == slave.served[-1].values
    assert edge_values["temperature"] == -12.3
    assert edge_values["run_hours"] == 98765.432


async def test_a_silent_slave_yields_no_readings_and_does_not_stall_its_neighbour(
    bus: tuple[str, HeldMachine, ModbusRtuSlave],
) -> None:
    port, _, _ = bus
    alive, silent = _driver(port, 1, 9, timeout=0.2)
    started = time.monotonic()
    assert await silent.read() == []  # unit 9 does not exist: a timeout, never a zero
    assert time.monotonic() - started < 1.5
    assert sum(silent.errors.values()) == 1
    assert len(await alive.read()) == len(machine_fields())
    alive.bus.close()


async def test_a_missing_port_is_a_counted_error_not_a_crash() -> None:
    (driver,) = _driver("/dev/does-not-exist", 1)
    assert await driver.read() == []
    assert driver.errors["SerialException"] == 1
    driver.bus.close()
