"""Poll scheduling: fixed-rate pollers that count overruns, and the per-bus wire-time budget.

A poller keeps its rate under load: deadlines advance by the interval from the previous
deadline, not from when the poll finished, and a poll that overruns its slot is counted and
the schedule restarts from now (no burst of catch-up polls). The interval can change while it
runs (`set_interval`) and a poll can be asked for at once (`poll_now`).

A serial bus is slow: at 19200 baud one 16-register read takes about 25 ms on the wire. The
budget sums, per bus, the wire time of every configured poll per second; above the
`max_bus_load` share the configuration cannot keep its poll rates and the agent says so at start.
"""

from __future__ import annotations

import asyncio
import functools
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from edge.config import EdgeConfig
from edge.decoding import plan_requests
from edge.drivers import DriverGroup, PolledDriver, StreamingDriver, open_drivers
from edge.drivers.modbus_device import ModbusUnitDriver
from edge.drivers.modbus_rtu import request_seconds
from leasewatch.wire import Reading

#: Consecutive empty polls after which a sensor counts as lost (and a `sensor_lost` event goes).
LOST_AFTER = 3

OnPoll = Callable[["Poller", list[Reading]], Awaitable[None]]
OnStream = Callable[[str, list[Reading]], Awaitable[None]]


@dataclass
class PollStats:
    """What one sensor's poller did so far."""

    polls: int = 0
    empty_polls: int = 0
    overruns: int = 0
    failing_streak: int = 0
    lost: bool = False


@dataclass
class Poller:
    """Polls one driver on a fixed-rate schedule until stopped."""

    driver: PolledDriver
    interval: float
    on_poll: OnPoll
    stats: PollStats = field(default_factory=PollStats)
    _reschedule: asyncio.Event = field(default_factory=asyncio.Event, init=False, repr=False)
    _waiters: list[asyncio.Future[int]] = field(default_factory=list, init=False, repr=False)

    @property
    def sensor(self) -> str:
        """Sensor name of the driver."""
        return self.driver.sensor

    def set_interval(self, seconds: float) -> None:
        """Poll every `seconds` from now on."""
        self.interval = seconds
        self._reschedule.set()

    async def poll_now(self) -> int:
        """Ask for a poll at once; returns how many readings it took."""
        waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._reschedule.set()
        return await waiter

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until `stop` is set."""
        loop = asyncio.get_running_loop()
        slot = loop.time()
        while not stop.is_set():
            await self._poll_once()
            due = slot + self.interval
            now = loop.time()
            if now > due:
                self.stats.overruns += 1
                due = now
            slot = await self._next_slot(slot, due, stop)
        for waiter in self._waiters:
            waiter.cancel()

    async def _poll_once(self) -> None:
        waiters, self._waiters = self._waiters, []
        readings = await self.driver.read()
        self._account(readings)
        await self.on_poll(self, readings)
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(len(readings))

    async def _next_slot(self, slot: float, due: float, stop: asyncio.Event) -> float:
        """Wait for the next slot; a poll asked for starts it now, a new interval moves it."""
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            if not await _wait_either(self._reschedule, stop, due - loop.time()):
                return due
            self._reschedule.clear()
            if self._waiters:
                return loop.time()
            due = max(loop.time(), slot + self.interval)
        return due

    def _account(self, readings: list[Reading]) -> None:
        self.stats.polls += 1
        if readings:
            self.stats.failing_streak = 0
        else:
            self.stats.empty_polls += 1
            self.stats.failing_streak += 1

    def lost_or_back(self) -> Literal["sensor_lost", "sensor_back"] | None:
        """`sensor_lost` or `sensor_back` when the sensor just changed side, else None."""
        if not self.stats.lost and self.stats.failing_streak >= LOST_AFTER:
            self.stats.lost = True
            return "sensor_lost"
        if self.stats.lost and self.stats.failing_streak == 0:
            self.stats.lost = False
            return "sensor_back"
        return None


async def _wait_either(event: asyncio.Event, stop: asyncio.Event, seconds: float) -> bool:
    """Wait up to `seconds` for `event` or `stop`; True when `event` was set."""
    if event.is_set():
        return True
    if seconds <= 0:
        return False
    waiters = [asyncio.ensure_future(event.wait()), asyncio.ensure_future(stop.wait())]
    try:
        timeout = None if math.isinf(seconds) else seconds
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
    return event.is_set()


def effective_interval(config: EdgeConfig, sensor: str, configured: float) -> float:
    """A sensor's poll interval: the scheduler's override if any, else its driver's own."""
    return config.scheduler.poll_intervals.get(sensor, configured)


