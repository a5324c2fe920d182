"""Robust statistics the detectors share: median/MAD, robust covariance, surprise, trends.

Thin typed wrappers over numpy and scipy.stats so the detectors read as their rules. A
"surprise" is -log10 of a p-value: 2 means 1 in 100, 7 means 1 in 10 million.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import stats  # type: ignore[import-untyped]

MAD_TO_SIGMA = 1.4826
Floats = NDArray[np.float64]


def median_scale(values: Sequence[float] | Floats, floor: float = 1e-9) -> tuple[float, float]:
    """Median and MAD-based standard deviation (at least `floor`)."""
    data = np.asarray(values, dtype=float)
    center = float(np.median(data))
    scale = MAD_TO_SIGMA * float(np.median(np.abs(data - center)))
    return center, max(scale, floor)


@dataclass(frozen=True, slots=True)
class RobustFit:
    """Center, per-feature scale and precision matrix of a robustly fitted cloud of points."""

    center: Floats
    scale: Floats
    precision: Floats  # inverse covariance of the inliers (raw units, variances floored)

    def standardise(self, point: Floats) -> Floats:
        """Robust z-score of each feature."""
        result: Floats = (point - self.center) / self.scale
        return result

    def distance2(self, point: Floats) -> float:
        """Squared robust Mahalanobis distance."""
        d = point - self.center
        return float(d @ self.precision @ d)


def robust_fit(points: Floats, scale_floor: Floats, cut: float = 3.0) -> RobustFit:
    """Median/MAD per feature, then the covariance of the points within `cut` (one step).

    A one-step reweighted estimate: outliers (|z| > cut on any feature) do not shape the
    covariance, so a cloud with a few anomalies in it still describes normal operation. No
    variance goes below its floor squared, so a feature never looks more precise than allowed.
    """
    center = np.median(points, axis=0)
    scale = np.maximum(MAD_TO_SIGMA * np.median(np.abs(points - center), axis=0), scale_floor)
    inliers = points[np.all(np.abs((points - center) / scale) <= cut, axis=1)]
    dims = points.shape[1]
    if len(inliers) <= dims + 2:
        return RobustFit(center, scale, np.diag(1.0 / scale**2))
    cov: Floats = np.atleast_2d(np.cov(inliers, rowvar=False))
    cov += np.diag(np.maximum(scale_floor**2 - np.diag(cov), 0.0))
    cov += np.eye(dims) * 1e-9 * max(float(np.trace(cov)) / dims, 1e-12)
    precision: Floats = np.asarray(np.linalg.pinv(cov), dtype=np.float64)
    return RobustFit(center, scale, precision)


MAX_SURPRISE = 1000.0


def _bounded(surprise: float) -> float:
    """A surprise as a finite number (p-values below 1e-1000 are all the same to people)."""
    return MAX_SURPRISE if not math.isfinite(surprise) else min(surprise, MAX_SURPRISE)


def chi2_surprise(distance2: float, dims: int) -> float:
    """Surprise of a squared Mahalanobis distance under a chi-square with `dims` degrees."""
    return _bounded(float(-stats.chi2.logsf(max(distance2, 0.0), dims) / math.log(10)))


def z_surprise(z: float) -> float:
    """Surprise of a two-sided standard normal deviation."""
    return _bounded(float(-(math.log(2) + stats.norm.logsf(abs(z))) / math.log(10)))


def surprise_score(surprise: float, alert_surprise: float) -> float:
    """Map a surprise to [0, 1): 0 for nothing unusual, 0.5 exactly at the alert level."""
    s = max(0.0, surprise)
    return s / (s + alert_surprise)


@dataclass(frozen=True, slots=True)
class Trend:
    """A robust linear trend y = intercept + slope * x with the slope's 90% interval."""

    slope: float
    intercept: float
    slope_low: float
    slope_high: float

    def at(self, x: float) -> float:
        """The trend's value at x."""
        return self.intercept + self.slope * x


def theil_sen(x: Sequence[float], y: Sequence[float]) -> Trend:
    """Theil-Sen trend (median of pairwise slopes): a few outliers do not tilt it."""
    result = stats.theilslopes(np.asarray(y, float), np.asarray(x, float), alpha=0.90)
    return Trend(
        float(result.slope), float(result.intercept), float(result.low_slope),
        float(result.high_slope),
    )  # fmt: skip


def trimmed_line(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """Least-squares line refitted without points more than 3 robust sigmas off the first fit.

    Unlike Theil-Sen it copes with clustered x (one load level per running interval), where
    most pairwise slopes are noise within a cluster; the trimming keeps outliers out.
    """
    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    slope, intercept = np.polyfit(xs, ys, 1)
    residuals = ys - (intercept + slope * xs)
    floor = 0.01 * float(np.median(np.abs(ys))) + 1e-9  # a tight cluster never sets the bar
    _, sigma = median_scale(residuals, floor=floor)
    keep = np.abs(residuals - np.median(residuals)) <= 3 * sigma
    kept_span = np.ptp(xs[keep]) if keep.any() else 0.0
    if keep.sum() >= 3 and kept_span >= 0.5 * np.ptp(xs):  # trimming must not lose the loads
        slope, intercept = np.polyfit(xs[keep], ys[keep], 1)
    return float(intercept), float(slope)


def lower_p_value(before: Sequence[float], after: Sequence[float]) -> float:
    """One-sided Mann-Whitney p-value that `after` is stochastically lower than `before`."""
    if not before or not after:
        return 1.0
    result = stats.mannwhitneyu(after, before, alternative="less")
    return float(result.pvalue)


def higher_p_value(before: Sequence[float], after: Sequence[float]) -> float:
    """One-sided Mann-Whitney p-value that `after` is stochastically higher than `before`."""
    if not before or not after:
        return 1.0
    return float(stats.mannwhitneyu(after, before, alternative="greater").pvalue)
