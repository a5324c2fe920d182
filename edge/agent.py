"""The edge agent: pollers fill the durable buffer, a sealer numbers messages, a link sends them."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import structlog

from edge.buffer import ReadingBuffer
from edge.config import EdgeConfig
from edge.drivers.modbus_rtu import ModbusBus, ModbusSlaveDriver
from edge.link import MqttLink
from leasewatch.wire import Reading

log = structlog.get_logger(__name__)


class PolledDriver(Protocol):
    """A sensor driver polled on a schedule."""

    @property
    def sensor(self) -> str:
        """Sensor name of the readings."""

    async def read(self) -> list[Reading]:
        """Readings of one poll; an empty list when the sensor did not answer."""


@dataclass
class AgentHealth:
    """Counters the agent reports about its own work."""

    polls: Counter[str] = field(default_factory=Counter)
    empty_polls: Counter[str] = field(default_factory=Counter)
    overruns: Counter[str] = field(default_factory=Counter)
    readings_taken: int = 0
    messages_sealed: int = 0


def new_boot_id() -> str:
    """A boot id unique to this start of the agent: time-ordered, with random suffix."""
    return f"{int(time.time()):x}-{secrets.token_hex(4)}"


class EdgeAgent:
    """Runs the pollers, the sealer and the MQTT link of one gateway until stopped."""

    def __init__(self, config: EdgeConfig, boot: str | None = None) -> None:
        self.config = config
        self.device = config.gateway.device
        self.boot = boot or new_boot_id()
        self.health = AgentHealth()
        self.buffer = ReadingBuffer(
            config.gateway.data_dir / "buffer.sqlite", config.delivery.buffer_max_messages
        )
        self.buses = [ModbusBus(bus) for bus in config.modbus_rtu]
        self.drivers: list[tuple[PolledDriver, float]] = [
            (ModbusSlaveDriver(bus, slave), slave.poll_interval)
            for bus in self.buses
            for slave in bus.config.slaves
        ]
        self.link = MqttLink(
            config.mqtt, config.delivery, self.buffer, device=self.device, boot=self.boot
        )
        self._next_seq = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Run every task of the agent until `stop` is set, then seal and close."""
        log.info(
            "edge agent starting", device=self.device, boot=self.boot, sensors=len(self.drivers)
        )
        link_stop = asyncio.Event()
        try:
            async with asyncio.TaskGroup() as group:
                link = group.create_task(self.link.run(link_stop))
                await self._acquire(stop)
                await asyncio.to_thread(self._seal_all)
                self.link.wake.set()
                link_stop.set()
                await link
        finally:
            link_stop.set()
            await asyncio.to_thread(self._seal_all)
            for bus in self.buses:
                bus.close()
            self.buffer.close()
            log.info("edge agent stopped", device=self.device, boot=self.boot)

    async def _acquire(self, stop: asyncio.Event) -> None:
        """Poll every sensor and seal readings into messages until `stop` is set."""
        async with asyncio.TaskGroup() as group:
            for driver, interval in self.drivers:
                group.create_task(self._poll(driver, interval, stop))
            group.create_task(self._seal_periodically(stop))

    async def _poll(self, driver: PolledDriver, interval: float, stop: asyncio.Event) -> None:
        """Poll on a fixed-rate schedule; a poll that overruns its slot is counted, not queued."""
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        while not stop.is_set():
            readings = await driver.read()
            self.health.polls[driver.sensor] += 1
            if readings:
                await asyncio.to_thread(self.buffer.add, readings)
                self.health.readings_taken += len(readings)
            else:
                self.health.empty_polls[driver.sensor] += 1
            deadline += interval
            now = loop.time()
            if now > deadline:
                self.health.overruns[driver.sensor] += 1
                deadline = now
            await _sleep_until(deadline - now, stop)

    async def _seal_periodically(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await _sleep_until(self.config.delivery.publish_interval, stop)
            if await asyncio.to_thread(self._seal_all):
                self.link.wake.set()

    def _seal_all(self) -> int:
        """Seal every pending reading into numbered messages; returns how many were sealed."""
        sealed = 0
        while True:
            count = self.buffer.seal(
                self.boot,
                self._next_seq,
                self.config.delivery.max_readings_per_message,
                datetime.now(UTC),
            )
            if count == 0:
                return sealed
            self._next_seq += 1
            self.health.messages_sealed += 1
            sealed += count


async def _sleep_until(seconds: float, stop: asyncio.Event) -> None:
    if seconds <= 0:
        return
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        return
