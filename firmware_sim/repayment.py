"""Repayment outcomes of a simulated portfolio: which leases fall into arrears, and when.

The outcome of a lease is drawn from the scenario's ground truth (the incidents its labels
describe), never from what any detector saw, so a backtest can ask how well the signals rank
the leases that go into arrears. The model, per lease (all draws deterministic for a seed):

- A utilization decline of magnitude m (share of use lost) leads to arrears with probability
  `decline_base + decline_slope * m` (0.29 at m = 0.2, 0.83 at m = 0.8, by default), some weeks
  after use has fallen: `decline_lag_days` after the ramp's midpoint (a business that lost work
  runs out of cash, then misses payments on the next due dates).
- The gateway removed from the asset (tamper) leads to arrears with `tamper_probability`, after
  `tamper_lag_days`; a relocation out of the permitted region with `relocation_probability`,
  after `relocation_lag_days`; an asset parked for weeks with `parked_probability`.
- Every lease can also fall into arrears for reasons no sensor sees (a customer's bad debt, fraud,
  a dispute): a base rate of `base_annual_rate` a year, at a uniformly drawn time.
- Seasonal dips, faults, outages, power cuts and data faults change nothing. Leases without
  incidents mostly pay: only the base rate touches them.

The lease's arrears date is the earliest of the drawn causes; a cause drawn after the scenario's
end is not observed (the lease counts as paying within the scenario).

`arrears_causes` and `arrears_chance` state the same model as a latent hazard: each cause's
probability and the window its date is drawn from, and the chance that a lease still paying at
a day falls into arrears within a horizon. A score that knew it would rank as well as any can;
the backtest reports that ceiling next to the signals' ranking.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

Label = dict[str, object]


@dataclass(frozen=True, slots=True)
class RepaymentModel:
    """How incidents turn into arrears: probabilities and lags (days, drawn uniformly)."""

    decline_base: float = 0.11
    decline_slope: float = 0.9
    decline_lag_days: tuple[float, float] = (35.0, 100.0)
    tamper_probability: float = 0.7
    tamper_lag_days: tuple[float, float] = (21.0, 70.0)
    relocation_probability: float = 0.45
    relocation_lag_days: tuple[float, float] = (30.0, 90.0)
    parked_probability: float = 0.12
    parked_lag_days: tuple[float, float] = (30.0, 90.0)
    base_annual_rate: float = 0.02


@dataclass(frozen=True, slots=True)
class RepaymentOutcome:
    """One lease's repayment within the scenario: arrears from when, and the drawn cause."""

    lease: str
    arrears_at: datetime | None  # None: paid throughout the scenario
    cause: str  # the incident kind behind the arrears, "base_rate", or "none"


class LabelFileError(ValueError):
    """A labels file that cannot be read; the message names the line."""


def read_labels(path: Path) -> list[Label]:
    """The labels of a `scenario run` output (one JSON object per line)."""
    labels: list[Label] = []
    with path.open(encoding="utf-8") as file:
        for number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as err:
                raise LabelFileError(f"{path}:{number}: not JSON: {err.msg}") from err
            if not isinstance(item, dict) or "lease" not in item or "kind" not in item:
                raise LabelFileError(f"{path}:{number}: a label needs 'lease' and 'kind'")
            labels.append(item)
    return labels


def _ts(text: object) -> datetime:
    return datetime.fromisoformat(str(text).replace("Z", "+00:00")).astimezone(UTC)


def _lagged(rng: random.Random, start: datetime, lag: tuple[float, float]) -> datetime:
    return start + timedelta(days=rng.uniform(*lag))


def _incident_arrears(label: Label, rng: random.Random, model: RepaymentModel) -> datetime | None:
    """When this incident puts its lease into arrears, or None (drawn: it does not)."""
    kind, start = label["kind"], _ts(label["start"])
    chance = rng.random()
    if kind == "utilization_decline":
        magnitude = float(str(label.get("magnitude") or 0.0))
        midpoint = start + timedelta(days=float(str(label.get("ramp_days") or 0.0)) / 2)
        hit = chance < model.decline_base + model.decline_slope * magnitude
        return _lagged(rng, midpoint, model.decline_lag_days) if hit else None
    if kind == "tamper" and chance < model.tamper_probability:
        return _lagged(rng, start, model.tamper_lag_days)
    if kind == "relocation" and chance < model.relocation_probability:
        return _lagged(rng, start, model.relocation_lag_days)
    if kind == "parked" and chance < model.parked_probability:
        return _lagged(rng, start, model.parked_lag_days)
    return None


