"""Faults injected at run time, as a real master (minimalmodbus) sees them, and the recovery."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import minimalmodbus
import pytest

from firmware_sim.asset_types import ASSET_TYPES
from firmware_sim.faults import Fault
from firmware_sim.machine import HeldMachine
from firmware_sim.modbus_slave import ModbusRtuBus, ModbusRtuSlave
from firmware_sim.pty_pair import PtyPair
from firmware_sim.register_map import TRUCK_MAP, held_values
from tests.firmware_sim.masters import instrument

START = datetime(2026, 1, 6, 6, 0, tzinfo=UTC)  # a Tuesday, the first shift starts
#: minimalmodbus waits its whole timeout for silence and for short (exception) answers
SILENCE_TIMEOUT = 0.3
EXCEPTION_TIMEOUT = 1.0


class TickingClock:
    """A clock that moves `step` forward every time the slave reads it."""

    def __init__(self, start: datetime, step: timedelta) -> None:
        """Start at `start`."""
        self.now = start
        self.step = step

    def __call__(self) -> datetime:
        """The current time, then move on."""
        now, self.now = self.now, self.now + self.step
        return now


@dataclass
class Truck:
    """A simulated truck served on a pty pair."""

    slave: ModbusRtuSlave
    path: str

    def read(self, timeout: float = 1.0) -> dict[str, float]:
        """The truck's registers through minimalmodbus (blocking)."""
        master = instrument(self.path, timeout=timeout)
        return held_values(master.read_registers(0, TRUCK_MAP.count, 3), TRUCK_MAP)


@pytest.fixture
async def truck() -> AsyncIterator[Truck]:
    model = ASSET_TYPES["truck"].model(8, initial_run_hours=900.0)
    clock = TickingClock(START + timedelta(hours=2), timedelta(minutes=7))
    async with (
        PtyPair() as pair,
        ModbusRtuSlave(model, pair.device_path, register_map=TRUCK_MAP, clock=clock) as slave,
    ):
        yield Truck(slave, pair.client_path)


async def test_timeout_is_no_response_and_recovers(truck: Truck) -> None:
    truck.slave.faults.set(Fault.TIMEOUT)
    for _ in range(2):
        with pytest.raises(minimalmodbus.NoResponseError):
            await asyncio.to_thread(truck.read, SILENCE_TIMEOUT)
    truck.slave.faults.clear(Fault.TIMEOUT)
    await asyncio.to_thread(truck.read)
    assert truck.slave.faults.injected == {Fault.TIMEOUT: 2}
    assert [r.faults for r in truck.slave.served] == [()]  # the silent requests served nothing


@pytest.mark.parametrize("fault", [Fault.CRC, Fault.GARBAGE])
async def test_corrupt_frames_are_invalid_responses_and_recover(truck: Truck, fault: Fault) -> None:
    truck.slave.faults.set(fault)
    with pytest.raises(minimalmodbus.InvalidResponseError):
        await asyncio.to_thread(truck.read)
    truck.slave.faults.clear()
    await asyncio.to_thread(truck.read)
    assert truck.slave.faults.injected == {fault: 1}
    assert [r.faults for r in truck.slave.served] == [(fault,), ()]


async def test_illegal_address_is_an_illegal_request_and_recovers(truck: Truck) -> None:
    truck.slave.faults.set(Fault.ILLEGAL_ADDRESS)
    with pytest.raises(minimalmodbus.IllegalRequestError, match="illegal data address"):
        await asyncio.to_thread(truck.read, EXCEPTION_TIMEOUT)
    truck.slave.faults.clear()
    await asyncio.to_thread(truck.read)
    assert truck.slave.faults.injected == {Fault.ILLEGAL_ADDRESS: 1}


async def test_a_stuck_sensor_repeats_its_value_while_time_moves(truck: Truck) -> None:
    truck.slave.faults.set(Fault.STUCK, metric="coolant_temp")
    stuck = [await asyncio.to_thread(truck.read) for _ in range(6)]
    truck.slave.faults.clear()
    freed = [await asyncio.to_thread(truck.read) for _ in range(6)]
    assert len({r["coolant_temp"] for r in stuck}) == 1
    assert len({r["controller_time"] for r in stuck}) == 6  # 7 minutes between reads
    assert len({r["odometer"] for r in stuck}) > 1  # the truck drives on
    assert len({r["coolant_temp"] for r in freed}) > 1
    assert truck.slave.faults.injected == {Fault.STUCK: 6}
    assert [r.faults for r in truck.slave.served] == [(Fault.STUCK,)] * 6 + [()] * 6


async def test_out_of_range_and_clock_skew_are_served_as_set(truck: Truck) -> None:
    truck.slave.faults.set(Fault.OUT_OF_RANGE, metric="coolant_temp")
    truck.slave.faults.set(Fault.CLOCK_SKEW, value=-3600)
    faulty = await asyncio.to_thread(truck.read)
    served_at = truck.slave.served[-1].at
    assert faulty["coolant_temp"] == 3276.7  # full scale of an i16 x 0.1 register
    assert faulty["controller_time"] == int(served_at.timestamp()) - 3600
    truck.slave.faults.clear()
    clean = await asyncio.to_thread(truck.read)
    assert clean["coolant_temp"] < 120.0
    assert clean["controller_time"] == int(truck.slave.served[-1].at.timestamp())


async def test_an_intermittent_fault_hits_some_requests_and_counts_them(truck: Truck) -> None:
    truck.slave.faults.set(Fault.CRC, probability=0.5)
    failed = 0
    for _ in range(24):
        try:
            await asyncio.to_thread(truck.read)
        except minimalmodbus.InvalidResponseError:
            failed += 1
    assert 0 < failed < 24
    assert truck.slave.faults.injected == {Fault.CRC: failed}


async def test_a_fault_on_one_unit_leaves_the_others_on_the_bus_alone() -> None:
    machines = {3: HeldMachine(temperature=30.0), 7: HeldMachine(temperature=40.0)}
    async with PtyPair() as pair, ModbusRtuBus(pair.device_path, machines) as bus:
        bus.unit_faults[3].set(Fault.TIMEOUT)
        with pytest.raises(minimalmodbus.NoResponseError):
            await asyncio.to_thread(
                instrument(pair.client_path, 3, SILENCE_TIMEOUT).read_register, 2
            )
        seven = await asyncio.to_thread(instrument(pair.client_path, 7).read_register, 2, 1)
    assert seven == 40.0
    assert bus.unit_faults[3].injected == {Fault.TIMEOUT: 1}
    assert bus.unit_faults[7].injected == {}
