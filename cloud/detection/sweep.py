"""The sweep: conditions that arrive as the absence of messages, and the daily utilization pass.

Every `every` a worker looks for gateways it has not heard from for `every` (their lease row
was not written since), closes their idle minutes and asks the silence detector to judge them
at the wall clock, with the registry's newest live reading as a witness (the ingestor keeps it
even while detection lagged, so a detection worker catching up never mistakes its own backlog
for a silent gateway). Once a day, `SETTLE` after midnight UTC (so replayed backlogs are in the
rollups), each gateway's utilization detector takes the settled days from the 1-hour rollups.
Rows are taken FOR UPDATE SKIP LOCKED: a gateway another worker holds is left for next time,
and a pass re-checks under the lock, so two workers sweeping together do the work once.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, select
from sqlalchemy.orm import aliased

from cloud.alerts.signals import Finding
from cloud.detection.runner import DetectionRunner, DeviceWork, RunOutcome
from cloud.detection.stream import STREAM, Closed, close_minutes
from cloud.detectors.inputs import AssetData, day_usage, settled_days
from cloud.detectors.registry import SILENCE, UTILIZATION
from cloud.detectors.utilization import SETTLE
from cloud.schema import detector_state, rollups

CHUNK = 200  # gateways per sweep transaction


def quiet_devices(conn: Connection, before: datetime, limit: int) -> list[str]:
    """Gateways whose lease row nobody wrote since `before` (no message, no sweep)."""
    s = detector_state.c
    query = (
        select(s.device)
        .where(s.detector == STREAM, s.updated_at < before)
        .order_by(s.updated_at)
        .limit(limit)
    )
    return [str(r[0]) for r in conn.execute(query)]


def usage_due(conn: Connection, cutoff: datetime, limit: int) -> list[str]:
    """Gateways whose utilization detector did not run since `cutoff` (today's settle time)."""
    stream, usage = aliased(detector_state), aliased(detector_state)
    query = (
        select(stream.c.device)
        .outerjoin(
            usage,
            and_(usage.c.device == stream.c.device, usage.c.detector == UTILIZATION.key),
        )
        .where(stream.c.detector == STREAM)
        .where(usage.c.device.is_(None) | (usage.c.updated_at < cutoff))
        .order_by(stream.c.device)
        .limit(limit)
    )
    return [str(r[0]) for r in conn.execute(query)]


def settle_time(wall: datetime) -> datetime:
    """Today's midnight UTC plus SETTLE: when yesterday's use may be judged."""
    midnight = datetime.combine(wall.astimezone(UTC).date(), datetime.min.time(), UTC)
    return midnight + SETTLE


class Sweep:
    """One worker's periodic passes over quiet gateways and the daily utilization."""

    def __init__(self, runner: DetectionRunner, every: timedelta) -> None:
        self.runner = runner
        self.every = every

    def run_once(self, wall: datetime | None = None) -> RunOutcome:
        """One pass: quiet gateways (silence, idle minutes), then utilization when due."""
        wall = wall or datetime.now(UTC)
        outcome = RunOutcome()
        while self._quiet_chunk(wall, outcome):
            pass
        if wall >= settle_time(wall):
            while self._usage_chunk(wall, outcome):
                pass
        return outcome

    def _quiet_chunk(self, wall: datetime, outcome: RunOutcome) -> bool:
        before = wall - self.every
        with self.runner.engine.begin() as conn:
            candidates = quiet_devices(conn, before, CHUNK)
            if not candidates:
                return False
            leased = self.runner.lease(conn, candidates, wall, skip=True)
            self.runner.load_details(conn, leased)
            for work in leased:
                outcome.findings += self._judge_quiet(work, wall, outcome)
            self.runner.finish(conn, leased, outcome, wall)
        return len(leased) == CHUNK  # a gateway another worker holds waits for the next pass

    def _judge_quiet(self, work: DeviceWork, wall: datetime, outcome: RunOutcome) -> list[Finding]:
        t = self.runner.timing
        closed = self.runner.evaluate_lanes(work, _idle(work, wall, t.idle_close), wall, outcome)
        data = self.runner.asset_data(work, wall, live=True)
        return closed + self.runner.run_detector(work, SILENCE, data)

    def _usage_chunk(self, wall: datetime, outcome: RunOutcome) -> bool:
        cutoff = settle_time(wall)
        with self.runner.engine.begin() as conn:
            candidates = usage_due(conn, cutoff, CHUNK)
            if not candidates:
                return False
            leased = self.runner.lease(conn, candidates, wall, skip=True)
            today = wall.date().isoformat()
            due = [w for w in leased if w.stream.sweep_day != today]
            self.runner.load_details(conn, due)
            rows = running_rollups(conn, [w.device for w in due], cutoff - SETTLE)
            for work in due:
                work.stream.sweep_day = today
                outcome.findings += self._judge_usage(work, rows.get(work.device, []), wall)
                outcome.evaluations += 1
            self.runner.finish(conn, leased, outcome, wall)
        return len(leased) == CHUNK  # a gateway another worker holds waits for the next pass

    def _judge_usage(
        self, work: DeviceWork, rows: list[dict[str, Any]], wall: datetime
    ) -> list[Finding]:
        days = settled_days(day_usage(rows), wall, SETTLE)
        ctx = work.asset
        data = AssetData(work.device, ctx.asset_type, wall, days=tuple(days), holidays=ctx.holidays)
        return self.runner.run_detector(work, UTILIZATION, data)


def running_rollups(
    conn: Connection, devices: list[str], midnight: datetime
) -> dict[str, list[dict[str, Any]]]:
    """The 1-hour `running` rollups of these gateways in the window before `midnight`, one query."""
    found: dict[str, list[dict[str, Any]]] = {}
    if not devices:
        return found
    r = rollups.c
    query = (
        select(r.device, r.metric, r.bucket, r.count, r.sum)
        .where(r.device.in_(devices), r.resolution_s == 3600, r.metric == "running")
        .where(r.bucket >= midnight - UTILIZATION.window, r.bucket < midnight)
    )
    for row in conn.execute(query):
        found.setdefault(row.device, []).append(dict(row._mapping))
    return found


_NEVER = timedelta(days=3650)  # no reading passes a minute by this much: only idleness closes


def _idle(work: DeviceWork, wall: datetime, idle_close: timedelta) -> Closed:
    """Close the minutes nothing touched for `idle_close` (the gateway went quiet mid-minute)."""
    stream = work.stream
    replay = close_minutes(stream, "replay", wall, _NEVER, idle_close)
    live = close_minutes(stream, "live", wall, _NEVER, idle_close)
    return Closed(live, replay, [], [])
