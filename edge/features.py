"""Local features computed at the edge: machine state with hysteresis, run hours, vibration RMS.

Pure code, no I/O: the agent feeds each poll's readings to `FeatureEngine.process` and stores
what comes out (derived readings and `MachineEvent`s) with the readings, together with the
engine's `snapshot()`, so the run-hour counter and the machine state survive restarts.

A missing reading is missing: it neither changes the state nor counts run hours, and run hours
never count across a gap longer than `max_gap`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import IntEnum

from edge.config import FeaturesConfig, MachineStateConfig, VibrationRmsConfig
from leasewatch.wire import MachineEvent, Reading

STATE_METRIC = "state"
RUN_HOURS_METRIC = "edge_run_hours"


class MachineState(IntEnum):
    """What a machine is doing, as the `state` reading carries it."""

    OFF = 0
    IDLE = 1
    RUNNING = 2


@dataclass(frozen=True, slots=True)
class FeatureOutput:
    """Derived readings and events of one poll."""

    readings: list[Reading] = field(default_factory=list)
    events: list[MachineEvent] = field(default_factory=list)


def classify(config: MachineStateConfig, value: float, current: MachineState) -> MachineState:
    """State a value indicates; leaving a state needs the value `hysteresis` below its threshold."""
    running_at = config.running_above - (
        config.hysteresis if current is MachineState.RUNNING else 0
    )
    idle_at = config.idle_above - (config.hysteresis if current >= MachineState.IDLE else 0)
    if value > running_at:
        return MachineState.RUNNING
    if value > idle_at:
        return MachineState.IDLE
    return MachineState.OFF


@dataclass
class StateTracker:
    """Machine state of one sensor: hysteresis, minimum dwell, run-hour counter, start/stop."""

    config: MachineStateConfig
    state: MachineState | None = None
    run_hours: float = 0.0
    last_ts: datetime | None = None
    candidate: MachineState | None = None
    candidate_since: datetime | None = None
    withheld_hours: float = 0.0  # run time while a stop is pending, counted if it does not come

    def update(self, ts: datetime, value: float) -> FeatureOutput:
        """Take one sample of the metric; returns the state, run hours and any start/stop."""
        self._count_run_time(ts)
        current = self.state if self.state is not None else MachineState.OFF
        observed = classify(self.config, value, current)
        events: list[MachineEvent] = []
        if self.state is None:
            self.state = observed  # first sample ever: no transition was seen, no event
        elif observed == self.state:
            self.candidate = self.candidate_since = None
            self.run_hours += self.withheld_hours
            self.withheld_hours = 0.0
        else:
            running_side_changed = (observed is MachineState.RUNNING) != (
                self.candidate is MachineState.RUNNING
            )
            if self.candidate is None or running_side_changed:
                self.candidate_since = ts
            self.candidate = observed
            events = self._commit_if_dwelled(ts)
        return FeatureOutput(self._readings(ts), events)

    def _count_run_time(self, ts: datetime) -> None:
        """Add the time since the last sample while running, unless the gap is too long.

        While a stop is pending (not yet held for `min_dwell`) the time is withheld, so the
        counter never has to be taken back: it only ever grows.
        """
        if self.last_ts is not None and self.state is MachineState.RUNNING:
            elapsed = (ts - self.last_ts).total_seconds()
            if 0 < elapsed <= self.config.max_gap:
                if self.candidate is None:
                    self.run_hours += elapsed / 3600
                else:
                    self.withheld_hours += elapsed / 3600
        if self.last_ts is None or ts > self.last_ts:
            self.last_ts = ts

    def _commit_if_dwelled(self, ts: datetime) -> list[MachineEvent]:
        """Take the candidate state once it held `min_dwell`; correct run hours to its start."""
        since, new = self.candidate_since, self.candidate
        if since is None or new is None or (ts - since).total_seconds() < self.config.min_dwell:
            return []
        old, self.state = self.state, new
        self.candidate = self.candidate_since = None
        dwell_hours = max(0.0, (ts - since).total_seconds()) / 3600
        sensor = self.config.sensor
        if new is MachineState.RUNNING and old is not MachineState.RUNNING:
            self.run_hours += dwell_hours
            return [MachineEvent(sensor=sensor, kind="start", ts=since, detail=self._why(new))]
        if old is MachineState.RUNNING and new is not MachineState.RUNNING:
            self.withheld_hours = 0.0
            return [MachineEvent(sensor=sensor, kind="stop", ts=since, detail=self._why(new))]
        return []

    def _why(self, new: MachineState) -> str:
        return f"{self.config.metric} says {new.name.lower()}"

    def _readings(self, ts: datetime) -> list[Reading]:
        if self.state is None:
            return []
        sensor = self.config.sensor
        return [
            Reading(sensor=sensor, metric=STATE_METRIC, ts=ts, value=float(self.state)),
            Reading(
                sensor=sensor,
                metric=RUN_HOURS_METRIC,
                ts=ts,
                value=round(self.run_hours, 6),
                unit="h",
            ),
        ]

    def snapshot(self) -> str:
        """The tracker's durable part as JSON."""
        return json.dumps(
            {
                "state": None if self.state is None else int(self.state),
                "run_hours": self.run_hours,
                "last_ts": None if self.last_ts is None else self.last_ts.isoformat(),
            }
        )

    def restore(self, saved: str) -> None:
        """Continue from a snapshot taken before a restart."""
        data = json.loads(saved)
        self.state = None if data["state"] is None else MachineState(data["state"])
        self.run_hours = float(data["run_hours"])
        self.last_ts = None if data["last_ts"] is None else datetime.fromisoformat(data["last_ts"])


