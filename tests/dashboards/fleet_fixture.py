"""A small fleet written through the real store code, with the numbers the pages must show.

Readings go in as `TelemetryBatch`es through `StateStore.record_stored` (so the rollups are the
ingestor's own), alerts through `AlertStore.apply`, the utilization baseline as the detector's
saved state. Every expected figure below is written out by hand, not recomputed by page code.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import insert

from cloud.alerts.signals import Finding, Severity
from cloud.alerts.store import AlertStore
from cloud.detector_state import save_detector_state
from cloud.leasing.assessment import RiskAssessor
from cloud.leasing.models import AssetIn, LeaseIn, LesseeIn
from cloud.leasing.rescore import Rescorer
from cloud.leasing.store import LeasingStore
from cloud.leasing.tables import band_changes
from cloud.risk.rules import load_rules
from cloud.state import StateStore
from cloud.telemetry import open_telemetry_store
from leasewatch.wire import Reading, TelemetryBatch

RUNNING = "gw-run"  # state 2, at 48.85 N 2.35 E, ran 8 h on each of the last 3 days
IDLE = "gw-idle"  # state 1
OFF = "gw-off"  # state 0
SILENT = "gw-quiet"  # last reading 2 h ago, open silence alert
STATES = {RUNNING: "running", IDLE: "idle", OFF: "off", SILENT: "silent"}
POSITIONS = {RUNNING: (48.85, 2.35), IDLE: (52.52, 13.4), OFF: (40.42, -3.7)}
MOTOR_CURRENT = [11.0, 12.5, 14.0, 13.0, 12.0]  # one per minute, the last five minutes
RUN_HOURS_PER_DAY = 8.0
BASELINE_HOURS = 9.5  # what the utilization detector learned for every weekday
CONTRACT_HOURS = 10.0  # what RUNNING's lease expects per day
LEASE, LESSEE = "L-100", "acme-build"
WATCH_SCORE = 31.0  # the band change the test writes to the watchlist
WATCH_REASON = "Running hours fell to 45% of the baseline."
SILENCE_SUMMARY = "No reading from gw-quiet for 2.0 h (expected one every 10 s)."
USAGE_SUMMARY = "Running hours dropped to 45% of the usual for 3 days."


@dataclass(frozen=True)
class FleetFixture:
    """What the test wrote, for its assertions."""

    now: datetime
    run_days: list[date]  # the days RUNNING ran RUN_HOURS_PER_DAY
    silence_alert: int
    usage_alert: int
    minute_ts: list[datetime]  # timestamps of MOTOR_CURRENT


def _batch(device: str, seq: int, readings: list[Reading], *, historical: bool) -> TelemetryBatch:
    sent = max(r.ts for r in readings)
    return TelemetryBatch(
        device=device, boot="b1", seq=seq, sent_at=sent, historical=historical, readings=readings
    )


def _running_days(now: datetime) -> tuple[list[date], list[Reading]]:
    """`running` 1.0 at half past each hour 08-15 and 0.0 at 16-17, on the last 3 full days."""
    days = [now.date() - timedelta(days=n) for n in (3, 2, 1)]
    readings = []
    for day in days:
        for hour in range(8, 18):
            ts = datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=hour, minutes=30)
            readings.append(Reading(sensor="machine", metric="running", ts=ts,
                                    value=1.0 if hour < 16 else 0.0))  # fmt: skip
    return days, readings


def _live(device: str, now: datetime, state: float) -> list[Reading]:
    readings = [Reading(sensor="machine", metric="state", ts=now - timedelta(seconds=20),
                        value=state)]  # fmt: skip
    if device in POSITIONS:
        lat, lon = POSITIONS[device]
        at = now - timedelta(seconds=25)
        readings += [
            Reading(sensor="gps", metric="lat", ts=at, value=lat, unit="deg"),
            Reading(sensor="gps", metric="lon", ts=at, value=lon, unit="deg"),
        ]
    return readings


def write_fleet(state: StateStore, telemetry_url: str, now: datetime) -> FleetFixture:
    """Write the four assets, readings (both stores), alerts, baseline; return what was written."""
    days, running = _running_days(now)
    # readings 5 s into each minute, none after `now` (a page rendered at once shows them all)
    minute = (now - timedelta(seconds=10)).replace(second=0, microsecond=0)
    minute_ts = [minute - timedelta(minutes=4 - n) for n in range(5)]
    current = [
        Reading(sensor="machine", metric="motor_current", ts=ts + timedelta(seconds=5),
                value=v, unit="A")
        for ts, v in zip(minute_ts, MOTOR_CURRENT, strict=True)
    ]  # fmt: skip
    batches = [
        _batch(RUNNING, 1, running, historical=True),
        _batch(RUNNING, 2, [*current, *_live(RUNNING, now, 2.0)], historical=False),
        _batch(IDLE, 1, _live(IDLE, now, 1.0), historical=False),
        _batch(OFF, 1, _live(OFF, now, 0.0), historical=False),
        _batch(SILENT, 1, _live(SILENT, now - timedelta(hours=2), 2.0), historical=False),
    ]
    for device in STATES:
        state.register_device(device, now - timedelta(days=30))
    asyncio.run(_write_telemetry(telemetry_url, batches))
    state.record_stored(batches, [], now)
    alerts = AlertStore(state.engine).apply(_findings(now), now)
    learned = [[BASELINE_HOURS] * 4 for _ in range(7)]
    with state.engine.begin() as conn:
        save_detector_state(
            conn, RUNNING, "utilization",
            {"version": 1, "device": RUNNING, "weekday_hours": learned},
        )  # fmt: skip
    _lease(state, now)
    _scores(state, now)
    silence, usage = alerts.opened
    return FleetFixture(now, days, silence, usage, minute_ts)


def _lease(state: StateStore, now: datetime) -> None:
    """RUNNING's asset is on a lease that expects CONTRACT_HOURS a day."""
    leasing = LeasingStore(state.engine)
    leasing.put_lessee(LesseeIn(lessee_id=LESSEE, name="Acme Build"), now)
    leasing.create_lease(
        LeaseIn(lease_id=LEASE, lessee_id=LESSEE, starts_on=now.date() - timedelta(days=60),
                ends_on=now.date() + timedelta(days=300), asset_value=120_000.0,
                expected_hours_per_day=CONTRACT_HOURS),
        now,
    )  # fmt: skip
    leasing.put_asset(AssetIn(asset_id="EXC-1", asset_type="excavator", device=RUNNING,
                              lease_id=LEASE), now)  # fmt: skip


