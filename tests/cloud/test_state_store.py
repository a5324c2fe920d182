"""The state store on SQLite and PostgreSQL: ledger, registry, rollups, completeness."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from msgspec.structs import replace

from cloud.state import StateStore
from leasewatch.wire import GatewayStatus, Reading, TelemetryBatch

T0 = datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    """A migrated state store on each backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'state.sqlite'}"
    else:
        url = request.getfixturevalue("postgres_url")
    state = StateStore(url)
    yield state
    state.close()


def _batch(
    seq: int, values: list[float], *, boot: str = "b1", at: datetime = T0, historical: bool = False
) -> TelemetryBatch:
    readings = [
        Reading(
            sensor="machine",
            metric="motor_current",
            ts=at + timedelta(seconds=i),
            value=v,
            unit="A",
        )
        for i, v in enumerate(values)
    ]
    return TelemetryBatch(
        device="gw-0001",
        boot=boot,
        seq=seq,
        sent_at=at + timedelta(seconds=len(values)),
        historical=historical,
        readings=readings,
    )


def test_migrations_are_idempotent_and_the_registry_knows_registered_devices(
    store: StateStore,
) -> None:
    StateStore(str(store.engine.url.render_as_string(hide_password=False))).close()
    assert store.registered(["gw-0001"]) == set()
    store.register_device("gw-0001", T0)
    store.register_device("gw-0001", T0)
    assert store.registered(["gw-0001", "gw-0002"]) == {"gw-0001"}


def test_a_message_counts_once_even_when_recorded_twice(store: StateStore) -> None:
    first = store.record_stored([_batch(0, [1.0, 2.0])], [], T0)
    again = store.record_stored([_batch(0, [1.0, 2.0])], [], T0)
    assert (len(first.stored), len(again.stored), len(again.duplicates)) == (1, 0, 1)
    (device,) = store.devices()
    assert (device["messages"], device["readings"], device["duplicates"]) == (1, 2, 1)
    (bucket,) = store.rollups("gw-0001", 60, T0 - timedelta(hours=1), T0 + timedelta(hours=1))
    assert (bucket["count"], bucket["sum"], bucket["min"], bucket["max"]) == (2, 3.0, 1.0, 2.0)


def test_concurrent_workers_recording_the_same_message_count_it_once(store: StateStore) -> None:
    batches = [_batch(seq, [float(seq)]) for seq in range(20)]
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            store.record_stored(batches, [], T0)
        except Exception as err:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(err)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    (device,) = store.devices()
    assert (device["messages"], device["duplicates"]) == (20, 20)
    assert len(store.ledger("gw-0001")) == 20
    (bucket,) = store.rollups("gw-0001", 3600, T0 - timedelta(hours=1), T0 + timedelta(hours=1))
    assert bucket["count"] == 20, "rolled up once per message, not once per worker"


def test_a_batch_partly_stored_before_counts_and_rolls_up_only_its_new_messages(
    store: StateStore,
) -> None:
    store.record_stored([_batch(0, [1.0], at=T0 + timedelta(minutes=2))], [], T0)
    later = T0 + timedelta(minutes=5)
    mixed = [_batch(0, [1.0], at=T0 + timedelta(minutes=2)), _batch(1, [5.0, 7.0])]
    outcome = store.record_stored(mixed, [], later)
    assert ([b.seq for b in outcome.stored], [b.seq for b in outcome.duplicates]) == ([1], [0])
    (device,) = store.devices()
    assert (device["messages"], device["readings"], device["duplicates"]) == (2, 3, 1)
    # the stored message is older than the one recorded first: the latest reading stays
    assert device["latest_reading_at"] == T0 + timedelta(minutes=2)
    assert device["last_message_at"] == later
    (hour,) = store.rollups("gw-0001", 3600, T0 - timedelta(hours=1), T0 + timedelta(hours=1))
    assert (hour["count"], hour["sum"], hour["min"], hour["max"]) == (3, 13.0, 1.0, 7.0)


def test_rollups_accumulate_across_messages_by_minute_and_hour(store: StateStore) -> None:
    store.record_stored([_batch(0, [4.0, 6.0])], [], T0)
    store.record_stored([_batch(1, [1.0], at=T0 + timedelta(minutes=1))], [], T0)
    window = (T0 - timedelta(hours=1), T0 + timedelta(hours=1))
    minutes = store.rollups("gw-0001", 60, *window)
    assert [(m["count"], m["min"], m["max"]) for m in minutes] == [(2, 4.0, 6.0), (1, 1.0, 1.0)]
    (hour,) = store.rollups("gw-0001", 3600, *window)
    assert (hour["count"], hour["sum"], hour["min"], hour["max"]) == (3, 11.0, 1.0, 6.0)
    assert hour["bucket"] == T0.replace(minute=0)


def test_historical_messages_never_overwrite_the_latest_state(store: StateStore) -> None:
    store.record_stored([_batch(5, [1.0], at=T0)], [], T0)
    later = T0 + timedelta(minutes=5)
    backlog = _batch(1, [1.0, 2.0], boot="b0", at=T0 - timedelta(days=1), historical=True)
    store.record_stored([backlog], [], later)
    (device,) = store.devices()
    assert device["latest_reading_at"] == T0
    assert (device["last_boot"], device["last_message_at"]) == ("b1", T0)
    assert (device["messages"], device["readings"]) == (2, 3)
    # a live message stamped before the latest moves when it arrived, never the latest back
    store.record_stored([_batch(6, [1.0], boot="b2", at=T0 - timedelta(hours=1))], [], later)
    (device,) = store.devices()
    assert device["latest_reading_at"] == T0
    assert (device["last_boot"], device["last_message_at"]) == ("b2", later)