@dataclass
class RmsWindow:
    """Root mean square of one metric over fixed, clock-aligned windows."""

    config: VibrationRmsConfig
    window_start: datetime | None = None
    sum_squares: float = 0.0
    samples: int = 0
    unit: str = ""

    @property
    def output(self) -> str:
        """Metric name of the RMS readings."""
        return self.config.output or f"{self.config.metric}_rms"

    def update(self, ts: datetime, value: float, unit: str) -> list[Reading]:
        """Take one sample; returns the RMS of the previous window when this one closes it."""
        width = timedelta(seconds=self.config.window)
        emitted: list[Reading] = []
        if self.window_start is not None and ts >= self.window_start + width:
            emitted = self._close(self.window_start + width)
        if self.window_start is None or not self.samples:
            epoch = ts.timestamp()
            aligned = epoch - math.fmod(epoch, self.config.window)
            self.window_start = datetime.fromtimestamp(aligned, ts.tzinfo)
        self.sum_squares += value * value
        self.samples += 1
        self.unit = unit
        return emitted

    def _close(self, end: datetime) -> list[Reading]:
        if not self.samples:
            return []
        rms = math.sqrt(self.sum_squares / self.samples)
        self.sum_squares, self.samples = 0.0, 0
        return [
            Reading(
                sensor=self.config.sensor, metric=self.output, ts=end, value=rms, unit=self.unit
            )
        ]


class FeatureEngine:
    """Every configured feature, fed with each poll's readings."""

    def __init__(self, config: FeaturesConfig, saved: dict[str, str] | None = None) -> None:
        self.trackers = {(c.sensor, c.metric): StateTracker(c) for c in config.machine_state}
        self.windows = {(c.sensor, c.metric): RmsWindow(c) for c in config.vibration_rms}
        for (sensor, metric), tracker in self.trackers.items():
            if (snapshot := (saved or {}).get(_state_key(sensor, metric))) is not None:
                tracker.restore(snapshot)

    @property
    def enabled(self) -> bool:
        """Whether any feature is configured."""
        return bool(self.trackers or self.windows)

    def process(self, readings: list[Reading]) -> FeatureOutput:
        """Derived readings and events from one poll's readings."""
        output = FeatureOutput()
        for reading in readings:
            key = (reading.sensor, reading.metric)
            if (tracker := self.trackers.get(key)) is not None:
                derived = tracker.update(reading.ts, reading.value)
                output.readings.extend(derived.readings)
                output.events.extend(derived.events)
            if (window := self.windows.get(key)) is not None:
                output.readings.extend(window.update(reading.ts, reading.value, reading.unit))
        return output

    def snapshot(self) -> dict[str, str]:
        """Durable state of every tracker, keyed for the buffer's state table."""
        return {
            _state_key(sensor, metric): tracker.snapshot()
            for (sensor, metric), tracker in self.trackers.items()
        }


def _state_key(sensor: str, metric: str) -> str:
    return f"feature:state:{sensor}:{metric}"
