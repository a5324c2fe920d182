"""Scoring rules: weights, thresholds and band cut-offs from a TOML file, validated once.

`load_rules()` reads the packaged default (`cloud/risk/rules.toml`); `load_rules(path)` reads
another file. A bad file fails with `RulesError`, one line per problem naming the key and the
reason, e.g. `rules.toml: bands.high: must be above bands.medium (25.0)`.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cloud.risk.calendars import RegionHolidays, calendar_problem
from cloud.risk.model import Band

DEFAULT_RULES = "rules.toml"

Points = Field(ge=0.0, le=100.0)


class RulesError(Exception):
    """A rules file that cannot be used; the message names the key and the reason."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _above(upper: tuple[str, float], lower: tuple[str, float]) -> None:
    """Refuse `upper` at or below `lower`, naming both keys."""
    if upper[1] <= lower[1]:
        raise ValueError(f"{upper[0]} must be above {lower[0]} ({lower[1]})")


class Ramp(_Frozen):
    """Points that grow linearly from 0 at `ok` to `weight` at `full` (either direction)."""

    weight: float = Points
    ok: float
    full: float

    @model_validator(mode="after")
    def _distinct(self) -> Self:
        if self.ok == self.full:
            raise ValueError(f"ok and full must differ (both {self.ok})")
        return self

    def share(self, value: float) -> float:
        """0 at or better than `ok`, 1 at or worse than `full`, linear between."""
        share = (value - self.ok) / (self.full - self.ok)
        return 0.0 if share <= 0.0 else min(share, 1.0)


class CapacityRamp(Ramp):
    """A ramp on the largest open drop, with a floor any open warning carries."""

    floor: float = Field(ge=0.0, le=1.0)


class PeerRule(_Frozen):
    """Below this peer level the whole group is laid up: use-based ratios are not judged.

    `scope`: whose assets make a peer group: every tenant's (`all`) or the lease's tenant's.
    """

    pause: float = Field(ge=0.0, lt=1.0)
    scope: Literal["all", "tenant"] = "all"

    def adjusted(self, ratio: float | None, peer: float | None) -> tuple[float | None, bool]:
        """(ratio over min(1, the peers'), whether the peers paused); as is without peers."""
        if ratio is None or peer is None:
            return ratio, False
        if peer < self.pause:
            return None, True
        return ratio / min(1.0, peer), False


