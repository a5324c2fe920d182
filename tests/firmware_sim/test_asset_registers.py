"""Each asset type's register map served on a pty and read by mbpoll and minimalmodbus.

The slave's clock is fixed, and a twin model (same seed, same history) says what the registers
must hold, so each master's reading is checked against an independent expectation.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from firmware_sim.asset_types import ASSET_TYPES, MIXED
from firmware_sim.machine import Device
from firmware_sim.modbus_slave import ModbusRtuBus, ModbusRtuSlave
from firmware_sim.pty_pair import PtyPair
from firmware_sim.register_map import Kind, RegisterMap, WordOrder, encode_registers, held_values
from tests.firmware_sim.masters import RTU_19200_8N1, mbpoll, read_registers

TUESDAY_10 = datetime(2026, 1, 6, 10, 0, 7, tzinfo=UTC)
RUNNING = {
    "generic": "running",
    "truck": "engine_rpm",
    "excavator": "running",
    "cnc": "program_running",
    "compressor": "load_state",
}


def _warm_model(name: str) -> Device:
    """A model of the type in its first shift of the day, asked about last at 06:00."""
    model = ASSET_TYPES[name].model(21, initial_run_hours=1234.5)
    model.advance(TUESDAY_10.replace(hour=6))
    return model


def _expected(name: str, at: datetime = TUESDAY_10) -> dict[str, float]:
    """What the registers hold at `at`, from an independent twin model."""
    rmap = ASSET_TYPES[name].register_map
    values = _warm_model(name).advance(at).values()
    return held_values(encode_registers(values, rmap), rmap)


def _when_running(name: str) -> datetime:
    """The first minute from 10:00 at which the asset runs (so the registers are not idle)."""
    for minute in range(120):
        at = TUESDAY_10 + timedelta(minutes=minute)
        if _expected(name, at)[RUNNING[name]] > 0:
            return at
    raise AssertionError(f"{name} never runs on a Tuesday morning")


def _mbpoll_type(register_map: RegisterMap, address: int) -> tuple[str, ...]:
    """mbpoll's data type and word order options for the 32-bit field at `address`."""
    field = next(f for f in register_map.fields if f.address == address)
    data_type = "4:float" if field.kind is Kind.F32 else "4:int"
    return (data_type, "-B") if field.word_order is WordOrder.BIG else (data_type,)


@pytest.mark.parametrize("name", list(ASSET_TYPES))
async def test_mbpoll_reads_every_register_of_each_asset_type(name: str) -> None:
    rmap = ASSET_TYPES[name].register_map
    at = _when_running(name)
    expected = _expected(name, at)
    async with (
        PtyPair() as pair,
        ModbusRtuSlave(
            _warm_model(name), pair.device_path, register_map=rmap, clock=lambda: at
        ) as slave,
    ):
        first = str(rmap.start + 1)  # mbpoll's -r is 1-based
        read = await mbpoll(
            *RTU_19200_8N1, "-t", "4", "-r", first, "-c", str(rmap.count), "-1", pair.client_path
        )
        wide = [f for f in rmap.fields if f.width == 2]
        for field in wide:
            options = _mbpoll_type(rmap, field.address)
            ref = str(field.address + 1)
            read32 = await mbpoll(
                *RTU_19200_8N1, "-t", *options, "-r", ref, "-c", "1", "-1", pair.client_path
            )
            raw = expected[field.metric] / field.scale
            assert read32[field.address + 1] == pytest.approx(raw, rel=1e-5), field.metric
    assert list(read) == list(range(rmap.start + 1, rmap.start + rmap.count + 1))
    assert held_values([int(v) for v in read.values()], rmap) == expected
    assert slave.served[-1].values == expected
    assert expected["fault_code"] == 0
    assert len(slave.served) == 1 + len(wide)


async def test_one_bus_serves_every_type_with_its_own_map() -> None:
    units = dict(enumerate(MIXED, start=1))
    models = {unit: _warm_model(name) for unit, name in units.items()}
    maps = {unit: ASSET_TYPES[name].register_map for unit, name in units.items()}
    bus = ModbusRtuBus("", models, register_maps=maps, clock=lambda: TUESDAY_10)
    async with PtyPair() as pair:
        bus.port_path = pair.device_path
        async with bus:
            for unit, rmap in maps.items():
                registers = await asyncio.to_thread(
                    read_registers, pair.client_path, rmap.start, rmap.count, unit
                )
                assert held_values(registers, rmap) == _expected(units[unit])
    assert [r.unit_id for r in bus.served] == [1, 2, 3, 4]
