"""Daily asset histories from the hourly `running` rollups, and peer-group levels cached per group.

The credit check scores a lease's use the way the backtest does (`cloud.risk.portfolio`): it
builds an `AssetHistory` per asset (running hours and hours with data of each whole day before
the as-of day, `HISTORY_DAYS` of them: the sustained-drop quarter and its baseline) and takes
the usage fields of `Portfolio(histories, calendars).signals(day, peers)`. The peers' levels
(the medians of the same ratios over the assets of the same type and region) come from the
whole group's histories, computed once per group and as-of hour and kept in a small LRU cache
per engine: a group of 10,000 assets is one grouped query of its rollups, not one per lease.
A group is the assets of one type and region, of every tenant (the default) or, with the rules'
`peers.scope = "tenant"`, of the lease's own tenant only (`cloud.leasing.peer_refresh`
computes each day's levels ahead of its first check).
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Connection, Engine, Select, bindparam, func, or_, select, text

from cloud.leasing.models import DAYS_PER_MONTH
from cloud.leasing.tables import RUNNING_HOURLY, assets, leases, lessees
from cloud.risk.calendars import RegionHolidays
from cloud.risk.history import AssetHistory
from cloud.risk.portfolio import Calendars, PeerLevels, Portfolio
from cloud.risk.usage import ABRUPT_DAYS, BASELINE_DAYS, LOOKBACK_WEEKS, FloatArray
from cloud.schema import rollups

HISTORY_DAYS = 7 * LOOKBACK_WEEKS + BASELINE_DAYS  # the sustained quarter and its baseline
CACHE_GROUPS = 256  # (group, as-of hour) entries kept per engine
Group = tuple[str, str, str]  # (asset type, region, tenant): "" for none, ALL_TENANTS for any
ALL_TENANTS = "*"


def calendars(holidays: RegionHolidays, regions: Iterable[str], start: datetime) -> Calendars:
    """Each region's public holidays over the `HISTORY_DAYS` from `start`."""
    first = start.date()
    return holidays.calendars(regions, first, first + timedelta(days=HISTORY_DAYS - 1))


@dataclass(frozen=True, slots=True)
class AssetRow:
    """An asset as the usage signals see it: gateway, lease, peer group and contract hours."""

    asset_id: str
    lease_id: str
    device: str
    group: Group
    expected_per_day: float


def history_start(as_of: datetime) -> datetime:
    """Midnight UTC `HISTORY_DAYS` before as-of's day: day 0 of every history."""
    day = as_of.astimezone(UTC).date()
    return datetime.combine(day - timedelta(days=HISTORY_DAYS), time(), UTC)


def _asset_query() -> Select[Any]:
    a, lease = assets.c, leases.c
    return (
        select(a.asset_id, a.lease_id, a.device, a.asset_type, a.region,
               lease.expected_hours_per_day, lease.expected_hours_per_month, lessees.c.tenant)
        .select_from(assets.outerjoin(leases, leases.c.lease_id == a.lease_id)
                     .outerjoin(lessees, lessees.c.lessee_id == lease.lessee_id))
        .where(a.device.is_not(None))
    )  # fmt: skip


def asset_rows(
    conn: Connection, query: Select[Any], per_tenant: bool, params: Mapping[str, Any] | None = None
) -> list[AssetRow]:
    """The assets `query` (built on `_asset_query`) selects, in its order."""
    found = []
    for row in conn.execute(query, params):
        per_day = row.expected_hours_per_day
        if per_day is None and row.expected_hours_per_month is not None:
            per_day = row.expected_hours_per_month / DAYS_PER_MONTH
        tenant = (row.tenant or "") if per_tenant else ALL_TENANTS
        found.append(AssetRow(row.asset_id, row.lease_id or "", row.device,
                              (row.asset_type, row.region or "", tenant),
                              float(per_day or 0.0)))  # fmt: skip
    return found


_LEASE_ASSETS = (
    _asset_query()
    .where(assets.c.lease_id.in_(bindparam("lease_ids", expanding=True)))
    .order_by(assets.c.asset_id)
)


def lease_assets(
    conn: Connection, lease_ids: Sequence[str], per_tenant: bool = False
) -> list[AssetRow]:
    """The assets with a gateway on these leases (groups per tenant when `per_tenant`)."""
    return asset_rows(conn, _LEASE_ASSETS, per_tenant, {"lease_ids": list(lease_ids)})


def _blank(column: Any, value: str) -> Any:
    """`column = value`, where "" also matches NULL."""
    return column == value if value else or_(column.is_(None), column == "")


