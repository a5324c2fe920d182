"""Completeness of a few days reads only what they need, with the full computation's figures."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloud.completeness import Gap, LedgerRow, completeness
from cloud.schema import duplicate_counts, message_ledger
from cloud.state import StateStore
from tests.services.postgres import PostgresServer

T0 = datetime(2026, 12, 1, tzinfo=UTC)
LATE_AFTER = timedelta(minutes=5)
_devices = itertools.count()


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)]
)
def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StateStore]:
    """One migrated store per backend for the module; every example uses a device of its own."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('window') / 'state.sqlite'}"
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        url = server.create_database()
    state = StateStore(url)
    yield state
    state.close()
    if request.param == "postgresql":
        server.drop_database(url)


@st.composite
def ledger_rows(draw: st.DrawFn) -> list[LedgerRow]:
    """Several boots with gaps; send times over a week in any order relative to seq."""
    rows = []
    for boot in draw(st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, unique=True)):
        for seq in draw(st.sets(st.integers(0, 40), min_size=1, max_size=25)):
            sent_at = T0 + timedelta(minutes=draw(st.integers(-24 * 60, 7 * 24 * 60)))
            delay = timedelta(minutes=draw(st.integers(0, 10)))
            rows.append(
                LedgerRow(
                    boot,
                    seq,
                    sent_at,
                    sent_at + delay,
                    draw(st.integers(0, 5)),
                    draw(st.booleans()),
                )
            )
    return rows


duplicates_by_day = st.dictionaries(
    st.integers(-1, 7).map(lambda n: T0.date() + timedelta(days=n)), st.integers(1, 3)
)


def _insert(store: StateStore, device: str, rows: list[LedgerRow], dups: dict[date, int]) -> None:
    ledger = [{"device": device, **asdict(row)} for row in rows]
    counts = [{"device": device, "day": day, "count": n} for day, n in dups.items()]
    with store.engine.begin() as conn:
        conn.execute(message_ledger.insert(), ledger)
        if counts:
            conn.execute(duplicate_counts.insert(), counts)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    rows=ledger_rows(),
    dups=duplicates_by_day,
    first=st.integers(-2, 8).map(lambda n: T0.date() + timedelta(days=n)),
    length=st.integers(1, 3),
)
def test_windowed_completeness_equals_the_full_computation_on_those_days(
    store: StateStore, rows: list[LedgerRow], dups: dict[date, int], first: date, length: int
) -> None:
    device = f"gw-{next(_devices)}"
    _insert(store, device, rows, dups)
    last = first + timedelta(days=length - 1)
    full = [d for d in completeness(rows, dups, LATE_AFTER) if first <= d.day <= last]
    assert store.completeness(device, first, last, LATE_AFTER) == full


def test_a_day_reads_its_messages_and_the_one_before_them_not_the_whole_ledger(
    store: StateStore,
) -> None:
    device = f"gw-{next(_devices)}"
    day = T0.date() + timedelta(days=4)
    first_of_day = 4 * 24 * 60
    every_minute = [
        LedgerRow("b1", seq, T0 + timedelta(minutes=seq), T0 + timedelta(minutes=seq), 1, False)
        for seq in range(10 * 24 * 60)
        if seq % 97 != 50 and seq not in range(first_of_day - 3, first_of_day)
    ]
    _insert(store, device, every_minute, {})
    start = datetime.combine(day, datetime.min.time(), UTC)
    with store.engine.connect() as conn:
        query = StateStore._completeness_rows(device, start, start + timedelta(days=1))
        read = conn.execute(query).all()
    sent_that_day = [r for r in every_minute if r.sent_at.date() == day]
    assert len(read) == len(sent_that_day) + 1 < len(every_minute) / 9
    assert min(r.seq for r in read) == first_of_day - 4
    (report,) = store.completeness(device, day, day, LATE_AFTER)
    assert report.gaps[0] == Gap("b1", first_of_day - 3, first_of_day - 1)
    assert report.received_messages == len(sent_that_day)
    assert [report] == [d for d in completeness(every_minute, {}, LATE_AFTER) if d.day == day]
