"""Faults: profile limits, failed sensors, fault codes, statistical anomalies and wear.

Per minute sample: a metric outside what its sensor can measure is `out_of_range` (a failed
sensor, never a machine condition); a profile limit exceeded for 3 minutes is `limit`; a
controller fault code is `code`; a watched metric absent while the others report is `missing`
(30 minutes); a watched metric unchanged for `stuck_samples` readings while the others move is
`stuck`. Per block of running minutes: the means of the profile's features are scored by a
`RobustScorer` (`anomaly` after `anomaly_blocks` anomalous blocks) and vibration over load feeds
the `WearTrend` (`wear`). Each condition opens and clears with persistence (`ConditionBook`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import lru_cache

from cloud.alerts.signals import EvidenceValue, Finding, Severity
from cloud.detectors.anomaly import RobustScorer, ScorerSettings
from cloud.detectors.base import finding
from cloud.detectors.conditions import ConditionState, Persistence
from cloud.detectors.fault_profiles import GENERIC, FaultProfile, fault_profile, in_range
from cloud.detectors.fault_state import FaultState
from cloud.detectors.inputs import AssetData, MinuteSample
from cloud.detectors.state_json import dumps
from cloud.detectors.wear import WearOutlook, WearSettings, WearTrend

KEY = "faults"
_MINUTE_KINDS = ("limit", "out_of_range", "code", "missing", "stuck")
_PERSISTENCE = {
    "limit": Persistence(3, 60),
    "out_of_range": Persistence(3, 10),
    "code": Persistence(1, 60),
    "missing": Persistence(30, 5),
    "stuck": Persistence(1, 5),
    "wear": Persistence(1, 6),
}
_SEVERITY = {"code": Severity.CRITICAL, "out_of_range": Severity.WARNING}
_CONFIDENCE = {"code": 1.0, "out_of_range": 0.95, "limit": 0.9, "missing": 0.9, "stuck": 0.8}


@dataclass(frozen=True, slots=True)
class FaultThresholds:
    """Tuning of the fault detector (the same for every asset of every type)."""

    stuck_samples: int = 30
    scorer: ScorerSettings = field(default_factory=ScorerSettings)
    wear: WearSettings = field(default_factory=WearSettings)


@dataclass(frozen=True, slots=True)
class FaultInputs:
    """Minute samples past the watermark, in time order."""

    samples: tuple[MinuteSample, ...]


@dataclass(frozen=True, slots=True)
class SampleScore:
    """What the detector thought of one sample: a score in [0, 1] and whether it alerts."""

    ts: datetime
    score: float
    alert: bool


class FaultDetector:
    """Faults of one asset, from its minute samples."""

    def __init__(self, state: FaultState, thresholds: FaultThresholds) -> None:
        """Wrap a state (new or restored)."""
        self.state = state
        self.t = thresholds
        checks = _checks(state.profile, tuple(state.columns))
        self.profile, self.features, self.watched, self.stuck_keys, self.limits = checks
        self.scorer = _scorer(self.profile, state, thresholds)
        self.wear = WearTrend(state.wear, thresholds.wear, self.profile.wear_ratio_limit)
        self._trace: list[tuple[datetime, float, bool]] = []  # of the last update (not state)

    @classmethod
    def create(cls, device: str, asset_type: str, t: FaultThresholds) -> FaultDetector:
        """A detector for an asset of a type (the generic profile for unknown types)."""
        return cls(FaultState(device=device, profile=fault_profile(asset_type).name), t)

    @classmethod
    def for_columns(cls, device: str, columns: list[str], t: FaultThresholds) -> FaultDetector:
        """A generic detector whose features are the given metrics (offline CSV files)."""
        return cls(FaultState(device=device, profile=GENERIC.name, columns=columns), t)

    @classmethod
    def restore(cls, text: str, t: FaultThresholds) -> FaultDetector:
        """A detector from its JSON state."""
        return cls(FaultState.from_json(text), t)

    def to_json(self) -> str:
        """The state as JSON."""
        return dumps(self.state)

    def update(self, inputs: FaultInputs, now: datetime) -> list[Finding]:
        """Consume the samples past the watermark; `trace` gets one score per sample.

        Findings are evaluated at the time of the sample that changed them (not `now`), so
        an open and a clear in one batch keep their order in the alert store.
        """
        found: list[Finding] = []
        trace: list[tuple[datetime, float, bool]] = []
        self._trace = trace
        s, items = self.state, self.state.book.items
        for sample in inputs.samples:
            ts = sample.ts
            if s.watermark is not None and ts <= s.watermark:
                continue
            s.watermark = ts
            found += self._sample(sample)
            alert = rule = False
            for key, item in items.items():
                if item.open:
                    alert = True
                    if key.partition(":")[0] in _MINUTE_KINDS:
                        rule = True
                        break
            score = 1.0 if rule and s.last_score < 1.0 else s.last_score
            trace.append((ts, score, alert))
        return found

    @property
    def trace(self) -> list[SampleScore]:
        """One score per sample of the last update."""
        return [SampleScore(ts, score, alert) for ts, score, alert in self._trace]

    def _sample(self, sample: MinuteSample) -> list[Finding]:
        """All minute checks of one sample, then its block."""
        values = sample.values
        valid, active = in_range(values)
        code = valid.get("fault_code", 0.0)
        if code > 0:
            active[f"code:{int(code)}"] = code
        for metric, low, high in self.limits:
            reading = valid.get(metric)
            if reading is not None and (
                (high is not None and reading > high) or (low is not None and reading < low)
            ):
                active[f"limit:{metric}"] = reading
        running = sample.running()
        if self.watched:
            active |= self._sensor_checks(valid, values, running=running is not False)
        found = self._observe_minute(active, sample.ts) if active or self.state.book.items else []
        s = self.state
        s.streak = s.streak + 1 if running else 0
        if running:
            s.running_minutes += 1.0
        if self.features:
            found += self._block(sample, valid, running)
        return found

    def _sensor_checks(
        self, valid: Mapping[str, float], reported: Mapping[str, float], *, running: bool
    ) -> dict[str, float]:
        """Missing and stuck watched metrics (stuck only counts while the machine runs)."""
        s, watched = self.state, self.watched
        last, changes, unchanged, moving = s.last, s.changes, s.unchanged, s.moving
        active: dict[str, float] = {}
        present = [m for m in watched if m in valid]
        changed = {m for m in present if last.get(m) != valid[m]}
        others = len(present) > 1
        for metric in watched:
            value = valid.get(metric)
            if value is None:
                if present and metric not in reported:  # out of range is not also missing
                    active[f"missing:{metric}"] = 0.0
                continue
            if metric in changed:
                changes[metric] = min(changes.get(metric, 0) + 1, 1000)
                unchanged[metric], moving[metric] = 0, 0
            elif not running:
                unchanged[metric], moving[metric] = 0, 0
            else:  # unchanged while running; "moving" counts the others changing meanwhile
                unchanged[metric] = unchanged.get(metric, 0) + 1
                moving[metric] = moving.get(metric, 0) + bool(changed)
            last[metric] = value
            if (
                unchanged[metric] >= self.t.stuck_samples
                and (not others or moving[metric] * 2 >= unchanged[metric])
                and changes.get(metric, 0) >= 3
            ):
                active[f"stuck:{metric}"] = value
        return active

    def _observe_minute(self, active: dict[str, float], at: datetime) -> list[Finding]:
        book = self.state.book
        events: list[tuple[str, str, ConditionState, float]] = []
        for key, value in active.items():
            change = book.observe(key, True, at, _PERSISTENCE[key.split(":")[0]], value)
            if change:
                events.append((key, change, book.items[key], value))
        for key in [k for k in book.items if k not in active]:
            if key.split(":")[0] in _MINUTE_KINDS:
                item = book.items[key]
                change = book.observe(key, False, at, _PERSISTENCE[key.split(":")[0]])
                if change:
                    events.append((key, change, item, 0.0))
        return [
            self._finding(key, change, item, value=value, at=at)
            for key, change, item, value in events
        ]

    def _block(
        self, sample: MinuteSample, valid: Mapping[str, float], running: bool | None
    ) -> list[Finding]:
        """Accumulate the sample into its block; score the block when it closes."""
        s, p, features = self.state, self.profile, self.features
        found: list[Finding] = []
        block = int(sample.ts.timestamp() // (p.block_minutes * 60)) if p.block_minutes else None
        if block is not None and s.block_id is not None and block != s.block_id:
            found += self._close_block(sample.ts)
        s.block_id = block
        warm = running is None or s.streak > p.warmup_minutes
        items = s.book.items
        usable = warm and all(f in valid for f in features)
        if usable and items:  # a feature stuck (its condition open) is not used
            usable = not any((c := items.get(k)) is not None and c.open for k in self.stuck_keys)
        if usable:
            if s.block_sums:
                s.block_sums = [a + valid[f] for a, f in zip(s.block_sums, features, strict=True)]
            else:
                s.block_sums = [0.0 + valid[f] for f in features]
            s.block_used += 1
        s.block_total += 1
        if block is None:
            found += self._close_block(sample.ts)
        return found

    def _close_block(self, at: datetime) -> list[Finding]:
        s, p = self.state, self.profile
        used, sums = s.block_used, s.block_sums
        s.block_sums, s.block_used, s.block_total = [], 0, 0
        if used < max(1, p.block_minutes // 2):
            s.last_score = 0.0
            return []
        means = dict(zip(self.features, (v / used for v in sums), strict=True))
        names, vector = self._scored(means)
        if not vector:
            return []
        result = self.scorer.score(vector)
        self.scorer.learn(vector, result.score)
        s.last_score = result.score
        anomaly = Persistence(p.anomaly_blocks, p.anomaly_clear_blocks)
        found = self._observe_block(
            "anomaly", result.score >= 0.5, at, value=result.surprise,
            persistence=anomaly, words=_explain(names, result.z),
        )  # fmt: skip
        outlook = self._wear_point(means)
        if outlook is not None:
            found += self._observe_block(
                "wear", outlook.worn, at, value=outlook.level,
                persistence=_PERSISTENCE["wear"], words=_wear_words(outlook, p),
            )  # fmt: skip
        return found

    def _scored(self, means: dict[str, float]) -> tuple[tuple[str, ...], list[float]]:
        """What the scorer sees: raw means, or with a load metric the residuals from the lines."""
        p, lines = self.profile, self.state.lines
        load = means.get(p.load_metric or "")
        if load is None:
            return tuple(means), list(means.values())
        others = tuple(f for f in means if f != p.load_metric)
        if not lines.judge(others, load, [means[f] for f in others], self.t.wear):
            return (), []
        residuals = [means[f] - lines.expected(f, load) for f in others]
        return tuple(f"{f}_residual" for f in others), residuals

    def _wear_point(self, means: dict[str, float]) -> WearOutlook | None:
        p, lines = self.profile, self.state.lines
        load, vibration = means.get(p.load_metric or ""), means.get(p.vibration_metric or "")
        if load is None or vibration is None or p.vibration_metric not in lines.lines:
            return None
        if not lines.low <= load <= lines.high:
            return None
        expected = lines.expected(p.vibration_metric, load)
        if expected <= 0:
            return None
        return self.wear.add(self.state.running_minutes / 60.0, vibration / expected)

    def _observe_block(
        self, kind: str, active: bool, at: datetime, *, value: float,
        persistence: Persistence, words: str,
    ) -> list[Finding]:  # fmt: skip
        book = self.state.book
        item = book.items.get(kind)
        change = book.observe(kind, active, at, persistence, value)
        item = book.items.get(kind, item)
        if change is None or item is None:
            return []
        return [self._finding(kind, change, item, value=value, at=at, words=words)]

    def _finding(
        self, key: str, change: str, item: ConditionState, *, value: float, at: datetime,
        words: str = "",
    ) -> Finding:  # fmt: skip
        kind, _, metric = key.partition(":")
        opened = change == "open"
        summary = _summary(kind, metric, item, value, words) if opened else f"Cleared: {key}."
        evidence: dict[str, EvidenceValue] = {
            "kind": kind,
            "metric": metric or None,
            "value": value,
            "worst": item.worst,
            "detail": words,
        }
        default = min(1.0, 0.5 + value / 20) if kind == "anomaly" else 0.8
        confidence = _CONFIDENCE.get(kind, default)
        severity = _SEVERITY.get(kind, Severity.WARNING)
        return finding(
            self.state.device, KEY, key, open_=opened, severity=severity,
            since=(item.first or at) if opened else at, at=at, summary=summary,
            evidence=evidence, confidence=confidence, magnitude=value,
        )  # fmt: skip


Limit = tuple[str, float | None, float | None]  # metric, low, high


@lru_cache(maxsize=256)
def _checks(
    name: str, columns: tuple[str, ...]
) -> tuple[FaultProfile, tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[Limit, ...]]:
    """A state's profile, features, watched metrics, stuck keys and limits (once per profile)."""
    profile = fault_profile(name)
    if columns:
        profile = replace(GENERIC, features=columns, watched=columns)
    stuck = tuple(f"stuck:{f}" for f in profile.features)
    limits = tuple((m.metric, m.low, m.high) for m in profile.limits)
    return profile, profile.features, profile.watched, stuck, limits


