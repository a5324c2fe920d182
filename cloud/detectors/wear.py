"""Trend-to-threshold for wear: vibration relative to its healthy level, projected forward.

Vibration grows with load, so each running block's vibration is divided by what the healthy
machine showed at that load (`HealthyLines`: a trimmed least-squares line of each feature over
the load metric, learned from the first warm running blocks once they span enough loads; the
fault detector also scores the other features' residuals from their lines). The hourly medians
of that ratio, against running hours, get a Theil-Sen trend. When the trend rises significantly
(90% lower slope bound above 0), is already past `min_rise` and reaches the wear limit within
`horizon_h` running hours (or is past it), a finding says when it will cross; it clears when
that no longer holds.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from cloud.detectors.robust import median_scale, theil_sen, trimmed_line
from cloud.detectors.state_json import adopt


@dataclass(frozen=True, slots=True)
class WearSettings:
    """Learning, fitting and projection of the wear trend."""

    learn_blocks: int = 60  # running blocks that define the healthy lines over the load
    max_learn_blocks: int = 400  # blocks at new loads extend the lines up to this many
    min_load_spread: float = 0.2  # the learned loads must span this share of the highest
    blocks_per_point: int = 6  # running blocks per trend point (their median ratio)
    points: int = 72  # trend points kept (running hours at the default block size)
    min_points: int = 24
    min_rise: float = 0.15  # the trend must already be this far above healthy (ratio 1.15)
    horizon_h: float = 120.0  # running hours ahead a projected crossing is reported


@dataclass(frozen=True, slots=True)
class WearOutlook:
    """The current trend of the vibration ratio and where it leads."""

    level: float  # ratio to healthy now (trend value)
    slope_per_h: float  # ratio per running hour
    slope_low: float
    hours_to_limit: float | None  # running hours until the limit; 0 when past it
    worn: bool  # report it


@dataclass
class HealthyLines:
    """Each feature's healthy level as a line over the load, learned from the first blocks.

    Blocks at loads outside the learned range are never judged by extrapolation: they extend
    the learning set (up to `max_learn_blocks`) and the lines are refitted, but only when the
    extrapolated lines already explain them (a faulty block never teaches what healthy is).
    """

    load: list[float] = field(default_factory=list)
    values: list[list[float]] = field(default_factory=list)
    lines: dict[str, tuple[float, float]] = field(default_factory=dict)  # intercept, slope
    spread: dict[str, float] = field(default_factory=dict)  # robust sigma of the residuals
    low: float = 0.0
    high: float = 0.0

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> HealthyLines:
        """Lines from their JSON object."""
        if "lines" in doc:
            doc["lines"] = {name: (line[0], line[1]) for name, line in doc["lines"].items()}
        return adopt(cls, doc)

    def judge(
        self, features: tuple[str, ...], load: float, values: list[float], settings: WearSettings
    ) -> bool:
        """Learn from a block when needed; True when the block can be judged against the lines."""
        if self.lines and self.low <= load <= self.high:
            return True
        if len(self.load) >= settings.max_learn_blocks or not self._plausible(
            features, load, values
        ):
            return False
        self.load.append(round(load, 4))
        self.values.append([round(v, 4) for v in values])
        if len(self.load) >= settings.learn_blocks and self._diverse(settings):
            self._fit(features)
        return False

    def _diverse(self, settings: WearSettings) -> bool:
        """Whether the learned loads span enough, in at least 3 well-filled load bands."""
        low, high = min(self.load), max(self.load)
        if high - low < settings.min_load_spread * max(abs(high), 1e-9):
            return False
        width = max(0.05 * abs(high), 1e-9)
        bands: dict[int, int] = {}
        for load in self.load:
            bands[int(load // width)] = bands.get(int(load // width), 0) + 1
        return sum(count >= 3 for count in bands.values()) >= 3

    def _plausible(self, features: tuple[str, ...], load: float, values: list[float]) -> bool:
        """Whether fitted lines extrapolate to this block within 4 sigmas (True before fitting)."""
        for name, value in zip(features, values, strict=True):
            if name in self.lines:
                expected = self.expected(name, load)
                sigma = max(self.spread.get(name, 0.0), 0.01 * abs(expected), 1e-6)
                if abs(value - expected) > 4 * sigma:
                    return False
        return True

    def _fit(self, features: tuple[str, ...]) -> None:
        for index, name in enumerate(features):
            ys = [row[index] for row in self.values]
            intercept, slope = trimmed_line(self.load, ys)
            self.lines[name] = (intercept, slope)
            residuals = [y - (intercept + slope * x) for x, y in zip(self.load, ys, strict=True)]
            self.spread[name] = median_scale(residuals)[1]
        self.low, self.high = min(self.load), max(self.load)

    def expected(self, feature: str, load: float) -> float:
        """The healthy value of a feature at a load."""
        intercept, slope = self.lines[feature]
        return intercept + slope * load


@dataclass
class WearState:
    """The ratios being grouped into a point, and the trend points."""

    pending: list[float] = field(default_factory=list)
    points: list[tuple[float, float]] = field(default_factory=list)  # (running hours, ratio)

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> WearState:
        """A wear state from its JSON object."""
        if "points" in doc:
            doc["points"] = [(p[0], p[1]) for p in doc["points"]]
        return adopt(cls, doc)


class WearTrend:
    """Wear of one asset's bearings, from the vibration ratio of its running blocks."""

    def __init__(self, state: WearState, settings: WearSettings, limit: float) -> None:
        """Wrap a state; `limit` is the worn-out ratio to the healthy level."""
        self.state = state
        self.settings = settings
        self.limit = limit

    def add(self, running_h: float, ratio: float) -> WearOutlook | None:
        """Add one running block's vibration ratio; an outlook whenever a trend point was made."""
        s, cfg = self.state, self.settings
        s.pending.append(ratio)
        if len(s.pending) < cfg.blocks_per_point:
            return None
        s.points.append((round(running_h, 3), round(statistics.median(s.pending), 4)))
        s.pending = []
        del s.points[: -cfg.points]
        return self.outlook()

    def outlook(self) -> WearOutlook | None:
        """The trend over the kept points (None with too few)."""
        cfg = self.settings
        if len(self.state.points) < cfg.min_points:
            return None
        hours = [p[0] for p in self.state.points]
        trend = theil_sen(hours, [p[1] for p in self.state.points])
        level = trend.at(hours[-1])
        to_limit: float | None = None
        if level >= self.limit:
            to_limit = 0.0
        elif trend.slope > 0:
            to_limit = (self.limit - level) / trend.slope
        rising = trend.slope_low > 0 and level >= 1.0 + cfg.min_rise
        soon = to_limit is not None and to_limit <= cfg.horizon_h
        worn = level >= self.limit or (rising and soon)
        return WearOutlook(level, trend.slope, trend.slope_low, to_limit, worn)