def _group_assets(conn: Connection, group: Group) -> list[AssetRow]:
    asset_type, region, tenant = group
    query = _asset_query().where(assets.c.asset_type == asset_type, _blank(assets.c.region, region))
    if tenant != ALL_TENANTS:
        query = query.where(_blank(lessees.c.tenant, tenant))
    return asset_rows(conn, query.order_by(assets.c.asset_id), tenant != ALL_TENANTS)


def known_groups(conn: Connection, per_tenant: bool) -> list[Group]:
    """Every peer group with at least one asset with a gateway."""
    return sorted({row.group for row in asset_rows(conn, _asset_query(), per_tenant)})


def _day(dialect: str, bucket: Any) -> Any:
    """The UTC day of a bucket as 'YYYY-MM-DD' (SQLite keeps buckets as epoch seconds)."""
    if dialect == "postgresql":
        return func.to_char(func.timezone("UTC", bucket), "YYYY-MM-DD")
    return func.date(bucket, "unixepoch")


@functools.cache
def _daily_statement(dialect: str) -> Select[Any]:
    """Running and covered hours per gateway and UTC day in [start, end) (built once)."""
    r = rollups.c
    day = _day(dialect, r.bucket)
    return (
        select(r.device, day, func.sum(r.sum / r.count), func.count())
        .where(text(RUNNING_HOURLY), r.device.in_(bindparam("devices", expanding=True)))
        .where(r.count > 0, r.bucket >= bindparam("start"), r.bucket < bindparam("end"))
        .group_by(r.device, day)
    )


def daily_use_query(
    conn: Connection, devices: Sequence[str], start: datetime
) -> tuple[Select[Any], dict[str, Any]]:
    """Running and covered hours per gateway and UTC day, `HISTORY_DAYS` from `start`."""
    end = start + timedelta(days=HISTORY_DAYS)
    return _daily_statement(conn.dialect.name), {"devices": list(devices), "start": start,
                                                 "end": end}  # fmt: skip


def daily_use(
    devices: Sequence[str], start: datetime, rows: Iterable[Any]
) -> dict[str, tuple[FloatArray, FloatArray]]:
    """Per gateway: running hours and hours with data of each day, from `daily_use_query` rows."""
    found = {d: (np.zeros(HISTORY_DAYS), np.zeros(HISTORY_DAYS)) for d in devices}
    first = start.date()
    for device, when, hours, covered in rows:
        index = (date.fromisoformat(when) - first).days
        found[device][0][index] = float(hours or 0.0)
        found[device][1][index] = float(covered)
    return found


def histories(
    conn: Connection, rows: Sequence[AssetRow], start: datetime, daily: Iterable[Any] | None = None
) -> list[AssetHistory]:
    """An `AssetHistory` per asset (usage only: episodes are the alerts' business here).

    `daily`: the rows of `daily_use_query` for these assets, when read already.
    """
    devices = [row.device for row in rows]
    if rows and daily is None:
        daily = conn.execute(*daily_use_query(conn, devices, start))
    use = daily_use(devices, start, daily or [])
    return [
        AssetHistory(asset=row.asset_id, lease=row.lease_id, start=start,
                     hours=use[row.device][0], covered=use[row.device][1],
                     expected_per_day=row.expected_per_day, asset_type=row.group[0],
                     region=row.group[1])
        for row in rows
    ]  # fmt: skip


@dataclass(frozen=True, slots=True)
class GroupLevels:
    """A peer group's levels as of a day: median ratios (NaN: under 5 known) and its size."""

    contract: float
    baseline: float
    weekly: FloatArray  # newest week first
    size: int
    daily: FloatArray  # the last `ABRUPT_DAYS`, newest first


def group_levels(
    conn: Connection, group: Group, as_of: datetime, holidays: RegionHolidays
) -> GroupLevels:
    """The group's levels from every asset of that type and region (one grouped query)."""
    start = history_start(as_of)
    members = histories(conn, _group_assets(conn, group), start)
    if not members:
        return GroupLevels(float("nan"), float("nan"), np.full(LOOKBACK_WEEKS, np.nan), 0,
                           np.full(ABRUPT_DAYS, np.nan))  # fmt: skip
    found = calendars(holidays, [group[1]], start)
    levels = Portfolio(members, found).peer_levels(HISTORY_DAYS)
    return GroupLevels(float(levels.contract[0]), float(levels.baseline[0]),
                       levels.weekly[0].copy(), int(levels.sizes[0]),
                       levels.daily[0].copy())  # fmt: skip


def peer_levels(found: Sequence[GroupLevels]) -> PeerLevels:
    """Per-asset `PeerLevels` from each asset's group levels, in the same order."""
    return PeerLevels(
        np.array([g.contract for g in found]), np.array([g.baseline for g in found]),
        np.stack([g.weekly for g in found]), np.array([g.size for g in found], dtype=np.int64),
        np.stack([g.daily for g in found]),
    )  # fmt: skip


