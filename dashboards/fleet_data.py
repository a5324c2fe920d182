"""What the fleet overview reads: every asset's state, position and open alerts, from rollups.

Every query reads the registry, the 1-minute/1-hour rollups and the alerts, never raw telemetry,
and aggregates in SQL: the newest bucket per (device, metric) by a window function, running hours
per asset and day as a sum over 1-hour buckets, alert counts by GROUP BY.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal, get_args

from sqlalchemy import (
    Connection,
    Engine,
    Integer,
    String,
    bindparam,
    case,
    func,
    select,
    text,
)
from sqlalchemy.sql.elements import BindParameter, ColumnElement

from cloud.alerts.records import SEVERITY_RANK
from cloud.alerts.signals import Severity
from cloud.schema import alerts, devices, rollups

AssetState = Literal["running", "idle", "off", "silent", "unknown"]
ASSET_STATES: tuple[AssetState, ...] = get_args(AssetState)
#: Position metrics: the detectors' `lat`/`lon` and the NMEA driver's `latitude`/`longitude`.
POSITION_METRICS = {"lat": "lat", "lon": "lon", "latitude": "lat", "longitude": "lon"}
STATE_METRICS = ("state", "running")
SILENCE_DETECTOR = "silence"
_R = rollups.c


@dataclass(frozen=True, slots=True)
class FleetWindows:
    """How far back each kind of "latest" looks."""

    silent_after: timedelta = timedelta(minutes=15)  # no live reading for longer: silent
    state_lookback: timedelta = timedelta(minutes=15)  # 1-minute buckets of state/running
    position_lookback: timedelta = timedelta(days=3)  # 1-hour buckets of lat/lon


@dataclass(frozen=True, slots=True)
class AssetStatus:
    """One asset as the fleet overview shows it."""

    device: str
    state: AssetState
    latest_reading_at: datetime | None
    lat: float | None
    lon: float | None
    open_alerts: int
    worst_severity: str | None


@dataclass(frozen=True, slots=True)
class FleetFilter:
    """Which assets the page lists (summaries always cover the whole fleet)."""

    state: AssetState | None = None
    severity: Severity | None = None  # assets with an open alert at least this severe
    search: str = ""  # part of the device id
    page: int = 0
    per_page: int = 100
    days: int = 14


@dataclass(frozen=True, slots=True)
class FleetView:
    """Everything the fleet overview draws."""

    assets: list[AssetStatus]  # the filtered page
    matching: int  # assets matching the filter, over all pages
    fleet_size: int
    by_state: dict[AssetState, int]
    alerts_by_severity: dict[tuple[str, str], int]  # (severity, status) -> unresolved alerts
    days: list[date]
    usage: dict[str, dict[date, float]] = field(default_factory=dict)  # running hours


def _aware(ts: datetime | None) -> datetime | None:
    """UTC-aware (SQLite hands back naive UTC datetimes, PostgreSQL aware ones)."""
    if ts is None or ts.tzinfo is not None:
        return ts
    return ts.replace(tzinfo=UTC)


## The rollups primary key is time-major (device, resolution_s, bucket, sensor, metric): per
## device and wanted (metric, resolution, since), one primary-key range seek from the newest
## bucket backwards to the first bucket of that metric. No scan of the table or of a device's
## history, on SQLite and PostgreSQL alike.
_NEWEST_SQL = """
WITH wanted(metric, resolution_s, since) AS ({wanted})
SELECT d.device, w.metric, (
  SELECT r.sum / r.count FROM rollups r
  WHERE r.device = d.device AND r.resolution_s = w.resolution_s AND r.bucket >= w.since
    AND r.metric = w.metric AND r.count > 0
  ORDER BY r.bucket DESC, r.sensor LIMIT 1
) AS mean
FROM devices d CROSS JOIN wanted w {only}
"""


def latest_values(
    conn: Connection,
    wanted: Sequence[tuple[Sequence[str], int, datetime]],
    only: Sequence[str] | None = None,
) -> dict[str, dict[str, float]]:
    """The mean of the newest bucket per (device, metric), for each (metrics, resolution, since).

    device -> metric -> mean, for every device or `only` these; a metric several sensors
    report takes the newest bucket's (the first sensor's on a tie).
    """
    rows: list[str] = []
    params: list[BindParameter[Any]] = []
    for metrics, resolution, since in wanted:
        for metric in metrics:
            n = len(rows)
            rows.append(f"SELECT :m{n}, :r{n}, :s{n}")
            params += [
                bindparam(f"m{n}", metric, type_=String()),
                bindparam(f"r{n}", resolution, type_=Integer()),
                bindparam(f"s{n}", since, type_=_R.bucket.type),
            ]
    where = ""
    if only is not None:
        where = "WHERE d.device IN :only"
        params.append(bindparam("only", list(only), expanding=True))
    sql = _NEWEST_SQL.format(wanted=" UNION ALL ".join(rows), only=where)
    query = text(sql).bindparams(*params)
    found: dict[str, dict[str, float]] = {}
    for device, metric, mean in conn.execute(query):
        if mean is not None:
            found.setdefault(device, {}).setdefault(metric, float(mean))
    return found


def machine_state(values: Mapping[str, float]) -> AssetState:
    """running/idle/off from the edge's `state` (0/1/2) or else `running` (0/1)."""
    if "state" in values:
        level = values["state"]
        return "running" if level >= 1.5 else "idle" if level >= 0.5 else "off"
    if "running" in values:
        return "running" if values["running"] >= 0.5 else "off"
    return "unknown"


