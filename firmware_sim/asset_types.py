"""The simulated asset types: each a controller register map and a physical model.

Every type's model is an `AssetModel`, the shared engine: a work calendar (shifts, holidays,
planned stops) with random short stops, a load level per block, first-order thermal lag, wear
that accumulates with running hours plus an optional bearing fault, and cumulative meters that
only count while running. An `AssetProfile` says how one type loads, heats and vibrates and what
its controller reports. `ASSET_TYPES` is the explicit registry; "generic" is `MachineModel`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Protocol

from firmware_sim.calendar import DEFAULT_CALENDAR, WorkCalendar
from firmware_sim.machine import (
    AssetProfile,
    AssetState,
    Device,
    DutyCycle,
    MachineModel,
    Noise,
    Physics,
    in_random_stop,
    uniform,
)
from firmware_sim.register_map import (
    CLOCK_METRIC,
    CNC_MAP,
    COMPRESSOR_MAP,
    EXCAVATOR_MAP,
    MACHINE_MAP,
    TRUCK_MAP,
    RegisterMap,
)

_HOUR_S = 3600.0


class AssetModel:
    """A seeded asset: work calendar, load, thermal lag, wear and bearing fault, meters.

    Like `MachineModel`, its state at a time depends only on the seed, the parameters, the first
    time asked and that time. `physics` and `calendar` may be replaced between calls to script a
    scenario; the change applies from the current model step on.
    """

    def __init__(
        self,
        seed: int,
        profile: AssetProfile,
        initial_run_hours: float = 0.0,
        *,
        calendar: WorkCalendar | None = None,
        bearing_fault_at: datetime | None = None,
        step_s: float = 10.0,
    ) -> None:
        """Configure the model; its clock starts at the first `advance`."""
        if initial_run_hours < 0 or step_s <= 0:
            raise ValueError("initial_run_hours >= 0 and step_s > 0 required")
        if bearing_fault_at is not None and bearing_fault_at.tzinfo is None:
            raise ValueError("bearing_fault_at must be timezone-aware")
        self.seed = seed
        self.profile = profile
        self.physics = profile.physics
        self.calendar = calendar or DEFAULT_CALENDAR
        self.bearing_fault_at = bearing_fault_at
        self.step_s = step_s
        self._t: float | None = None
        self._last_t = -math.inf
        self._temperature = profile.physics.ambient_c
        self._run_hours = initial_run_hours
        mean_load = sum(profile.physics.load_range) / 2
        self._meters = {k: v * initial_run_hours for k, v in profile.meters(mean_load).items()}
        self._onset_hours: float | None = None

    def advance(self, now: datetime) -> AssetState:
        """State at `now`; an earlier time than the last one returns the last time's state."""
        if now.tzinfo is None:
            raise ValueError("advance() needs a timezone-aware datetime")
        t = max(now.timestamp(), self._last_t)
        self._last_t = t
        if self._t is None:
            self._t = math.floor(t / self.step_s) * self.step_s
        onset = None if self.bearing_fault_at is None else self.bearing_fault_at.timestamp()
        while self._t + self.step_s <= t:
            self._temperature, self._run_hours, self._meters = self._integrate(self._t, self.step_s)
            self._t += self.step_s
            if self._onset_hours is None and onset is not None and self._t >= onset:
                self._onset_hours = self._run_hours
        temperature, run_hours, meters = self._integrate(self._t, t - self._t)
        return self._state(t, temperature, run_hours, meters)

    def is_running(self, t: float) -> bool:
        """Whether the asset runs at epoch second `t` (constant on each model step)."""
        g = math.floor(t / self.step_s) * self.step_s
        if not self.calendar.is_working_at(g):
            return False
        return not in_random_stop(self.seed, self.profile.duty, g, self.step_s)

    def load(self, t: float) -> float:
        """Load (0..1) while running at epoch second `t`: one level per load block."""
        low, high = self.physics.load_range
        return low + (high - low) * uniform(self.seed, "load", int(t // self.physics.load_block_s))

    def _integrate(self, t0: float, dt: float) -> tuple[float, float, dict[str, float]]:
        """Temperature, run hours and meters `dt` seconds after the committed state at `t0`."""
        p = self.physics
        running = self.is_running(t0)
        load = self.load(t0) if running else 0.0
        rise0, rise1 = p.temp_rise_c
        target = p.ambient_c + (rise0 + (rise1 - rise0) * load if running else 0.0)
        tau = p.heat_tau_s if target > self._temperature else p.cool_tau_s
        temperature = target + (self._temperature - target) * math.exp(-dt / tau)
        if not running:
            return temperature, self._run_hours, self._meters
        hours = dt / _HOUR_S
        rates = self.profile.meters(load)
        meters = {k: v + rates.get(k, 0.0) * hours for k, v in self._meters.items()}
        return temperature, self._run_hours + hours, meters

    def _state(
        self, t: float, temperature: float, run_hours: float, meters: dict[str, float]
    ) -> AssetState:
        """The full state at `t`, readings included."""
        p = self.physics
        running = self.is_running(t)
        load = self.load(t) if running else 0.0
        noise = Noise(self.seed, int(t))
        wear = run_hours / p.wear_life_h
        damage = 0.0
        if self._onset_hours is not None:
            grown = math.expm1(max(0.0, run_hours - self._onset_hours) / p.bearing_growth_h)
            damage = min(p.max_bearing_damage, grown)
        if running:
            low, high = p.vibration_mm_s
            vibration = (low + (high - low) * load) * (1 + wear + damage)
            vibration *= 1 + 0.04 * noise.gauss("vibration")
        else:
            vibration = p.idle_vibration_mm_s * (1 + 0.2 * noise.gauss("vibration"))
        state = AssetState(
            at=datetime.fromtimestamp(t, UTC),
            running=running,
            load=load,
            temperature=temperature,
            vibration_rms=vibration,
            run_hours=run_hours,
            wear=wear,
            bearing_damage=damage,
            meters=dict(meters),
        )
        clock = {CLOCK_METRIC: float(math.floor(t))}  # every asset type's controller has one
        return replace(state, readings=self.profile.readings(state, noise) | clock)


# --- the asset types ---------------------------------------------------------------------------


def _alarm(readings: Mapping[str, float], limits: tuple[tuple[str, float, int], ...]) -> float:
    """Code of the first alarm whose metric is above its limit, 0 when none is."""
    return float(next((code for metric, limit, code in limits if readings[metric] > limit), 0))


def _truck_speed(load: float) -> float:
    """Road speed (km/h) at an engine load: idling in traffic below 15 %."""
    return 0.0 if load < 0.15 else 90.0 * (load - 0.15) / 0.8


def _truck_meters(load: float) -> dict[str, float]:
    """Distance (km) and fuel burnt (l) per running hour."""
    return {"distance_km": _truck_speed(load), "fuel_l": 3.0 + 35.0 * load}


def _truck(s: AssetState, n: Noise) -> dict[str, float]:
    """A tractor unit's telematics readings."""
    on = s.running
    burnt = s.meters["fuel_l"] + 480.0 * n.constant("tank")  # the tank is refilled at 20 %
    values = {
        "engine_rpm": 600.0 + 1200.0 * s.load + 15.0 * n.gauss("rpm") if on else 0.0,
        "vehicle_speed": max(0.0, _truck_speed(s.load) + 1.5 * n.gauss("speed")) if on else 0.0,
        "coolant_temp": s.temperature + 0.3 * n.gauss("coolant"),
        "fuel_level": 100.0 - (burnt % 480.0) / 6.0,
        "engine_hours": s.run_hours,
        "odometer": s.meters["distance_km"],
    }
    return values | {"fault_code": _alarm(values, (("coolant_temp", 105.0, 110),))}


def _excavator(s: AssetState, n: Noise) -> dict[str, float]:
    """An excavator controller's readings: a dig cycle about every 20 s while running."""
    on = s.running
    cycle = 0.5 - 0.5 * math.cos(2 * math.pi * (s.at.timestamp() % 20.0) / 20.0)
    pressure = 40.0 + 280.0 * s.load * cycle + 4.0 * n.gauss("pressure")
    values = {
        "running": 1.0 if on else 0.0,
        "engine_load": min(100.0, 20.0 + 75.0 * s.load + 2.0 * n.gauss("load")) if on else 0.0,
        "hydraulic_pressure": pressure if on else 0.0,
        "coolant_temp": s.temperature + 0.3 * n.gauss("coolant"),
        "engine_hours": s.run_hours,
    }
    return values | {"fault_code": _alarm(values, (("coolant_temp", 105.0, 110),))}


def _cnc(s: AssetState, n: Noise) -> dict[str, float]:
    """A CNC controller's readings: one operation (speed, cut load) per load block."""
    on = s.running
    values = {
        "program_running": 1.0 if on else 0.0,
        "spindle_speed": 2000.0 + 8000.0 * s.load + 5.0 * n.gauss("speed") if on else 0.0,
        "spindle_current": 1.5 + 20.0 * s.load + 0.3 * n.gauss("current") if on else 0.0,
        "spindle_temp": s.temperature + 0.2 * n.gauss("temp"),
        "vibration_rms": s.vibration_rms,
        "run_hours": s.run_hours,
    }
    limits = (("spindle_temp", 60.0, 2001), ("vibration_rms", 7.1, 2002))
    return values | {"fault_code": _alarm(values, limits)}


_COMPRESSOR_CYCLE_S = 120.0  # one load/unload cycle; the load is the loaded share of it
_COMPRESSOR_FLA = 95.0  # full-load motor current (A)


def _compressor(s: AssetState, n: Noise) -> dict[str, float]:
    """A screw compressor's readings: loads at 6.5 bar, unloads at 7.5 bar."""
    phase = s.at.timestamp() % _COMPRESSOR_CYCLE_S
    loaded_s = s.load * _COMPRESSOR_CYCLE_S
    loaded = s.running and phase < loaded_s
    if loaded:
        pressure, current = 6.5 + phase / loaded_s, (0.85 + 0.1 * s.load) * _COMPRESSOR_FLA
    elif s.running:
        pressure = 7.5 - (phase - loaded_s) / (_COMPRESSOR_CYCLE_S - loaded_s)
        current = 0.35 * _COMPRESSOR_FLA
    else:
        pressure = current = 0.0
    on = 1.0 if s.running else 0.0
    values = {
        "load_state": 2.0 if loaded else on,
        "motor_current": current + on * 0.8 * n.gauss("current"),
        "discharge_pressure": pressure + on * 0.02 * n.gauss("pressure"),
        "discharge_temp": s.temperature + 0.3 * n.gauss("temp"),
        "vibration_rms": s.vibration_rms,
        "run_hours": s.run_hours,
        "loaded_hours": s.meters["loaded_hours"],
    }
    limits = (("discharge_temp", 110.0, 1), ("vibration_rms", 7.1, 2))
    return values | {"fault_code": _alarm(values, limits)}


TRUCK_PROFILE = AssetProfile(
    physics=Physics(
        load_range=(0.05, 0.95),
        load_block_s=300.0,
        ambient_c=12.0,
        temp_rise_c=(76.0, 84.0),  # thermostat: 88..96 degC
        heat_tau_s=480.0,
        cool_tau_s=2400.0,
        vibration_mm_s=(0.8, 1.6),
    ),
    readings=_truck,
    meters=_truck_meters,
    duty=DutyCycle(stop_probability=0.5, stop_min_s=300.0, stop_max_s=1500.0),
)
EXCAVATOR_PROFILE = AssetProfile(
    physics=Physics(
        load_range=(0.35, 1.0),
        load_block_s=900.0,
        ambient_c=12.0,
        temp_rise_c=(70.0, 80.0),
        heat_tau_s=600.0,
        cool_tau_s=2400.0,
        vibration_mm_s=(2.0, 4.0),
    ),
    readings=_excavator,
    duty=DutyCycle(stop_probability=0.4, stop_min_s=300.0, stop_max_s=1200.0),
)
CNC_PROFILE = AssetProfile(
    physics=Physics(
        load_range=(0.2, 0.9),
        load_block_s=1200.0,
        ambient_c=20.0,
        temp_rise_c=(8.0, 25.0),
        heat_tau_s=900.0,
        cool_tau_s=1800.0,
        vibration_mm_s=(0.6, 1.4),
        idle_vibration_mm_s=0.03,
        wear_life_h=30_000.0,
        bearing_growth_h=80.0,
    ),
    readings=_cnc,
    duty=DutyCycle(stop_probability=0.6, stop_min_s=120.0, stop_max_s=900.0),
)
COMPRESSOR_PROFILE = AssetProfile(
    physics=Physics(
        load_range=(0.3, 0.95),
        load_block_s=900.0,
        ambient_c=20.0,
        temp_rise_c=(45.0, 65.0),
        heat_tau_s=300.0,
        cool_tau_s=1500.0,
        vibration_mm_s=(1.5, 2.5),
        bearing_growth_h=50.0,
    ),
    readings=_compressor,
    meters=lambda load: {"loaded_hours": load},
    duty=DutyCycle(stop_probability=0.1, stop_min_s=300.0, stop_max_s=600.0),
)


class ModelFactory(Protocol):
    """Builds one asset's model from its seed and meter reading."""

    def __call__(
        self,
        seed: int,
        initial_run_hours: float = 0.0,
        *,
        calendar: WorkCalendar | None = None,
        bearing_fault_at: datetime | None = None,
    ) -> Device:
        """A model of the asset; `calendar` None means the type's default shifts."""
        ...


@dataclass(frozen=True, slots=True)
class _ProfileModel:
    """Model factory of a type built on `AssetModel`."""

    profile: AssetProfile

    def __call__(
        self,
        seed: int,
        initial_run_hours: float = 0.0,
        *,
        calendar: WorkCalendar | None = None,
        bearing_fault_at: datetime | None = None,
    ) -> AssetModel:
        """An `AssetModel` of this profile."""
        return AssetModel(
            seed,
            self.profile,
            initial_run_hours,
            calendar=calendar,
            bearing_fault_at=bearing_fault_at,
        )


def _generic_model(
    seed: int,
    initial_run_hours: float = 0.0,
    *,
    calendar: WorkCalendar | None = None,
    bearing_fault_at: datetime | None = None,
) -> MachineModel:
    """The generic machine (`MachineModel`); it has no bearing model."""
    if bearing_fault_at is not None:
        raise ValueError("the generic machine has no bearing model: pick another asset type")
    duty = DutyCycle() if calendar is None else DutyCycle(calendar=calendar)
    return MachineModel(seed, initial_run_hours, duty=duty)


@dataclass(frozen=True, slots=True)
class AssetType:
    """One kind of leased asset: its controller's register map and its physical model."""

    name: str
    description: str
    register_map: RegisterMap
    model: ModelFactory


ASSET_TYPES: dict[str, AssetType] = {
    t.name: t
    for t in (
        AssetType("generic", "generic machine", MACHINE_MAP, _generic_model),
        AssetType("truck", "truck / tractor unit", TRUCK_MAP, _ProfileModel(TRUCK_PROFILE)),
        AssetType("excavator", "excavator", EXCAVATOR_MAP, _ProfileModel(EXCAVATOR_PROFILE)),
        AssetType("cnc", "CNC machining centre", CNC_MAP, _ProfileModel(CNC_PROFILE)),
        AssetType(
            "compressor", "screw compressor", COMPRESSOR_MAP, _ProfileModel(COMPRESSOR_PROFILE)
        ),
    )
}
#: What `--type mixed` cycles through, in order.
MIXED = ("truck", "excavator", "cnc", "compressor")


def asset_type(name: str) -> AssetType:
    """The registered asset type called `name`; ValueError lists the known ones."""
    try:
        return ASSET_TYPES[name]
    except KeyError as err:
        raise ValueError(f"unknown asset type {name!r}; known: {', '.join(ASSET_TYPES)}") from err
