"""The Modbus TCP driver against the simulated TCP slave on loopback."""

from __future__ import annotations

import asyncio

import pytest

from edge.decoding import RegisterField
from edge.drivers.modbus_device import SlaveError
from edge.drivers.modbus_tcp import ModbusTcpConfig, ModbusTcpEndpoint, ModbusTcpSlaveDriver
from firmware_sim.machine import HeldMachine
from firmware_sim.modbus_tcp import OUTPUT_COIL, ModbusTcpSlave
from leasewatch.demo import machine_fields
from tests.services.ports import free_port

FIELDS = [
    *machine_fields(),
    RegisterField.model_validate({"metric": "running_bit", "address": 0, "table": "coil"}),
    RegisterField.model_validate({"metric": "fault_bit", "address": 1, "table": "discrete"}),
    RegisterField(metric="current_input", address=1, table="input", scale=0.01, unit="A"),
]


def _machine(current: float = 17.42) -> HeldMachine:
    return HeldMachine(running=True, motor_current=current, temperature=-12.3, fault_code=0)


def _endpoint(port: int, *unit_ids: int, **slave: object) -> ModbusTcpEndpoint:
    slaves = [
        {"sensor": f"unit{u}", "unit_id": u, "fields": FIELDS, "timeout": 0.2, **slave}
        for u in unit_ids
    ]
    config = {"host": "127.0.0.1", "port": port, "connect_timeout": 0.5, "slaves": slaves}
    return ModbusTcpEndpoint(ModbusTcpConfig.model_validate(config))


async def _poll(driver: ModbusTcpSlaveDriver, interval: float, stop: asyncio.Event) -> list[int]:
    """Fixed-rate polls, as the agent makes them: readings per poll."""
    loop = asyncio.get_running_loop()
    counts = []
    deadline = loop.time()
    while not stop.is_set():
        counts.append(len(await driver.read()))
        deadline = max(deadline + interval, loop.time())
        try:
            await asyncio.wait_for(stop.wait(), deadline - loop.time())
        except TimeoutError:
            continue
    return counts


async def test_values_units_and_tables_are_what_the_plc_holds() -> None:
    async with ModbusTcpSlave({0: _machine(), 1: _machine(3.5)}) as plc:
        endpoint = _endpoint(plc.port, 0, 1)
        try:
            first, second = endpoint.polled
            readings = await first.read()
            other = {r.metric: r.value for r in await second.read()}
            assert await first.write_coil(OUTPUT_COIL, True) is True
            with pytest.raises(SlaveError, match="exception code 2"):
                await first.write_coil(0, False)  # the running bit is no output
        finally:
            endpoint.close()
    values = {r.metric: r.value for r in readings}
    served = {s.unit_id: s.values for s in plc.served}
    assert values == {**served[0], "running_bit": 1.0, "fault_bit": 0.0, "current_input": 17.42}
    assert other["motor_current"] == 3.5
    units = {r.metric: r.unit for r in readings}
    assert (units["motor_current"], units["temperature"], units["run_hours"]) == ("A", "degC", "h")
    assert plc.outputs == {0: True, 1: False}
    assert not first.errors


async def test_a_dead_unit_misses_its_readings_and_does_not_slow_the_others() -> None:
    async with ModbusTcpSlave({1: _machine(), 2: _machine(), 3: _machine()}) as plc:
        plc.silent.add(2)
        plc.failing.add(3)
        # A dead unit costs its connection timeout x (1 + retries) = 0.2 s: within one interval.
        endpoint = _endpoint(plc.port, 1, 2, 3, poll_interval=0.3, timeout=0.1, backoff_max=0.9)
        stop = asyncio.Event()
        tasks = [asyncio.create_task(_poll(d, 0.3, stop)) for d in endpoint.polled]
        await asyncio.sleep(2.0)
        plc.silent.clear()
        plc.failing.clear()
        await asyncio.sleep(1.6)
        stop.set()
        alive, dead, failing = await asyncio.gather(*tasks)
        endpoint.close()
    one, two, three = endpoint.polled
    assert len(alive) >= 11  # 3.6 s at one poll per 0.3 s: 12
    assert set(alive) == {len(FIELDS)}
    assert dead[0] == 0 and dead[-1] == len(FIELDS)  # missing, then back
    assert set(two.errors) == {"timeout"} and two.skipped_polls >= 3
    assert failing[0] == 0 and failing[-1] == len(FIELDS)
    assert set(three.errors) == {"exception_response"} and three.skipped_polls == 0
    assert not one.errors


async def test_a_plc_that_is_off_then_on() -> None:
    port = free_port()
    endpoint = _endpoint(port, 1, poll_interval=0.1, backoff_max=0.4)
    (driver,) = endpoint.polled
    try:
        assert await driver.read() == []
        assert driver.errors == {"connect": 1}
        assert await driver.read() == []  # at once: skipped by the unit's back-off
        assert (driver.errors, driver.skipped_polls) == ({"connect": 1}, 1)
        async with ModbusTcpSlave({1: _machine()}, port=port):
            for _ in range(40):
                await asyncio.sleep(0.1)
                if await driver.read():
                    break
            else:
                raise AssertionError("the driver never reconnected")
            assert len(await driver.read()) == len(FIELDS)
    finally:
        endpoint.close()
    assert driver.errors["connect"] >= 1
