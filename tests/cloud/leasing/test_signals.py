"""Signals of a lease on labelled data: decline, silence, completeness, alerts, hours cap, as-of."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cloud.alerts.signals import Severity
from cloud.leasing.assessment import RiskAssessor
from cloud.leasing.store import LeasingStore
from cloud.risk.calendars import year_holidays
from cloud.risk.portfolio import capacity_drop
from cloud.risk.rules import load_rules
from cloud.risk.scoring import score_lease
from cloud.state import StateStore
from tests.cloud.leasing.conftest import AS_OF, STARTS, days_before, feed, make_lease, open_alert

DAYS = 42


def _signals(state: StateStore, lease_id: str, as_of=AS_OF):  # type: ignore[no-untyped-def]
    with state.engine.connect() as conn:
        return (
            RiskAssessor(state.engine, load_rules()).lease(conn, lease_id, as_of).leases[0].signals
        )


def test_a_steady_lease_reads_as_agreed_with_complete_data(state: StateStore) -> None:
    make_lease(LeasingStore(state.engine), "LS-1", ["gw-0001"])
    feed(state, "gw-0001", [(d, 8.0) for d in days_before(AS_OF, DAYS)])
    s = _signals(state, "LS-1")
    assert s.assets == 1
    assert s.utilization_vs_contract == pytest.approx(1.0, abs=0.01)
    assert s.utilization_vs_baseline == pytest.approx(1.0, abs=0.01)
    assert (s.silent_assets, s.days_silent) == (0, 0.0)
    assert s.data_completeness == pytest.approx(1.0)
    assert (s.capacity_warnings, s.faults_warning, s.tamper_events, s.geofence_breaches) == (
        0, 0, 0, 0,
    )  # fmt: skip
    assert s.lease_age_days == pytest.approx((AS_OF.date() - STARTS).days)


def test_a_decline_shows_against_the_baseline_and_the_contract(state: StateStore) -> None:
    make_lease(LeasingStore(state.engine), "LS-1", ["gw-0001"])
    days = days_before(AS_OF, DAYS)
    feed(state, "gw-0001", [(d, 8.0 if i < DAYS - 14 else 2.0) for i, d in enumerate(days)])
    s = _signals(state, "LS-1")
    assert s.utilization_vs_baseline == pytest.approx(0.25, abs=0.01)
    # the backtest's 28-day window: 14 days at 8 h and 14 at 2 h against 8 h a day
    assert s.utilization_vs_contract == pytest.approx((14 * 8 + 14 * 2) / (28 * 8), abs=0.01)
    before = _signals(state, "LS-1", AS_OF - timedelta(days=14))
    # before the drop: 28 days at 8 h judged against the contract; a baseline ratio needs 28
    # judged days before the recent 14, which that as-of does not have yet
    assert before.utilization_vs_contract == pytest.approx(1.0, abs=0.01)
    assert before.utilization_vs_baseline is None


def test_a_silent_asset_is_counted_with_how_long(state: StateStore) -> None:
    make_lease(LeasingStore(state.engine), "LS-1", ["gw-0001", "gw-0002"])
    days = days_before(AS_OF, DAYS)
    feed(state, "gw-0001", [(d, 8.0) for d in days])
    feed(state, "gw-0002", [(d, 8.0) for d in days[:-5]])  # quiet for the last five days
    s = _signals(state, "LS-1")
    assert s.silent_assets == 1
    assert s.days_silent == pytest.approx(5.0, abs=0.05)
    assert s.utilization_vs_baseline == pytest.approx(1.0, abs=0.01)  # silence is not idling


def test_completeness_comes_from_the_ledger_and_gaps_are_not_idle_hours(
    state: StateStore,
) -> None:
    make_lease(LeasingStore(state.engine), "LS-1", ["gw-0001"])
    feed(state, "gw-0001", [(d, 8.0) for d in days_before(AS_OF, DAYS)], skip_every=4)
    s = _signals(state, "LS-1")
    assert s.data_completeness == pytest.approx(0.75, abs=0.01)
    assert s.utilization_vs_baseline == pytest.approx(1.0, abs=0.05)
    assert s.utilization_vs_contract == pytest.approx(1.0, abs=0.05)  # 18 h known of 24


def test_a_lossy_link_is_not_under_utilised_but_an_idle_asset_is(state: StateStore) -> None:
    """Half of every day's messages lost while the machine runs, against one that stood."""
    leasing = LeasingStore(state.engine)
    make_lease(leasing, "LS-1", ["gw-0001"])
    make_lease(leasing, "LS-2", ["gw-0002"])
    days = days_before(AS_OF, DAYS)
    feed(state, "gw-0001", [(d, 8.0) for d in days], skip_every=2)  # 4 of 8 running hours seen
    feed(state, "gw-0002", [(d, 8.0 if i < DAYS - 28 else 2.0) for i, d in enumerate(days)])
    rules = load_rules()
    with state.engine.connect() as conn:
        assessor = RiskAssessor(state.engine, rules)
        lossy, idle = (assessor.lease(conn, lease, AS_OF) for lease in ("LS-1", "LS-2"))
    poor_link, stood = lossy.leases[0].signals, idle.leases[0].signals
    assert poor_link.data_completeness == pytest.approx(0.5, abs=0.01)
    assert poor_link.utilization_vs_contract == pytest.approx(1.0, abs=0.01)
    assert poor_link.utilization_vs_baseline == pytest.approx(1.0, abs=0.01)
    assert poor_link.days_down == 0
    # without the completeness discount the lossy link still scores nothing for use
    trusting = rules.model_copy(update={"completeness": rules.completeness.model_copy(
        update={"reliable": 0.01, "unreliable": 0.0})})  # fmt: skip
    codes = {r.code for r in score_lease(poor_link, trusting).reasons}
    assert not codes & {"utilization_below_contract", "utilization_below_baseline"}, codes
    assert stood.data_completeness == pytest.approx(1.0)
    assert stood.utilization_vs_contract == pytest.approx(0.25, abs=0.01)
    top = idle.score.reasons[0]
    assert top.code in {"utilization_below_contract", "utilization_below_baseline"}
    assert "utilization_below_contract" in {r.code for r in idle.score.reasons}


