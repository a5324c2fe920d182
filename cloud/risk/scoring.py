"""Score a lease from its signals, and a lessee from its leases' scores: pure, fast, explained.

A lease's score is the sum of its signals' points (see `rules.toml`), capped at 100. Each signal
with points becomes a `Reason` with a one-sentence summary and the numbers behind it; reasons
are ranked by points. Use ratios are judged against the peer group's (a season dips the whole
group); a group laid up suspends them (`peer_group_dip`, 0 points). Utilization-based points
(vs contract, vs baseline, sustained and abrupt drops, capacity warnings) are
scaled down when the data is incomplete (a poor link must not look like an idle machine) and
for young leases (little history to judge); either shows as an informational reason (0 points).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from cloud.risk.model import Band, LeaseSignals, Reason, RiskScore
from cloud.risk.rules import Ramp, ScoringRules

Evidence = dict[str, str | int | float | bool | None]

#: Reason codes a score can carry (stable: the credit system keys on them).
REASON_CODES = (
    "utilization_below_contract",
    "utilization_below_baseline",
    "capacity_warning",
    "sustained_decline",
    "abrupt_drop",
    "peer_group_dip",
    "fault_burden",
    "asset_silent",
    "tamper",
    "geofence_breach",
    "hours_cap_overrun",
    "data_incomplete",
    "limited_history",
    "worst_lease",
    "leases_at_risk",
    "no_leases",
)


def lease_subject(lease_id: str) -> str:
    """The subject of a lease's score."""
    return f"lease:{lease_id}"


def lessee_subject(lessee_id: str) -> str:
    """The subject of a lessee's score."""
    return f"lessee:{lessee_id}"


def _count(key: str, value: int) -> Evidence:
    return {key: value}


def _pct(share: float) -> str:
    return f"{share * 100:.0f}%"


def _ratio_reason(
    code: str, ramp: Ramp, ratios: tuple[float | None, float | None], factor: float, summary: str
) -> Reason | None:
    """A reason for a (season-adjusted) utilization ratio below its ramp's `ok`."""
    ratio, adjusted = ratios
    if adjusted is None or ratio is None:
        return None
    points = ramp.weight * ramp.share(adjusted) * factor
    if points <= 0.0:
        return None
    evidence: Evidence = {
        "ratio": round(ratio, 3),
        "season_adjusted_ratio": round(adjusted, 3),
        "ok": ramp.ok,
        "discount_factor": factor,
    }
    return Reason(code, points, summary.format(pct=_pct(ratio), adj=_pct(adjusted)), evidence)


def _peer_note(s: LeaseSignals, paused: bool, peer: float | None) -> Reason | None:
    """Informational: the peer group was laid up, so use-based ratios were not judged."""
    if not paused or peer is None:
        return None
    summary = (
        f"The peer group ({s.peer_group_size} assets of the same type and region) ran at "
        f"{_pct(peer)} of its baseline: the season, not the lessee; use ratios not judged."
    )
    evidence: Evidence = {"peer_ratio": round(peer, 3), "peer_group_size": s.peer_group_size}
    return Reason("peer_group_dip", 0.0, summary, evidence)


def _sustained_reason(s: LeaseSignals, rules: ScoringRules, factor: float) -> Reason | None:
    """Weeks of use below baseline: a sustained drop, not a dip."""
    points = rules.sustained_decline.points(s.weeks_below_baseline, s.sustained_use) * factor
    if points <= 0.0:
        return None
    use = s.sustained_use or 0.0
    summary = (
        f"Use has stayed below 80% of its baseline for {s.weeks_below_baseline} week(s) "
        f"running, at {_pct(use)} of it (season-adjusted)."
    )
    evidence: Evidence = {
        "weeks": s.weeks_below_baseline,
        "use_vs_baseline": round(use, 3),
        "discount_factor": factor,
    }
    return Reason("sustained_decline", points, summary, evidence)


def _abrupt_reason(s: LeaseSignals, rules: ScoringRules, factor: float) -> Reason | None:
    """The last working days each well below the asset's usual hours: an abrupt drop."""
    ramp = rules.abrupt_drop
    if ramp is None or s.days_down <= 0:
        return None
    points = ramp.weight * ramp.share(s.days_down) * factor
    if points <= 0.0:
        return None
    summary = (
        f"The last {s.days_down} working day(s) each ran under half the hours the assets' "
        "weekly pattern expects (season-adjusted): an abrupt drop."
    )
    evidence: Evidence = {"days": s.days_down, "discount_factor": factor}
    return Reason("abrupt_drop", points, summary, evidence)


