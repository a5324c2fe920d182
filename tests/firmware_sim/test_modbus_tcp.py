"""ModbusTcpSlave on loopback, read by pymodbus's own client; its fault switches."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusIOException

from firmware_sim.machine import HeldMachine
from firmware_sim.modbus_tcp import (
    FAULT_BIT,
    OUTPUT_COIL,
    RUNNING_BIT,
    MachineUnits,
    ModbusTcpSlave,
)
from firmware_sim.register_map import MACHINE_MAP, encode_registers, held_values

HELD = {
    "running": 1.0,
    "motor_current": 12.34,
    "temperature": -5.5,
    "vibration_rms": 3.21,
    "run_hours": 1234.567,
    "fault_code": 7.0,
}


def _machine() -> HeldMachine:
    return HeldMachine(
        running=True,
        motor_current=12.34,
        temperature=-5.5,
        vibration_rms=3.21,
        run_hours=1234.567,
        fault_code=7,
    )


@pytest.fixture
async def plc() -> AsyncIterator[tuple[ModbusTcpSlave, AsyncModbusTcpClient]]:
    async with ModbusTcpSlave({1: _machine(), 2: HeldMachine()}) as slave:
        client = AsyncModbusTcpClient("127.0.0.1", port=slave.port, timeout=0.3, retries=0)
        await client.connect()
        try:
            yield slave, client
        finally:
            client.close()


async def test_holding_and_input_registers_hold_the_machine_state(
    plc: tuple[ModbusTcpSlave, AsyncModbusTcpClient],
) -> None:
    slave, client = plc
    holding = await client.read_holding_registers(0, count=MACHINE_MAP.count, device_id=1)
    inputs = await client.read_input_registers(0, count=MACHINE_MAP.count, device_id=1)
    assert holding.registers == inputs.registers == encode_registers(HELD)
    assert held_values(holding.registers) == HELD == slave.served[-1].values
    assert {s.unit_id for s in slave.served} == {1}


async def test_bits_say_running_and_fault(plc: tuple[ModbusTcpSlave, AsyncModbusTcpClient]) -> None:
    _, client = plc
    coils = await client.read_coils(0, count=2, device_id=1)
    inputs = await client.read_discrete_inputs(0, count=2, device_id=1)
    idle = await client.read_discrete_inputs(0, count=2, device_id=2)
    assert coils.bits[:2] == inputs.bits[:2] == [True, True]
    assert (RUNNING_BIT, FAULT_BIT) == (0, 1)
    assert idle.bits[:2] == [False, False]


async def test_the_output_coil_is_writable_and_the_others_are_not(
    plc: tuple[ModbusTcpSlave, AsyncModbusTcpClient],
) -> None:
    slave, client = plc
    written = await client.write_coil(OUTPUT_COIL, True, device_id=2)
    assert not written.isError()
    assert slave.outputs == {1: False, 2: True}
    assert (await client.read_coils(OUTPUT_COIL, count=1, device_id=2)).bits[0] is True
    refused = await client.write_coil(RUNNING_BIT, False, device_id=2)
    assert refused.isError()
    refused = await client.write_register(0, 1, device_id=2)
    assert refused.isError()


async def test_fault_switches(plc: tuple[ModbusTcpSlave, AsyncModbusTcpClient]) -> None:
    slave, client = plc
    slave.failing.add(1)
    failing = await client.read_holding_registers(0, count=2, device_id=1)
    assert failing.isError() and failing.exception_code == 4
    slave.failing.clear()
    for switch in (slave.silent, slave.garbled):
        switch.add(1)
        with pytest.raises(ModbusIOException):
            await client.read_holding_registers(0, count=2, device_id=1)
        switch.clear()
    client.set_max_no_responses(100)
    with pytest.raises(ModbusIOException):  # an id nobody serves: silence, like a real bus
        await client.read_holding_registers(0, count=2, device_id=9)
    assert not (await client.read_holding_registers(0, count=2, device_id=2)).isError()


async def test_a_slave_that_is_not_serving_has_no_port() -> None:
    slave = ModbusTcpSlave({1: HeldMachine()})
    with pytest.raises(RuntimeError, match="not serving"):
        _ = slave.port
    with pytest.raises(ValueError, match="unit ids"):
        MachineUnits({256: HeldMachine()})
    with pytest.raises(ValueError, match="at least one"):
        MachineUnits({})


@pytest.mark.parametrize("type_name", ["truck", "excavator", "cnc", "compressor"])
async def test_mbpoll_over_tcp_reads_every_asset_type(type_name: str) -> None:
    """A real Modbus TCP master (libmodbus) reads each asset type's map from the TCP slave."""
    import asyncio  # noqa: PLC0415
    import re  # noqa: PLC0415
    import shutil  # noqa: PLC0415

    from firmware_sim.asset_types import ASSET_TYPES  # noqa: PLC0415

    mbpoll = shutil.which("mbpoll")
    if mbpoll is None:
        pytest.fail("mbpoll is not installed: `apt-get install mbpoll` to run this test")
    kind = ASSET_TYPES[type_name]
    model = kind.model(7, initial_run_hours=1000.0)
    async with ModbusTcpSlave({1: model}, register_map=kind.register_map) as slave:
        rmap = kind.register_map
        process = await asyncio.create_subprocess_exec(
            mbpoll, "-m", "tcp", "-p", str(slave.port), "-a", "1", "-t", "4:hex",
            "-r", str(rmap.start + 1), "-c", str(rmap.count), "-1", "-o", "2", "127.0.0.1",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(process.communicate(), timeout=15)
        assert process.returncode == 0, err.decode()
        found = re.findall(r"^\[(\d+)\]:\s+0x([0-9A-Fa-f]+)", out.decode(), re.MULTILINE)
        registers = [int(value, 16) for _, value in found]
        assert len(registers) == rmap.count
        assert held_values(registers, rmap) == slave.served[-1].values
