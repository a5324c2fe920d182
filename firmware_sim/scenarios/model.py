"""The scenario file: assets, leases and what happens to them, checked before anything runs.

A scenario is TOML (see `firmware_sim/scenarios/named/smoke.toml` for a commented example).
Event times are days after `start` (midnight UTC); any number of an event may be a fixed value
or `[low, high]`, drawn per asset from the scenario seed. An event applies to one `asset`, a list
of `assets`, or a `share` of the fleet (optionally only of some `types`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Annotated, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    StringConstraints,
    model_validator,
)

from firmware_sim.calendar import NO_CALENDAR, checked_calendar
from firmware_sim.scenarios.profiles import AssetType

Name = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,47}$")]
LeaseId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_./-]{0,63}$")]
Latitude = Annotated[float, Field(ge=-90.0, le=90.0)]
Longitude = Annotated[float, Field(ge=-180.0, le=180.0)]
Position = tuple[Latitude, Longitude]
Positive = Annotated[float, Field(gt=0.0)]
Fraction = Annotated[float, Field(gt=0.0, le=1.0)]
Spread = float | tuple[float, float]
FaultKind = Literal["bearing_wear", "overheating", "motor_overload", "sensor_failure"]
SensorMetric = Literal["motor_current", "temperature", "vibration_rms"]
SilenceCause = Literal["network_outage", "power_cut", "tamper", "parked"]
DataFaultKind = Literal["duplicates", "late", "out_of_order", "malformed"]
MAX_DAYS = 3660


def _spread(low: float, high: float, *, open_low: bool = False) -> PlainValidator:
    """Validator of a number, or a `[low, high]` range to draw from, within the given bounds."""
    bounds = f"{'>' if open_low else '>='} {low:g} and <= {high:g}"

    def inside(value: float) -> bool:
        """Whether a number is within the bounds."""
        return (value > low if open_low else value >= low) and value <= high

    def number(value: object) -> float:
        """A number within the bounds, or a sentence why not."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"expected a number or [low, high], got {value!r}")  # noqa: TRY004
        if not inside(float(value)):
            raise ValueError(f"{value!r} is out of range: must be {bounds}")
        return float(value)

    def validate(value: object) -> Spread:
        """A number, or an ordered [low, high] pair of them."""
        if isinstance(value, list | tuple):
            if len(value) != 2:
                raise ValueError(f"a range is [low, high], got {list(value)!r}")
            low_value, high_value = number(value[0]), number(value[1])
            if low_value > high_value:
                raise ValueError(f"range [{low_value:g}, {high_value:g}] has low above high")
            return (low_value, high_value)
        return number(value)

    return PlainValidator(validate)


def _dump_spread(value: Spread) -> float | list[float]:
    """A spread as TOML/JSON has it: a number or [low, high]."""
    return list(value) if isinstance(value, tuple) else value


_AS_WRITTEN = PlainSerializer(_dump_spread)
DaySpread = Annotated[Spread, _spread(0.0, MAX_DAYS), _AS_WRITTEN]
DurationSpread = Annotated[Spread, _spread(0.0, MAX_DAYS, open_low=True), _AS_WRITTEN]
DeclineSpread = Annotated[Spread, _spread(0.2, 0.8), _AS_WRITTEN]
FractionSpread = Annotated[Spread, _spread(0.0, 1.0, open_low=True), _AS_WRITTEN]
PositiveSpread = Annotated[Spread, _spread(0.0, 1e6, open_low=True), _AS_WRITTEN]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Region(_Strict):
    """A permitted region: a circle on the map, and the public holidays its assets rest on."""

    center: Position
    radius_km: Positive
    calendar: Annotated[str, AfterValidator(checked_calendar)] = NO_CALENDAR  # "NL", "DE-NW"


class Site(_Strict):
    """A place assets live: a yard, a depot, a customer's plant."""

    position: Position
    region: Name