@dataclass(frozen=True, slots=True)
class BusBudget:
    """Wire time a serial bus needs per second of polling, against its allowed share."""

    port: str
    baudrate: int
    load: float
    allowed: float

    @property
    def fits(self) -> bool:
        """Whether the bus can keep every configured poll rate."""
        return self.load <= self.allowed

    def describe(self) -> str:
        """One sentence for people."""
        verdict = "fits" if self.fits else "cannot keep its poll rates"
        return (
            f"bus {self.port} at {self.baudrate} baud needs {self.load:.0%} of its time "
            f"(allowed {self.allowed:.0%}): {verdict}"
        )


def bus_budgets(config: EdgeConfig) -> list[BusBudget]:
    """The wire-time budget of every Modbus RTU bus, with the effective poll intervals."""
    budgets: list[BusBudget] = []
    for bus in config.modbus_rtu:
        load = 0.0
        for slave in bus.slaves:
            interval = effective_interval(config, slave.sensor, slave.poll_interval)
            requests = plan_requests(slave.fields, max_gap=slave.max_gap)
            load += sum(request_seconds(bus, r) for r in requests) / interval
        budgets.append(BusBudget(bus.port, bus.baudrate, load, config.scheduler.max_bus_load))
    return budgets


class Acquisition:
    """The sensors of one configuration: driver groups, their pollers and streaming drivers."""

    def __init__(self, config: EdgeConfig, on_poll: OnPoll, on_stream: OnStream) -> None:
        self.config = config
        self.groups: list[DriverGroup] = open_drivers(config)
        self.pollers = [
            Poller(
                driver,
                effective_interval(config, driver.sensor, driver.poll_interval),
                self._polled,
            )
            for group in self.groups
            for driver in group.polled
        ]
        self.streaming: list[StreamingDriver] = [d for g in self.groups for d in g.streaming]
        self.halt = asyncio.Event()
        self.finished = asyncio.Event()
        self.answered = 0  # polls and emissions that brought readings
        self.first_answer = asyncio.Event()
        self._on_poll = on_poll
        self._on_stream = on_stream

    def poller(self, sensor: str) -> Poller | None:
        """The poller of a sensor, if it is polled."""
        return next((p for p in self.pollers if p.sensor == sensor), None)

    async def run(self, stop: asyncio.Event) -> None:
        """Run every poller and streaming driver until `stop` or `halt` is set."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._halt_on(stop))
            for poller in self.pollers:
                group.create_task(poller.run(self.halt))
            for driver in self.streaming:
                emit = functools.partial(self._emit, driver.sensor)
                group.create_task(driver.run(emit, self.halt))

    async def _halt_on(self, stop: asyncio.Event) -> None:
        await _wait_either(self.halt, stop, float("inf"))
        self.halt.set()

    async def _polled(self, poller: Poller, readings: list[Reading]) -> None:
        if readings:
            self.answered += 1
            self.first_answer.set()
        await self._on_poll(poller, readings)

    async def _emit(self, sensor: str, readings: list[Reading]) -> None:
        if readings:
            self.answered += 1
            self.first_answer.set()
        await self._on_stream(sensor, readings)

    async def answers_within(self, seconds: float) -> bool:
        """Whether a sensor of this acquisition brings a reading within `seconds`."""
        try:
            await asyncio.wait_for(self.first_answer.wait(), seconds)
        except TimeoutError:
            return False
        return True

    def modbus_slave(self, sensor: str) -> ModbusUnitDriver | None:
        """The Modbus driver (RTU, ASCII or TCP) of a sensor, when that is what reads it."""
        for poller in self.pollers:
            if poller.sensor == sensor and isinstance(poller.driver, ModbusUnitDriver):
                return poller.driver
        return None

    def missing_ports(self) -> list[str]:
        """Serial ports of this configuration that do not exist on this machine."""
        ports = [
            *(bus.port for bus in self.config.modbus_rtu),
            *(line.port for line in self.config.wristband),
            *(line.port for line in self.config.nmea_gps),
        ]
        return [port for port in ports if port.startswith("/") and not Path(port).exists()]

    def sensor_errors(self) -> dict[str, int]:
        """Errors counted by each sensor's driver."""
        drivers: list[PolledDriver | StreamingDriver] = [p.driver for p in self.pollers]
        drivers += self.streaming
        return {d.sensor: sum(d.errors.values()) for d in drivers}

    def overruns(self) -> dict[str, int]:
        """Polls that overran their slot, per sensor."""
        return {p.sensor: p.stats.overruns for p in self.pollers if p.stats.overruns}

    def close(self) -> None:
        """Release every port, thread and connection of the drivers."""
        for group in self.groups:
            group.close()
        self.finished.set()
