"""The ingestor: MQTT in, validated, stored exactly once, acknowledged only after it is stored.

This module stores a batch (`Ingestor.prepare`, then `complete`); `cloud.ingest_link` is the
broker side (session, batches, PUBACKs).

Messages are acknowledged manually (PUBACK after the telemetry store and the ledger committed),
so a crash or a store outage never loses an acknowledged message: the broker redelivers, and the
(device, boot, seq) ledger plus idempotent telemetry writes drop what was already stored.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import msgspec
import structlog
from prometheus_client import Counter
from sqlalchemy.exc import OperationalError

from cloud.gateway_clocks import GatewayClocks
from cloud.metrics import IngestMetrics
from cloud.rollups import RollupRow
from cloud.settings import CloudSettings
from cloud.state import Rejection, StateStore
from cloud.telemetry import ReadingsRejectedError, TelemetryStore, TelemetryStoreError
from leasewatch.wire import (
    GatewayHealth,
    GatewayStatus,
    Reading,
    RejectedMessageError,
    RejectReason,
    TelemetryBatch,
    decode_health,
    decode_status,
    decode_telemetry,
    encode,
    parse_topic,
    telemetry_topic,
)

log = structlog.get_logger(__name__)

_T = TypeVar("_T")


StoredMessage = TelemetryBatch | GatewayStatus | GatewayHealth
# Called in a thread with a batch's accepted messages (repeats included: the callee must be
# idempotent) after they are stored and before they are acknowledged; an OperationalError it
# raises is retried like a state-store call (docs/ingestion.md, "After a batch is stored").
StoredHook = Callable[[list[StoredMessage]], None]


class StateStoreUnavailableError(Exception):
    """The state store stayed unavailable until shutdown; nothing of the batch was acknowledged."""


@dataclass(frozen=True, slots=True)
class Inbound:
    """A message as it came off the broker."""

    topic: str
    payload: bytes
    mid: int = 0
    qos: int = 0


@dataclass(frozen=True, slots=True)
class PreparedBatch:
    """A batch whose readings are written and not yet ledgered (`Ingestor.prepare`)."""

    size: int  # messages taken off the broker
    received_at: datetime
    fresh: list[TelemetryBatch]  # to ledger: written to the telemetry store
    repeated: list[TelemetryBatch]  # already ledgered, or twice in this batch
    reports: list[GatewayStatus | GatewayHealth]
    rejections: list[Rejection]
    rollups: list[RollupRow] | None = None  # of `fresh` (`StateStore.rollup_rows`), if made


@dataclass
class BatchOutcome:
    """What one processed batch did, for tests and logs."""

    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    statuses: int = 0


class Ingestor:
    """Consumes gateway messages and stores each reading exactly once."""

    def __init__(
        self,
        settings: CloudSettings,
        telemetry: TelemetryStore,
        state: StateStore,
        metrics: IngestMetrics | None = None,
        on_stored: StoredHook | None = None,
    ) -> None:
        self.settings = settings
        self.on_stored = on_stored
        self.telemetry = telemetry
        self.state = state
        self.clocks = GatewayClocks(state.engine, settings.max_clock_ahead_s)
        self.metrics = metrics or IngestMetrics()
        self.connected = asyncio.Event()
        self.consuming = False

    async def process(
        self, messages: Sequence[Inbound], stop: asyncio.Event | None = None
    ) -> BatchOutcome:
        """Validate, store and ledger a batch; returns once everything in it is durable."""
        return await self.complete(await self.prepare(messages, stop), stop)

    async def prepare(
        self, messages: Sequence[Inbound], stop: asyncio.Event | None = None
    ) -> PreparedBatch:
        """First half of a batch: decode, admit, drop what the ledger has, write the readings,
        sum their rollup rows.

        Nothing is ledgered or acknowledged yet; the consumer runs this for the next batch
        while the previous one completes (`_consume`).
        """
        now = datetime.now(UTC)
        batches, statuses, healths, rejections = self._decode_all(messages, now)
        admitted, refused = await self._state(stop, self._admit, batches, now)
        rejections += refused
        fresh: dict[tuple[str, str, int], TelemetryBatch] = {}
        repeated: list[TelemetryBatch] = []
        for batch in admitted:
            if batch.key in fresh:
                repeated.append(batch)
            else:
                fresh[batch.key] = batch
        known = await self._state(stop, self.state.known_keys, list(fresh.keys()))
        repeated += [fresh.pop(key) for key in known]
        written = list(fresh.values())
        rejections += await self._write_until_stored(written, stop, now)
        rollups = await asyncio.to_thread(self.state.rollup_rows, written)  # off the loop
        reports: list[GatewayStatus | GatewayHealth] = [*statuses, *healths]
        return PreparedBatch(len(messages), now, written, repeated, reports, rejections, rollups)

    async def complete(
        self, prepared: PreparedBatch, stop: asyncio.Event | None = None
    ) -> BatchOutcome:
        """Second half: `record` the batch, then `detect` on it."""
        outcome = await self.record(prepared, stop)
        await self.detect(prepared, stop)
        return outcome

    async def record(
        self, prepared: PreparedBatch, stop: asyncio.Event | None = None
    ) -> BatchOutcome:
        """Ledger, rollups and registry in one transaction; rejections; the batch's counts.

        A message another batch (or worker) ledgered meanwhile loses the ledger insert and is
        counted as a duplicate: the insert, not `prepare`'s look-up, decides.
        """
        p = prepared
        stored_at = datetime.now(UTC)  # the ledger's received_at: when the readings were stored
        with self.metrics.state_seconds.time():
            result = await self._state(
                stop, _cpu_counted(self.metrics.state_cpu, self.state.record_stored),
                p.fresh, p.repeated, stored_at, p.reports, p.rollups,
            )  # fmt: skip
        await self._state(stop, self.state.record_rejections, p.rejections)
        duplicates = p.repeated + result.duplicates
        self._count(result.stored, duplicates, p.size, p.received_at)
        statuses = sum(isinstance(r, GatewayStatus) for r in p.reports)
        return BatchOutcome(len(result.stored), len(duplicates), len(p.rejections), statuses)

    async def detect(self, prepared: PreparedBatch, stop: asyncio.Event | None = None) -> None:
        """The stored-batch hook (the detectors), after `record`: everything admitted, repeats
        included, with the batch's status and health reports."""
        if self.on_stored is None:
            return
        p = prepared
        began = time.perf_counter()
        hook = _cpu_counted(self.metrics.hook_cpu, self.on_stored)
        await self._state(stop, hook, [*p.reports, *p.fresh, *p.repeated])
        self.metrics.hook_seconds.inc(time.perf_counter() - began)

    def _link_lost(self) -> bool:
        """True while consuming (a live connection exists) and that connection dropped."""
        return self.consuming and not self.connected.is_set()

    async def _state(
        self, stop: asyncio.Event | None, call: Callable[..., _T], *args: object
    ) -> _T:
        """Run a state-store call in a thread, retrying while the database is unavailable."""
        attempt = 0
        while True:
            try:
                return await asyncio.to_thread(call, *args)
            except OperationalError as err:
                self.metrics.store_errors.inc()
                if (stop is not None and stop.is_set()) or self._link_lost():
                    raise StateStoreUnavailableError(str(err)) from err
                attempt += 1
                delay = min(10.0, 0.1 * 2**attempt) * random.uniform(0.5, 1.0)
                log.warning("state store unavailable, retrying", error=str(err), retry_in=delay)
                await asyncio.sleep(delay)

    def _decode_all(
        self, messages: Sequence[Inbound], now: datetime
    ) -> tuple[list[TelemetryBatch], list[GatewayStatus], list[GatewayHealth], list[Rejection]]:
        batches: list[TelemetryBatch] = []
        statuses: list[GatewayStatus] = []
        healths: list[GatewayHealth] = []
        rejections: list[Rejection] = []
        for message in messages:
            try:
                kind = parse_topic(message.topic)[1]
                self.metrics.received.labels(kind).inc()
                if kind == "status":
                    statuses.append(decode_status(message.topic, message.payload))
                elif kind == "health":
                    healths.append(decode_health(message.topic, message.payload))
                else:
                    batches.append(decode_telemetry(message.topic, message.payload))
            except RejectedMessageError as err:
                rejections.append(self._reject(err, message.topic, message.payload, now))
        return batches, statuses, healths, rejections

    def _reject(
        self, err: RejectedMessageError, topic: str, payload: bytes, now: datetime
    ) -> Rejection:
        self.metrics.rejected.labels(err.reason.value).inc()
        log.warning("message rejected", topic=topic, reason=err.reason.value, detail=err.detail)
        return Rejection(now, err.reason, topic, err.detail, payload)

    def _admit(
        self, batches: list[TelemetryBatch], now: datetime
    ) -> tuple[list[TelemetryBatch], list[Rejection]]:
        """Refuse messages of unknown devices and readings far outside the present."""
        s = self.settings
        if s.auto_register_devices:
            known = {b.device for b in batches}
        else:
            known = self.state.registered(b.device for b in batches)
        earliest = now - timedelta(days=s.max_reading_age_days)
        latest = now + timedelta(seconds=s.max_clock_ahead_s)
        admitted: list[TelemetryBatch] = []
        rejections: list[Rejection] = []
        for batch in batches:
            problem = _admission_problem(batch, known, earliest, latest)
            if problem is not None and problem.reason is RejectReason.TIMESTAMP_RANGE:
                rebased = self._rebased(batch, known, earliest, latest, now)
                if rebased is not None:
                    admitted.append(rebased)
                    continue
            if problem is None:
                admitted.append(batch)
            else:  # the dead letter keeps the message as validated (re-encoded: rare)
                topic, payload = telemetry_topic(batch.device), encode(batch)
                rejections.append(self._reject(problem, topic, payload, now))
        return admitted, rejections

    def _rebased(
        self,
        batch: TelemetryBatch,
        known: set[str],
        earliest: datetime,
        latest: datetime,
        now: datetime,
    ) -> TelemetryBatch | None:
        """A message stamped in the future by a clock that runs ahead, re-based if that fits."""
        stamps = [r.ts for r in batch.readings] + [e.ts for e in batch.events]
        if max(stamps) <= latest:
            return None  # too old, not ahead: nothing to re-base
        rebased = self.clocks.rebase(batch, now)
        if rebased is None or _admission_problem(rebased, known, earliest, latest) is not None:
            return None
        self.metrics.clock_rebased.inc()
        lead = (batch.sent_at - rebased.sent_at).total_seconds()
        log.warning(
            "gateway clock ahead: stamps re-based",
            device=batch.device,
            boot=batch.boot,
            seq=batch.seq,
            lead_s=round(lead, 3),
        )
        return rebased

    def _count(
        self, stored: list[TelemetryBatch], repeated: list[TelemetryBatch], size: int, now: datetime
    ) -> None:
        self.metrics.stored_messages.inc(len(stored))
        self.metrics.stored_readings.inc(sum(len(b.readings) for b in stored))
        self.metrics.duplicates.inc(len(repeated))
        self.metrics.batch_size.observe(size)
        for batch in stored:
            if not batch.historical:
                self.metrics.lag.observe(max(0.0, (now - batch.sent_at).total_seconds()))

    async def _write_until_stored(
        self, batches: list[TelemetryBatch], stop: asyncio.Event | None, now: datetime
    ) -> list[Rejection]:
        """Retry the telemetry write with back-off; nothing is acknowledged meanwhile.

        Readings the store refuses for good (outside its retention) come back as rejections.
        """
        if not batches:
            return []
        attempt = 0
        while True:
            try:
                with self.metrics.store_seconds.time():
                    await self.telemetry.write(batches)
                self.metrics.store_readings.observe(sum(len(b.readings) for b in batches))
            except ReadingsRejectedError as err:
                return [
                    self._refused(device, reading, str(err), now)
                    for device, reading in err.rejected
                ]
            except TelemetryStoreError as err:
                self.metrics.store_errors.inc()
                attempt += 1
                delay = min(30.0, 0.2 * 2**attempt) * random.uniform(0.5, 1.0)
                log.warning(
                    "telemetry store write failed, retrying",
                    error=str(err),
                    retry_in=round(delay, 2),
                )
                if (stop is not None and stop.is_set()) or self._link_lost():
                    raise
                await asyncio.sleep(delay)
                continue
            return []

    def _refused(self, device: str, reading: Reading, why: str, now: datetime) -> Rejection:
        reason = RejectReason.STORE_REFUSED
        self.metrics.rejected.labels(reason.value).inc()
        log.warning("telemetry store refused a reading", device=device, ts=str(reading.ts), why=why)
        return Rejection(now, reason, telemetry_topic(device), why, msgspec.json.encode(reading))

    async def enforce_retention(self, stop: asyncio.Event, every_s: float = 3600.0) -> None:
        """Delete raw readings past the retention period, hourly, until `stop` is set."""
        while not stop.is_set():
            horizon = datetime.now(UTC) - timedelta(days=self.settings.telemetry_retention_days)
            try:
                deleted = await self.telemetry.prune(horizon)
            except TelemetryStoreError as err:
                log.warning("retention pass failed, will retry", error=str(err))
            else:
                if deleted:
                    log.info("retention pass", deleted=deleted, before=horizon.isoformat())
            try:
                await asyncio.wait_for(stop.wait(), timeout=every_s)
            except TimeoutError:
                continue

    async def run(self, stop: asyncio.Event) -> None:
        """Stay subscribed until `stop` is set (the broker side: `cloud.ingest_link`)."""
        from cloud.ingest_link import IngestLink  # noqa: PLC0415 - it imports this module

        await IngestLink(self).run(stop)


def _cpu_counted(counter: Counter, call: Callable[..., _T]) -> Callable[..., _T]:
    """`call`, adding the CPU time of the thread that runs it to `counter`."""

    def counted(*args: object) -> _T:
        began = time.thread_time()
        try:
            return call(*args)
        finally:
            counter.inc(time.thread_time() - began)

    return counted


def _admission_problem(
    batch: TelemetryBatch, known: set[str], earliest: datetime, latest: datetime
) -> RejectedMessageError | None:
    if batch.device not in known:
        return RejectedMessageError(
            RejectReason.UNKNOWN_DEVICE, f"device {batch.device!r} is not registered"
        )
    stamps = [r.ts for r in batch.readings] + [e.ts for e in batch.events]
    if any(ts < earliest or ts > latest for ts in stamps):
        return RejectedMessageError(
            RejectReason.TIMESTAMP_RANGE,
            f"timestamps {min(stamps).isoformat()}..{max(stamps).isoformat()} are outside "
            f"{earliest.isoformat()}..{latest.isoformat()}",
        )
    return None
