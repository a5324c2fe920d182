"""Repayment outcomes: drawn from the incidents, deterministic for a seed, honest about noise."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from firmware_sim.repayment import (
    Label,
    LabelFileError,
    RepaymentModel,
    arrears_causes,
    arrears_chance,
    draw_outcomes,
    read_labels,
)

START = datetime(2025, 1, 6, tzinfo=UTC)
WINDOW = (START, START + timedelta(days=365))


def _decline(lease: str, magnitude: float, day: int = 60) -> Label:
    start = (START + timedelta(days=day)).isoformat().replace("+00:00", "Z")
    return {"lease": lease, "kind": "utilization_decline", "start": start, "magnitude": magnitude}


def _leases(n: int) -> list[str]:
    return [f"L-{i:04d}" for i in range(n)]


def test_same_seed_same_outcomes_other_seed_other_outcomes() -> None:
    leases = _leases(400)
    labels = [_decline(lease, 0.5) for lease in leases[:200]]
    first = draw_outcomes(leases, labels, WINDOW, seed=1)
    assert draw_outcomes(leases, labels, WINDOW, seed=1) == first
    other = draw_outcomes(leases, labels, WINDOW, seed=2)
    assert {k: v.arrears_at for k, v in other.items()} != {
        k: v.arrears_at for k, v in first.items()
    }


def test_arrears_rise_with_the_decline_and_follow_it() -> None:
    leases = _leases(3000)
    model = RepaymentModel(base_annual_rate=0.0)
    rates = []
    for magnitude in (0.2, 0.5, 0.8):
        labels = [_decline(lease, magnitude) for lease in leases]
        outcomes = draw_outcomes(leases, labels, WINDOW, seed=5, model=model).values()
        hit = [o for o in outcomes if o.arrears_at is not None]
        rates.append(len(hit) / len(leases))
        low, high = model.decline_lag_days
        for outcome in hit:
            assert outcome.cause == "utilization_decline"
            lag = (outcome.arrears_at - (START + timedelta(days=60))).days  # type: ignore[operator]
            assert low - 1 <= lag <= high
    expected = [model.decline_base + model.decline_slope * m for m in (0.2, 0.5, 0.8)]
    assert rates == pytest.approx(expected, abs=0.04)
    assert rates[0] < rates[1] < rates[2]


def test_healthy_leases_mostly_pay_and_noise_is_there() -> None:
    leases = _leases(5000)
    dips = [
        {"lease": lease, "kind": "seasonal_dip", "start": "2025-12-18T00:00:00Z", "magnitude": 0.85}
        for lease in leases
    ]
    outcomes = draw_outcomes(leases, dips, WINDOW, seed=3).values()
    arrears = [o for o in outcomes if o.arrears_at is not None]
    assert {o.cause for o in arrears} == {"base_rate"}
    assert len(arrears) / len(leases) == pytest.approx(RepaymentModel().base_annual_rate, abs=0.01)


def test_arrears_after_the_scenario_are_not_observed() -> None:
    late = _decline("L-1", 0.8, day=364)
    model = RepaymentModel(decline_base=1.0, base_annual_rate=0.0)
    (outcome,) = draw_outcomes(["L-1"], [late], WINDOW, seed=1, model=model).values()
    assert (outcome.arrears_at, outcome.cause) == (None, "none")


def test_read_labels(tmp_path: Path) -> None:
    path = tmp_path / "labels.jsonl"
    path.write_text(json.dumps(_decline("L-1", 0.4)) + "\n\n", encoding="utf-8")
    assert read_labels(path) == [_decline("L-1", 0.4)]
    path.write_text('{"lease": "L-1"}\n', encoding="utf-8")
    with pytest.raises(LabelFileError, match=r"labels.jsonl:1: a label needs"):
        read_labels(path)
    path.write_text("{nope\n", encoding="utf-8")
    with pytest.raises(LabelFileError, match=r"labels.jsonl:1: not JSON"):
        read_labels(path)


def _tamper(lease: str, day: int) -> Label:
    start = (START + timedelta(days=day)).isoformat().replace("+00:00", "Z")
    return {"lease": lease, "kind": "tamper", "start": start}


@pytest.mark.parametrize(("as_of_day", "horizon_days"), [(100, 90), (140, 30), (200, 60)])
def test_arrears_chance_is_what_the_draws_give(as_of_day: int, horizon_days: int) -> None:
    """The latent hazard the oracle knows matches the frequency the sampler draws."""
    leases = _leases(6000)
    mine = [_decline("x", 0.5, day=60), _tamper("x", 110)]
    labels = [dict(label, lease=lease) for lease in leases for label in mine]
    outcomes = draw_outcomes(leases, labels, WINDOW, seed=11).values()
    as_of = START + timedelta(days=as_of_day)
    horizon = timedelta(days=horizon_days)
    paying = [o for o in outcomes if o.arrears_at is None or o.arrears_at > as_of]
    hit = [o for o in paying if o.arrears_at is not None and o.arrears_at <= as_of + horizon]
    causes = arrears_causes(mine, WINDOW, RepaymentModel())
    assert {c.kind for c in causes} == {"base_rate", "utilization_decline", "tamper"}
    chance = arrears_chance(causes, as_of, horizon)
    assert len(hit) / len(paying) == pytest.approx(chance, abs=0.025)
    assert 0.0 < chance < 1.0


def test_the_as_of_oracle_knows_only_incidents_begun() -> None:
    causes = arrears_causes([_tamper("x", 110)], WINDOW, RepaymentModel())
    before, after = START + timedelta(days=100), START + timedelta(days=120)
    horizon = timedelta(days=90)
    clean = arrears_causes([], WINDOW, RepaymentModel())
    # before the tamper the as-of oracle sees only the base rate, like a clean lease's
    assert arrears_chance(causes, before, horizon, known_by=before) == pytest.approx(
        arrears_chance(clean, before, horizon)
    )
    assert arrears_chance(causes, before, horizon) > arrears_chance(clean, before, horizon)
    assert arrears_chance(causes, after, horizon, known_by=after) > 0.5
    # seasonal dips and faults add nothing
    dip = {"lease": "x", "kind": "seasonal_dip", "start": "2025-12-18T00:00:00Z"}
    assert [c.kind for c in arrears_causes([dip], WINDOW, RepaymentModel())] == ["base_rate"]
