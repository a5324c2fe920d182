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