def test_open_alerts_count_by_detector_and_severity(state: StateStore) -> None:
    make_lease(LeasingStore(state.engine), "LS-1", ["gw-0001"])
    feed(state, "gw-0001", [(d, 8.0) for d in days_before(AS_OF, DAYS)])
    open_alert(state, "gw-0001", "utilization", "decline", magnitude=0.4)
    open_alert(state, "gw-0001", "faults", "bearing", severity=Severity.CRITICAL)
    open_alert(state, "gw-0001", "faults", "temperature")
    open_alert(state, "gw-0001", "silence", "sensors_removed", severity=Severity.CRITICAL)
    open_alert(state, "gw-0001", "geofence", "region", severity=Severity.CRITICAL)
    open_alert(state, "gw-0001", "faults", "late", at=AS_OF + timedelta(hours=1))  # after as_of
    s = _signals(state, "LS-1")
    # the drop is the backtest's (1 - use vs baseline: steady use, none), not the alert's 0.4
    assert (s.capacity_warnings, s.capacity_drop) == (1, pytest.approx(0.0, abs=0.01))
    assert (s.faults_warning, s.faults_critical) == (1, 1)
    assert (s.tamper_events, s.geofence_breaches) == (1, 1)
    earlier = _signals(state, "LS-1", AS_OF - timedelta(days=3))
    assert (earlier.capacity_warnings, earlier.faults_critical, earlier.tamper_events) == (0, 0, 0)


