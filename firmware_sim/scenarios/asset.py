"""One scenario asset as a machine: its signals at any instant, with its faults applied.

`ScenarioAsset.values(t)` is what the gateway's local features read at epoch second `t`: the
running state, the run-hour meter, motor current, temperature (first-order thermal lag, exact
between the day plan's intervals), vibration and the controller's fault code; `None` for a
reading that is missing. `advance(now)` serves the same asset through the `Machine` protocol,
so a Modbus slave can serve a scenario asset too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import NamedTuple

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
#: start, end, current (A), settling temperature, temperature at start and at end (degC),
#: running seconds of the day before it
_Segment = tuple[float, float, float, float, float, float, float]


class _Day(NamedTuple):
    """What every reading of one day of an asset shares."""

    plan: DayPlan
    segments: tuple[_Segment, ...]
    hours_before: float  # the run-hour meter at the day's start


class ScenarioAsset:
    """An asset's signals from its timeline and faults; implements the `Machine` protocol."""

    def __init__(self, timeline: AssetTimeline, incidents: tuple[Incident, ...]) -> None:
        """Keep the faults that change signals and the sensor failures."""
        self.timeline = timeline
        self.profile = timeline.profile
        self._faults = tuple(i for i in incidents if i.kind in FAULT_SHIFTS)
        self._failures = tuple(i for i in incidents if i.kind == "sensor_failure")
        self._phase = (timeline.spec.key % 997) / 997 * 2 * math.pi
        self._days: dict[int, _Day] = {}
        self._stuck: dict[tuple[int, int], float] = {}

    def values(self, t: float) -> Values:
        """Readings at epoch second `t`, rounded to the register resolution; None when missing."""
        return self._values_in(t, self._day(self.timeline.day_of(t)))

    def values_over(self, times: Sequence[float]) -> list[Values]:
        """`values` at each of the ascending `times` (the day looked up once if they share it)."""
        day_of = self.timeline.day_of
        if not times or day_of(times[0]) != day_of(times[-1]):
            return [self.values(t) for t in times]
        day = self._day(day_of(times[0]))
        return [self._values_in(t, day) for t in times]

    def _values_in(self, t: float, day: _Day) -> Values:
        """`values` at `t`, an instant of `day`."""
        raw: Sequence[float | None] = self._healthy(t, day)
        if self._failures:
            raw = self._with_failures(t, list(raw))
        running, current, temperature, vibration, run_hours, code = raw
        return (
            running,
            None if current is None else round(current, 2),
            None if temperature is None else round(temperature, 1),
            None if vibration is None else round(vibration, 2),
            None if run_hours is None else round(run_hours, 3),
            code,
        )

    def _with_failures(self, t: float, raw: list[float | None]) -> list[float | None]:
        """Readings at `t` with the sensor failures active then (a failed reading may be None)."""
        for incident in self._failures:
            if incident.start <= t < incident.end:
                index = METRICS.index(incident.metric)
                raw[index] = failed_value(incident, raw[index], self._stuck_value(incident, index))
        return raw

    def _healthy(self, t: float, day: _Day) -> tuple[float, float, float, float, float, float]:
        """Readings without sensor failures (machine faults included) at `t`, during `day`."""
        p = self.profile
        segment, temperature, running_s = self._segment_at(t, day.segments)
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
        run_hours = day.hours_before
        if day.plan.day >= 0:  # the meter counts from the scenario's start
            run_hours += running_s / 3600.0
        return (running, current, temperature, vibration, run_hours, float(code))

    def _day(self, day: int) -> _Day:
        """The plan, segments and meter of a day (cached, the last few days)."""
        found = self._days.get(day)
        if found is None:
            if len(self._days) > 8:
                self._days.clear()
            plan = self.timeline.plan(day)
            hours = self.timeline.hours_before(day)
            found = self._days[day] = _Day(plan, self._segments(plan), hours)
        return found

    def _segments(self, plan: DayPlan) -> tuple[_Segment, ...]:
        """The day's running intervals with their currents, temperatures and running before."""
        p = self.profile
        ambient, tau = p.ambient_c, p.thermal_tau_s
        last_end, last_temp = self.timeline.start_ts + plan.day * DAY_S, ambient
        segments = []
        for (start, end, level), before in zip(plan.intervals, plan.run_before, strict=True):
            shift = shift_at(self._faults, start) if self._faults else NO_SHIFT
            current = level * shift.current_factor
            target = ambient + p.heat_c_per_a * current + shift.heat_offset_c
            at_start = ambient + (last_temp - ambient) * math.exp(-(start - last_end) / tau)
            at_end = target + (at_start - target) * math.exp(-(end - start) / tau)
            segments.append((start, end, current, target, at_start, at_end, before))
            last_end, last_temp = end, at_end
        return tuple(segments)

    def _segment_at(
        self, t: float, segments: tuple[_Segment, ...]
    ) -> tuple[_Segment | None, float, float]:
        """The running segment at `t` (None when idle), the temperature and running seconds then.

        The running seconds are added in interval order, as summing the day's intervals would.
        """
        p = self.profile
        ambient, tau = p.ambient_c, p.thermal_tau_s
        last = None
        for segment in segments:
            start, end, _, target, at_start, _, before = segment
            if t < start:
                break
            if t < end:
                temperature = target + (at_start - target) * math.exp(-(t - start) / tau)
                return segment, temperature, before + (t - start)
            last = segment
        if last is None:
            return None, ambient, 0.0
        start, end, _, _, _, at_end, before = last
        temperature = ambient + (at_end - ambient) * math.exp(-(t - end) / tau)
        return None, temperature, before + (end - start)

    def _stuck_value(self, incident: Incident, index: int) -> float:
        """The value a stuck sensor keeps: its reading when it failed."""
        key = (incident.event, index)
        if key not in self._stuck:
            start = incident.start
            value = self._healthy(start, self._day(self.timeline.day_of(start)))[index]
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
