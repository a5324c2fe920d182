"""Physical models of a leased machine: what its controller holds at a given wall-clock time.

`MachineModel` is a small, seeded simulation (shift duty cycle with random short stops,
load-following motor current, thermal lag, vibration, a run-hour meter). Its state at a time
depends only on the seed, the parameters, the first time it was asked about and that time: not on
how often it was asked in between. `HeldMachine` holds values a test sets explicitly.
"""

from __future__ import annotations

import functools
import math
import random
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, time, tzinfo
from typing import Protocol

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
    """Anything a simulated device can serve: a state for each wall-clock time."""

    def advance(self, now: datetime) -> MachineState:
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

    def in_shift(self, at: datetime) -> bool:
        """True on a workday between shift start and shift end (local to `tz`)."""
        local = at.astimezone(self.tz)
        return (
            local.weekday() in self.workdays and self.shift_start <= local.time() < self.shift_end
        )


@functools.lru_cache(maxsize=4096)
def _block_draws(seed: int, stream: str, block: int) -> tuple[float, float, float]:
    """Three uniform draws fixed by (seed, stream, block): the same on every run and platform."""
    rng = random.Random(f"{seed}:{stream}:{block}")
    return rng.random(), rng.random(), rng.random()


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
        block = int(g // self.duty.stop_block_s)
        return not any(self._in_stop(g, b) for b in (block - 1, block))

    def _in_stop(self, g: float, block: int) -> bool:
        """Whether grid time `g` falls in the random stop that starts in `block`, if any."""
        happens, offset, length = _block_draws(self.seed, "stop", block)
        if happens >= self.duty.stop_probability:
            return False
        start = block * self.duty.stop_block_s + self._quantize(offset * self.duty.stop_block_s)
        span = self.duty.stop_max_s - self.duty.stop_min_s
        duration = self.duty.stop_min_s + self._quantize(length * span)
        return start <= g < start + duration

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

    def _quantize(self, seconds: float) -> float:
        """Round a duration down to whole model steps."""
        return math.floor(seconds / self.step_s) * self.step_s


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