class AssetEntry(_Strict):
    """One named asset under one lease."""

    id: Name
    type: AssetType
    site: Name
    region: Name | None = None  # permitted region; the site's region when left out
    lease: LeaseId
    initial_run_hours: Annotated[float, Field(ge=0.0)] | None = None  # drawn when left out


class Population(_Strict):
    """Many similar assets at once: `<prefix>-00001` .. `<prefix>-<count>`."""

    prefix: Name
    count: Annotated[int, Field(ge=1, le=100_000)]
    types: Annotated[dict[AssetType, Positive], Field(min_length=1)]  # type -> weight
    sites: Annotated[list[Name], Field(min_length=1)]
    lease_prefix: LeaseId = "L"


class _Event(_Strict):
    asset: Name | None = None
    assets: Annotated[list[Name], Field(min_length=1)] | None = None
    share: Fraction | None = None
    types: Annotated[list[AssetType], Field(min_length=1)] | None = None
    start_day: DaySpread
    note: Annotated[str, StringConstraints(max_length=200)] = ""

    @model_validator(mode="after")
    def _one_selector(self) -> Self:
        given = [k for k in ("asset", "assets", "share") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of asset, assets or share (got {given or 'none'})")
        if self.types is not None and self.share is None:
            raise ValueError("types narrows a share; it needs share")
        return self


class UtilizationDecline(_Event):
    """A lasting drop in use by `magnitude` (0.2-0.8): sudden, or gradual over `ramp_days`."""

    kind: Literal["utilization_decline"]
    magnitude: DeclineSpread
    ramp_days: DaySpread = 0.0
    days: DurationSpread | None = None  # to the end of the scenario when left out


class SeasonalDip(_Event):
    """A dip that is NOT a decline (a holiday fortnight, frost): use drops, then returns."""

    kind: Literal["seasonal_dip"]
    magnitude: FractionSpread
    days: DurationSpread
    name: Annotated[str, StringConstraints(max_length=64)] = "holiday"


class Fault(_Event):
    """A machine fault: bearing wear (trend, then a spike), overheating, overload, a sensor."""

    kind: Literal["fault"]
    fault: FaultKind
    days: DurationSpread
    magnitude: PositiveSpread | None = None  # x vibration, +degC, x current; default per fault
    metric: SensorMetric | None = None  # sensor_failure only; temperature when left out
    mode: Literal["missing", "stuck", "out_of_range"] = "missing"  # sensor_failure only
    spike_hours: Positive = 6.0  # bearing_wear: the spike at the end of the window


class Silence(_Event):
    """No data (network outage, power cut, tamper) or no use (parked) for a while."""

    kind: Literal["silence"]
    cause: SilenceCause
    days: DurationSpread | None = None  # to the end of the scenario when left out


class Relocation(_Event):
    """The asset is driven or shipped somewhere else: `to` a position or `to_site`."""

    kind: Literal["relocation"]
    to: Position | None = None
    to_site: Name | None = None
    travel_hours: PositiveSpread = 8.0

    @model_validator(mode="after")
    def _one_destination(self) -> Self:
        if (self.to is None) == (self.to_site is None):
            raise ValueError("give exactly one of to or to_site")
        return self


class DataFault(_Event):
    """Delivery faults on a share of the messages: duplicates, late, reordered, malformed."""

    kind: Literal["data_fault"]
    fault: DataFaultKind
    days: DurationSpread
    message_share: Fraction = 0.05
    delay_minutes: PositiveSpread = 60.0  # late: how long a message is held back


Event = Annotated[
    UtilizationDecline | SeasonalDip | Fault | Silence | Relocation | DataFault,
    Field(discriminator="kind"),
]
EVENT_KINDS = (
    "utilization_decline",
    "seasonal_dip",
    "fault",
    "silence",
    "relocation",
    "data_fault",
)


def population_ids(population: Population) -> list[str]:
    """The asset ids a population generates."""
    return [f"{population.prefix}-{i:05d}" for i in range(1, population.count + 1)]


def _high(value: Spread) -> float:
    return value[1] if isinstance(value, tuple) else value


class Scenario(_Strict):
    """A whole scenario file."""

    name: Name
    description: Annotated[str, StringConstraints(max_length=500)] = ""
    seed: int
    start: date
    days: Annotated[int, Field(ge=1, le=MAX_DAYS)]
    speed: Positive = 3600.0  # time acceleration: simulated seconds per real second
    sample_s: Annotated[int, Field(ge=1, le=3600)] = 60
    batch_s: Annotated[int, Field(ge=1, le=86_400)] = 600
    regions: Annotated[dict[Name, Region], Field(min_length=1)]
    sites: Annotated[dict[Name, Site], Field(min_length=1)]
    assets: list[AssetEntry] = []
    populations: list[Population] = []
    events: list[Event] = []

    def asset_ids(self) -> list[str]:
        """Every asset id: the named assets, then each population's."""
        ids = [a.id for a in self.assets]
        for population in self.populations:
            ids += population_ids(population)
        return ids

    def with_asset_count(self, count: int) -> Scenario:
        """The same scenario with its populations scaled so the fleet has `count` assets."""
        generated = sum(p.count for p in self.populations)
        if not generated:
            raise ValueError(f"scenario {self.name} has no populations to scale")
        wanted = count - len(self.assets)
        if wanted < len(self.populations):
            raise ValueError(f"scenario {self.name} needs at least {len(self.assets)} assets")
        counts = [max(1, round(p.count * wanted / generated)) for p in self.populations]
        counts[-1] = max(1, wanted - sum(counts[:-1]))
        scaled = [
            p.model_copy(update={"count": n}) for p, n in zip(self.populations, counts, strict=True)
        ]
        return self.model_copy(update={"populations": scaled})

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        for check in _CHECKS:
            check(self)
        return self


def _check_timing(scenario: Scenario) -> None:
    if scenario.batch_s % scenario.sample_s:
        raise ValueError(f"batch_s: {scenario.batch_s} is not a multiple of sample_s")
    for index, event in enumerate(scenario.events):
        if _high(event.start_day) >= scenario.days:
            raise ValueError(
                f"events[{index}].start_day: day {_high(event.start_day):g} is not within"
                f" the scenario's {scenario.days} days"
            )


def _check_places(scenario: Scenario) -> None:
    for name, site in scenario.sites.items():
        if site.region not in scenario.regions:
            raise ValueError(f"sites.{name}.region: unknown region {site.region!r}")
    for index, asset in enumerate(scenario.assets):
        if asset.site not in scenario.sites:
            raise ValueError(f"assets[{index}].site: unknown site {asset.site!r}")
        if asset.region is not None and asset.region not in scenario.regions:
            raise ValueError(f"assets[{index}].region: unknown region {asset.region!r}")
    for index, population in enumerate(scenario.populations):
        for site_name in population.sites:
            if site_name not in scenario.sites:
                raise ValueError(f"populations[{index}].sites: unknown site {site_name!r}")


def _check_assets(scenario: Scenario) -> None:
    ids = scenario.asset_ids()
    if not ids:
        raise ValueError("assets: a scenario needs at least one asset or population")
    seen: set[str] = set()
    for asset_id in ids:
        if asset_id in seen:
            raise ValueError(f"assets: id {asset_id!r} is used twice")
        seen.add(asset_id)
    for index, event in enumerate(scenario.events):
        named = [event.asset] if event.asset else list(event.assets or [])
        unknown = [a for a in named if a not in seen]
        if unknown:
            key = "asset" if event.asset else "assets"
            raise ValueError(f"events[{index}].{key}: unknown asset {unknown[0]!r}")
        if isinstance(event, Relocation) and event.to_site and event.to_site not in scenario.sites:
            raise ValueError(f"events[{index}].to_site: unknown site {event.to_site!r}")


_CHECKS: tuple[Callable[[Scenario], None], ...] = (_check_timing, _check_places, _check_assets)
