"""The credit check scores use as the backtest does: peer group, sustained drops, same signals."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import update

from cloud.api.deps import Services
from cloud.api.main import create_app
from cloud.leasing.assessment import RiskAssessor
from cloud.leasing.peer_refresh import AHEAD, next_run, precompute, run_peer_refresh
from cloud.leasing.peers import (
    ALL_TENANTS,
    HISTORY_DAYS,
    USAGE_FIELDS,
    PeerCache,
    calendars,
    history_start,
    peer_cache,
)
from cloud.leasing.signals import HOUR
from cloud.leasing.store import LeasingStore
from cloud.leasing.tables import lessees
from cloud.metrics import IngestMetrics
from cloud.risk.history import AssetHistory
from cloud.risk.portfolio import Portfolio
from cloud.risk.rules import load_rules
from cloud.settings import CloudSettings
from cloud.state import StateStore
from cloud.telemetry.sqlite import SqliteTelemetryStore
from tests.cloud.leasing.conftest import AS_OF, feed, make_lease

KEY = "api-key-for-usage-signal-tests"
HOLIDAYS = load_rules().holidays.resolver()
PEERS = 6
CONTRACT = 5.0  # hours a day each lease expects
Change = dict[int, tuple[int, int, float]]  # asset -> (first day, last day, factor)


def _hours(number: int, change: Change) -> np.ndarray:
    """Eight hours a weekday, four on Saturdays, none on Sundays (in 10-minute steps)."""
    start = history_start(AS_OF)
    pattern = np.array([8.0, 8.0, 8.0, 8.0, 8.0, 4.0, 0.0])
    weekdays = (start.weekday() + np.arange(HISTORY_DAYS)) % 7
    noise = 1.0 + 0.05 * np.sin(np.arange(HISTORY_DAYS))
    hours = pattern[weekdays] * (0.9 + 0.04 * number) * noise
    if number in change:
        first, last, factor = change[number]
        hours[first:last] *= factor
    return np.asarray(np.round(hours * 6) / 6, dtype=np.float64)  # what the rollups can hold


def _fleet(
    state: StateStore, change: Change, as_of: datetime = AS_OF, count: int = PEERS,
    region: str = "south",
) -> list[AssetHistory]:  # fmt: skip
    """`count` excavators in `region`, one lease each; written, and as histories."""
    leasing = LeasingStore(state.engine)
    start = history_start(as_of)
    found = []
    for n in range(count):
        hours = _hours(n, change)
        device = f"gw-{n:04d}"
        make_lease(leasing, f"LS-{n}", [device], lessee_id=f"L-{n}", region=region,
                   expected_hours_per_day=CONTRACT)  # fmt: skip
        days = [(start.date() + timedelta(days=d), float(h)) for d, h in enumerate(hours)]
        feed(state, device, days, daily=True)
        covered = np.full(HISTORY_DAYS, 24.0)
        found.append(AssetHistory(f"LS-{n}-A0", f"LS-{n}", start, hours, covered, CONTRACT,
                                  "excavator", region))  # fmt: skip
    return found


@pytest.fixture
def client(tmp_path: Path, state: StateStore) -> Iterator[TestClient]:
    """The API on the state store."""
    settings = CloudSettings(mode="demo", api_key=SecretStr(KEY))
    services = Services(settings, SqliteTelemetryStore(tmp_path / "t.sqlite"), state,
                        IngestMetrics())  # fmt: skip
    with TestClient(create_app(services), headers={"X-API-Key": KEY}) as test:
        yield test


def _check(client: TestClient, lease_id: str) -> dict[str, Any]:
    response = client.post("/v1/credit-checks", json={"lease_id": lease_id,
                                                      "as_of": AS_OF.isoformat()})  # fmt: skip
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document


def test_a_lessee_specific_sustained_drop_is_the_credit_checks_top_reason(
    state: StateStore, client: TestClient
) -> None:
    _fleet(state, {0: (HISTORY_DAYS - 49, HISTORY_DAYS, 0.35)})  # seven weeks at about a third
    found = _check(client, "LS-0")
    reasons = found["reasons"]
    assert isinstance(reasons, list)
    assert reasons[0]["code"] == "sustained_decline"
    assert reasons[0]["evidence"]["weeks"] == 7
    assert found["band"] in {"high", "critical"}
    (lease,) = found["leases"]
    assert lease["signals"]["peer_group_size"] == PEERS
    assert lease["signals"]["peer_utilization_vs_baseline"] == pytest.approx(1.0, abs=0.1)
    for other in range(1, PEERS):
        assert _check(client, f"LS-{other}")["band"] == "low"
    assert peer_cache(state.engine).misses == 1  # one group, one as-of hour


def test_a_whole_peer_group_dipping_is_the_season_not_the_lessee(
    state: StateStore, client: TestClient
) -> None:
    laid_up = HISTORY_DAYS - 14
    _fleet(state, dict.fromkeys(range(PEERS), (laid_up, HISTORY_DAYS, 0.2)))
    for n in range(PEERS):
        found = _check(client, f"LS-{n}")
        codes = [r["code"] for r in found["reasons"]]
        assert "peer_group_dip" in codes
        assert "utilization_below_baseline" not in codes
        assert found["band"] == "low"
        assert float(found["score"]) < 25


def test_the_credit_check_and_the_backtest_compute_the_same_signals(state: StateStore) -> None:
    """Histories over public holidays, a group dip, a drop and an abrupt one, built both ways."""
    as_of = datetime(2026, 7, 1, tzinfo=UTC)  # the history spans Easter, May and Whit Monday
    change: Change = dict.fromkeys(range(PEERS), (100, 110, 0.4))
    change[2] = (90, HISTORY_DAYS, 0.3)
    change[3] = (HISTORY_DAYS - 4, HISTORY_DAYS, 0.2)  # an abrupt drop: Saturday to Tuesday
    histories = _fleet(state, change, as_of, region="DE-NW")  # a region that is a calendar
    holidays = calendars(HOLIDAYS, ["DE-NW"], history_start(as_of))
    assert len(holidays["DE-NW"]) >= 6, "Good Friday to Corpus Christi"
    backtest = Portfolio(histories, holidays).signals(HISTORY_DAYS)
    with state.engine.connect() as conn:
        assessor = RiskAssessor(state.engine, load_rules())
        checked = [assessor.lease(conn, f"LS-{n}", as_of).leases[0].signals for n in range(PEERS)]
    assert checked[2].weeks_below_baseline > 0
    assert checked[2].utilization_vs_prior == pytest.approx(0.3, abs=0.05)
    assert checked[3].days_down == 3  # Saturday, Monday, Tuesday (no Sunday work)
    for ours, theirs in zip(checked, backtest, strict=True):
        assert ours.lease_id == theirs.lease_id
        assert theirs.peer_utilization_vs_baseline is not None  # the figures are known here
        assert theirs.utilization_vs_baseline is not None
        for name in USAGE_FIELDS:
            expected = getattr(theirs, name)
            if expected is None:  # sustained_use without a week below
                assert getattr(ours, name) is None, name
            else:
                assert getattr(ours, name) == pytest.approx(expected, rel=1e-9), name


def test_a_later_hour_answers_from_the_days_levels_while_they_refresh_behind(
    state: StateStore,
) -> None:
    _fleet(state, {})
    cache = PeerCache()
    group = ("excavator", "south", ALL_TENANTS)
    with state.engine.connect() as conn:
        first = cache.levels(conn, group, AS_OF, HOLIDAYS)  # computed in the request
        assert (cache.misses, first.size) == (1, PEERS)
        later = AS_OF + timedelta(hours=2)
        assert cache.levels(conn, group, later, HOLIDAYS) is first, "answered from the day's entry"
        for _ in range(100):  # the refresh runs in a thread
            if cache.misses == 2 and not cache.refreshing:
                break
            time.sleep(0.05)
        assert cache.misses == 2
        refreshed = cache.levels(conn, group, later, HOLIDAYS)
        assert refreshed is not first and refreshed.size == PEERS
        assert refreshed.contract == pytest.approx(first.contract)
        cache.levels(conn, group, AS_OF + timedelta(days=1), HOLIDAYS)  # a new day: computed
        assert cache.misses == 3


def test_peer_groups_per_tenant_when_the_rules_say_so(state: StateStore) -> None:
    """Tenant a's fleet dips as a whole: its own peers say so; every tenant's do not."""
    _fleet(state, dict.fromkeys(range(PEERS), (HISTORY_DAYS - 14, HISTORY_DAYS, 0.2)), count=12)
    with state.engine.begin() as conn:
        for n in range(12):
            tenant = "tenant-a" if n < PEERS else "tenant-b"
            conn.execute(
                update(lessees).where(lessees.c.lessee_id == f"L-{n}").values(tenant=tenant)
            )
    rules = load_rules()
    per_tenant = rules.model_copy(
        update={"peers": rules.peers.model_copy(update={"scope": "tenant"})}
    )
    with state.engine.connect() as conn:
        every = RiskAssessor(state.engine, rules).lease(conn, "LS-0", AS_OF).leases[0]
        own = RiskAssessor(state.engine, per_tenant).lease(conn, "LS-0", AS_OF).leases[0]
    assert (every.signals.peer_group_size, own.signals.peer_group_size) == (12, PEERS)
    assert own.signals.peer_utilization_vs_baseline == pytest.approx(0.2, abs=0.05)
    assert "peer_group_dip" in [r.code for r in own.score.reasons]
    assert "utilization_below_baseline" in [r.code for r in every.score.reasons]


def test_the_days_levels_are_computed_before_the_first_check(state: StateStore) -> None:
    _fleet(state, {})
    cache = peer_cache(state.engine)
    assert precompute(state.engine, AS_OF, load_rules()) == 1  # one group
    assert cache.misses == 1
    with state.engine.connect() as conn:
        checked = RiskAssessor(state.engine, load_rules()).lease(
            conn, "LS-0", AS_OF + timedelta(minutes=30)
        )
    assert checked.leases[0].signals.peer_group_size == PEERS
    assert cache.misses == 1  # the check read the precomputed levels
    assert precompute(state.engine, AS_OF, load_rules()) == 1
    assert cache.misses == 1  # kept already: not computed again


def test_the_refresh_runs_at_start_and_before_midnight(state: StateStore) -> None:
    late = datetime(2026, 3, 1, 23, 50, tzinfo=UTC)
    midnight = datetime(2026, 3, 2, tzinfo=UTC)
    assert next_run(late) == (late, midnight)
    assert next_run(datetime(2026, 3, 1, 9, 0, tzinfo=UTC)) == (midnight - AHEAD, midnight)
    _fleet(state, {}, as_of=datetime.now(UTC))
    settings = CloudSettings(mode="demo", api_key=SecretStr(KEY))

    async def started() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(run_peer_refresh(settings, state.engine, stop))
        for _ in range(200):
            if peer_cache(state.engine).misses:
                break
            await asyncio.sleep(0.05)
        stop.set()
        await task

    asyncio.run(started())
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    assert [key[2] for key in peer_cache(state.engine).entries] in ([hour], [hour - HOUR])
