"""Fixtures of the leasing tests: a migrated state store on SQLite and PostgreSQL, and a fleet.

Telemetry goes in through `StateStore.record_stored` (the ingestor's own path), so rollups and
the completeness ledger are what the ingestor would have written: one message per hour per
gateway with six `running` readings (every 10 minutes), labelled by how many hours it ran.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from msgspec.structs import replace

from cloud.alerts.signals import Finding, Severity
from cloud.alerts.store import AlertStore
from cloud.leasing.models import AssetIn, LeaseIn, LesseeIn, PermittedRegion
from cloud.leasing.store import LeasingStore
from cloud.state import StateStore
from leasewatch.wire import Reading, TelemetryBatch

AS_OF = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)
STARTS = date(2026, 6, 1)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def state(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    """A migrated state store on each backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'state.sqlite'}"
    else:
        url = request.getfixturevalue("postgres_url")
    store = StateStore(url)
    yield store
    store.close()


def hour_batch(device: str, seq: int, hour: datetime, running_minutes: int) -> TelemetryBatch:
    """One hourly message: six 10-minute `running` readings, the first ones running."""
    readings = [
        Reading(
            sensor="machine",
            metric="running",
            ts=hour + timedelta(minutes=10 * i),
            value=1.0 if 10 * i < running_minutes else 0.0,
        )
        for i in range(6)
    ]
    return TelemetryBatch(
        device=device, boot="b1", seq=seq, sent_at=hour + timedelta(minutes=59), readings=readings
    )


def feed(
    state: StateStore,
    device: str,
    days: Iterable[tuple[date, float]],
    *,
    skip_every: int = 0,
    daily: bool = False,
) -> None:
    """Hourly messages for each (day, running hours that day) spread over 08:00 on; 24 h a day.

    `skip_every` > 0 leaves out every n-th message (a poor link: gaps in the ledger, hours
    without rollups). `daily`: one message a day with the day's readings (the same rollups,
    written faster).
    """
    batches: list[TelemetryBatch] = []
    seq = 0
    for day, hours in days:
        day_batches: list[TelemetryBatch] = []
        for h in range(24):
            start = datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=h)
            run = max(0.0, min(1.0, hours - (h - 8))) if h >= 8 else 0.0
            seq += 1
            if skip_every and seq % skip_every == 0:
                continue
            day_batches.append(hour_batch(device, seq, start, round(run * 60)))
        if daily and day_batches:
            readings = [r for b in day_batches for r in b.readings]
            # renumbered: no gaps in the ledger
            day_batches = [replace(day_batches[-1], readings=readings, seq=len(batches) + 1)]
        batches.extend(day_batches)
    for i in range(0, len(batches), 500):
        state.record_stored(batches[i : i + 500], [], AS_OF)


def days_before(as_of: datetime, count: int) -> list[date]:
    """The `count` days before as_of's day, oldest first."""
    return [as_of.date() - timedelta(days=count - i) for i in range(count)]


def make_lease(
    leasing: LeasingStore,
    lease_id: str,
    devices: list[str],
    *,
    lessee_id: str = "L-1",
    expected_hours_per_day: float | None = 8.0,
    hours_cap_per_month: float | None = None,
    asset_type: str = "excavator",
    region: str | None = None,
) -> None:
    """A lessee (if new), an active lease and one asset per gateway."""
    leasing.put_lessee(LesseeIn(lessee_id=lessee_id, name="Acme Earthworks"), AS_OF)
    lease = LeaseIn(
        lease_id=lease_id,
        lessee_id=lessee_id,
        starts_on=STARTS,
        ends_on=date(2029, 6, 1),
        region=PermittedRegion(center=(48.1, 11.5), radius_km=50.0),
        expected_hours_per_day=expected_hours_per_day,
        hours_cap_per_month=hours_cap_per_month,
        asset_value=250_000.0,
    )
    leasing.create_lease(lease, AS_OF)
    for n, device in enumerate(devices):
        asset = AssetIn(
            asset_id=f"{lease_id}-A{n}",
            asset_type=asset_type,
            region=region,
            device=device,
            lease_id=lease_id,
        )
        leasing.put_asset(asset, AS_OF)


def open_alert(
    state: StateStore,
    device: str,
    detector: str,
    key: str,
    *,
    severity: Severity = Severity.WARNING,
    at: datetime = AS_OF - timedelta(days=2),
    magnitude: float | None = None,
    evidence: dict[str, str | int | float | bool | None] | None = None,
) -> None:
    """An alert opened through the alert store, as the detectors' findings would open it."""
    finding = Finding(
        device=device, detector=detector, key=key, state="open", severity=severity,
        since=at, evaluated_at=at, summary=f"{detector}/{key} on {device}",
        evidence=evidence or {}, magnitude=magnitude,
    )  # fmt: skip
    AlertStore(state.engine, []).apply([finding], now=at)