def _open_alerts(conn: Connection) -> dict[str, tuple[int, int, int]]:
    """device -> (unresolved alerts, worst severity rank, open silence alerts)."""
    a = alerts.c
    silence = func.sum(case((a.detector == SILENCE_DETECTOR, 1), else_=0))
    query = (
        select(a.device, func.count(), func.max(a.severity_rank), silence)
        .where(a.status != "resolved")
        .group_by(a.device)
    )
    return {d: (int(n), int(rank), int(s or 0)) for d, n, rank, s in conn.execute(query)}


def asset_statuses(
    engine: Engine, now: datetime, windows: FleetWindows = FleetWindows()
) -> list[AssetStatus]:
    """Every registered asset with its state and open alerts, by device id (no position)."""
    rank_names = {rank: str(sev) for sev, rank in SEVERITY_RANK.items()}
    d = devices.c
    with engine.connect() as conn:
        registry = conn.execute(
            select(d.device, d.status, d.latest_reading_at).order_by(d.device)
        ).all()
        measured = latest_values(conn, [(STATE_METRICS, 60, now - windows.state_lookback)])
        open_alerts = _open_alerts(conn)
    found = []
    for device, status, reading_at in registry:
        latest = _aware(reading_at)
        count, rank, silences = open_alerts.get(device, (0, 0, 0))
        stale = latest is None or latest < now - windows.silent_after
        silent = status == "offline" or stale or silences > 0
        values = measured.get(device, {})
        found.append(
            AssetStatus(
                device,
                "silent" if silent else machine_state(values),
                latest,
                None,
                None,
                count,
                rank_names.get(rank) if count else None,
            )
        )
    return found


def _day(engine: Engine) -> ColumnElement[Any]:
    """The UTC day of a rollup bucket, in this dialect."""
    if engine.dialect.name == "postgresql":
        return func.date(func.timezone("UTC", _R.bucket))
    return func.date(_R.bucket, "unixepoch")  # SQLite: epoch seconds (cloud.schema.BucketStart)


def running_hours(
    engine: Engine, assets: Sequence[str], first_day: date, last_day: date
) -> dict[str, dict[date, float]]:
    """Running hours per asset and UTC day: the sum of 1-hour `running` bucket means."""
    if not assets:
        return {}
    start = datetime.combine(first_day, datetime.min.time(), UTC)
    end = datetime.combine(last_day + timedelta(days=1), datetime.min.time(), UTC)
    day = _day(engine).label("day")
    query = (
        select(_R.device, day, func.sum(_R.sum / _R.count))
        .where(_R.device.in_(list(assets)), _R.metric == "running", _R.resolution_s == 3600)
        .where(_R.bucket >= start, _R.bucket < end, _R.count > 0)
        .group_by(_R.device, day)
    )
    usage: dict[str, dict[date, float]] = {}
    with engine.connect() as conn:
        for device, value, hours in conn.execute(query):
            on = value if isinstance(value, date) else date.fromisoformat(str(value))
            usage.setdefault(device, {})[on] = float(hours)
    return usage


def alerts_by_severity(engine: Engine) -> dict[tuple[str, str], int]:
    """Unresolved alerts counted by (severity, status)."""
    a = alerts.c
    query = (
        select(a.severity, a.status, func.count())
        .where(a.status != "resolved")
        .group_by(a.severity, a.status)
    )
    with engine.connect() as conn:
        return {(str(s), str(st)): int(n) for s, st, n in conn.execute(query)}


def _matches(asset: AssetStatus, wanted: FleetFilter) -> bool:
    if wanted.state and asset.state != wanted.state:
        return False
    if wanted.search and wanted.search.lower() not in asset.device.lower():
        return False
    if wanted.severity:
        worst = asset.worst_severity
        floor = SEVERITY_RANK[wanted.severity]
        return worst is not None and SEVERITY_RANK[Severity(worst)] >= floor
    return True


def with_positions(
    engine: Engine, assets: Sequence[AssetStatus], since: datetime
) -> list[AssetStatus]:
    """The assets with their newest position (mean of the newest 1-hour lat/lon bucket)."""
    if not assets:
        return []
    with engine.connect() as conn:
        found = latest_values(
            conn, [(list(POSITION_METRICS), 3600, since)], [a.device for a in assets]
        )
    placed = []
    for asset in assets:
        values = found.get(asset.device, {})
        position = {POSITION_METRICS[m]: v for m, v in values.items()}
        placed.append(replace(asset, lat=position.get("lat"), lon=position.get("lon")))
    return placed


def fleet_view(
    engine: Engine, wanted: FleetFilter, now: datetime, visible: set[str] | None = None
) -> FleetView:
    """The fleet overview for a filter: summaries of the fleet the caller may see (`visible`,
    None: every asset), a page of matching assets."""
    statuses = asset_statuses(engine, now)
    if visible is not None:
        statuses = [s for s in statuses if s.device in visible]
    counts = Counter(s.state for s in statuses)
    matching = [s for s in statuses if _matches(s, wanted)]
    first = wanted.page * wanted.per_page
    since = now - FleetWindows().position_lookback
    shown = with_positions(engine, matching[first : first + wanted.per_page], since)
    last_day = now.date()
    days = [last_day - timedelta(days=n) for n in range(wanted.days - 1, -1, -1)]
    return FleetView(
        assets=shown,
        matching=len(matching),
        fleet_size=len(statuses),
        by_state={state: counts.get(state, 0) for state in ASSET_STATES},
        alerts_by_severity=alerts_by_severity(engine),
        days=days,
        usage=running_hours(engine, [s.device for s in shown], days[0], days[-1]),
    )