def _capacity_reason(s: LeaseSignals, rules: ScoringRules, factor: float) -> Reason | None:
    """Open capacity warnings, by the drop judged against the peers (a season is not a drop).

    The drop is the larger of the 14 days' against the 56 before (over the peers') and the
    same days' against the baseline before the quarter (`utilization_vs_prior`, season-adjusted
    week by week): late in a decline the 56 days have absorbed it, the older baseline has not.
    Any open warning carries at least the floor: the detector saw a drop the ratios may not.
    """
    if s.capacity_warnings <= 0:
        return None
    rule = rules.capacity_warning
    drop = s.capacity_drop or 0.0
    level, paused = rules.peers.adjusted(1.0 - drop, s.peer_utilization_vs_baseline)
    adjusted = 0.0 if level is None or paused else max(0.0, 1.0 - level)
    prior = None if s.utilization_vs_prior is None else max(0.0, 1.0 - s.utilization_vs_prior)
    if prior is not None and not paused:
        adjusted = max(adjusted, prior)
    points = rule.weight * max(rule.floor, rule.share(adjusted)) * factor
    summary = (
        f"{s.capacity_warnings} open capacity warning(s): use fell by up to {_pct(adjusted)} "
        "against its baselines (season-adjusted) and stayed down."
    )
    evidence: Evidence = {
        "warnings": s.capacity_warnings,
        "largest_drop": round(drop, 3),
        "drop_vs_prior": None if prior is None else round(prior, 3),
        "season_adjusted_drop": round(adjusted, 3),
        "discount_factor": factor,
    }
    return Reason("capacity_warning", points, summary, evidence)


def _usage_reasons(s: LeaseSignals, rules: ScoringRules, factor: float) -> list[Reason]:
    """Use vs contract and baseline (against the peers), sustained drops, capacity warnings."""
    factor = round(factor, 3)
    contract, contract_paused = rules.peers.adjusted(
        s.utilization_vs_contract, s.peer_utilization_vs_contract
    )
    baseline, baseline_paused = rules.peers.adjusted(
        s.utilization_vs_baseline, s.peer_utilization_vs_baseline
    )
    found = [
        _ratio_reason(
            "utilization_below_contract",
            rules.utilization_vs_contract,
            (s.utilization_vs_contract, contract),
            factor,
            f"The assets ran {{pct}} of the hours the contract expects over the last "
            f"{s.window_days} days ({{adj}} against their peers').",
        ),
        _ratio_reason(
            "utilization_below_baseline",
            rules.utilization_vs_baseline,
            (s.utilization_vs_baseline, baseline),
            factor,
            "Use in the last 14 days was {pct} of the assets' own baseline "
            "({adj} against their peers').",
        ),
        _sustained_reason(s, rules, factor),
        _abrupt_reason(s, rules, factor),
        _capacity_reason(s, rules, factor),
        _peer_note(s, baseline_paused or contract_paused, _paused_peer(s, baseline_paused)),
    ]
    return [r for r in found if r is not None]


def _paused_peer(s: LeaseSignals, baseline_paused: bool) -> float | None:
    return s.peer_utilization_vs_baseline if baseline_paused else s.peer_utilization_vs_contract


def _fault_reason(s: LeaseSignals, rules: ScoringRules) -> Reason | None:
    rule = rules.faults
    raw = s.faults_warning * rule.warning_points + s.faults_critical * rule.critical_points
    if raw <= 0.0:
        return None
    summary = (
        f"{s.faults_critical} critical and {s.faults_warning} warning fault alert(s) are open."
    )
    evidence: Evidence = {"critical": s.faults_critical, "warning": s.faults_warning}
    return Reason("fault_burden", min(raw, rule.max_points), summary, evidence)


def _silence_reasons(s: LeaseSignals, rules: ScoringRules) -> list[Reason]:
    found: list[Reason] = []
    if s.silent_assets > 0:
        points = rules.silence.weight * rules.silence.share(s.days_silent)
        if points > 0.0:
            summary = (
                f"{s.silent_assets} asset(s) silent, the longest for {s.days_silent:.1f} days."
            )
            evidence: Evidence = {
                "silent_assets": s.silent_assets,
                "days_silent": round(s.days_silent, 2),
            }
            found.append(Reason("asset_silent", points, summary, evidence))
    if s.tamper_events > 0:
        rule = rules.tamper
        points = min(s.tamper_events * rule.points_per_event, rule.max_points)
        summary = f"{s.tamper_events} removal or tamper event(s) on the lease's assets."
        found.append(Reason("tamper", points, summary, _count("events", s.tamper_events)))
    return found


def _contract_reasons(s: LeaseSignals, rules: ScoringRules) -> list[Reason]:
    found: list[Reason] = []
    if s.geofence_breaches > 0:
        rule = rules.geofence
        points = min(s.geofence_breaches * rule.points_per_breach, rule.max_points)
        summary = f"{s.geofence_breaches} asset(s) outside the lease's permitted region."
        found.append(
            Reason("geofence_breach", points, summary, _count("breaches", s.geofence_breaches))
        )
    points = rules.hours_cap.weight * rules.hours_cap.share(s.hours_cap_overrun)
    if points > 0.0:
        summary = f"The assets ran {_pct(s.hours_cap_overrun)} beyond the contract's hours cap."
        evidence: Evidence = {"overrun": round(s.hours_cap_overrun, 3)}
        found.append(Reason("hours_cap_overrun", points, summary, evidence))
    return found