def _hour(as_of: datetime) -> datetime:
    """The UTC hour `as_of` falls in: the cache's time key."""
    return as_of.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


#: A cache entry's key: the group, its region's holiday calendar code, and the as-of hour.
CacheKey = tuple[Group, str, datetime]


class PeerCache:
    """Group levels per (group, holiday calendar, as-of hour), least recently used dropped.

    A group's levels take about a millisecond per member to compute (seconds for a group of
    thousands), so a credit check never waits for a refresh it can do without: when the hour's
    entry is missing but the same day's is there (the levels read whole days only; a newer hour
    adds late data and new members), the check answers from it and a background thread
    computes the hour's entry. Only a group never seen that day is computed in the request.
    """

    def __init__(self, size: int = CACHE_GROUPS) -> None:
        self.size = size
        self.entries: OrderedDict[CacheKey, GroupLevels] = OrderedDict()
        self.lock = threading.Lock()
        self.misses = 0
        self.refreshing: set[CacheKey] = set()

    def warm(
        self, conn: Connection, group: Group, as_of: datetime, holidays: RegionHolidays
    ) -> None:
        """Compute and keep the group's levels for `as_of`'s hour, unless kept already."""
        key = (group, holidays.code(group[1]), _hour(as_of))
        with self.lock:
            if key in self.entries:
                return
        self._store(key, group_levels(conn, group, key[2], holidays))

    def levels(
        self, conn: Connection, group: Group, as_of: datetime, holidays: RegionHolidays
    ) -> GroupLevels:
        """The group's levels as of `as_of`'s hour (or earlier that day, while refreshing)."""
        key = (group, holidays.code(group[1]), _hour(as_of))
        with self.lock:
            if key in self.entries:
                self.entries.move_to_end(key)
                return self.entries[key]
            earlier = self._same_day(key)
            refresh = earlier is not None and key not in self.refreshing
            if refresh:
                self.refreshing.add(key)
        if earlier is not None:
            if refresh:
                threading.Thread(
                    target=self._refresh, args=(conn.engine, key, holidays), daemon=True,
                    name="peer-levels",
                ).start()  # fmt: skip
            return earlier
        found = group_levels(conn, group, key[2], holidays)
        self._store(key, found)
        return found

    def _same_day(self, key: CacheKey) -> GroupLevels | None:
        """The newest entry of the group from earlier hours of the same day (lock held)."""
        group, code, hour = key
        same_day = [
            h for (g, c, h) in self.entries if (g, c) == (group, code) and h.date() == hour.date()
        ]
        return self.entries[(group, code, max(same_day))] if same_day else None

    def _refresh(self, engine: Engine, key: CacheKey, holidays: RegionHolidays) -> None:
        try:
            with engine.connect() as conn:
                self._store(key, group_levels(conn, key[0], key[2], holidays))
        finally:
            with self.lock:
                self.refreshing.discard(key)

    def _store(self, key: CacheKey, found: GroupLevels) -> None:
        with self.lock:
            self.misses += 1
            self.entries[key] = found
            while len(self.entries) > self.size:
                self.entries.popitem(last=False)


_CACHES: weakref.WeakKeyDictionary[Engine, PeerCache] = weakref.WeakKeyDictionary()
_CACHES_LOCK = threading.Lock()


def peer_cache(engine: Engine) -> PeerCache:
    """The process's peer cache for one state store."""
    with _CACHES_LOCK:
        return _CACHES.setdefault(engine, PeerCache())


USAGE_FIELDS = (
    "utilization_vs_contract", "utilization_vs_baseline", "peer_utilization_vs_contract",
    "peer_utilization_vs_baseline", "peer_group_size", "weeks_below_baseline", "sustained_use",
    "utilization_vs_prior", "days_down",
)  # fmt: skip


def usage_signals(
    conn: Connection, rows: Sequence[AssetRow], as_of: datetime, holidays: RegionHolidays,
    daily: Iterable[Any] | None = None,
) -> dict[str, Mapping[str, Any]]:  # fmt: skip
    """Per lease: the usage fields of `LeaseSignals`, as `Portfolio.signals` computes them.

    `holidays`: each region's calendar; `daily`: the rows of `daily_use_query` for these
    assets, when read already.
    """
    if not rows:
        return {}
    start = history_start(as_of)
    cache = peer_cache(conn.engine)
    owned = histories(conn, rows, start, daily)
    portfolio = Portfolio(owned, calendars(holidays, (row.group[1] for row in rows), start))
    levels = peer_levels([cache.levels(conn, row.group, as_of, holidays) for row in rows])
    return {
        s.lease_id: {name: getattr(s, name) for name in USAGE_FIELDS}
        for s in portfolio.signals(HISTORY_DAYS, levels)
    }
