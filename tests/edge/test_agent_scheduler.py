"""The scheduler: fixed-rate polls, counted overruns, runtime interval changes, bus budgets."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime

import pytest
from pydantic import SecretStr

from edge.bench import bench_register_fields
from edge.config import EdgeConfig, GatewayConfig, ModbusRtuBusConfig, MqttConfig, SchedulerConfig
from edge.drivers.modbus_device import ModbusSlaveConfig
from edge.scheduler import LOST_AFTER, Poller, bus_budgets
from leasewatch.wire import Reading


class FakeDriver:
    """A polled driver whose polls take `busy` seconds and may come back empty."""

    def __init__(self, busy: float, answers: bool = True) -> None:
        self.busy = busy
        self.answers = answers
        self.errors: Counter[str] = Counter()
        self.started: list[float] = []

    @property
    def sensor(self) -> str:
        return "machine"

    @property
    def poll_interval(self) -> float:
        return 1.0

    async def read(self) -> list[Reading]:
        self.started.append(time.monotonic())
        await asyncio.sleep(self.busy)
        if not self.answers:
            return []
        return [Reading(sensor="machine", metric="rpm", ts=datetime.now(UTC), value=1.0)]


async def _nothing(poller: Poller, readings: list[Reading]) -> None:
    return None


async def _run(poller: Poller, seconds: float) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(poller.run(stop))
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.wait_for(task, 5)


async def test_polls_keep_their_rate_when_each_poll_takes_time() -> None:
    driver = FakeDriver(busy=0.03)
    poller = Poller(driver, 0.1, _nothing)
    await _run(poller, 1.0)
    assert 8 <= poller.stats.polls <= 12, "fixed rate: the 30 ms of work do not add up"
    assert poller.stats.overruns <= 1
    gaps = [b - a for a, b in zip(driver.started, driver.started[1:], strict=False)]
    assert max(gaps) < 0.25


async def test_a_poll_longer_than_its_slot_is_an_overrun_not_a_burst() -> None:
    poller = Poller(FakeDriver(busy=0.15), 0.05, _nothing)
    await _run(poller, 1.0)
    assert poller.stats.overruns >= poller.stats.polls - 2 >= 3
    assert poller.stats.polls <= 8, "no catch-up burst after an overrun"


async def test_the_interval_changes_at_run_time_and_a_poll_can_be_asked_for_now() -> None:
    poller = Poller(FakeDriver(busy=0.0), 10.0, _nothing)
    stop = asyncio.Event()
    task = asyncio.create_task(poller.run(stop))
    await asyncio.sleep(0.1)
    assert poller.stats.polls == 1
    assert await asyncio.wait_for(poller.poll_now(), 2) == 1
    assert poller.stats.polls == 2
    poller.set_interval(0.05)
    await asyncio.sleep(0.6)
    assert poller.stats.polls >= 6
    stop.set()
    await asyncio.wait_for(task, 5)


async def test_a_silent_sensor_is_lost_after_a_few_polls_and_back_with_its_first_answer() -> None:
    driver = FakeDriver(busy=0.0, answers=False)
    changes: list[str | None] = []

    async def note(poller: Poller, readings: list[Reading]) -> None:
        changes.append(poller.lost_or_back())
        driver.answers = poller.stats.polls >= LOST_AFTER + 2

    poller = Poller(driver, 0.02, note)
    await _run(poller, 0.4)
    assert changes[LOST_AFTER - 1] == "sensor_lost"
    assert changes.count("sensor_lost") == 1 and changes.count("sensor_back") == 1
    assert changes.index("sensor_back") == LOST_AFTER + 2


def _config(baudrate: int, overrides: dict[str, float] | None = None) -> EdgeConfig:
    slaves = [
        ModbusSlaveConfig.model_validate(
            {
                "sensor": f"machine-{unit}",
                "unit_id": unit,
                "poll_interval": 0.1,
                "fields": bench_register_fields(16),
            }
        )
        for unit in range(1, 9)
    ]
    return EdgeConfig(
        gateway=GatewayConfig(device="gw-0001", data_dir="/tmp/unused"),
        mqtt=MqttConfig(host="h", username="u", password=SecretStr("p")),
        scheduler=SchedulerConfig(poll_intervals=overrides or {}),
        modbus_rtu=[ModbusRtuBusConfig(port="/dev/ttyUSB0", baudrate=baudrate, slaves=slaves)],
    )


def test_the_bus_budget_says_when_poll_rates_cannot_be_met() -> None:
    (slow,) = bus_budgets(_config(19200))
    assert not slow.fits
    assert slow.load == pytest.approx(8 * 10 * 0.032, rel=0.1)  # ~25 ms on the wire + turnaround
    assert "cannot keep its poll rates" in slow.describe()
    (fast,) = bus_budgets(_config(115_200))
    assert fast.fits
    relaxed = {f"machine-{unit}": 1.0 for unit in range(1, 9)}
    (slow_but_relaxed,) = bus_budgets(_config(19200, relaxed))
    assert slow_but_relaxed.fits, "the scheduler's overrides count, not the drivers' defaults"
