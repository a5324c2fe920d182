"""What every Modbus slave shares, over a serial bus or TCP: its config, its poll, its back-off.

A transport (`ModbusBus` for RTU/ASCII, `ModbusTcpEndpoint` for TCP) answers one request at a
time or raises `SlaveError`. `SlavePoller` turns a slave's field specs into requests, retries a
request that got no answer, skips the rest of a poll once the slave stayed silent, and polls a
slave that keeps failing less often (exponential back-off, capped) until it answers again.
"""

from __future__ import annotations

import functools
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Protocol

import structlog
from pydantic import BaseModel, ConfigDict, Field, model_validator

from edge.clock import gateway_now
from edge.decoding import RegisterField, RegisterRequest, decode_request, plan_requests
from leasewatch.wire import Reading, SensorName

log = structlog.get_logger(__name__)


class ModbusSlaveConfig(BaseModel):
    """One Modbus slave: its unit id, poll rate, timeout, retries, back-off and fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sensor: SensorName
    unit_id: Annotated[int, Field(ge=1, le=247)]
    poll_interval: Annotated[float, Field(gt=0)] = 1.0
    timeout: Annotated[float, Field(gt=0, le=10)] = 0.3
    retries: Annotated[int, Field(ge=0, le=5)] = 1
    backoff_max: Annotated[float, Field(gt=0, le=3600)] = 30.0
    max_gap: Annotated[int, Field(ge=0, le=100)] = 0
    fields: Annotated[list[RegisterField], Field(min_length=1)]

    @model_validator(mode="after")
    def _unique_metrics(self) -> ModbusSlaveConfig:
        """Two fields of one slave may not report the same metric."""
        metrics = [f.metric for f in self.fields]
        repeated = sorted({m for m in metrics if metrics.count(m) > 1})
        if repeated:
            raise ValueError(f"metric names must be unique per slave, repeated: {repeated}")
        return self


class SlaveError(Exception):
    """A request that got no usable answer; `kind` is the key it is counted under."""

    def __init__(
        self, kind: str, detail: str, *, answered: bool = False, retry: bool = True
    ) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail
        self.answered = answered  # the slave replied (an exception response): it is alive
        self.retry = retry and not answered  # False when the port or connection is down


Transact = Callable[[RegisterRequest], Awaitable[Sequence[int]]]
Clock = Callable[[], float]


@dataclass
class Backoff:
    """When a failing slave is next worth asking: after 1, 2, 4 ... poll intervals, capped."""

    interval: float
    maximum: float
    failures: int = 0
    next_try: float = -math.inf

    def due(self, now: float) -> bool:
        """Whether a poll starting at `now` should talk to the slave."""
        return now >= self.next_try

    def failed(self, started: float) -> None:
        """Record a poll (started at `started`) that got no answer at all."""
        self.failures += 1
        delay = min(self.maximum, self.interval * 2 ** (self.failures - 1))
        # Half an interval of slack: the agent's next poll may start a little early.
        self.next_try = started + delay - self.interval / 2

    def answered(self) -> None:
        """Record a poll the slave answered: back to the normal rate."""
        self.failures = 0
        self.next_try = -math.inf


class SlavePoller:
    """Polls one slave through a transport; `read()` returns one poll's readings."""

    def __init__(
        self, slave: ModbusSlaveConfig, transact: Transact, clock: Clock = time.monotonic
    ) -> None:
        self.slave = slave
        self.requests = plan_requests(slave.fields, max_gap=slave.max_gap)
        self.errors: Counter[str] = Counter()
        self.skipped_polls = 0
        self.backoff = Backoff(slave.poll_interval, max(slave.backoff_max, slave.poll_interval))
        self._transact = transact
        self._clock = clock

    async def read(self) -> list[Reading]:
        """Poll every request once; what got no answer yields no readings, never zeros."""
        started = self._clock()
        if not self.backoff.due(started):
            self.skipped_polls += 1
            return []
        readings: list[Reading] = []
        alive = False
        for request in self.requests:
            taken_at = gateway_now()
            try:
                registers = await self._attempt(request)
            except SlaveError as err:
                alive = alive or err.answered
                if not err.answered:
                    break  # silent: the next request would only wait for its timeout too
                continue
            alive = True
            readings.extend(self._readings(request, registers, taken_at))
        if alive:
            self.backoff.answered()
        else:
            self.backoff.failed(started)
        return readings

    async def _attempt(self, request: RegisterRequest) -> Sequence[int]:
        """One request with up to `retries` repeats while the slave does not answer."""
        attempt = 1
        while True:
            try:
                return await self._transact(request)
            except SlaveError as err:
                self.errors[err.kind] += 1
                log.warning(
                    "modbus request failed",
                    sensor=self.slave.sensor,
                    unit_id=self.slave.unit_id,
                    table=request.table,
                    start=request.start,
                    attempt=attempt,
                    error=err.kind,
                    detail=err.detail,
                )
                if not err.retry or attempt > self.slave.retries:
                    raise
            attempt += 1

    def _readings(
        self, request: RegisterRequest, registers: Sequence[int], taken_at: datetime
    ) -> list[Reading]:
        """Readings of one answered request; a non-finite value is counted and left out."""
        units = {f.metric: f.unit for f in request.fields}
        readings: list[Reading] = []
        for metric, value in decode_request(request, registers).items():
            if not math.isfinite(value):
                self.errors["not_finite"] += 1
                continue
            readings.append(
                Reading(
                    sensor=self.slave.sensor,
                    metric=metric,
                    ts=taken_at,
                    value=value,
                    unit=units[metric],
                )
            )
        return readings


