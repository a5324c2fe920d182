"""Physical models of a leased machine: what its controller holds at a given wall-clock time.

`MachineModel` is the generic machine: a small, seeded simulation (shift duty cycle with random
short stops, load-following motor current, thermal lag, vibration, a run-hour meter). Its state at
a time depends only on the seed, the parameters, the first time it was asked about and that time:
not on how often it was asked in between. `HeldMachine` holds values a test sets explicitly.
The asset types' models (`firmware_sim.asset_types`) share `DutyCycle`, `in_random_stop`,
`uniform` and `Noise` with it.
"""

from __future__ import annotations

import functools
import math
import random
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, time, tzinfo
from typing import Protocol

from firmware_sim.calendar import WorkCalendar

_HOUR_S = 3600.0


@dataclass(frozen=True, slots=True)
class MachineState:
    """What the machine's controller holds at one instant (engineering units)."""

    at: datetime
    running: bool
    motor_current: float  # A
    temperature: float  # degC
    vibration_rms: float  # mm/s
    run_hours: float  # h
    fault_code: int = 0

    def values(self) -> dict[str, float]:
        """Engineering values keyed by register-map metric name."""
        return {
            "running": 1.0 if self.running else 0.0,
            "motor_current": self.motor_current,
            "temperature": self.temperature,
            "vibration_rms": self.vibration_rms,
            "run_hours": self.run_hours,
            "fault_code": float(self.fault_code),
        }


class Machine(Protocol):
    """A generic machine: a `MachineState` for each wall-clock time."""

    def advance(self, now: datetime) -> MachineState:
        """State at `now` (timezone-aware); never runs backwards."""
        ...


class DeviceState(Protocol):
    """What any simulated controller holds at one instant: values by register-map metric."""

    @property
    def at(self) -> datetime:
        """When the state holds."""
        ...

    def values(self) -> dict[str, float]:
        """Engineering values keyed by register-map metric name."""
        ...


class Device(Protocol):
    """Anything a simulated slave can serve (a `Machine` or an asset type's model)."""

    def advance(self, now: datetime) -> DeviceState:
        """State at `now` (timezone-aware); never runs backwards."""
        ...


@dataclass(frozen=True, slots=True)
class DutyCycle:
    """When the machine runs: shifts on workdays, with random short stops."""

    shift_start: time = time(6, 0)
    shift_end: time = time(22, 0)
    workdays: frozenset[int] = field(default_factory=lambda: frozenset(range(5)))  # Mon=0
    tz: tzinfo = UTC
    stop_block_s: float = 1800.0  # at most one random stop starts in each block
    stop_probability: float = 0.3
    stop_min_s: float = 120.0
    stop_max_s: float = 720.0
    calendar: WorkCalendar | None = None  # when set, it decides the shifts (fields above unused)

    def in_shift(self, at: datetime) -> bool:
        """Whether `at` is in a shift: per `calendar` if set, else workday and shift times."""
        if self.calendar is not None:
            return self.calendar.is_working(at)
        local = at.astimezone(self.tz)
        return (
            local.weekday() in self.workdays and self.shift_start <= local.time() < self.shift_end
        )


@functools.lru_cache(maxsize=4096)
def _block_draws(seed: int, stream: str, block: int) -> tuple[float, float, float]:
    """Three uniform draws fixed by (seed, stream, block): the same on every run and platform."""
    rng = random.Random(f"{seed}:{stream}:{block}")
    return rng.random(), rng.random(), rng.random()


