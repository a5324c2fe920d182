"""Lease and lessee scores: monotone in every signal, explained by the injected cause."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.risk.model import Band, RiskScore
from cloud.risk.rules import ScoringRules
from cloud.risk.scoring import REASON_CODES, score_lease, score_lessee
from tests.cloud.risk.conftest import AS_OF, HEALTHY, signals


def test_healthy_lease_is_low_with_no_reasons(rules: ScoringRules) -> None:
    score = score_lease(HEALTHY, rules)
    assert (score.score, score.band, score.reasons) == (0.0, Band.LOW, ())
    assert score.subject == "lease:L-1"
    assert score.model_version == rules.version
    assert score.as_of == AS_OF
    assert score.data_completeness == 0.99


@pytest.mark.parametrize(
    ("changes", "cause"),
    [
        ({"utilization_vs_contract": 0.3}, "utilization_below_contract"),
        (
            {"utilization_vs_baseline": 0.4, "utilization_vs_contract": 0.6},
            "utilization_below_baseline",
        ),
        (
            {"capacity_warnings": 1, "capacity_drop": 0.7, "utilization_vs_baseline": 0.7},
            "capacity_warning",
        ),
        ({"faults_critical": 2, "faults_warning": 1}, "fault_burden"),
        ({"silent_assets": 1, "days_silent": 9.0, "data_completeness": 0.7}, "asset_silent"),
        ({"tamper_events": 1, "silent_assets": 1, "days_silent": 2.0}, "tamper"),
        ({"geofence_breaches": 1}, "geofence_breach"),
        ({"hours_cap_overrun": 0.3}, "hours_cap_overrun"),
    ],
)
def test_top_reason_is_the_injected_cause(
    rules: ScoringRules, changes: dict[str, Any], cause: str
) -> None:
    score = score_lease(signals(**changes), rules)
    assert score.reasons[0].code == cause
    assert score.reasons[0].points > 0.0
    assert score.reasons[0].summary.endswith(".")
    assert score.reasons[0].evidence, "every reason carries the numbers behind it"
    assert score.score == pytest.approx(sum(r.points for r in score.reasons), abs=0.02)
    assert all(r.code in REASON_CODES for r in score.reasons)
    points = [r.points for r in score.reasons]
    assert points == sorted(points, reverse=True)


def test_reason_evidence_holds_the_numbers(rules: ScoringRules) -> None:
    score = score_lease(signals(utilization_vs_contract=0.45), rules)
    (reason,) = score.reasons
    assert reason.evidence["ratio"] == 0.45
    assert "45%" in reason.summary
    assert "28 days" in reason.summary
    # halfway down the ramp (0.7 -> 0.2): half the weight
    assert reason.points == pytest.approx(rules.utilization_vs_contract.weight / 2)


def test_a_deep_decline_with_a_warning_is_high_or_worse(rules: ScoringRules) -> None:
    declined = signals(
        utilization_vs_contract=0.45,
        utilization_vs_baseline=0.45,
        capacity_warnings=1,
        capacity_drop=0.55,
    )
    assert score_lease(declined, rules).band.rank >= Band.HIGH.rank


_WORSE: dict[str, Any] = {
    "utilization_vs_contract": st.floats(0.0, 1.5),
    "utilization_vs_baseline": st.floats(0.0, 1.5),
    "capacity_drop": st.floats(0.0, 1.0),
    "faults_warning": st.integers(0, 10),
    "faults_critical": st.integers(0, 10),
    "days_silent": st.floats(0.0, 60.0),
    "tamper_events": st.integers(0, 5),
    "geofence_breaches": st.integers(0, 5),
    "hours_cap_overrun": st.floats(0.0, 1.0),
    "utilization_vs_prior": st.floats(0.0, 1.5),
    "days_down": st.integers(0, 7),
}
_LOWER_IS_WORSE = {"utilization_vs_contract", "utilization_vs_baseline", "utilization_vs_prior"}


@settings(max_examples=300, deadline=None)
@given(field=st.sampled_from(sorted(_WORSE)), data=st.data())
def test_score_is_monotone_in_every_signal(
    rules: ScoringRules, field: str, data: st.DataObject
) -> None:
    base = signals(
        capacity_warnings=data.draw(st.integers(0, 3)),
        silent_assets=data.draw(st.integers(0, 2)),
        data_completeness=data.draw(st.floats(0.0, 1.0)),
        lease_age_days=data.draw(st.floats(0.0, 900.0)),
    )
    a, b = sorted((data.draw(_WORSE[field]), data.draw(_WORSE[field])))
    better, worse = (b, a) if field in _LOWER_IS_WORSE else (a, b)
    low = score_lease(replace(base, **{field: better}), rules)
    high = score_lease(replace(base, **{field: worse}), rules)
    assert 0.0 <= low.score <= high.score <= 100.0
    assert low.band.rank <= high.band.rank


def test_poor_link_does_not_look_like_an_idle_machine(rules: ScoringRules) -> None:
    idle = signals(utilization_vs_contract=0.3, utilization_vs_baseline=0.3)
    poor_link = replace(idle, data_completeness=0.55)
    no_link = replace(idle, data_completeness=0.3)
    full, discounted, none = (score_lease(s, rules) for s in (idle, poor_link, no_link))
    assert full.score > discounted.score > none.score == 0.0
    assert full.band.rank > discounted.band.rank
    info = next(r for r in discounted.reasons if r.code == "data_incomplete")
    assert info.points == 0.0
    assert info.evidence["completeness"] == 0.55
    assert info.evidence["discount_factor"] == pytest.approx(0.125)
    assert discounted.reasons[-1].code == "data_incomplete"  # informational reasons rank last
    assert "data_incomplete" not in {r.code for r in full.reasons}


def test_discount_leaves_silence_tamper_and_geofence_alone(rules: ScoringRules) -> None:
    events = {"tamper_events": 1, "geofence_breaches": 1, "silent_assets": 1, "days_silent": 5.0}
    complete = score_lease(signals(**events), rules)
    incomplete = score_lease(signals(**events, data_completeness=0.2), rules)
    assert complete.score == incomplete.score > 0.0


def test_new_lease_is_judged_with_care(rules: ScoringRules) -> None:
    low_use = {"utilization_vs_contract": 0.3, "utilization_vs_baseline": 0.3}
    mature = score_lease(signals(**low_use), rules)
    young = score_lease(signals(**low_use, lease_age_days=7.0), rules)
    assert 0.0 < young.score < mature.score
    info = next(r for r in young.reasons if r.code == "limited_history")
    assert info.evidence["lease_age_days"] == 7.0
    assert info.evidence["discount_factor"] == rules.history.min_factor
    tamper = {"tamper_events": 1}
    assert score_lease(signals(**tamper, lease_age_days=3.0), rules).score == pytest.approx(
        score_lease(signals(**tamper), rules).score
    )


def _lease(rules: ScoringRules, lease_id: str, **changes: Any) -> RiskScore:
    return score_lease(signals(lease_id=lease_id, **changes), rules)


def test_lessee_is_its_worst_lease_plus_breadth(rules: ScoringRules) -> None:
    worst = _lease(rules, "L-1", tamper_events=1, geofence_breaches=1)
    high = _lease(rules, "L-2", utilization_vs_baseline=0.35, utilization_vs_contract=0.2)
    healthy = [_lease(rules, f"L-{n}") for n in range(3, 5)]
    assert high.band is Band.HIGH or high.band is Band.CRITICAL
    alone = score_lessee("C-1", [worst, *healthy], rules, AS_OF)
    spread = score_lessee("C-1", [worst, high, *healthy], rules, AS_OF)
    assert alone.score == worst.score
    assert alone.reasons[0].code == "worst_lease"
    assert alone.reasons[0].evidence["lease"] == "lease:L-1"
    assert alone.reasons[0].evidence["top_reason"] == worst.reasons[0].code
    expected = min(100.0, worst.score + rules.lessee.breadth_points / 3)
    assert spread.score == pytest.approx(expected, abs=0.01)
    breadth = next(r for r in spread.reasons if r.code == "leases_at_risk")
    assert breadth.evidence == {"leases_at_risk": 1, "other_leases": 3}
    assert spread.subject == "lessee:C-1"
    assert spread.data_completeness == pytest.approx(0.99)


def test_lessee_without_leases_and_with_future_scores(rules: ScoringRules) -> None:
    empty = score_lessee("C-9", [], rules, AS_OF)
    assert (empty.score, empty.band, empty.reasons[0].code) == (0.0, Band.LOW, "no_leases")
    future = score_lease(signals(as_of=AS_OF + timedelta(days=1)), rules)
    with pytest.raises(ValueError, match="dated after"):
        score_lessee("C-1", [future], rules, AS_OF)


def test_without_peer_figures_the_ratios_score_as_they_are(rules: ScoringRules) -> None:
    lease = signals(utilization_vs_baseline=0.5)
    reason = {r.code: r for r in score_lease(lease, rules).reasons}["utilization_below_baseline"]
    assert reason.evidence["season_adjusted_ratio"] == reason.evidence["ratio"] == 0.5
    ramp = rules.utilization_vs_baseline
    assert reason.points == pytest.approx(40.0 * (ramp.ok - 0.5) / (ramp.ok - 0.35), abs=0.01)


def test_a_laid_up_peer_group_suspends_the_use_ratios(rules: ScoringRules) -> None:
    laid_up = {"peer_utilization_vs_contract": 0.35, "peer_utilization_vs_baseline": 0.25}
    lease = signals(
        utilization_vs_contract=0.3, utilization_vs_baseline=0.3, peer_group_size=140, **laid_up
    )
    score = score_lease(lease, rules)
    assert score.score == 0.0
    note = {r.code: r for r in score.reasons}["peer_group_dip"]
    assert note.evidence == {"peer_ratio": 0.25, "peer_group_size": 140}
    assert "140 assets" in note.summary


def test_sustained_points_grow_with_weeks_and_depth(rules: ScoringRules) -> None:
    def points(weeks: int, use: float) -> float:
        lease = signals(weeks_below_baseline=weeks, sustained_use=use)
        found = {r.code: r.points for r in score_lease(lease, rules).reasons}
        return found.get("sustained_decline", 0.0)

    assert points(1, 0.2) == 0.0
    assert 0.0 < points(2, 0.6) < points(4, 0.6) < points(4, 0.3) < points(5, 0.3)
    assert points(5, 0.3) == points(9, 0.3) == rules.sustained_decline.weight


def test_a_capacity_warning_keeps_the_drop_the_recent_baseline_absorbed(
    rules: ScoringRules,
) -> None:
    late = signals(capacity_warnings=1, capacity_drop=0.02, utilization_vs_baseline=0.98)
    absorbed = replace(late, utilization_vs_prior=0.45)  # 55% down against the older baseline
    found = {r.code: r for r in score_lease(absorbed, rules).reasons}["capacity_warning"]
    assert found.evidence["drop_vs_prior"] == 0.55
    assert found.evidence["season_adjusted_drop"] == 0.55
    rule = rules.capacity_warning
    assert found.points == pytest.approx(rule.weight * rule.share(0.55), abs=0.01)
    # no drop visible on either baseline: the open warning still carries its floor
    back = replace(late, utilization_vs_prior=0.97)
    floor = {r.code: r for r in score_lease(back, rules).reasons}["capacity_warning"]
    assert floor.points == pytest.approx(rule.weight * rule.floor, abs=0.01)
    assert found.points > floor.points


def test_abrupt_drop_points_grow_with_the_days_down(rules: ScoringRules) -> None:
    def points(days: int) -> float:
        found = {r.code: r.points for r in score_lease(signals(days_down=days), rules).reasons}
        return found.get("abrupt_drop", 0.0)

    assert rules.abrupt_drop is not None
    assert points(0) == points(1) == 0.0  # one day down is noise
    assert 0.0 < points(2) < points(3) == points(6) == rules.abrupt_drop.weight