class SustainedRule(_Frozen):
    """Points for weeks of use below baseline: grow with the weeks, scaled by how deep."""

    weight: float = Points
    ok_weeks: float = Field(ge=0.0)
    full_weeks: float = Field(gt=0.0)
    ok_use: float = Field(gt=0.0, le=1.0)
    full_use: float = Field(ge=0.0, lt=1.0)
    depth_floor: float = Field(ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        _above(("full_weeks", self.full_weeks), ("ok_weeks", self.ok_weeks))
        _above(("ok_use", self.ok_use), ("full_use", self.full_use))
        return self

    def points(self, weeks: int, use: float | None) -> float:
        """weight x (weeks share) x max(depth_floor, depth share)."""
        share = min(1.0, max(0.0, (weeks - self.ok_weeks) / (self.full_weeks - self.ok_weeks)))
        depth = 0.0 if use is None else (self.ok_use - use) / (self.ok_use - self.full_use)
        return self.weight * share * max(self.depth_floor, min(1.0, depth))


class CountRule(_Frozen):
    """Points per event, capped."""

    points_per_event: float = Points
    max_points: float = Points


class GeofenceRule(_Frozen):
    """Points per geofence breach, capped."""

    points_per_breach: float = Points
    max_points: float = Points


class FaultRule(_Frozen):
    """Points per open fault alert by severity, capped."""

    warning_points: float = Points
    critical_points: float = Points
    max_points: float = Points


class CompletenessRule(_Frozen):
    """Where utilization-based points start to be discounted, and where they count nothing."""

    reliable: float = Field(gt=0.0, le=1.0)
    unreliable: float = Field(ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.unreliable >= self.reliable:
            raise ValueError(f"unreliable must be below reliable ({self.reliable})")
        return self

    def factor(self, completeness: float | None) -> float:
        """1 when the data is complete enough (or no ledger), down to 0 at `unreliable`."""
        if completeness is None or completeness >= self.reliable:
            return 1.0
        share = (completeness - self.unreliable) / (self.reliable - self.unreliable)
        return max(share, 0.0)


class HistoryRule(_Frozen):
    """How much a young lease's utilization-based points count."""

    full_days: float = Field(gt=0.0)
    min_factor: float = Field(ge=0.0, le=1.0)

    def factor(self, lease_age_days: float) -> float:
        """Lease age over `full_days`, at least `min_factor`, at most 1."""
        return min(1.0, max(self.min_factor, lease_age_days / self.full_days))


class BandRule(_Frozen):
    """Score cut-offs: at or above `medium` is medium, and so on."""

    medium: float = Field(gt=0.0, le=100.0)
    high: float = Field(gt=0.0, le=100.0)
    critical: float = Field(gt=0.0, le=100.0)

    @model_validator(mode="after")
    def _increasing(self) -> Self:
        _above(("high", self.high), ("medium", self.medium))
        _above(("critical", self.critical), ("high", self.high))
        return self

    def band(self, score: float) -> Band:
        """The band a score falls in."""
        if score >= self.critical:
            return Band.CRITICAL
        if score >= self.high:
            return Band.HIGH
        if score >= self.medium:
            return Band.MEDIUM
        return Band.LOW


class LesseeRule(_Frozen):
    """How a lessee's score adds breadth (other leases at risk) to its worst lease."""

    breadth_points: float = Points


class HolidayRule(_Frozen):
    """Which public-holiday calendar each asset region keeps (`cloud.risk.calendars`)."""

    default: str = ""
    regions: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known(self) -> Self:
        named = [("default", self.default)]
        named += [(f"regions.{name}", code) for name, code in sorted(self.regions.items())]
        problems = [f"{key}: {p}" for key, code in named if (p := calendar_problem(code))]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def resolver(self) -> RegionHolidays:
        """The regions' calendars as a hashable resolver."""
        return RegionHolidays(tuple(sorted(self.regions.items())), self.default)


class ScoringRules(_Frozen):
    """The whole rule set: one section per signal, the bands and the model version."""

    version: str = Field(min_length=1, max_length=64)
    bands: BandRule
    utilization_vs_contract: Ramp
    utilization_vs_baseline: Ramp
    capacity_warning: CapacityRamp
    sustained_decline: SustainedRule
    abrupt_drop: Ramp | None = None  # on working days down; None: not scored (before 2.3)
    peers: PeerRule
    faults: FaultRule
    silence: Ramp
    tamper: CountRule
    geofence: GeofenceRule
    hours_cap: Ramp
    completeness: CompletenessRule
    history: HistoryRule
    lessee: LesseeRule
    holidays: HolidayRule = HolidayRule()

    @model_validator(mode="after")
    def _directions(self) -> Self:
        for name in ("utilization_vs_contract", "utilization_vs_baseline"):
            ramp: Ramp | None = getattr(self, name)
            if ramp is not None and ramp.full > ramp.ok:
                raise ValueError(f"{name}: full must be below ok (a lower ratio is worse)")
        for name in ("capacity_warning", "silence", "hours_cap", "abrupt_drop"):
            ramp = getattr(self, name)
            if ramp is not None and ramp.full < ramp.ok:
                raise ValueError(f"{name}: full must be above ok (a higher value is worse)")
        return self


def _where(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc)


def parse_rules(text: str, origin: str = "<rules>") -> ScoringRules:
    """Validated rules from TOML text; `origin` names the file in errors."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise RulesError(f"{origin}: not valid TOML: {err}") from err
    try:
        return ScoringRules.model_validate(document)
    except ValidationError as err:
        problems = []
        for e in err.errors(include_url=False):
            message = e["msg"].removeprefix("Value error, ")
            where = _where(tuple(e["loc"]))
            problems.append(f"  {where}: {message}" if where else f"  {message}")
        raise RulesError(f"{origin}: invalid scoring rules\n" + "\n".join(problems)) from err


def load_rules(path: Path | None = None) -> ScoringRules:
    """Rules from a TOML file; None reads the packaged default `cloud/risk/rules.toml`."""
    if path is None:
        entry = resources.files("cloud.risk").joinpath(DEFAULT_RULES)
        return parse_rules(entry.read_text(encoding="utf-8"), DEFAULT_RULES)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise RulesError(f"{path}: cannot read scoring rules: {err.strerror}") from err
    return parse_rules(text, str(path))
