"""A scenario resolved to concrete assets and incidents: every range drawn, every share chosen.

Resolution is a pure function of the scenario (and its seed): the same file gives the same
assets, the same incidents on the same assets at the same times, on every machine.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from firmware_sim.scenarios.draws import Stream, draw, name_key, uniform
from firmware_sim.scenarios.model import (
    DataFault,
    Event,
    Fault,
    Population,
    Relocation,
    Scenario,
    SeasonalDip,
    Silence,
    Spread,
    UtilizationDecline,
    population_ids,
)
from firmware_sim.scenarios.profiles import PROFILES, AssetType

DAY_S = 86_400.0
#: Default magnitude per fault: x vibration at the end of the trend, +degC, x motor current.
FAULT_MAGNITUDES = {"bearing_wear": 3.0, "overheating": 35.0, "motor_overload": 1.5}


@dataclass(frozen=True, slots=True)
class AssetSpec:
    """One asset of a resolved scenario: who it is, where it lives, under which lease."""

    id: str
    device: str  # the gateway's device id (one gateway per asset)
    type: AssetType
    site: str
    region: str  # the permitted region
    home: tuple[float, float]
    lease: str
    initial_run_hours: float
    key: int  # stable draw key of the asset id


@dataclass(frozen=True, slots=True)
class Incident:
    """One thing that happens to one asset, resolved: the ground truth a label describes."""

    asset: str
    kind: str  # utilization_decline, seasonal_dip, bearing_wear, ..., network_outage, duplicates
    category: str  # utilization, seasonal, fault, silence, relocation, data_fault
    start: float  # epoch seconds
    end: float
    event: int  # index of the scenario event it comes from
    magnitude: float | None = None
    ramp_s: float = 0.0
    metric: str = ""
    mode: str = ""
    spike_s: float = 0.0
    message_share: float = 0.0
    delay_s: float = 0.0
    destination: tuple[float, float] | None = None
    travel_s: float = 0.0
    name: str = ""
    note: str = ""


@dataclass(frozen=True)
class ResolvedScenario:
    """A scenario with its assets and incidents made concrete."""

    scenario: Scenario
    assets: tuple[AssetSpec, ...]
    incidents: tuple[Incident, ...]
    by_asset: Mapping[str, tuple[Incident, ...]] = field(repr=False)

    @property
    def start_ts(self) -> float:
        """Epoch seconds of the scenario start (midnight UTC)."""
        return datetime.combine(self.scenario.start, datetime.min.time(), UTC).timestamp()

    @property
    def end_ts(self) -> float:
        """Epoch seconds of the scenario end."""
        return self.start_ts + self.scenario.days * DAY_S

    def calendar_of(self, asset: AssetSpec) -> str:
        """The holiday calendar code of the asset's region ("" for none)."""
        return self.scenario.regions[asset.region].calendar

    def incidents_of(self, asset: str) -> tuple[Incident, ...]:
        """The incidents of one asset, in scenario order."""
        return self.by_asset.get(asset, ())


def resolve(scenario: Scenario) -> ResolvedScenario:
    """Draw every range and choose every share: the concrete assets and incidents."""
    assets = _assets(scenario)
    start = datetime.combine(scenario.start, datetime.min.time(), UTC).timestamp()
    incidents: list[Incident] = []
    for index, event in enumerate(scenario.events):
        for asset in _selected(scenario, index, event, assets):
            incidents.append(_incident(scenario, index, event, asset, start))
    by_asset: dict[str, list[Incident]] = defaultdict(list)
    for incident in incidents:
        by_asset[incident.asset].append(incident)
    frozen = {asset: tuple(found) for asset, found in by_asset.items()}
    return ResolvedScenario(scenario, tuple(assets), tuple(incidents), frozen)


def _assets(scenario: Scenario) -> list[AssetSpec]:
    """The named assets, then every population's, with drawn meters and sites."""
    seed = scenario.seed
    specs: list[AssetSpec] = []
    for entry in scenario.assets:
        key = name_key(entry.id)
        site = scenario.sites[entry.site]
        hours = entry.initial_run_hours
        if hours is None:
            hours = round(uniform(200.0, 15_000.0, seed, Stream.ASSET, key), 3)
        region = entry.region or site.region
        specs.append(
            AssetSpec(
                id=entry.id,
                device=entry.id,
                type=entry.type,
                site=entry.site,
                region=region,
                home=site.position,
                lease=entry.lease,
                initial_run_hours=hours,
                key=key,
            )
        )
    for population in scenario.populations:
        specs += _population(scenario, population)
    return specs


def _population(scenario: Scenario, population: Population) -> list[AssetSpec]:
    """The assets of one population: type by weight, site round-robin-by-draw, drawn meters."""
    seed = scenario.seed
    names, weights = list(population.types), list(population.types.values())
    total = sum(weights)
    specs = []
    for number, asset_id in enumerate(population_ids(population), start=1):
        key = name_key(asset_id)
        pick = draw(seed, Stream.ASSET, key, 1) * total
        chosen = names[-1]
        for name, weight in zip(names, weights, strict=True):
            if pick < weight:
                chosen = name
                break
            pick -= weight
        site_name = population.sites[int(draw(seed, Stream.ASSET, key, 2) * len(population.sites))]
        site = scenario.sites[site_name]
        hours = round(uniform(200.0, 15_000.0, seed, Stream.ASSET, key), 3)
        lease = f"{population.lease_prefix}-{population.prefix}-{number:05d}"
        specs.append(
            AssetSpec(
                asset_id, asset_id, chosen, site_name, site.region, site.position, lease, hours, key
            )
        )
    return specs