def _scores(state: StateStore, now: datetime) -> None:
    """Scores served for the lease 14 and 7 days ago and now, one for its lessee, its band,
    and a band change that put it on the watchlist."""
    assessor = RiskAssessor(state.engine, load_rules())
    for days_ago in (14, 7, 0):
        as_of = now - timedelta(days=days_ago)
        assessor.serve(("lease", LEASE), as_of, caller="test", purpose="review", served_at=now)
    assessor.serve(("lessee", LESSEE), now, caller="test", purpose="review", served_at=now)
    Rescorer(state.engine, load_rules(), ()).rescore([LEASE], now)
    with state.engine.begin() as conn:
        conn.execute(
            insert(band_changes).values(
                lease_id=LEASE, lessee_id=LESSEE, from_band="low", to_band="medium",
                from_score=5.0, to_score=WATCH_SCORE, worsened=True,
                as_of=now - timedelta(days=3), recorded_at=now - timedelta(days=3),
                reasons=[{"code": "usage_drop", "points": 20.0, "summary": WATCH_REASON,
                          "evidence": {"ratio": 0.45}}],
                model_version="test",
            )
        )  # fmt: skip


async def _write_telemetry(url: str, batches: list[TelemetryBatch]) -> None:
    telemetry = await open_telemetry_store(url)
    try:
        await telemetry.write(batches)
    finally:
        await telemetry.close()


def _findings(now: datetime) -> list[Finding]:
    return [
        Finding(SILENT, "silence", "silence", "open", Severity.CRITICAL,
                now - timedelta(hours=2), now, SILENCE_SUMMARY,
                {"silent_h": 2.0, "expected_interval_s": 10}),
        Finding(RUNNING, "utilization", "utilization", "open", Severity.WARNING,
                now - timedelta(minutes=3), now, USAGE_SUMMARY,
                {"ratio": 0.45, "baseline_h": 9.5}),
    ]  # fmt: skip
