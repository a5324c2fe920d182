"""One scenario asset as a machine: its signals at any instant, with its faults applied.

`ScenarioAsset.values(t)` is what the gateway's local features read at epoch second `t`: the
running state, the run-hour meter, motor current, temperature (first-order thermal lag, exact
between the day plan's intervals), vibration and the controller's fault code; `None` for a
reading that is missing. `advance(now)` serves the same asset through the `Machine` protocol,
so a Modbus slave can serve a scenario asset too.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from firmware_sim.machine import MachineState
from firmware_sim.scenarios.effects import (
    FAULT_SHIFTS,
    NO_SHIFT,
    OUT_OF_RANGE,
    OVERHEAT_CODE,
    OVERLOAD_CODE,
    failed_value,
    shift_at,
)
from firmware_sim.scenarios.expand import DAY_S, Incident
from firmware_sim.scenarios.timeline import AssetTimeline, DayPlan

METRICS = ("running", "motor_current", "temperature", "vibration_rms", "run_hours", "fault_code")
UNITS = ("", "A", "degC", "mm/s", "h", "")
SENSOR = "machine"
Values = tuple[float | None, ...]
#: start, end, current (A), settling temperature, temperature at start and at end (degC)
_Segment = tuple[float, float, float, float, float, float]


class ScenarioAsset:
    """An asset's signals from its timeline and faults; implements the `Machine` protocol."""

    def __init__(self, timeline: AssetTimeline, incidents: tuple[Incident, ...]) -> None:
        """Keep the faults that change signals and the sensor failures."""
        self.timeline = timeline
        self.profile = timeline.profile
        self._faults = tuple(i for i in incidents if i.kind in FAULT_SHIFTS)
        self._failures = tuple(i for i in incidents if i.kind == "sensor_failure")
        self._phase = (timeline.spec.key % 997) / 997 * 2 * math.pi
        self._thermal: dict[int, tuple[_Segment, ...]] = {}
        self._stuck: dict[tuple[int, int], float] = {}

    def values(self, t: float) -> Values:
        """Readings at epoch second `t`, rounded to the register resolution; None when missing."""
        raw = self._healthy(t)
        for incident in self._failures:
            if incident.start <= t < incident.end:
                index = METRICS.index(incident.metric)
                raw[index] = failed_value(incident, raw[index], self._stuck_value(incident, index))
        running, current, temperature, vibration, run_hours, code = raw
        return (
            running,
            None if current is None else round(current, 2),
            None if temperature is None else round(temperature, 1),
            None if vibration is None else round(vibration, 2),
            None if run_hours is None else round(run_hours, 3),
            code,
        )

    def _healthy(self, t: float) -> list[float | None]:
        """Readings without sensor failures (machine faults included)."""
        p = self.profile
        day = self.timeline.day_of(t)
        segment, temperature = self._segment_at(t, self._segments(self.timeline.plan(day)))
        shift = shift_at(self._faults, t) if self._faults else NO_SHIFT
        wobble = math.sin(t / 23.0 + self._phase)
        if segment is None:
            current = p.idle_current * (1 + 0.05 * wobble)
            vibration = 0.06 + 0.02 * wobble
            code = 0
        else:
            current = segment[2] * (1 + 0.01 * math.sin(t / 37.0 + self._phase))
            vibration = (p.vibration_base + p.vibration_per_a * current) * shift.vibration_factor
            vibration *= 1 + 0.04 * wobble
            code = shift.fault_code
            if temperature > p.overheat_alarm_c:
                code = max(code, OVERHEAT_CODE)
            if current > p.overload_alarm_a:
                code = max(code, OVERLOAD_CODE)
        temperature += 0.1 * wobble
        running = 0.0 if segment is None else 1.0
        run_hours = self.timeline.run_hours_at(t)
        return [running, current, temperature, vibration, run_hours, float(code)]

    def _segments(self, plan: DayPlan) -> tuple[_Segment, ...]:
        """The day's running intervals with their currents and temperatures (cached per day)."""
        found = self._thermal.get(plan.day)
        if found is not None:
            return found
        p = self.profile
        ambient, tau = p.ambient_c, p.thermal_tau_s
        last_end, last_temp = self.timeline.start_ts + plan.day * DAY_S, ambient
        segments = []
        for start, end, level in plan.intervals:
            shift = shift_at(self._faults, start) if self._faults else NO_SHIFT
            current = level * shift.current_factor
            target = ambient + p.heat_c_per_a * current + shift.heat_offset_c
            at_start = ambient + (last_temp - ambient) * math.exp(-(start - last_end) / tau)
            at_end = target + (at_start - target) * math.exp(-(end - start) / tau)
            segments.append((start, end, current, target, at_start, at_end))
            last_end, last_temp = end, at_end
        if len(self._thermal) > 8:
            self._thermal.clear()
        found = self._thermal[plan.day] = tuple(segments)
        return found

    def _segment_at(
        self, t: float, segments: tuple[_Segment, ...]
    ) -> tuple[_Segment | None, float]:
        """The running segment containing `t` (None when idle) and the temperature at `t`."""
        p = self.profile
        ambient, tau = p.ambient_c, p.thermal_tau_s
        last_end, last_temp = -math.inf, ambient
        for segment in segments:
            start, end, _, target, at_start, at_end = segment
            if t < start:
                break
            if t < end:
                return segment, target + (at_start - target) * math.exp(-(t - start) / tau)
            last_end, last_temp = end, at_end
        if last_end == -math.inf:
            return None, ambient
        return None, ambient + (last_temp - ambient) * math.exp(-(t - last_end) / tau)

    def _stuck_value(self, incident: Incident, index: int) -> float:
        """The value a stuck sensor keeps: its reading when it failed."""
        key = (incident.event, index)
        if key not in self._stuck:
            value = self._healthy(incident.start)[index]
            self._stuck[key] = 0.0 if value is None else value
        return self._stuck[key]

    def advance(self, now: datetime) -> MachineState:
        """The state at `now` as a generic machine (a missing reading reads out of range)."""
        if now.tzinfo is None:
            raise ValueError("advance() needs a timezone-aware datetime")
        values = self.values(now.timestamp())
        held = [
            OUT_OF_RANGE.get(metric, 0.0) if value is None else value
            for metric, value in zip(METRICS, values, strict=True)
        ]
        return MachineState(
            at=now.astimezone(UTC),
            running=held[0] == 1.0,
            motor_current=held[1],
            temperature=held[2],
            vibration_rms=held[3],
            run_hours=held[4],
            fault_code=int(held[5]),
        )