def in_random_stop(seed: int, duty: DutyCycle, g: float, step_s: float) -> bool:
    """Whether grid time `g` falls in one of the duty cycle's random short stops."""
    block = int(g // duty.stop_block_s)
    for b in (block - 1, block):
        happens, offset, length = _block_draws(seed, "stop", b)
        if happens >= duty.stop_probability:
            continue
        start = b * duty.stop_block_s + _quantize(offset * duty.stop_block_s, step_s)
        duration = duty.stop_min_s + _quantize(length * (duty.stop_max_s - duty.stop_min_s), step_s)
        if start <= g < start + duration:
            return True
    return False


def _quantize(seconds: float, step_s: float) -> float:
    """Round a duration down to whole model steps."""
    return math.floor(seconds / step_s) * step_s


class MachineModel:
    """A seeded machine: duty cycle, motor current, thermal lag, vibration, run-hour meter."""

    def __init__(
        self,
        seed: int,
        initial_run_hours: float = 0.0,
        *,
        duty: DutyCycle | None = None,
        ambient_c: float = 18.0,
        thermal_tau_s: float = 900.0,
        current_range: tuple[float, float] = (8.5, 24.5),
        idle_current: float = 0.2,
        step_s: float = 10.0,
    ) -> None:
        """Configure the model; its clock starts at the first `advance`."""
        if initial_run_hours < 0 or thermal_tau_s <= 0 or step_s <= 0:
            raise ValueError("initial_run_hours >= 0, thermal_tau_s > 0 and step_s > 0 required")
        self.seed = seed
        self.duty = duty or DutyCycle()
        self.ambient_c = ambient_c
        self.thermal_tau_s = thermal_tau_s
        self.current_range = current_range
        self.idle_current = idle_current
        self.step_s = step_s
        self._phases = tuple(v * 2 * math.pi for v in _block_draws(seed, "phase", 0))
        self._t: float | None = None  # grid time (epoch s) the committed state belongs to
        self._last_t = -math.inf
        self._temperature = ambient_c
        self._run_hours = initial_run_hours

    def advance(self, now: datetime) -> MachineState:
        """State at `now`; an earlier time than the last one returns the last time's state."""
        if now.tzinfo is None:
            raise ValueError("advance() needs a timezone-aware datetime")
        t = max(now.timestamp(), self._last_t)
        self._last_t = t
        if self._t is None:
            self._t = self._grid(t)
        while self._t + self.step_s <= t:
            self._temperature, self._run_hours = self._integrate(self._t, self.step_s)
            self._t += self.step_s
        temperature, run_hours = self._integrate(self._t, t - self._t)
        running = self.is_running(t)
        return MachineState(
            at=datetime.fromtimestamp(t, UTC),
            running=running,
            motor_current=self._current(t, running),
            temperature=temperature,
            vibration_rms=self._vibration(t, running),
            run_hours=run_hours,
        )

    def is_running(self, t: float) -> bool:
        """Whether the machine runs at epoch second `t` (constant on each model step)."""
        g = self._grid(t)
        if not self.duty.in_shift(datetime.fromtimestamp(g, UTC)):
            return False
        return not in_random_stop(self.seed, self.duty, g, self.step_s)

    def _base_current(self, t: float, running: bool) -> float:
        """Load-following motor current without ripple: one load level per 10 minutes."""
        if not running:
            return self.idle_current
        load, _, _ = _block_draws(self.seed, "load", int(t // 600))
        low, high = self.current_range
        return low + (high - low) * load

    def _current(self, t: float, running: bool) -> float:
        """Motor current with a small deterministic ripple (A)."""
        if not running:
            return self.idle_current + 0.02 * math.sin(2 * math.pi * t / 41 + self._phases[0])
        ripple = 0.3 * math.sin(2 * math.pi * t / 37 + self._phases[0])
        ripple += 0.15 * math.sin(2 * math.pi * t / 7.3 + self._phases[1])
        return self._base_current(t, running) + ripple

    def _vibration(self, t: float, running: bool) -> float:
        """Vibration RMS (mm/s): background when idle, load-dependent when running."""
        wobble = math.sin(2 * math.pi * t / 23 + self._phases[2])
        if not running:
            return 0.08 + 0.02 * wobble
        return 1.8 + 0.1 * self._base_current(t, running) + 0.25 * wobble

    def _integrate(self, t0: float, dt: float) -> tuple[float, float]:
        """Temperature and run hours after `dt` seconds from the committed state at `t0`."""
        running = self.is_running(t0)
        target = self.ambient_c + 1.6 * self._base_current(t0, running)
        lag = 1.0 - math.exp(-dt / self.thermal_tau_s)
        temperature = self._temperature + (target - self._temperature) * lag
        run_hours = self._run_hours + (dt / _HOUR_S if running else 0.0)
        return temperature, run_hours

    def _grid(self, t: float) -> float:
        """Start of the model step containing `t`."""
        return math.floor(t / self.step_s) * self.step_s


class HeldMachine:
    """A machine whose values a test sets explicitly; `advance` returns them as they are."""

    def __init__(
        self,
        *,
        running: bool = False,
        motor_current: float = 0.0,
        temperature: float = 18.0,
        vibration_rms: float = 0.0,
        run_hours: float = 0.0,
        fault_code: int = 0,
    ) -> None:
        """Hold the given values."""
        self._state = MachineState(
            at=datetime.fromtimestamp(0, UTC),
            running=running,
            motor_current=motor_current,
            temperature=temperature,
            vibration_rms=vibration_rms,
            run_hours=run_hours,
            fault_code=fault_code,
        )

    def set(
        self,
        *,
        running: bool | None = None,
        motor_current: float | None = None,
        temperature: float | None = None,
        vibration_rms: float | None = None,
        run_hours: float | None = None,
        fault_code: int | None = None,
    ) -> None:
        """Change some held values; the others stay."""
        s = self._state
        self._state = replace(
            s,
            running=s.running if running is None else running,
            motor_current=s.motor_current if motor_current is None else motor_current,
            temperature=s.temperature if temperature is None else temperature,
            vibration_rms=s.vibration_rms if vibration_rms is None else vibration_rms,
            run_hours=s.run_hours if run_hours is None else run_hours,
            fault_code=s.fault_code if fault_code is None else fault_code,
        )

    def advance(self, now: datetime) -> MachineState:
        """The held values, stamped `now`."""
        return replace(self._state, at=now)


# --- deterministic draws for the asset types' models (firmware_sim.asset_types) -------------

_MASK64 = (1 << 64) - 1


def _mix(*parts: int) -> int:
    """A 64-bit hash of integers (splitmix64 rounds): the same on every run and platform."""
    h = 0
    for part in parts:
        h = (h + (part & _MASK64) + 0x9E3779B97F4A7C15) & _MASK64
        h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & _MASK64
        h ^= h >> 31
    return h


def uniform(seed: int, stream: str, *index: int) -> float:
    """A uniform draw in [0, 1) fixed by seed, stream name and index."""
    return (_mix(seed, zlib.crc32(stream.encode()), *index) >> 11) / 2.0**53


@dataclass(frozen=True, slots=True)
class Noise:
    """Deterministic measurement noise of one asset at one whole second."""

    seed: int
    second: int

    def gauss(self, stream: str) -> float:
        """Roughly normal, mean 0, sd 1, bounded to +-3 (so a reading never leaves its range)."""
        return 2.0 * (sum(uniform(self.seed, stream, self.second, i) for i in range(3)) - 1.5)

    def constant(self, stream: str) -> float:
        """Uniform in [0, 1), fixed by seed and stream alone: a per-asset constant."""
        return uniform(self.seed, stream)


# --- what the asset types' models are made of (the engine is asset_types.AssetModel) --------


@dataclass(frozen=True, slots=True)
class Physics:
    """How one kind of asset loads, heats, wears and vibrates."""

    load_range: tuple[float, float] = (0.3, 1.0)  # load while running, one level per block
    load_block_s: float = 600.0
    ambient_c: float = 15.0
    temp_rise_c: tuple[float, float] = (20.0, 40.0)  # above ambient, running at load 0 / 1
    heat_tau_s: float = 600.0  # first-order lag while warming
    cool_tau_s: float = 1800.0  # ... and while cooling
    vibration_mm_s: tuple[float, float] = (1.0, 2.0)  # running at load 0 / 1, no wear
    idle_vibration_mm_s: float = 0.05
    wear_life_h: float = 40_000.0  # running hours for wear alone to double the vibration
    bearing_growth_h: float = 60.0  # running hours for a bearing defect to grow e-fold
    max_bearing_damage: float = 12.0  # vibration of a failing bearing: at most x(1 + this)


@dataclass(frozen=True, slots=True)
class AssetState:
    """An asset at one instant: its physics and what its controller reports."""

    at: datetime
    running: bool
    load: float  # 0..1
    temperature: float  # degC, the model's main temperature
    vibration_rms: float  # mm/s at the main bearing (what a clamp-on band feels)
    run_hours: float  # h, counts only while running
    wear: float  # fraction of the wear life used
    bearing_damage: float  # 0 until a bearing fault starts, then grows
    meters: Mapping[str, float]  # cumulative meters (km, litres, loaded hours, ...)
    readings: Mapping[str, float] = field(default_factory=dict)

    def values(self) -> dict[str, float]:
        """Engineering values keyed by register-map metric name."""
        return dict(self.readings)


Readings = Callable[[AssetState, Noise], dict[str, float]]


def _no_meters(load: float) -> dict[str, float]:
    """No cumulative meters besides the run hours."""
    return {}


@dataclass(frozen=True, slots=True)
class AssetProfile:
    """One asset type's behaviour: physics, cumulative meters and the controller's readings."""

    physics: Physics
    readings: Readings
    meters: Callable[[float], dict[str, float]] = _no_meters  # load -> increase per running h
    duty: DutyCycle = field(default_factory=DutyCycle)  # random short stops; calendar unused
