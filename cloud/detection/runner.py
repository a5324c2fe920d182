"""The detectors run on arriving messages: lease the gateway, fold, evaluate, store, in one go.

`DetectionRunner.process` takes a batch of decoded messages. In one state-store transaction it
takes every gateway's lease row (`_stream`, FOR UPDATE, in device order so two workers never
deadlock), drops messages it already took by (boot, seq), folds the rest into the open minutes,
feeds the minutes that closed to the same detector objects the offline path uses
(`cloud.detectors`), saves their states and applies their findings (`AlertStore.apply_in`).
A crash before the commit leaves nothing behind; the broker redelivers and it all runs again.

Lanes: live minutes are evaluated as such; replayed (historical) minutes feed the detectors'
state too (faults learn from them, silence sees the gap filled) but their findings are marked
historical, so the alert store records them without announcing a live alarm. Utilization reads
the 1-hour rollups (which hold the backlogs) once a day, in the sweep (`cloud.detection.sweep`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine

from cloud.alerts.signals import Finding
from cloud.alerts.store import AlertStore, ApplyOutcome
from cloud.detection.context import AssetContext, AssetContextSource
from cloud.detection.stream import (
    STREAM,
    Closed,
    Lane,
    StreamState,
    close_minutes,
    empty_closed,
    fold_batch,
    fold_status,
    from_us,
    status_input,
    take_seq,
    to_us,
)
from cloud.detector_state import lease_rows, load_state_texts, placeholders, save_state_texts
from cloud.detectors.base import DetectorDescription, evaluate
from cloud.detectors.inputs import AssetData, EventInput, MinuteSample, PositionInput
from cloud.detectors.registry import FAULTS, GEOFENCE, SILENCE
from cloud.schema import devices as devices_table
from cloud.stored_time import utc
from leasewatch.wire import GatewayHealth, GatewayStatus, TelemetryBatch

Message = TelemetryBatch | GatewayStatus | GatewayHealth
LANE_DETECTORS: tuple[DetectorDescription[Any, Any], ...] = (FAULTS, SILENCE, GEOFENCE)


@dataclass(frozen=True, slots=True)
class Timing:
    """When minutes close: `close_lag` past their end by a later reading, or after `idle_close`."""

    close_lag: timedelta = timedelta(seconds=2)
    idle_close: timedelta = timedelta(seconds=90)


@dataclass
class RunOutcome:
    """What one `process` or sweep pass did (counted by the worker)."""

    messages: int = 0
    duplicates: int = 0
    evaluations: int = 0
    skipped: int = 0  # gateways whose closed minutes and events were dropped unevaluated
    findings: list[Finding] = field(default_factory=list)
    alerts: ApplyOutcome = field(default_factory=ApplyOutcome)


@dataclass(frozen=True, slots=True)
class Registry:
    """What the ingestor's registry says about a gateway (it sees every message too)."""

    status: str | None = None
    status_at: datetime | None = None
    latest_reading_at: datetime | None = None
    last_boot: str | None = None


UNREGISTERED = Registry()


@dataclass(slots=True)
class DeviceWork:
    """One gateway's share of a transaction: its stream state, then (when due) its detectors.

    `lease` fills `stream`; `load_details` fills the detector states (JSON text), the asset
    context and the registry row, only for gateways that have something to evaluate.
    """

    device: str
    stream: StreamState
    states: dict[str, str] = field(default_factory=dict)
    context: AssetContext | None = None
    registry: Registry = UNREGISTERED
    changed: set[str] = field(default_factory=set)

    @property
    def asset(self) -> AssetContext:
        """The asset context; `load_details` must have run."""
        if self.context is None:
            raise RuntimeError(f"{self.device}: detector details were not loaded")
        return self.context


def positions_of(minutes: Sequence[MinuteSample]) -> tuple[PositionInput, ...]:
    """GPS fixes from minute samples that carry both `lat` and `lon`."""
    return tuple(
        PositionInput(m.ts, m.values["lat"], m.values["lon"])
        for m in minutes
        if "lat" in m.values and "lon" in m.values
    )


