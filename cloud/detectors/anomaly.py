"""Robust statistical anomaly scoring of feature vectors: univariate and multivariate.

A `RobustScorer` keeps a bounded window of past feature vectors (its JSON state). A new vector
is scored against that window only (causal): each feature's robust z-score (median/MAD) and the
robust Mahalanobis distance (one-step reweighted correlation of the MAD-standardised window).
The p-values become a surprise (-log10 p; the univariate one Bonferroni-corrected), mapped to a
score in [0, 1) that is 0.5 at `alert_surprise`. Vectors that look anomalous join the window only
one in `adapt_every` (and one vector in `keep_every` at all, so the window spans more
time), so an anomaly does not become the norm quickly but a lasting change does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from cloud.detectors.robust import (
    RobustFit,
    chi2_surprise,
    robust_fit,
    surprise_score,
    z_surprise,
)


@dataclass(frozen=True, slots=True)
class ScorerSettings:
    """Window and alert level of a robust scorer."""

    size: int = 600  # vectors kept
    keep_every: int = 3  # one vector in this many joins the window (spans more time)
    min_history: int = 40  # fewer: score 0 (still learning)
    alert_surprise: float = 6.0  # p = 1e-6 scores 0.5
    suspicious: float = 0.5  # a score at or above this is kept out of the window ...
    adapt_every: int = 10  # ... except one in this many
    scale_floor: float = 1e-6  # relative to the feature's median magnitude


@dataclass(frozen=True, slots=True)
class Score:
    """How unusual one vector is, and why."""

    score: float
    surprise: float
    z: tuple[float, ...]  # robust z per feature (0 while learning)
    distance2: float


@dataclass
class ScorerState:
    """A scorer's window (oldest first) and its count of skipped suspicious vectors."""

    window: list[list[float]] = field(default_factory=list)
    seen: int = 0
    skipped: int = 0


class RobustScorer:
    """Scores feature vectors against a window of earlier ones."""

    def __init__(
        self,
        state: ScorerState,
        settings: ScorerSettings,
        *,
        floors: Sequence[float] | None = None,
        upper_only: bool = False,
    ) -> None:
        """Wrap a state; `floors` bound each feature's scale, `upper_only` ignores low values."""
        self.state = state
        self.settings = settings
        self.floors = None if floors is None else np.asarray(floors, dtype=float)
        self.upper_only = upper_only
        self._fit: RobustFit | None = None

    def score(self, vector: Sequence[float]) -> Score:
        """Score one vector against the window (the window is not changed)."""
        dims = len(vector)
        window = self.state.window
        if len(window) < self.settings.min_history or len(window[0]) != dims:
            return Score(0.0, 0.0, (0.0,) * dims, 0.0)
        fit = self._fitted()
        point = np.asarray(vector, dtype=float)
        z = fit.standardise(point)
        if self.upper_only:
            z = np.maximum(z, 0.0)
            point = fit.center + z * fit.scale
        univariate = max(z_surprise(float(v)) for v in z) - math.log10(dims)
        distance2 = fit.distance2(point)
        multivariate = chi2_surprise(distance2, dims) if dims > 1 else univariate
        surprise = max(univariate, multivariate, 0.0)
        score = surprise_score(surprise, self.settings.alert_surprise)
        return Score(score, surprise, tuple(float(v) for v in z), distance2)

    def learn(self, vector: Sequence[float], score: float) -> None:
        """Add a scored vector to the window, unless it looked suspicious (mostly)."""
        s, settings = self.state, self.settings
        if s.window and len(s.window[0]) != len(vector):
            s.window.clear()  # the features changed: start over
        if score >= settings.suspicious:
            s.skipped += 1
            if s.skipped % settings.adapt_every:
                return
        s.seen += 1
        if (s.seen - 1) % settings.keep_every:
            return
        s.window.append([float(f"{v:.6g}") for v in vector])
        del s.window[: -settings.size]
        self._fit = None

    def _fitted(self) -> RobustFit:
        if self._fit is None:
            points = np.asarray(self.state.window, dtype=float)
            floor = np.maximum(np.abs(np.median(points, axis=0)), 1.0) * self.settings.scale_floor
            if self.floors is not None and len(self.floors) == points.shape[1]:
                floor = np.maximum(floor, self.floors)
            self._fit = robust_fit(points, floor)
        return self._fit
