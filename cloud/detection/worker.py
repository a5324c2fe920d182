"""Detection in an ingest process: the detectors run on what the ingestor stored, plus the sweep.

Detection is downstream of ingestion (docs/detection.md): `DetectionWorker.on_stored` is the
ingestor's hook (`cloud.ingest.StoredHook`), called in a thread after a batch is committed to the
stores and before it is acknowledged. It runs `DetectionRunner.process` on the batch's accepted
messages (repeats included: the runner takes each (boot, seq) once). Nothing here subscribes to
gateway topics: only ingestors may, so a broker without their subscription answers a gateway
0x10 (no matching subscribers) and the gateway keeps the message.

When detection fails for a stored batch:
- the state store is unavailable (`OperationalError`): raised to the ingestor, which retries
  with back-off and leaves the batch unacknowledged meanwhile (its own writes needed the same
  store a moment earlier); on shutdown the broker redelivers it and detection runs on it then;
- anything else is a detection bug: counted (`lw_detect_failed_batches_total`), logged with the
  traceback, and the batch is detected again gateway by gateway; a gateway that fails alone is
  counted (`lw_detect_failed_gateways_total`), logged, and its messages are folded without
  evaluation (the minutes they close are dropped: `lw_detect_skipped_total`), so the same bug
  does not fail every later batch of that gateway. The stored batch is acknowledged either way.
  Storage exactly-once comes first: a bug in a detector must not stall ingestion or make the
  broker redeliver forever.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import structlog
from prometheus_client import CollectorRegistry
from sqlalchemy.exc import OperationalError

from cloud.alerts.store import AlertStore
from cloud.detection.context import AssetContextSource
from cloud.detection.metrics import DetectionMetrics
from cloud.detection.runner import DetectionRunner, Message, RunOutcome
from cloud.detection.settings import DetectionSettings
from cloud.detection.sweep import Sweep
from leasewatch.wire import TelemetryBatch

log = structlog.get_logger(__name__)
_T = TypeVar("_T")


@dataclass
class DetectionCounts:
    """What the worker did since it started (logged; read by tests and the bench)."""

    messages: int = 0
    duplicates: int = 0
    evaluations: int = 0
    findings: int = 0
    alerts_opened: int = 0
    store_errors: int = 0
    failed_batches: int = 0
    failed_gateways: int = 0
    skipped: int = 0


class DetectionWorker:
    """The detectors on stored batches (the ingestor's hook) and the periodic sweep."""

    def __init__(
        self,
        settings: DetectionSettings,
        runner: DetectionRunner,
        metrics: DetectionMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.runner = runner
        self.sweep = Sweep(runner, timedelta(seconds=settings.sweep_s))
        self.counts = DetectionCounts()
        self.metrics = metrics or DetectionMetrics()
        self.sweeping = asyncio.Event()

    def on_stored(self, messages: Sequence[Message]) -> None:
        """Run the detectors on a stored batch (blocking; the ingestor calls it in a thread)."""
        if not messages:
            return
        began = time.monotonic()
        try:
            self._count(self._in_transaction(messages, evaluate=True))
        except OperationalError:
            raise  # the ingestor retries; the batch stays unacknowledged meanwhile
        except Exception:  # a detection bug must not stall storage (module doc): logged
            self.counts.failed_batches += 1
            self.metrics.failed_batches.inc()
            log.exception(
                "detection failed on a stored batch; detecting it gateway by gateway",
                messages=len(messages),
            )
            self._gateway_by_gateway(messages)
        m, committed = self.metrics, time.time()
        m.batch_size.observe(len(messages))
        m.batch_seconds.observe(time.monotonic() - began)
        for message in messages:
            if isinstance(message, TelemetryBatch) and not message.historical:
                m.lag.observe(max(0.0, committed - message.sent_at.timestamp()))

    def _in_transaction(self, messages: Sequence[Message], *, evaluate: bool) -> RunOutcome:
        try:
            return self.runner.process(messages, datetime.now(UTC), evaluate=evaluate)
        except OperationalError:
            self.counts.store_errors += 1
            self.metrics.store_errors.inc()
            raise

    def _gateway_by_gateway(self, messages: Sequence[Message]) -> None:
        """After a batch failed: each gateway in its own transaction, so a bug costs only the
        gateway it hits; that gateway's messages are then folded without evaluation (its
        closed minutes dropped, counted), or a detector failing on a minute would fail on it
        again with every later batch."""
        by_device: dict[str, list[Message]] = {}
        for message in messages:
            by_device.setdefault(message.device, []).append(message)
        for device, own in by_device.items():
            try:
                self._count(self._in_transaction(own, evaluate=True))
                continue
            except OperationalError:
                raise
            except Exception:  # the bug, isolated: logged with its gateway
                self.counts.failed_gateways += 1
                self.metrics.failed_gateways.inc()
                log.exception("detection failed for a gateway", device=device, messages=len(own))
            try:
                self._count(self._in_transaction(own, evaluate=False))
            except OperationalError:
                raise
            except Exception:  # folding itself failed: acknowledged without detection
                log.exception("folding failed for a gateway", device=device, messages=len(own))

    async def run(self, stop: asyncio.Event) -> None:
        """Sweep every `sweep_s` (silence, idle minutes, daily utilization) until `stop`."""
        self.sweeping.set()
        try:
            while not stop.is_set():
                await _sleep_or_stop(self.settings.sweep_s, stop)
                if stop.is_set():
                    return
                outcome = await self._in_store(stop, self.sweep.run_once)
                if outcome is not None:
                    self._count(outcome)
        finally:
            self.sweeping.clear()

    def _count(self, outcome: RunOutcome) -> None:
        c, m = self.counts, self.metrics
        c.messages += outcome.messages
        c.duplicates += outcome.duplicates
        c.evaluations += outcome.evaluations
        c.findings += len(outcome.findings)
        c.alerts_opened += len(outcome.alerts.opened)
        c.skipped += outcome.skipped
        m.messages.inc(outcome.messages)
        m.duplicates.inc(outcome.duplicates)
        m.evaluations.inc(outcome.evaluations)
        m.findings.inc(len(outcome.findings))
        m.alerts_opened.inc(len(outcome.alerts.opened))
        m.skipped.inc(outcome.skipped)
        if outcome.alerts.opened:
            log.info("alerts opened", ids=outcome.alerts.opened)

    async def _in_store(
        self, stop: asyncio.Event, call: Callable[..., _T], *args: object
    ) -> _T | None:
        """Run a blocking store step in a thread, retrying while the database is unavailable."""
        attempt = 0
        while not stop.is_set():
            try:
                return await asyncio.to_thread(call, *args, datetime.now(UTC))
            except OperationalError as err:
                self.counts.store_errors += 1
                self.metrics.store_errors.inc()
                attempt += 1
                delay = min(10.0, 0.1 * 2**attempt) * random.uniform(0.5, 1.0)
                log.warning("state store unavailable, retrying", error=str(err), retry_in=delay)
                await _sleep_or_stop(delay, stop)
        return None


async def _sleep_or_stop(seconds: float, stop: asyncio.Event) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        return


def detection_worker(
    settings: DetectionSettings,
    alerts: AlertStore,
    context: AssetContextSource | None = None,
    registry: CollectorRegistry | None = None,
) -> DetectionWorker:
    """A worker on the alert store's database, with the settings' (or the given) asset context.

    Its metrics go to `registry` (the process's /metrics) when given, else to one of its own.
    """
    source = context if context is not None else settings.context_source()
    runner = DetectionRunner(alerts.engine, alerts, source, settings.timing())
    return DetectionWorker(settings, runner, DetectionMetrics(registry))