def _scorer(profile: FaultProfile, state: FaultState, t: FaultThresholds) -> RobustScorer:
    """Raw features for generic data; one-sided residuals with physical floors for machines."""
    if profile.load_metric is None or state.columns:
        return RobustScorer(state.scorer, t.scorer)
    floors = dict(profile.residual_floor)
    scored = [f for f in profile.features if f != profile.load_metric]
    return RobustScorer(
        state.scorer, t.scorer, floors=[floors.get(f, 0.0) for f in scored], upper_only=True
    )


def _explain(features: tuple[str, ...], z: tuple[float, ...]) -> str:
    """The features that stand out most, with their robust z-scores."""
    ranked = sorted(zip(features, z, strict=True), key=lambda fz: -abs(fz[1]))[:2]
    return ", ".join(f"{name} z={value:+.1f}" for name, value in ranked)


def _wear_words(outlook: WearOutlook, profile: FaultProfile) -> str:
    hours = outlook.hours_to_limit
    when = (
        "now" if hours == 0 else ("not projected" if hours is None else f"in {hours:.0f} running h")
    )
    return (
        f"vibration {outlook.level:.2f}x its healthy level, rising"
        f" {outlook.slope_per_h:.4f}/running h; reaches {profile.wear_ratio_limit:.1f}x {when}"
    )


def _summary(kind: str, metric: str, item: ConditionState, value: float, words: str) -> str:
    """One sentence for people."""
    worst = value if item.worst is None else item.worst
    texts = {
        "out_of_range": f"{metric} reads {value:g}, outside what its sensor can measure: failed.",
        "code": f"The controller reports fault code {metric}.",
        "limit": f"{metric} at {value:g}, past its limit for this asset type (worst {worst:g}).",
        "missing": f"No {metric} readings for {item.active_run} minutes while others report.",
        "stuck": f"{metric} stuck at {value:g} while the machine runs and the others move.",
        "anomaly": f"Sensor values unusual together (surprise {value:.1f}): {words}.",
        "wear": f"Bearing wear: {words}.",
    }
    return texts.get(kind, f"{kind} {metric}")


def fault_inputs(data: AssetData) -> FaultInputs:
    """The value function: the minute samples the runner read."""
    return FaultInputs(data.minutes)