def lease_outcome(
    lease: str,
    labels: Sequence[Label],
    window: tuple[datetime, datetime],
    seed: int,
    model: RepaymentModel,
) -> RepaymentOutcome:
    """One lease's outcome from its labels; the same for the same lease, labels and seed."""
    start, end = window
    rng = random.Random(f"repayment:{seed}:{lease}")
    years = (end - start).total_seconds() / (365.0 * 86_400)
    causes: list[tuple[datetime, str]] = []
    if rng.random() < model.base_annual_rate * years:
        causes.append((start + (end - start) * rng.random(), "base_rate"))
    ordered = sorted(labels, key=lambda lb: (str(lb["start"]), str(lb["kind"])))
    for label in ordered:
        when = _incident_arrears(label, rng, model)
        if when is not None:
            causes.append((when, str(label["kind"])))
    observed = [c for c in causes if c[0] < end]
    if not observed:
        return RepaymentOutcome(lease, None, "none")
    when, cause = min(observed)
    return RepaymentOutcome(lease, when, cause)


@dataclass(frozen=True, slots=True)
class ArrearsCause:
    """One way a lease can fall into arrears: its chance, and when (drawn uniformly between)."""

    kind: str
    probability: float
    earliest: datetime
    latest: datetime
    begins: datetime  # when the incident behind it began (the base rate: the window's start)

    def drawn_by(self, when: datetime) -> float:
        """The chance this cause has put the lease into arrears by `when`."""
        if when <= self.earliest:
            return 0.0
        if when >= self.latest:
            return self.probability
        return self.probability * ((when - self.earliest) / (self.latest - self.earliest))


def _cause(
    kind: str, p: float, begins: datetime, anchor: datetime, lag: tuple[float, float]
) -> ArrearsCause:
    return ArrearsCause(
        kind, p, anchor + timedelta(days=lag[0]), anchor + timedelta(days=lag[1]), begins
    )


def _incident_cause(label: Label, model: RepaymentModel) -> ArrearsCause | None:
    """The cause an incident adds (the probability and lag `_incident_arrears` draws from)."""
    kind, start = str(label["kind"]), _ts(label["start"])
    if kind == "utilization_decline":
        magnitude = float(str(label.get("magnitude") or 0.0))
        midpoint = start + timedelta(days=float(str(label.get("ramp_days") or 0.0)) / 2)
        chance = min(1.0, model.decline_base + model.decline_slope * magnitude)
        return _cause(kind, chance, start, midpoint, model.decline_lag_days)
    lagged = {
        "tamper": (model.tamper_probability, model.tamper_lag_days),
        "relocation": (model.relocation_probability, model.relocation_lag_days),
        "parked": (model.parked_probability, model.parked_lag_days),
    }
    if kind not in lagged:
        return None
    chance, lag = lagged[kind]
    return _cause(kind, min(1.0, chance), start, start, lag)


def arrears_causes(
    labels: Sequence[Label], window: tuple[datetime, datetime], model: RepaymentModel
) -> list[ArrearsCause]:
    """Every cause that can put one lease (its `labels`) into arrears over the `window`."""
    start, end = window
    years = (end - start).total_seconds() / (365.0 * 86_400)
    found = [ArrearsCause("base_rate", min(1.0, model.base_annual_rate * years), start, end, start)]
    for label in labels:
        if (cause := _incident_cause(label, model)) is not None:
            found.append(cause)
    return found


def arrears_chance(
    causes: Sequence[ArrearsCause],
    as_of: datetime,
    horizon: timedelta,
    known_by: datetime | None = None,
) -> float:
    """The chance a lease paying at `as_of` falls into arrears within `horizon` after it.

    Causes are independent and the earliest wins, so the chance of none by t is the product of
    (1 - each one's chance by t). With `known_by`, only causes whose incident began by then
    count (what had happened to the asset by that time, known perfectly).
    """
    paying_now = paying_later = 1.0
    for cause in causes:
        if known_by is not None and cause.begins > known_by:
            continue
        paying_now *= 1.0 - cause.drawn_by(as_of)
        paying_later *= 1.0 - cause.drawn_by(as_of + horizon)
    return 0.0 if paying_now <= 0.0 else 1.0 - paying_later / paying_now


def draw_outcomes(
    leases: Iterable[str],
    labels: Iterable[Label],
    window: tuple[datetime, datetime],
    seed: int,
    model: RepaymentModel | None = None,
) -> dict[str, RepaymentOutcome]:
    """Every lease's outcome over the scenario `window` (start, end) for a seed."""
    chosen = model or RepaymentModel()
    by_lease: dict[str, list[Label]] = defaultdict(list)
    for label in labels:
        by_lease[str(label["lease"])].append(label)
    return {
        lease: lease_outcome(lease, by_lease.get(lease, []), window, seed, chosen)
        for lease in sorted(set(leases))
    }