class DetectionRunner:
    """Blocking detection steps on the state store; the async worker calls them in a thread."""

    def __init__(
        self,
        engine: Engine,
        alerts: AlertStore,
        context: AssetContextSource,
        timing: Timing,
        detectors: Sequence[DetectorDescription[Any, Any]] = LANE_DETECTORS,
    ) -> None:
        self.engine = engine
        self.alerts = alerts
        self.context = context
        self.timing = timing
        self.detectors = tuple(detectors)  # what closed minutes and events are fed to

    def process(
        self, messages: Sequence[Message], wall: datetime | None = None, *, evaluate: bool = True
    ) -> RunOutcome:
        """Fold and evaluate a batch of messages in one transaction; returns what it did.

        With `evaluate=False` the messages are only folded: their (boot, seq) taken and the
        minutes they close dropped unevaluated (`skipped`), which moves a gateway past data a
        detector failed on (`DetectionWorker`).
        """
        wall = wall or datetime.now(UTC)
        by_device: dict[str, list[Message]] = {}
        for message in messages:
            by_device.setdefault(message.device, []).append(message)
        outcome = RunOutcome(messages=len(messages))
        with self.engine.begin() as conn:
            leased = self.lease(conn, by_device, wall)
            closed = {w.device: self._fold(w, by_device[w.device], wall, outcome) for w in leased}
            due = [w for w in leased if closed[w.device]]
            if not evaluate:
                outcome.skipped = len(due)
                due = []
            self.load_details(conn, due)
            for work in due:
                outcome.findings += self.evaluate_lanes(work, closed[work.device], wall, outcome)
            self.finish(conn, leased, outcome, wall)
        return outcome

    def lease(
        self, conn: Connection, devices: Iterable[str], wall: datetime, *, skip: bool = False
    ) -> list[DeviceWork]:
        """Lock the gateways' lease rows (in device order) and read their stream states."""
        held = lease_rows(conn, devices, STREAM, wall, skip_locked=skip)
        return [DeviceWork(device, StreamState.from_json(text)) for device, text in held.items()]

    def load_details(self, conn: Connection, leased: Sequence[DeviceWork]) -> None:
        """Read detector states, asset context and registry rows of these leased gateways."""
        devices = [w.device for w in leased]
        if not devices:
            return
        states = load_state_texts(conn, devices, but=STREAM)
        contexts = self.context.contexts(devices)
        registry = _registry(conn, devices)
        for work in leased:
            work.states = states[work.device]
            work.context = contexts[work.device]
            work.registry = registry[work.device]

    def finish(
        self, conn: Connection, leased: Sequence[DeviceWork], outcome: RunOutcome, wall: datetime
    ) -> None:
        """Save the leased gateways' states and apply the findings, in the caller's transaction."""
        rows: list[tuple[str, str, str]] = []
        for work in leased:
            rows.append((work.device, STREAM, work.stream.to_json()))
            rows += [(work.device, name, work.states[name]) for name in work.changed]
        save_state_texts(conn, rows, wall)
        if outcome.findings:
            outcome.alerts = self.alerts.apply_in(conn, outcome.findings, wall)

    def _fold(
        self, work: DeviceWork, messages: Sequence[Message], wall: datetime, outcome: RunOutcome
    ) -> Closed:
        closed = empty_closed()
        stream = work.stream
        for message in sorted(messages, key=_order):
            if isinstance(message, GatewayStatus):
                fold_status(stream, message)
            elif isinstance(message, GatewayHealth):
                at = to_us(message.ts)
                stream.health_at = at if stream.health_at is None else max(stream.health_at, at)
            elif not take_seq(stream, message.boot, message.seq):
                outcome.duplicates += 1
            else:
                events = fold_batch(stream, message, wall)
                (closed.replay_events if message.historical else closed.live_events).extend(events)
        t = self.timing
        closed.replay += close_minutes(stream, "replay", wall, t.close_lag, t.idle_close)
        closed.live += close_minutes(stream, "live", wall, t.close_lag, t.idle_close)
        return closed

    def evaluate_lanes(
        self, work: DeviceWork, closed: Closed, wall: datetime, outcome: RunOutcome
    ) -> list[Finding]:
        """Feed closed replayed minutes, then live ones, to faults, silence and geofence."""
        found: list[Finding] = []
        if closed.replay or closed.replay_events:
            found += self._evaluate(work, "replay", closed.replay, closed.replay_events, wall)
        if closed.live or closed.live_events:
            found += self._evaluate(work, "live", closed.live, closed.live_events, wall)
        outcome.evaluations += bool(closed)
        return found

    def _evaluate(
        self,
        work: DeviceWork,
        lane: Lane,
        minutes: Sequence[MinuteSample],
        events: Sequence[EventInput],
        wall: datetime,
    ) -> list[Finding]:
        live = lane == "live"
        data = self.asset_data(work, wall, live=live, minutes=minutes, events=events)
        found: list[Finding] = []
        for description in self.detectors:
            if description is GEOFENCE and work.asset.region is None:
                continue
            if not live and description is SILENCE and description.key not in work.states:
                continue  # a replay alone never starts a silence episode
            found += self.run_detector(work, description, data)
        return found if live else [replace(f, historical=True) for f in found]

    def asset_data(
        self,
        work: DeviceWork,
        wall: datetime,
        *,
        live: bool,
        minutes: Sequence[MinuteSample] = (),
        events: Sequence[EventInput] = (),
    ) -> AssetData:
        """The detectors' inputs for one gateway: minutes, events, status, registry, context."""
        stream, reg, ctx = work.stream, work.registry, work.asset
        last_live = reg.latest_reading_at
        if stream.last_live_at is not None:
            own = from_us(stream.last_live_at)
            last_live = own if last_live is None or own >= last_live else last_live
        return AssetData(
            device=work.device,
            asset_type=ctx.asset_type,
            now=wall,
            minutes=tuple(minutes),
            status=status_input(stream) if live else None,
            last_live_at=last_live if live else None,
            boot=(stream.boot or reg.last_boot) if live else None,
            events=tuple(events),
            positions=positions_of(minutes) if ctx.region or ctx.home else (),  # else unread
            region=ctx.region,
            home=ctx.home,
            holidays=ctx.holidays,
        )

    def run_detector(
        self, work: DeviceWork, description: DetectorDescription[Any, Any], data: AssetData
    ) -> list[Finding]:
        """Evaluate one detector on one gateway and keep its new state (JSON text)."""
        saved = work.states.get(description.key)
        state = None if saved in (None, "", "{}") else saved  # "{}": a row without state yet
        new_state, found = evaluate(description, state, data)
        work.states[description.key] = new_state
        work.changed.add(description.key)
        return found


def _order(message: Message) -> tuple[int, datetime, int]:
    """Statuses first, then telemetry by send time and sequence number."""
    if isinstance(message, TelemetryBatch):
        return (1, message.sent_at, message.seq)
    return (0, message.ts, 0)


def _registry(conn: Connection, held: Sequence[str]) -> dict[str, Registry]:
    found = dict.fromkeys(held, UNREGISTERED)
    if not held:
        return found
    query = (  # placeholders only: the values are parameters
        "SELECT device, status, status_at, latest_reading_at, last_boot FROM devices"  # noqa: S608
        f" WHERE device IN ({placeholders(conn, len(held))})"
    )
    time = _time_reader(conn)
    for device, status, status_at, latest, boot in conn.exec_driver_sql(query, tuple(held)).all():
        found[device] = Registry(status, utc(time(status_at)), utc(time(latest)), boot)
    return found


def _time_reader(conn: Connection) -> Callable[[Any], datetime | None]:
    """How the devices table's times come back from this driver (SQLite: text)."""
    column = devices_table.c.status_at.type
    read = column.dialect_impl(conn.dialect).result_processor(conn.dialect, None)
    return read if read is not None else _as_is


def _as_is(value: Any) -> Any:
    return value
