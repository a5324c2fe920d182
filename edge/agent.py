"""The edge agent: sensors are polled, features derive meaning, the buffer keeps every reading,
a sealer numbers messages and the link sends them; commands and health ride the same link.

Readings reach the durable buffer through one writer task that commits whatever the pollers
took since its last commit (group commit: one fsync for many polls, none delayed on purpose).
A reading counts as taken once that commit returned.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

import structlog

from edge.buffer import ReadingBuffer
from edge.clock import TIMELINE, gateway_now
from edge.commands import (
    CommandFailedError,
    CommandLedger,
    CommandProcessor,
    CommandRejectedError,
    PushedSections,
    Result,
)
from edge.config import ConfigError, EdgeConfig, parse_sections, with_sections
from edge.drivers.modbus_device import SlaveError
from edge.features import FeatureEngine
from edge.health import ProcessMeter, buffer_figures, build_health, clock_offset
from edge.link import MqttLink
from edge.scheduler import Acquisition, Poller, bus_budgets
from leasewatch.wire import CommandAck, GatewayHealth, MachineEvent, Reading, encode

log = structlog.get_logger(__name__)

#: Sections whose change does not restart the drivers.
_RUNTIME_SECTIONS = frozenset(
    {"gateway", "mqtt", "delivery", "features", "health", "control", "scheduler"}
)
_VERIFY_MIN_S = 3.0  # a pushed configuration gets at least this long to show a reading
_VERIFY_MAX_S = 30.0


@dataclass
class AgentHealth:
    """Counters the agent reports about its own work."""

    readings_taken: int = 0
    events_taken: int = 0
    dropped_readings: int = 0
    messages_sealed: int = 0


def new_boot_id() -> str:
    """A boot id unique to this start of the agent: time-ordered, with random suffix."""
    return f"{int(time.time()):x}-{secrets.token_hex(4)}"


class EdgeAgent:
    """Runs the sensors, the buffer writer, the sealer, the link, commands and health reports."""

    def __init__(self, config: EdgeConfig, boot: str | None = None) -> None:
        data_dir = config.gateway.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self.base_config = config
        self.pushed = PushedSections(data_dir / "pushed-config.json")
        self.config = self._with_pushed(config)
        self.device = config.gateway.device
        self.boot = boot or new_boot_id()
        self.health = AgentHealth()
        delivery = self.config.delivery
        self.buffer = ReadingBuffer(
            data_dir / "buffer.sqlite", delivery.buffer_max_messages, delivery.buffer_max_bytes
        )
        self.features = FeatureEngine(self.config.features, self.buffer.load_state())
        self.acquisition = self._acquisition(self.config)
        self.link = MqttLink(
            self.config.mqtt, delivery, self.buffer, device=self.device, boot=self.boot
        )
        control = self.config.control
        self.ledger = CommandLedger(data_dir / "commands.sqlite", control.remember_commands)
        self.commands = CommandProcessor(self, self.ledger, control, self._send_ack)
        self.last_health: GatewayHealth | None = None
        self._started = time.monotonic()
        self._next_seq = 0
        self._sealing = threading.Lock()
        self._taken: list[Reading] = []
        self._events: list[MachineEvent] = []
        self._taken_wake = asyncio.Event()
        self._acquired = asyncio.Event()

    def _with_pushed(self, base: EdgeConfig) -> EdgeConfig:
        """The base configuration with the sections the cloud pushed earlier, if they still fit."""
        try:
            sections = self.pushed.load()
            return with_sections(base, sections, str(self.pushed.path)) if sections else base
        except (ConfigError, ValueError) as err:
            self.pushed.set_aside(str(err))
            return base

    def _acquisition(self, config: EdgeConfig) -> Acquisition:
        return Acquisition(config, self._on_poll, self._on_stream)

    async def run(self, stop: asyncio.Event) -> None:
        """Run every task of the agent until `stop` is set, then flush, seal, send and close."""
        log.info("edge agent starting", device=self.device, boot=self.boot)
        TIMELINE.step_s = self.config.health.clock_step
        TIMELINE.keep_in(self.config.gateway.data_dir / "clock.json")
        self._report_budgets()
        link_stop = asyncio.Event()
        try:
            async with asyncio.TaskGroup() as group:
                link = group.create_task(self.link.run(link_stop))
                writer = group.create_task(self._write_taken())
                helpers = [
                    group.create_task(self._seal_periodically(stop)),
                    group.create_task(self._report_health(stop)),
                    group.create_task(self._run_commands()),
                ]
                await self._acquire(stop)
                await writer
                await asyncio.to_thread(self._seal_all)
                self.link.wake.set()
                link_stop.set()
                await link
                for helper in helpers:
                    helper.cancel()
        finally:
            link_stop.set()
            await self._record()  # what a failed writer left behind
            await asyncio.to_thread(self._seal_all)
            self.buffer.close()
            self.ledger.close()
            log.info(
                "edge agent stopped",
                device=self.device,
                boot=self.boot,
                readings_taken=self.health.readings_taken,
                messages_sealed=self.health.messages_sealed,
                messages_sent=self.link.health.published_messages,
            )

    def _report_budgets(self) -> None:
        for budget in bus_budgets(self.config):
            if budget.fits:
                log.info("modbus bus budget", detail=budget.describe())
            else:
                log.warning("modbus bus cannot keep its poll rates", detail=budget.describe())

    async def _acquire(self, stop: asyncio.Event) -> None:
        """Run the current acquisition; when a new configuration replaces it, run that one."""
        while True:
            current = self.acquisition
            try:
                await current.run(stop)
            finally:
                await asyncio.to_thread(current.close)
                current.finished.set()
            if stop.is_set() or self.acquisition is current:
                break
        self._acquired.set()
        self._taken_wake.set()

    async def _on_poll(self, poller: Poller, readings: list[Reading]) -> None:
        derived = self.features.process(readings)
        events = derived.events
        if (change := poller.lost_or_back()) is not None:
            events.append(MachineEvent(sensor=poller.sensor, kind=change, ts=gateway_now()))
        self._take([*readings, *derived.readings], events)

    async def _on_stream(self, sensor: str, readings: list[Reading]) -> None:
        derived = self.features.process(readings)
        self._take([*readings, *derived.readings], derived.events)

    def _take(self, readings: list[Reading], events: list[MachineEvent]) -> None:
        if readings or events:
            self._taken.extend(readings)
            self._events.extend(events)
            self._taken_wake.set()

    async def _write_taken(self) -> None:
        """Commit what was taken, as soon as the previous commit is done, until acquisition ends."""
        while not self._acquired.is_set():
            await self._taken_wake.wait()
            self._taken_wake.clear()
            await self._record()
        await self._record()

    async def _record(self) -> None:
        readings, self._taken = self._taken, []
        events, self._events = self._events, []
        if not readings and not events:
            return
        state = self.features.snapshot() if self.features.enabled else None
        if await asyncio.to_thread(self.buffer.add, readings, events, state):
            self.health.readings_taken += len(readings)
            self.health.events_taken += len(events)
        else:
            self.health.dropped_readings += len(readings)

    async def _seal_periodically(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await _sleep_until(self.config.delivery.publish_interval, stop)
            if await asyncio.to_thread(self._seal_all):
                self.link.wake.set()

    def _seal_all(self) -> int:
        """Seal every pending reading into numbered messages; returns how many were sealed."""
        with self._sealing:  # one sealer at a time: sequence numbers are taken here
            return self._seal_pending()

    def _seal_pending(self) -> int:
        sealed = 0
        while True:
            count = self.buffer.seal(
                self.boot,
                self._next_seq,
                self.config.delivery.max_readings_per_message,
                gateway_now(),
            )
            if count == 0:
                return sealed
            self._next_seq += 1
            self.health.messages_sealed += 1
            sealed += count

    async def _report_health(self, stop: asyncio.Event) -> None:
        meter = ProcessMeter()
        while not stop.is_set():
            await _sleep_until(self.config.health.interval, stop)
            if stop.is_set():
                return
            self.last_health = await self.health_report(meter)
            self.link.publish_soon("health", encode(self.last_health))

    async def health_report(self, meter: ProcessMeter | None = None) -> GatewayHealth:
        """The gateway's report on itself, now."""
        stats = await asyncio.to_thread(self.buffer.stats)
        oldest = await asyncio.to_thread(self.buffer.oldest_taken)
        offset = await clock_offset(self.config.health)
        if offset is not None:
            TIMELINE.confirm(offset)
        return build_health(
            device=self.device,
            boot=self.boot,
            uptime_s=time.monotonic() - self._started,
            buffer=buffer_figures(stats, oldest),
            sensor_errors=self.acquisition.sensor_errors(),
            overruns=self.acquisition.overruns(),
            meter=meter,
            clock_offset_s=offset,
            timeline=TIMELINE,
        )

    async def _run_commands(self) -> None:
        while True:
            payload = await self.link.commands.get()
            await self.commands.handle(payload)

    def _send_ack(self, ack: CommandAck) -> None:
        self.link.publish_soon("ack", encode(ack))

    # --- what commands act on (edge.commands.CommandTarget) ---

    async def read_now(self, sensor: str | None) -> int:
        """Poll a sensor (or every polled sensor) at once; returns the readings taken."""
        pollers = self.acquisition.pollers
        if sensor is not None:
            pollers = [p for p in pollers if p.sensor == sensor]
            if not pollers:
                raise CommandRejectedError(f"no polled sensor {sensor!r}")
        return sum(await asyncio.gather(*(p.poll_now() for p in pollers)))

    async def set_poll_interval(self, sensor: str, seconds: float) -> None:
        """Change one sensor's poll interval now and keep it across restarts."""
        poller = self.acquisition.poller(sensor)
        if poller is None:
            raise CommandRejectedError(f"no polled sensor {sensor!r}")
        scheduler = self.config.scheduler.model_dump(mode="json")
        scheduler["poll_intervals"][sensor] = seconds
        sections = {**self.pushed.load(), "scheduler": scheduler}
        new_config = self._validated(sections)
        overloaded = [b.describe() for b in bus_budgets(new_config) if not b.fits]
        if overloaded:
            raise CommandRejectedError("; ".join(overloaded))
        await self._apply(new_config, sections)

    async def push_config(self, text: str) -> str:
        """Validate pushed sections, apply them atomically (rolled back on failure), persist."""
        try:
            pushed = parse_sections(text)
        except ConfigError as err:
            raise CommandRejectedError(str(err)) from err
        sections = {**self.pushed.load(), **pushed}
        return await self._apply(self._validated(sections), sections)

    def _validated(self, sections: dict[str, Any]) -> EdgeConfig:
        try:
            return with_sections(self.base_config, sections)
        except ConfigError as err:
            raise CommandRejectedError(str(err)) from err

    async def _apply(self, new_config: EdgeConfig, sections: dict[str, Any]) -> str:
        old_config = self.config
        restart = _driver_sections(old_config) != _driver_sections(new_config)
        if restart:
            await self._swap_acquisition(new_config)
        self._adopt(new_config)
        try:
            await asyncio.to_thread(self.pushed.save, sections)
        except OSError as err:
            if restart:
                await self._swap_acquisition(old_config, verify=False)
            self._adopt(old_config)
            raise CommandFailedError(
                f"rolled back: cannot persist the configuration: {err}"
            ) from err
        log.info("configuration applied", sections=sorted(sections), drivers_restarted=restart)
        return "drivers restarted" if restart else "applied without restarting drivers"

    def _adopt(self, config: EdgeConfig) -> None:
        """Make a validated configuration current for everything but the drivers."""
        if config.features != self.config.features:
            saved = {**self.buffer.load_state(), **self.features.snapshot()}
            self.features = FeatureEngine(config.features, saved)
        self.config = config
        self.commands.control = config.control
        self.link.set_delivery(config.delivery)
        self.buffer.max_messages = config.delivery.buffer_max_messages
        self.buffer.max_bytes = config.delivery.buffer_max_bytes
        for poller in self.acquisition.pollers:
            interval = config.scheduler.poll_intervals.get(poller.sensor)
            interval = interval or poller.driver.poll_interval
            if interval != poller.interval:
                poller.set_interval(interval)

    async def _swap_acquisition(self, config: EdgeConfig, *, verify: bool = True) -> None:
        """Replace the drivers; roll back when none of the new ones answers while the old did."""
        candidate = self._acquisition(config)
        if missing := candidate.missing_ports():
            await asyncio.to_thread(candidate.close)
            raise CommandFailedError(f"not applied: port(s) {', '.join(missing)} do not exist")
        previous = self.acquisition
        previous_answered = previous.answered > 0
        self.acquisition = candidate
        previous.halt.set()
        await previous.finished.wait()
        if (
            not verify
            or not previous_answered
            or await candidate.answers_within(_verify_s(candidate))
        ):
            return
        self.acquisition = self._acquisition(previous.config)
        candidate.halt.set()
        await candidate.finished.wait()
        raise CommandFailedError("rolled back: no sensor of the new configuration answered")

    async def set_immobilized(self, immobilized: bool) -> Result:
        """Write the immobilizer coil through its bus or endpoint; returns what the device holds."""
        immobilizer = self.config.control.immobilizer
        if immobilizer is None:
            raise CommandRejectedError("no immobilizer is configured on this gateway")
        driver = self.acquisition.modbus_slave(immobilizer.sensor)
        if driver is None:
            raise CommandFailedError(f"immobilizer sensor {immobilizer.sensor!r} is not running")
        wanted = immobilizer.immobilize_value if immobilized else not immobilizer.immobilize_value
        try:
            held = await driver.write_coil(immobilizer.coil, wanted)
        except SlaveError as err:  # the device's own answer (an exception code) or its silence
            where = f"coil {immobilizer.coil} of {driver.sensor} (unit {driver.slave.unit_id})"
            raise CommandFailedError(f"{where}: {err}") from err
        if held != wanted:
            raise CommandFailedError(f"coil {immobilizer.coil} reads {held} after writing {wanted}")
        return {"coil": immobilizer.coil, "value": held, "immobilized": immobilized}


def _driver_sections(config: EdgeConfig) -> dict[str, Any]:
    return config.model_dump(exclude=set(_RUNTIME_SECTIONS))


def _verify_s(acquisition: Acquisition) -> float:
    """How long a new configuration gets to show a reading: a few of its poll intervals."""
    intervals = [p.interval for p in acquisition.pollers] or [1.0]
    return min(_VERIFY_MAX_S, max(_VERIFY_MIN_S, 3 * max(intervals)))


async def _sleep_until(seconds: float, stop: asyncio.Event) -> None:
    if seconds <= 0:
        return
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        return
