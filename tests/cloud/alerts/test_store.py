"""The alert store on SQLite and PostgreSQL: lifecycle, de-duplication, suppression, races."""

from __future__ import annotations

import math
import threading
from datetime import timedelta

import pytest
from sqlalchemy import Engine

from cloud.alerts.maintenance import InvalidWindowError, MaintenanceCalendar
from cloud.alerts.outbox import Outbox
from cloud.alerts.signals import Severity
from cloud.alerts.store import AlertStateError, AlertStore
from cloud.detector_state import load_detector_state, load_detector_states, save_detector_state
from tests.cloud.alerts.conftest import RECEIVER, T0, finding


def _events(engine: Engine, alert_id: int) -> list[str]:
    return [d.event for d in Outbox(engine).deliveries(alert_id)]


def test_a_finding_opens_one_alert_that_says_why(engine: Engine) -> None:
    store = AlertStore(engine, [RECEIVER])
    outcome = store.apply([finding(0)], now=T0)
    (alert_id,) = outcome.opened
    alert = store.get(alert_id)
    assert (alert.status, alert.severity, alert.occurrences) == ("open", Severity.WARNING, 1)
    assert alert.since == T0 - timedelta(days=3)
    assert alert.evidence == {
        "baseline_h_per_day": 7.5,
        "observed_h_per_day": 5.1,
        "window_days": 7,
    }
    assert alert.explanation().endswith(
        "Evidence: baseline_h_per_day=7.5, observed_h_per_day=5.1, window_days=7."
    )
    assert _events(engine, alert_id) == ["opened"]


def test_the_same_finding_twice_changes_nothing(engine: Engine) -> None:
    store = AlertStore(engine, [RECEIVER])
    store.apply([finding(0)], now=T0)
    again = store.apply([finding(0)], now=T0 + timedelta(minutes=5))
    assert (again.opened, again.updated, again.ignored) == ([], [], 1)
    (alert,) = store.query()
    assert (alert.occurrences, alert.updated_at) == (1, T0)
    assert _events(engine, alert.id) == ["opened"]


def test_newer_findings_update_escalate_and_never_deescalate(engine: Engine) -> None:
    store = AlertStore(engine, [RECEIVER])
    store.apply([finding(0)], now=T0)
    store.apply(
        [finding(1, severity=Severity.CRITICAL, evidence={"observed_h_per_day": 2.0})],
        now=T0 + timedelta(minutes=1),
    )
    outcome = store.apply([finding(2, severity=Severity.INFO)], now=T0 + timedelta(minutes=2))
    (alert,) = store.query()
    assert outcome.updated == [alert.id]
    assert (alert.severity, alert.occurrences) == (Severity.CRITICAL, 3)
    assert alert.last_evaluated_at == T0 + timedelta(minutes=2)
    assert _events(engine, alert.id) == ["opened", "escalated"]
    stale = store.apply([finding(1.5)], now=T0 + timedelta(minutes=3))
    assert stale.ignored == 1 and store.get(alert.id).occurrences == 3


def test_clearing_resolves_as_system_and_a_later_finding_reopens(engine: Engine) -> None:
    store = AlertStore(engine, [RECEIVER])
    (first,) = store.apply([finding(0)], now=T0).opened
    cleared = finding(10, state="cleared", summary="Running hours back to 7.4 h/day.")
    assert store.apply([cleared], now=T0 + timedelta(minutes=10)).resolved == [first]
    resolved = store.get(first)
    assert (resolved.status, resolved.resolved_by) == ("resolved", "system")
    assert resolved.resolve_note is not None and "7.4 h/day" in resolved.resolve_note
    assert store.apply([cleared], now=T0 + timedelta(minutes=11)).ignored == 1
    assert store.apply([finding(5)], now=T0 + timedelta(minutes=12)).ignored == 1  # stale
    (second,) = store.apply([finding(20)], now=T0 + timedelta(minutes=20)).opened
    assert second != first


def test_a_clear_in_a_batch_makes_its_later_opens_at_the_same_time_stale(engine: Engine) -> None:
    store = AlertStore(engine, [RECEIVER])
    (first,) = store.apply([finding(0)], now=T0).opened
    batch = [finding(20), finding(10, state="cleared"), finding(10), finding(5)]
    outcome = store.apply(batch, now=T0 + timedelta(minutes=30))  # applied in evaluation order
    assert (outcome.updated, outcome.resolved, outcome.ignored) == ([first], [first], 1)
    (second,) = outcome.opened  # evaluated after the resolution: a new alert
    assert second != first and store.get(second).last_evaluated_at == T0 + timedelta(minutes=20)
    assert [a.id for a in store.query()] == [second, first]
    assert _events(engine, first) == ["opened", "resolved"]


def test_people_acknowledge_and_resolve_with_who_and_when(engine: Engine) -> None:
    store = AlertStore(engine, [RECEIVER])
    (alert_id,) = store.apply([finding(0)], now=T0).opened
    acked = store.acknowledge(alert_id, "alice", "calling the lessee", now=T0 + timedelta(hours=1))
    assert (acked.status, acked.acknowledged_by) == ("acknowledged", "alice")
    assert acked.acknowledged_at == T0 + timedelta(hours=1)
    with pytest.raises(AlertStateError) as again:
        store.acknowledge(alert_id, "bob")
    assert again.value.code == "alert_already_acknowledged"
    store.apply([finding(30)], now=T0 + timedelta(minutes=30))  # still acknowledged, counted
    assert store.get(alert_id).status == "acknowledged"
    done = store.resolve(alert_id, "alice", "lessee confirmed", now=T0 + timedelta(hours=2))
    assert (done.status, done.resolved_by, done.resolve_note) == (
        "resolved",
        "alice",
        "lessee confirmed",
    )
    with pytest.raises(AlertStateError) as closed:
        store.resolve(alert_id, "bob")
    assert closed.value.code == "alert_already_resolved"
    # evaluated before the person resolved it: stale; evaluated after: a new alert
    assert store.apply([finding(119)], now=T0 + timedelta(hours=2)).ignored == 1
    assert len(store.apply([finding(121)], now=T0 + timedelta(hours=2)).opened) == 1
    assert _events(engine, alert_id) == ["opened", "acknowledged", "resolved"]


