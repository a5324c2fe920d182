"""ModbusRtuSlave over a PtyPair, read by real masters: minimalmodbus and mbpoll."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import minimalmodbus
import pytest

from firmware_sim.machine import HeldMachine, MachineModel
from firmware_sim.modbus_slave import ModbusRtuBus, ModbusRtuSlave
from firmware_sim.pty_pair import PtyPair
from firmware_sim.register_map import held_values
from tests.firmware_sim.masters import RTU_19200_8N1, instrument, mbpoll, read_registers

HELD = {
    "running": 1.0,
    "motor_current": 12.34,
    "temperature": -5.5,
    "vibration_rms": 3.21,
    "run_hours": 1234.567,
    "fault_code": 0.0,
}


def _held_machine() -> HeldMachine:
    return HeldMachine(
        running=True,
        motor_current=12.34,
        temperature=-5.5,
        vibration_rms=3.21,
        run_hours=1234.567,
        fault_code=0,
    )


@dataclass
class Served:
    """A slave serving a held machine on a pty pair."""

    machine: HeldMachine
    slave: ModbusRtuSlave
    client_path: str


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    machine = _held_machine()
    async with PtyPair() as pair, ModbusRtuSlave(machine, pair.device_path, unit_id=1) as slave:
        yield Served(machine, slave, pair.client_path)


def _instrument(path: str, unit_id: int = 1, timeout: float = 1.0) -> minimalmodbus.Instrument:
    """A minimalmodbus master on `path`, 19200 8N1, closing the port after each call."""
    return instrument(path, unit_id, timeout)


def _read_registers(path: str, unit_id: int = 1, address: int = 0, count: int = 7) -> list[int]:
    """Read holding registers with minimalmodbus (blocking; run in a thread)."""
    return read_registers(path, address, count, unit_id)


async def test_minimalmodbus_reads_the_held_values(served: Served) -> None:
    registers = await asyncio.to_thread(_read_registers, served.client_path)
    assert held_values(registers) == HELD


async def test_minimalmodbus_decodes_scaled_and_32_bit_fields(served: Served) -> None:
    instrument = _instrument(served.client_path)
    temperature = await asyncio.to_thread(instrument.read_register, 2, 1, 3, True)
    run_hours_raw = await asyncio.to_thread(
        instrument.read_long, 4, 3, False, minimalmodbus.BYTEORDER_BIG
    )
    assert temperature == -5.5
    assert run_hours_raw == 1_234_567


async def test_reads_see_the_current_state_and_the_log_records_it(served: Served) -> None:
    first = await asyncio.to_thread(_read_registers, served.client_path)
    served.machine.set(running=False, motor_current=0.2, run_hours=1234.6)
    second = await asyncio.to_thread(_read_registers, served.client_path, 1, 1, 1)
    assert held_values(first) == HELD
    assert second == [20]
    assert len(served.slave.served) == 2
    last = served.slave.served[-1]
    assert (last.unit_id, last.address, last.count) == (1, 1, 1)
    assert last.values == HELD | {"running": 0.0, "motor_current": 0.2, "run_hours": 1234.6}
    assert abs((datetime.now(UTC) - last.at).total_seconds()) < 5


async def test_unsupported_requests_get_modbus_exceptions(served: Served) -> None:
    # minimalmodbus waits its full timeout for a short (exception) response: keep it small
    instrument = _instrument(served.client_path, timeout=0.1)
    with pytest.raises(minimalmodbus.IllegalRequestError, match="illegal function"):
        await asyncio.to_thread(instrument.read_registers, 0, 7, 4)  # input registers: none here
    with pytest.raises(minimalmodbus.IllegalRequestError, match="illegal data address"):
        await asyncio.to_thread(instrument.read_registers, 0, 8, 3)  # past the end of the map
    with pytest.raises(minimalmodbus.IllegalRequestError, match="illegal data address"):
        await asyncio.to_thread(instrument.write_register, 6, 1, 0, 6)  # read-only
    registers = await asyncio.to_thread(_read_registers, served.client_path)
    assert held_values(registers) == HELD


async def test_unknown_unit_id_is_silent_like_a_real_bus(served: Served) -> None:
    instrument = _instrument(served.client_path, unit_id=2, timeout=0.2)
    with pytest.raises(minimalmodbus.NoResponseError):
        await asyncio.to_thread(instrument.read_registers, 0, 7, 3)
    assert len(served.slave.served) == 0


async def test_several_units_share_one_bus() -> None:
    press, lathe = _held_machine(), HeldMachine(motor_current=0.5, temperature=21.0)
    async with PtyPair() as pair, ModbusRtuBus(pair.device_path, {3: press, 7: lathe}) as bus:
        at_3 = await asyncio.to_thread(_read_registers, pair.client_path, 3)
        at_7 = await asyncio.to_thread(_read_registers, pair.client_path, 7)
    assert held_values(at_3) == HELD
    assert held_values(at_7)["motor_current"] == 0.5
    assert held_values(at_7)["temperature"] == 21.0
    assert [r.unit_id for r in bus.served] == [3, 7]


async def test_a_simulated_model_is_served_live() -> None:
    async with (
        PtyPair() as pair,
        ModbusRtuSlave(MachineModel(seed=4, initial_run_hours=99.0), pair.device_path) as slave,
    ):
        registers = await asyncio.to_thread(_read_registers, pair.client_path)
    assert held_values(registers) == slave.served[-1].values
    assert held_values(registers)["run_hours"] >= 99.0


async def test_stop_leaves_no_fd_or_task_behind() -> None:
    fds_before = set(os.listdir("/proc/self/fd"))
    async with PtyPair() as pair:
        slave = ModbusRtuSlave(_held_machine(), pair.device_path)
        await slave.start()
        await asyncio.to_thread(_read_registers, pair.client_path)
        await slave.stop()
        await slave.stop()  # idempotent
    await asyncio.sleep(0)
    assert set(os.listdir("/proc/self/fd")) == fds_before
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_a_missing_port_is_an_os_error() -> None:
    with pytest.raises(OSError, match="/dev/nonexistent-tty"):
        await ModbusRtuSlave(_held_machine(), "/dev/nonexistent-tty").start()


# --- mbpoll: an independent C master (libmodbus), see tests/firmware_sim/masters.py ----------


async def test_mbpoll_reads_the_held_values(served: Served) -> None:
    read = await mbpoll(
        *RTU_19200_8N1, "-t", "4", "-r", "1", "-c", "7", "-1", "-o", "2", served.client_path
    )
    assert list(read) == [1, 2, 3, 4, 5, 6, 7]  # mbpoll's -r is 1-based: reference 1 is address 0
    assert held_values([int(v) for v in read.values()]) == HELD
    assert served.slave.served[-1].values == HELD


async def test_mbpoll_reads_run_hours_as_big_endian_32_bit(served: Served) -> None:
    read = await mbpoll(
        *RTU_19200_8N1, "-t", "4:int", "-B", "-r", "5", "-c", "1", "-1", served.client_path
    )
    assert read == {5: 1_234_567}


async def test_missing_mbpoll_fails_instead_of_skipping(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(pytest.fail.Exception, match="mbpoll is not installed"):
        await mbpoll("-h")


async def test_a_state_the_registers_cannot_hold_is_a_device_failure(served: Served) -> None:
    served.machine.set(temperature=-4000.0)  # below an i16 * 0.1 register
    instrument = _instrument(served.client_path, timeout=0.1)
    with pytest.raises(minimalmodbus.SlaveReportedException, match="device failure"):
        await asyncio.to_thread(instrument.read_registers, 0, 7, 3)
    assert len(served.slave.served) == 0