def test_a_capacity_warnings_drop_is_the_backtests(state: StateStore) -> None:
    """One definition: 1 - use vs baseline when a warning is open, as `Portfolio` computes it."""
    make_lease(LeasingStore(state.engine), "LS-1", ["gw-0001"])
    days = days_before(AS_OF, DAYS)
    feed(state, "gw-0001", [(d, 8.0 if i < DAYS - 14 else 3.0) for i, d in enumerate(days)])
    assert _signals(state, "LS-1").capacity_drop is None  # no warning open: no drop
    open_alert(state, "gw-0001", "utilization", "decline", magnitude=0.2)
    s = _signals(state, "LS-1")
    assert s.utilization_vs_baseline is not None
    assert s.capacity_drop == pytest.approx(capacity_drop(1, s.utilization_vs_baseline))
    assert s.capacity_drop == pytest.approx(1.0 - 3.0 / 8.0, abs=0.05)


def test_hours_beyond_the_monthly_cap_are_an_overrun(state: StateStore) -> None:
    make_lease(LeasingStore(state.engine), "LS-1", ["gw-0001"], hours_cap_per_month=200.0)
    feed(state, "gw-0001", [(d, 10.0) for d in days_before(AS_OF, DAYS)])
    s = _signals(state, "LS-1")
    assert s.hours_cap_overrun == pytest.approx((10 * 30.4375 - 200) / 200, abs=0.01)


def test_a_regional_holiday_is_no_drop_in_its_region_but_is_elsewhere(state: StateStore) -> None:
    """Idle on Corpus Christi (4 June 2026): kept in North Rhine-Westphalia, not Lower Saxony."""
    as_of = datetime(2026, 6, 8, tzinfo=UTC)
    kept = year_holidays("DE-NW", 2026)
    days = [(d, 8.0 if d.weekday() == 3 and d not in kept else 0.0) for d in days_before(as_of, 70)]
    leasing = LeasingStore(state.engine)
    for lease_id, region in (("LS-NW", "DE-NW"), ("LS-NI", "DE-NI")):
        device = f"gw-{region.lower()}"
        make_lease(leasing, lease_id, [device], region=region, expected_hours_per_day=None)
        feed(state, device, days, daily=True)
    with state.engine.connect() as conn:
        assessor = RiskAssessor(state.engine, load_rules())
        there, elsewhere = (assessor.lease(conn, lease_id, as_of).leases[0]
                            for lease_id in ("LS-NW", "LS-NI"))  # fmt: skip
    assert there.signals.utilization_vs_baseline == pytest.approx(1.0)
    assert elsewhere.signals.utilization_vs_baseline == pytest.approx(0.5)
    assert not [r for r in there.score.reasons if r.points > 0]
    assert elsewhere.score.reasons[0].code == "utilization_below_baseline"


def test_each_assets_own_figures_say_which_machine_it_is(state: StateStore) -> None:
    make_lease(LeasingStore(state.engine), "LS-1", ["gw-0001", "gw-0002"])
    days = days_before(AS_OF, DAYS)
    feed(state, "gw-0001", [(d, 8.0) for d in days], skip_every=4)
    feed(state, "gw-0002", [(d, 6.0) for d in days[:-5]])  # quiet for the last five days
    open_alert(state, "gw-0002", "faults", "bearing", severity=Severity.CRITICAL)
    with state.engine.connect() as conn:
        (assessed,) = RiskAssessor(state.engine, load_rules()).lease(conn, "LS-1", AS_OF).leases
    busy, quiet = assessed.assets
    assert (busy.device, quiet.device) == ("gw-0001", "gw-0002")
    assert busy.data_completeness == pytest.approx(0.75, abs=0.01)
    assert busy.hours_with_data == pytest.approx(30 * 24 * 0.75, abs=2)
    assert busy.last_data_at is not None and AS_OF - busy.last_data_at <= timedelta(hours=1)
    assert busy.open_alerts == ()
    assert quiet.last_data_at == AS_OF - timedelta(days=5)
    assert quiet.running_hours == pytest.approx(25 * 6.0, abs=0.5)  # 25 of the 30 days ran
    assert quiet.open_alerts == ("faults/bearing (critical)",)
    assert assessed.signals.silent_assets == 1