def test_separate_keys_devices_and_detectors_are_separate_alerts(engine: Engine) -> None:
    store = AlertStore(engine)
    outcome = store.apply(
        [
            finding(0),
            finding(0, key="shift_hours"),
            finding(0, device="gw-0002"),
            finding(0, detector="silence"),
        ],
        now=T0,
    )
    assert len(outcome.opened) == 4
    assert [a.device for a in store.query(device="gw-0002")] == ["gw-0002"]
    assert len(store.query(detector="utilization", status="open")) == 3
    assert store.query(severity=Severity.CRITICAL) == []
    newest, older = store.query(limit=2), store.query(limit=2, before_id=outcome.opened[2])
    assert [a.id for a in newest + older] == sorted(outcome.opened, reverse=True)


def test_findings_in_a_maintenance_window_are_recorded_suppressed(engine: Engine) -> None:
    calendar = MaintenanceCalendar(engine)
    window = calendar.create(
        "gw-0001",
        starts_at=T0,
        ends_at=T0 + timedelta(hours=1),
        reason="gearbox replacement",
        created_by="ops-bob",
        now=T0,
    )
    store = AlertStore(engine, [RECEIVER])
    outcome = store.apply([finding(10), finding(10, device="gw-0002")], now=T0)
    suppressed, other = outcome.opened
    assert outcome.suppressed == [suppressed]
    alert = store.get(suppressed)
    assert alert.suppressed_by == window.id and not alert.delivered
    assert alert.suppression is not None and "gearbox replacement" in alert.suppression
    assert "ops-bob" in alert.suppression
    assert _events(engine, suppressed) == [] and _events(engine, other) == ["opened"]
    # the condition outlasts the window: the next finding delivers it
    store.apply([finding(70)], now=T0 + timedelta(minutes=70))
    assert store.get(suppressed).suppression is None
    assert _events(engine, suppressed) == ["opened"]


def test_a_suppressed_alert_resolved_in_its_window_is_never_announced(engine: Engine) -> None:
    MaintenanceCalendar(engine).create(
        None,
        starts_at=T0,
        ends_at=T0 + timedelta(hours=1),
        reason="fleet-wide firmware update",
        created_by="ops",
        now=T0,
    )
    store = AlertStore(engine, [RECEIVER])
    (alert_id,) = store.apply([finding(1, device="gw-0003")], now=T0).opened
    store.apply([finding(2, device="gw-0003", state="cleared")], now=T0)
    assert store.get(alert_id).status == "resolved"
    assert _events(engine, alert_id) == []


def test_maintenance_windows_crud_and_validation(engine: Engine) -> None:
    calendar = MaintenanceCalendar(engine)
    window = calendar.create(
        None, starts_at=T0, ends_at=T0 + timedelta(hours=2), reason="r", created_by="a", now=T0
    )
    changed = calendar.replace(
        window.id, "gw-0001", starts_at=T0, ends_at=T0 + timedelta(hours=3), reason="longer"
    )
    assert (changed.device, changed.reason, changed.created_by) == ("gw-0001", "longer", "a")
    assert calendar.windows(device="gw-0002") == []
    assert calendar.windows(ending_after=T0 + timedelta(hours=4)) == []
    with pytest.raises(InvalidWindowError):
        calendar.replace(window.id, None, starts_at=T0, ends_at=T0, reason="x")
    calendar.delete(window.id)
    assert calendar.windows() == []


def test_non_finite_evidence_is_stored_as_missing(engine: Engine) -> None:
    store = AlertStore(engine)
    evidence = {"baseline": math.nan, "observed": math.inf, "note": "x"}
    (alert_id,) = store.apply([finding(0, evidence=evidence)], now=T0).opened
    assert store.get(alert_id).evidence == {"baseline": None, "observed": None, "note": "x"}


def test_two_workers_applying_the_same_findings_count_each_once(engine: Engine) -> None:
    store = AlertStore(engine, [RECEIVER])
    findings = [finding(0, device=f"gw-{n:04d}") for n in range(15)]
    findings += [finding(1, device=f"gw-{n:04d}") for n in range(15)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def worker() -> None:
        try:
            barrier.wait()
            store.apply(findings, now=T0)
        except Exception as err:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(err)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    found = store.query(limit=100)
    assert len(found) == 15
    assert {a.occurrences for a in found} == {2}
    assert Outbox(engine).pending() == 15


def test_detector_state_round_trips_per_device_and_detector(engine: Engine) -> None:
    with engine.begin() as conn:
        assert load_detector_state(conn, "gw-0001", "utilization") is None
        save_detector_state(conn, "gw-0001", "utilization", {"cusum": 1.5, "n": 3}, T0)
        save_detector_state(conn, "gw-0001", "silence", {"last": None}, T0)
    with engine.begin() as conn:
        save_detector_state(conn, "gw-0001", "utilization", {"cusum": 2.5, "n": 4}, T0)
        state = load_detector_state(conn, "gw-0001", "utilization", for_update=True)
    assert state == {"cusum": 2.5, "n": 4}
    with engine.connect() as conn:
        assert set(load_detector_states(conn, "gw-0001")) == {"utilization", "silence"}