def unique_unit_ids(slaves: Sequence[ModbusSlaveConfig]) -> None:
    """Reject two slaves with the same unit id on one bus or endpoint."""
    ids = [s.unit_id for s in slaves]
    repeated = sorted({u for u in ids if ids.count(u) > 1})
    if repeated:
        raise ValueError(f"unit ids must be unique on a bus or endpoint, repeated: {repeated}")


class SlaveLink(Protocol):
    """What a unit driver needs from its bus or endpoint: requests and coil writes."""

    async def transact(self, slave: ModbusSlaveConfig, request: RegisterRequest) -> list[int]:
        """Read one request's registers or bits from a slave."""
        ...

    async def write_coil(self, slave: ModbusSlaveConfig, address: int, value: bool) -> bool:
        """Set a coil and return what the device holds after."""
        ...


class ModbusUnitDriver:
    """Polled driver for one Modbus slave, over any link: `read()` returns one poll's readings."""

    def __init__(self, link: SlaveLink, slave: ModbusSlaveConfig) -> None:
        self.link = link
        self.slave = slave
        self.poller = SlavePoller(slave, functools.partial(link.transact, slave))

    @property
    def sensor(self) -> str:
        """Sensor name of every reading this driver produces."""
        return self.slave.sensor

    @property
    def poll_interval(self) -> float:
        """Seconds between polls, as configured."""
        return self.slave.poll_interval

    @property
    def requests(self) -> list[RegisterRequest]:
        """The read requests one poll makes."""
        return self.poller.requests

    @property
    def errors(self) -> Counter[str]:
        """Failed requests so far, by kind (timeout, bad_frame, exception_response, port...)."""
        return self.poller.errors

    @property
    def skipped_polls(self) -> int:
        """Polls skipped while the slave was in back-off."""
        return self.poller.skipped_polls

    async def read(self) -> list[Reading]:
        """Poll every register group once; a group that got no answer yields no readings."""
        return await self.poller.read()

    async def write_coil(self, address: int, value: bool) -> bool:
        """Set one of this slave's coils; returns what the device holds after (SlaveError)."""
        return await self.link.write_coil(self.slave, address, value)