def _selected(
    scenario: Scenario, index: int, event: Event, assets: list[AssetSpec]
) -> list[AssetSpec]:
    """The assets an event applies to: named ones, or a drawn share of (some types of) the fleet."""
    if event.asset is not None or event.assets is not None:
        wanted = {event.asset} if event.asset else set(event.assets or [])
        return [a for a in assets if a.id in wanted]
    candidates = [a for a in assets if event.types is None or a.type in event.types]
    share = event.share or 0.0
    count = min(len(candidates), max(1, round(share * len(candidates))))
    ranked = sorted(candidates, key=lambda a: draw(scenario.seed, Stream.SELECT, index, a.key))
    chosen = {a.id for a in ranked[:count]}
    return [a for a in candidates if a.id in chosen]


def _value(scenario: Scenario, index: int, asset: AssetSpec, slot: int, value: Spread) -> float:
    """A fixed value, or one drawn for this asset from a [low, high] range."""
    if isinstance(value, tuple):
        return uniform(value[0], value[1], scenario.seed, Stream.PARAMETER, index, asset.key, slot)
    return value


def _incident(
    scenario: Scenario, index: int, event: Event, asset: AssetSpec, start: float
) -> Incident:
    """The concrete incident of one event on one asset."""
    end_of_scenario = start + scenario.days * DAY_S
    first = _value(scenario, index, asset, 0, event.start_day)
    days = getattr(event, "days", None)
    length = None if days is None else _value(scenario, index, asset, 1, days)
    whole_days = isinstance(event, UtilizationDecline | SeasonalDip) or (
        isinstance(event, Silence) and event.cause == "parked"
    )
    if whole_days:  # utilization changes start and end at midnight
        first = float(int(first))
        length = None if length is None else float(max(1, round(length)))
    begin = float(round(start + first * DAY_S))  # whole seconds: labels are exact
    end = end_of_scenario if length is None else min(end_of_scenario, begin + round(length * DAY_S))
    base = Incident(asset.id, "", "", begin, end, index, note=event.note)
    return _specialise(scenario, index, event, asset, base)


def _specialise(
    scenario: Scenario, index: int, event: Event, asset: AssetSpec, base: Incident
) -> Incident:
    """Fill in the kind-specific fields of an incident."""
    value = _value
    match event:
        case UtilizationDecline():
            magnitude = value(scenario, index, asset, 2, event.magnitude)
            ramp_s = float(round(value(scenario, index, asset, 3, event.ramp_days))) * DAY_S
            return replace(
                base, kind=event.kind, category="utilization", magnitude=magnitude, ramp_s=ramp_s
            )
        case SeasonalDip():
            magnitude = value(scenario, index, asset, 2, event.magnitude)
            return replace(
                base, kind="seasonal_dip", category="seasonal", magnitude=magnitude, name=event.name
            )
        case Fault():
            return _fault(scenario, index, event, asset, base)
        case Silence():
            return replace(base, kind=event.cause, category="silence")
        case Relocation():
            destination = event.to or scenario.sites[event.to_site or ""].position
            travel = float(round(value(scenario, index, asset, 2, event.travel_hours) * 3600.0))
            return replace(
                base,
                kind="relocation",
                category="relocation",
                destination=destination,
                travel_s=travel,
            )
        case DataFault():
            delay = value(scenario, index, asset, 2, event.delay_minutes) * 60.0
            return replace(
                base,
                kind=event.fault,
                category="data_fault",
                magnitude=event.message_share,
                message_share=event.message_share,
                delay_s=delay,
            )
    raise AssertionError(f"unhandled event {event!r}")  # pragma: no cover


def _fault(
    scenario: Scenario, index: int, event: Fault, asset: AssetSpec, base: Incident
) -> Incident:
    """A machine fault incident, with its default magnitude and sensor when not given."""
    magnitude: float | None = None
    if event.fault != "sensor_failure":
        given = event.magnitude
        default = FAULT_MAGNITUDES[event.fault]
        magnitude = default if given is None else _value(scenario, index, asset, 2, given)
    metric = (event.metric or "temperature") if event.fault == "sensor_failure" else ""
    mode = event.mode if event.fault == "sensor_failure" else ""
    spike = min(event.spike_hours * 3600.0, (base.end - base.start) / 2)
    return replace(
        base,
        kind=event.fault,
        category="fault",
        magnitude=magnitude,
        metric=metric,
        mode=mode,
        spike_s=spike if event.fault == "bearing_wear" else 0.0,
    )


__all__ = ["DAY_S", "PROFILES", "AssetSpec", "Incident", "ResolvedScenario", "resolve"]
