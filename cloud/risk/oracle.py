"""The ranking's ceiling: a score that knew the repayment model's latent hazard.

`firmware_sim.repayment` draws each lease's arrears from its incidents: a probability and a
lag per cause, the earliest drawn cause winning. An oracle that knew those probabilities and
lags (not the draws) scores each (lease, as-of day) with the chance that the lease, still
paying, falls into arrears within the horizon (`repayment.arrears_chance`): no score can rank
the same observations better in expectation. Two oracles:

- `as_of`: knows every incident that had begun by the as-of day, perfectly (its kind, size and
  start), and the model. The ceiling of any signal that reads nothing later than the as-of
  time: the gap between it and the signals' AUC is what better signals could still gain.
- `full`: also knows the incidents still to come. The gap between it and `as_of` is arrears
  caused by incidents that had not happened yet: no sensor can see them.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import numpy.typing as npt

from cloud.risk.backtest import BacktestRun
from firmware_sim.repayment import ArrearsCause, Label, arrears_causes, arrears_chance

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class OracleScores:
    """Per observation (as `run.observations`): each oracle's chance of arrears in the horizon."""

    as_of: FloatArray
    full: FloatArray


def oracle_scores(run: BacktestRun, horizon_days: float) -> OracleScores:
    """Both oracles' scores of every observation of the run."""
    by_lease: dict[str, list[Label]] = defaultdict(list)
    for label in run.labels:
        by_lease[str(label["lease"])].append(label)
    window = (run.start, run.start + timedelta(days=run.resolved.scenario.days))
    causes: dict[str, list[ArrearsCause]] = {}
    horizon = timedelta(days=horizon_days)
    obs = run.observations
    as_of_scores = np.zeros(len(obs.leases))
    full_scores = np.zeros(len(obs.leases))
    for i, (lease, day) in enumerate(zip(obs.leases, obs.days, strict=True)):
        if lease not in causes:
            causes[lease] = arrears_causes(by_lease.get(lease, []), window, run.repayment)
        when = run.start + timedelta(days=day)
        as_of_scores[i] = arrears_chance(causes[lease], when, horizon, known_by=when)
        full_scores[i] = arrears_chance(causes[lease], when, horizon)
    return OracleScores(as_of_scores, full_scores)