def _info_reasons(s: LeaseSignals, rules: ScoringRules) -> list[Reason]:
    """Data completeness and lease age: no points, but they say how far to trust the score."""
    found: list[Reason] = []
    completeness = s.data_completeness
    if completeness is not None and completeness < rules.completeness.reliable:
        factor = rules.completeness.factor(completeness)
        summary = (
            f"Only {_pct(completeness)} of expected data arrived; utilization-based points "
            f"count {_pct(factor)}."
        )
        evidence: Evidence = {
            "completeness": round(completeness, 3),
            "discount_factor": round(factor, 3),
        }
        found.append(Reason("data_incomplete", 0.0, summary, evidence))
    if s.lease_age_days < rules.history.full_days:
        factor = rules.history.factor(s.lease_age_days)
        summary = (
            f"The lease is {s.lease_age_days:.0f} days old; utilization-based points count "
            f"{_pct(factor)}."
        )
        evidence = {
            "lease_age_days": round(s.lease_age_days, 1),
            "discount_factor": factor,
        }
        found.append(Reason("limited_history", 0.0, summary, evidence))
    return found


def lease_reasons(signals: LeaseSignals, rules: ScoringRules) -> list[Reason]:
    """Every reason behind a lease's score, unranked (informational ones last)."""
    factor = rules.completeness.factor(signals.data_completeness) * rules.history.factor(
        signals.lease_age_days
    )
    reasons = _usage_reasons(signals, rules, factor)
    if (fault := _fault_reason(signals, rules)) is not None:
        reasons.append(fault)
    reasons += _silence_reasons(signals, rules)
    reasons += _contract_reasons(signals, rules)
    return reasons + _info_reasons(signals, rules)


def _ranked(reasons: list[Reason]) -> tuple[Reason, ...]:
    rounded = [Reason(r.code, round(r.points, 2), r.summary, r.evidence) for r in reasons]
    return tuple(sorted(rounded, key=lambda r: -r.points))


def score_lease(signals: LeaseSignals, rules: ScoringRules) -> RiskScore:
    """A lease's score (0-100), band and reasons ranked by contribution."""
    reasons = lease_reasons(signals, rules)
    score = round(min(100.0, sum(r.points for r in reasons)), 2)
    return RiskScore(
        subject=lease_subject(signals.lease_id),
        as_of=signals.as_of,
        score=score,
        band=rules.bands.band(score),
        reasons=_ranked(reasons),
        model_version=rules.version,
        data_completeness=signals.data_completeness,
    )


def _mean_completeness(scores: Sequence[RiskScore]) -> float | None:
    known = [s.data_completeness for s in scores if s.data_completeness is not None]
    return sum(known) / len(known) if known else None


def _worst_reason(worst: RiskScore) -> Reason:
    top = worst.reasons[0] if worst.reasons else None
    because = f": {top.summary}" if top is not None and top.points > 0.0 else "."
    summary = f"{worst.subject} scores {worst.score:.0f} ({worst.band}){because}"
    evidence: Evidence = {
        "lease": worst.subject,
        "score": worst.score,
        "band": str(worst.band),
        "top_reason": None if top is None else top.code,
    }
    return Reason("worst_lease", worst.score, summary, evidence)


def score_lessee(
    lessee_id: str, lease_scores: Sequence[RiskScore], rules: ScoringRules, as_of: datetime
) -> RiskScore:
    """A lessee's score: its worst lease, plus breadth points for other leases at high or worse."""
    if late := [s.subject for s in lease_scores if s.as_of > as_of]:
        raise ValueError(f"lease scores dated after {as_of.isoformat()}: {', '.join(late)}")
    subject = lessee_subject(lessee_id)
    if not lease_scores:
        none = Reason("no_leases", 0.0, "The lessee has no leases to score.", {})
        return RiskScore(subject, as_of, 0.0, Band.LOW, (none,), rules.version, None)
    worst = max(lease_scores, key=lambda s: s.score)
    others = [s for s in lease_scores if s is not worst]
    at_risk = sum(1 for s in others if s.band.rank >= Band.HIGH.rank)
    reasons = [_worst_reason(worst)]
    if at_risk:
        points = rules.lessee.breadth_points * at_risk / len(others)
        summary = f"{at_risk} of the lessee's {len(others)} other lease(s) are at high or worse."
        evidence: Evidence = {"leases_at_risk": at_risk, "other_leases": len(others)}
        reasons.append(Reason("leases_at_risk", points, summary, evidence))
    score = round(min(100.0, sum(r.points for r in reasons)), 2)
    return RiskScore(
        subject=subject,
        as_of=as_of,
        score=score,
        band=rules.bands.band(score),
        reasons=_ranked(reasons),
        model_version=rules.version,
        data_completeness=_mean_completeness(lease_scores),
    )