def test_completeness_finds_gaps_duplicates_late_and_historical(store: StateStore) -> None:
    day = T0.date()
    received = [0, 1, 4, 5, 9]
    store.record_stored([_batch(s, [1.0]) for s in received], [], T0)
    store.record_stored([_batch(1, [1.0])], [], T0)  # a duplicate
    late = _batch(10, [1.0], at=T0 - timedelta(minutes=10))
    store.record_stored([late], [], T0 + timedelta(minutes=1))
    store.record_stored([_batch(0, [1.0, 2.0], boot="b2", historical=True)], [], T0)
    (report,) = store.completeness("gw-0001", day, day, timedelta(minutes=2))
    assert report.day == day
    assert (report.received_messages, report.missing_messages) == (7, 5)
    assert report.expected_messages == 12
    assert [(g.boot, g.first_seq, g.last_seq) for g in report.gaps] == [("b1", 2, 3), ("b1", 6, 8)]
    assert (report.duplicates, report.late, report.historical) == (1, 1, 1)
    assert store.completeness("gw-0001", date(2026, 11, 1), date(2026, 11, 2), timedelta(1)) == []


def test_status_keeps_the_newest_state(store: StateStore) -> None:
    store.record_status(GatewayStatus(device="gw-0001", boot="b1", state="offline", ts=T0), T0)
    earlier = GatewayStatus(device="gw-0001", boot="b1", state="online", ts=T0 - timedelta(1))
    store.record_status(earlier, T0)
    assert store.devices()[0]["status"] == "offline"


def test_a_status_and_a_health_report_stamped_ahead_do_not_hide_later_ones(
    store: StateStore,
) -> None:
    from leasewatch.wire import GatewayHealth  # noqa: PLC0415

    ahead = T0 + timedelta(hours=1)  # a gateway clock running an hour ahead, set right later
    store.record_status(GatewayStatus(device="gw-0001", boot="b1", state="online", ts=ahead), T0)
    later = T0 + timedelta(minutes=2)
    store.record_status(
        GatewayStatus(device="gw-0001", boot="b2", state="offline", ts=later), later
    )
    assert store.devices()[0]["status"] == "offline"
    report = GatewayHealth(
        device="gw-0001", boot="b1", ts=ahead, uptime_s=1, buffer_messages=7, buffer_readings=7
    )
    store.record_health(report, T0)
    fixed = report.model_copy(update={"boot": "b2", "ts": later, "buffer_messages": 0})
    store.record_health(fixed, later)
    newest = store.health("gw-0001")
    assert newest is not None and newest.boot == "b2"


def test_events_are_stored_once_and_health_keeps_the_newest(store: StateStore) -> None:
    from leasewatch.wire import GatewayHealth, MachineEvent  # noqa: PLC0415

    event = MachineEvent(sensor="machine", kind="start", ts=T0, detail="current above 2 A")
    batch = replace(_batch(0, [1.0]), events=[event])
    store.record_stored([batch], [], T0)
    store.record_stored([batch], [], T0)
    (stored,) = store.events("gw-0001", T0 - timedelta(hours=1), T0 + timedelta(hours=1))
    assert (stored["kind"], stored["ts"], stored["detail"]) == ("start", T0, "current above 2 A")

    def health(at: datetime, depth: int) -> GatewayHealth:
        return GatewayHealth(
            device="gw-0001",
            boot="b1",
            ts=at,
            uptime_s=1.0,
            buffer_messages=depth,
            buffer_readings=depth,
        )

    store.record_health(health(T0, 5), T0)
    store.record_health(health(T0 - timedelta(minutes=1), 9), T0)  # late, older: ignored
    newest = store.health("gw-0001")
    assert newest is not None
    assert newest.buffer_messages == 5
    store.record_health(health(T0 + timedelta(minutes=1), 2), T0)
    newest = store.health("gw-0001")
    assert newest is not None
    assert newest.buffer_messages == 2


def test_known_keys_are_exactly_the_ledgered_messages(store: StateStore) -> None:
    stored = [
        replace(_batch(seq, [1.0]), device=device)
        for device in ("gw-0001", "gw-0002", "gw-0003")
        for seq in range(300)
    ]
    store.record_stored(stored, [], T0)
    ledgered = {b.key for b in stored}
    # the same boot everywhere, more keys than one statement's chunk, near misses of each kind
    asked = [*ledgered, ("gw-0001", "b1", 300), ("gw-0001", "b2", 0), ("gw-0004", "b1", 0)]
    assert store.known_keys(asked) == ledgered
    assert store.known_keys([]) == set()


def test_status_and_health_reports_are_kept_in_the_batch_transaction(store: StateStore) -> None:
    from leasewatch.wire import GatewayHealth  # noqa: PLC0415

    offline = GatewayStatus(device="gw-0002", boot="b1", state="offline", ts=T0)
    older = GatewayStatus(device="gw-0002", boot="b1", state="online", ts=T0 - timedelta(1))
    report = GatewayHealth(
        device="gw-0003", boot="b1", ts=T0, uptime_s=1.0, buffer_messages=4, buffer_readings=9
    )
    outcome = store.record_stored([_batch(0, [1.0])], [], T0, [offline, older, report])
    assert [b.key for b in outcome.stored] == [("gw-0001", "b1", 0)]
    status = {d["device"]: d["status"] for d in store.devices()}
    assert status == {"gw-0001": "unknown", "gw-0002": "offline", "gw-0003": "unknown"}
    health = store.health("gw-0003")
    assert health is not None
    assert health.buffer_readings == 9
