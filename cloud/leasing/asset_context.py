"""Asset context for the detectors from the leasing store: each gateway's asset and lease.

The detection worker asks, per batch of gateways, what each gateway is mounted on: the asset's
type picks the fault profile, the lease's permitted region drives the geofence, and the asset's
region picks the public holidays its utilization is not judged on (the scoring rules'
`[holidays]` calendars, through `cloud.risk.calendars`). This source
answers from the `assets` and `leases` tables in one query per batch, keeps answers for a short
while (a lease's terms change rarely, batches arrive many times a second), and hands gateways
without an asset row to a fallback source (the context file, or the defaults).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import UTC, date, datetime

from sqlalchemy import Engine, select

from cloud.detection.context import AssetContext, AssetContextSource
from cloud.leasing.models import PermittedRegion
from cloud.leasing.tables import assets, leases
from cloud.risk.calendars import RegionHolidays
from cloud.risk.rules import load_rules

CACHE_S = 30.0


class LeasingContextSource:
    """`AssetContextSource` over the leasing tables, with a fallback for unknown gateways."""

    def __init__(
        self,
        engine: Engine,
        fallback: AssetContextSource,
        cache_s: float = CACHE_S,
        *,
        holidays: RegionHolidays | None = None,
        today: Callable[[], date] = lambda: datetime.now(UTC).date(),
    ) -> None:
        """Read from `engine`; ask `fallback` about gateways on no asset; keep answers `cache_s`.

        `holidays` resolves an asset's region to its calendar (None: the shipped scoring rules').
        """
        self._engine = engine
        self._fallback = fallback
        self._cache_s = cache_s
        self._holidays = holidays or load_rules().holidays.resolver()
        self._today = today
        self._cache: dict[str, tuple[float, AssetContext | None]] = {}
        self._lock = threading.Lock()

    def contexts(self, devices: Iterable[str]) -> dict[str, AssetContext]:
        """The context of each device: its asset and lease, else the fallback's."""
        wanted = list(dict.fromkeys(devices))
        now = time.monotonic()
        with self._lock:
            known = {d: self._cache[d] for d in wanted if d in self._cache}
        fresh = {d: ctx for d, (at, ctx) in known.items() if now - at < self._cache_s}
        missing = [d for d in wanted if d not in fresh]
        if missing:
            loaded = self._load(missing)
            with self._lock:
                for device in missing:
                    self._cache[device] = (now, loaded.get(device))
            fresh |= {d: loaded.get(d) for d in missing}
        unknown = [d for d in wanted if fresh[d] is None]
        fallback = self._fallback.contexts(unknown) if unknown else {}
        return {d: fresh[d] or fallback[d] for d in wanted}

    def _load(self, devices: list[str]) -> dict[str, AssetContext]:
        query = (
            select(assets.c.device, assets.c.asset_type, assets.c.region, leases.c.region)
            .select_from(assets.outerjoin(leases, leases.c.lease_id == assets.c.lease_id))
            .where(assets.c.device.in_(devices))
        )
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
        found = {}
        today = self._today()
        for device, asset_type, asset_region, region in rows:
            holidays = self._holidays.around(asset_region or "", today)
            context = AssetContext(device=device, asset_type=asset_type, holidays=holidays)
            if region:
                context = replace(context, region=PermittedRegion.model_validate(region).region())
            found[device] = context
        return found
