"""Silence: why an asset went quiet, one finding per gateway, and parked assets.

Evidence rules (see docs/detection.md for the reasoning):
- The gateway is silent when no sample newer than `silent_after` has arrived (live or replayed).
- While silent, the class comes from what the last messages said: a `sensor_lost` event or a
  tamper detail shortly before -> tamper; the retained status turned offline (last will) at or
  after the last data -> network outage; no will -> power loss.
- When data comes back the class is settled: replayed samples filling the gap (the gateway kept
  sampling, so it had power) -> network outage; a new boot id without a filled gap -> power loss
  (tamper stays tamper when it was announced).
- Sensors removed while the gateway stays online: vibration and current both read zero for
  `zero_samples` samples after they read more (a mounted sensor always feels something) ->
  a tamper finding of its own (key `sensors_removed`).
- Parked: the machine has not run on its last `parked_days` working days (weekdays on which
  it usually runs, learned per weekday; days without data and known holidays do not count);
  at its home site the confidence is higher.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Literal

from cloud.alerts.signals import EvidenceValue, Finding, Severity
from cloud.detectors.base import finding
from cloud.detectors.inputs import AssetData, EventInput, MinuteSample, PositionInput, StatusInput
from cloud.detectors.state_json import build, dumps, loads

KEY = "silence"
Cause = Literal["network_outage", "power_cut", "tamper", "parked"]
_SEVERITY: dict[str, Severity] = {
    "tamper": Severity.CRITICAL,
    "power_cut": Severity.WARNING,
    "network_outage": Severity.INFO,
    "parked": Severity.INFO,
}
_WORDS = {
    "tamper": "the gateway reported its sensors lost (tamper) before going quiet",
    "network_outage": "the broker published the gateway's last will: the link dropped",
    "power_cut": "no last will and no warning: the gateway lost power",
    "parked": "data flows but the machine has not run",
}


@dataclass(frozen=True, slots=True)
class SilenceThresholds:
    """Evidence rules' time limits."""

    silent_after: timedelta = timedelta(minutes=30)
    will_slack: timedelta = timedelta(minutes=5)  # a will this long before the last data counts
    tamper_window: timedelta = timedelta(minutes=30)
    filled_share: float = 0.8  # replayed samples covering this share of the gap: it had power
    parked_days: int = 4  # working days in a row without running (chance runs of 3 are common)
    covered_hours: int = 12  # a day with data in fewer hours is not judged
    zero_samples: int = 10  # vibration and current both at zero this long: sensors removed
    zero_vibration: float = 0.005  # mm/s; a mounted sensor always feels more than this
    zero_current: float = 0.01  # A
    home_km: float = 1.0


@dataclass(frozen=True, slots=True)
class SilenceInputs:
    """What the runner knows about the gateway now, and what arrived since the last call."""

    minutes: tuple[MinuteSample, ...] = ()
    events: tuple[EventInput, ...] = ()
    status: StatusInput | None = None
    last_live_at: datetime | None = None
    boot: str | None = None
    positions: tuple[PositionInput, ...] = ()
    home: tuple[float, float] | None = None
    holidays: frozenset[date] = frozenset()


@dataclass(kw_only=True)
class Episode:
    """An open silence."""

    since: datetime
    cause: Cause
    confidence: float
    boot_before: str | None
    running_at_end: bool | None
    covered: int = 0  # samples received later for minutes inside the gap


@dataclass(kw_only=True)
class SilenceState:
    """Everything the silence detector remembers about one gateway."""

    version: Literal[1] = 1
    device: str
    last_seen: datetime | None = None
    boot: str | None = None
    running: bool | None = None
    last_running_at: datetime | None = None
    tamper_at: datetime | None = None
    near_home: bool | None = None
    silence: Episode | None = None
    day: date | None = None  # the UTC day being observed
    day_hours: list[int] = field(default_factory=list)  # hours of that day with data
    day_ran: bool = False
    weekday_days: list[int] = field(default_factory=lambda: [0] * 7)
    weekday_runs: list[int] = field(default_factory=lambda: [0] * 7)
    missed: int = 0  # working days in a row without running
    zero_run: int = 0  # samples in a row with vibration and current at zero
    sensors_felt: bool = False  # vibration and current have read non-zero before
    removed_since: datetime | None = None  # open "sensors removed" finding
    parked_since: datetime | None = None

    @classmethod
    def from_json(cls, text: str) -> SilenceState:
        """A state from its JSON text (`state_json`: the shape the pydantic model wrote)."""
        return build(cls, loads(text), times=_TIMES, dates=("day",), nested=_NESTED)


_TIMES = ("last_seen", "last_running_at", "tamper_at", "removed_since", "parked_since")


def _episode(doc: dict[str, Any]) -> Episode:
    return build(Episode, doc, times=("since",))


_NESTED = {"silence": _episode}


class SilenceDetector:
    """Silences and parking of one gateway's asset."""

    def __init__(self, state: SilenceState, thresholds: SilenceThresholds) -> None:
        """Wrap a state (new or restored)."""
        self.state = state
        self.t = thresholds

    @classmethod
    def create(cls, device: str, asset_type: str, t: SilenceThresholds) -> SilenceDetector:
        """A detector that has seen nothing yet."""
        return cls(SilenceState(device=device), t)

    @classmethod
    def restore(cls, text: str, t: SilenceThresholds) -> SilenceDetector:
        """A detector from its JSON state."""
        return cls(SilenceState.from_json(text), t)

    def to_json(self) -> str:
        """The state as JSON."""
        return dumps(self.state)

    def update(self, inputs: SilenceInputs, now: datetime) -> list[Finding]:
        """Take in what arrived, then judge the gateway at `now`."""
        self._take(inputs)
        s = self.state
        found: list[Finding] = []
        if s.last_seen is None:
            return found
        quiet = now - s.last_seen > self.t.silent_after
        if s.silence is not None and not quiet:
            found.append(self._resolve(s.silence, inputs, now))
        elif s.silence is None and quiet:
            found.append(self._open(inputs.status, now))
        found += self._parked(now, quiet)
        return found + self._removed(now)

    def _removed(self, now: datetime) -> list[Finding]:
        """Sensors removed while the gateway stays online: a tamper finding of its own."""
        s, t = self.state, self.t
        removed = s.zero_run >= t.zero_samples
        if removed == (s.removed_since is not None):
            return []
        s.removed_since = now if removed else None
        summary = (
            "Vibration and motor current read zero while the gateway is online: the sensors"
            " were taken off the asset."
            if removed
            else "Vibration and motor current read again: the sensors are back on."
        )
        evidence: dict[str, EvidenceValue] = {"cause": "tamper", "zero_samples": s.zero_run}
        return [
            finding(
                s.device, KEY, "sensors_removed", open_=removed, severity=Severity.CRITICAL,
                since=now, at=now, summary=summary, evidence=evidence, confidence=0.7,
            )
        ]  # fmt: skip

    def _take(self, inputs: SilenceInputs) -> None:
        """Fold new samples, events and positions into the state."""
        s = self.state
        self._samples(inputs.minutes, inputs.holidays)
        if inputs.last_live_at is not None and (
            s.last_seen is None or inputs.last_live_at > s.last_seen
        ):
            s.last_seen = inputs.last_live_at
        for event in inputs.events:
            if event.kind == "sensor_lost" or "tamper" in event.detail.lower():
                s.tamper_at = max(s.tamper_at or event.ts, event.ts)
        if inputs.positions and inputs.home is not None:
            last = inputs.positions[-1]
            s.near_home = distance_km((last.lat, last.lon), inputs.home) <= self.t.home_km
        if s.silence is None and inputs.boot is not None:
            s.boot = inputs.boot

    def _samples(self, minutes: tuple[MinuteSample, ...], holidays: frozenset[date]) -> None:
        """Fold samples in order, the per-sample fields kept in locals and stored once."""
        if not minutes:
            return
        s, t = self.state, self.t
        since = s.silence.since if s.silence is not None else None
        covered = 0
        last_seen, running, last_running = s.last_seen, s.running, s.last_running_at
        felt, zero_run = s.sensors_felt, s.zero_run
        for sample in minutes:
            ts, ran = sample.ts, sample.running()
            if since is not None and ts > since:
                covered += 1
            if last_seen is None or ts > last_seen:
                last_seen, running = ts, ran
            if ran:
                last_running = ts if last_running is None else max(last_running, ts)
            if ts.date() != s.day or ts.hour not in s.day_hours or (ran and not s.day_ran):
                self._day(sample, ran, holidays)  # else: nothing new about the day
            felt, zero_run = _zero_step(sample, felt, zero_run, t)
        if s.silence is not None and covered:
            s.silence.covered += covered
        s.last_seen, s.running, s.last_running_at = last_seen, running, last_running
        s.sensors_felt, s.zero_run = felt, zero_run

    def _open(self, status: StatusInput | None, now: datetime) -> Finding:
        s, t = self.state, self.t
        assert s.last_seen is not None  # noqa: S101 - checked by the caller
        tampered = s.tamper_at is not None and s.tamper_at >= s.last_seen - t.tamper_window
        will = (
            status is not None
            and status.state == "offline"
            and status.ts >= s.last_seen - t.will_slack
        )
        cause: Cause
        if tampered:
            cause, confidence = "tamper", 0.9
        elif will:
            cause, confidence = "network_outage", 0.75
        else:
            cause, confidence = "power_cut", 0.75 if s.running else 0.6
        s.silence = Episode(
            since=s.last_seen, cause=cause, confidence=confidence, boot_before=s.boot,
            running_at_end=s.running,
        )  # fmt: skip
        evidence: dict[str, EvidenceValue] = {
            "cause": cause, "last_will": will, "tamper_event": tampered,
            "running_at_end": s.running, "silent_minutes": (now - s.last_seen).total_seconds() / 60,
            "alternative": "parked" if cause == "power_cut" and not s.running else None,
        }  # fmt: skip
        return self._finding(s.silence, now, open_=True, evidence=evidence)

    def _resolve(self, episode: Episode, inputs: SilenceInputs, now: datetime) -> Finding:
        s, t = self.state, self.t
        gap_minutes = max(1.0, (now - episode.since).total_seconds() / 60 - 10)
        filled = min(1.0, episode.covered / gap_minutes)
        new_boot = inputs.boot is not None and episode.boot_before not in (None, inputs.boot)
        if episode.cause == "tamper":
            confidence = 0.95
        elif filled >= t.filled_share:
            episode.cause, confidence = "network_outage", 0.95
        elif new_boot:
            episode.cause, confidence = "power_cut", 0.9
        else:
            confidence = 0.6
        episode.confidence = confidence
        s.silence = None
        s.boot = inputs.boot or s.boot
        evidence: dict[str, EvidenceValue] = {
            "cause": episode.cause, "gap_filled": filled, "new_boot": new_boot,
            "silent_minutes": (now - episode.since).total_seconds() / 60,
        }  # fmt: skip
        return self._finding(episode, now, open_=False, evidence=evidence)

    def _day(self, sample: MinuteSample, ran: bool | None, holidays: frozenset[date]) -> None:
        """Track the sample's UTC day; judge the previous day when a new one starts."""
        s = self.state
        today = sample.ts.date()
        if s.day is not None and today > s.day:
            self._close_day(s.day, holidays)
        if s.day is None or today > s.day:
            s.day, s.day_hours, s.day_ran = today, [], False
        if today == s.day:
            if sample.ts.hour not in s.day_hours:
                s.day_hours.append(sample.ts.hour)
            if ran and not s.day_ran:
                s.day_ran = True

    def _close_day(self, day: date, holidays: frozenset[date]) -> None:
        """A working day without running adds to the missed run; any running resets it."""
        s = self.state
        if len(s.day_hours) < self.t.covered_hours or day in holidays:
            return
        weekday = day.weekday()
        seen, runs = s.weekday_days[weekday], s.weekday_runs[weekday]
        working = seen >= 2 and runs * 2 >= seen
        s.missed = 0 if s.day_ran else s.missed + working
        if seen >= 12:  # forget slowly: halve the counts
            seen, runs = seen // 2, runs // 2
        s.weekday_days[weekday], s.weekday_runs[weekday] = seen + 1, runs + s.day_ran

    def _parked(self, now: datetime, quiet: bool) -> list[Finding]:
        s = self.state
        ran = s.last_running_at
        idle = s.missed >= self.t.parked_days and not s.day_ran
        if s.parked_since is None and idle and not quiet and ran is not None:
            s.parked_since = ran
            return [self._parked_finding(now, open_=True)]
        if s.parked_since is not None and not idle:
            found = self._parked_finding(now, open_=False)
            s.parked_since = None
            return [found]
        return []

    def _parked_finding(self, now: datetime, *, open_: bool) -> Finding:
        s = self.state
        since = s.parked_since or now
        idle_h = (now - since).total_seconds() / 3600
        confidence = min(0.95, 0.55 + 0.25 * bool(s.near_home) + 0.02 * s.missed)
        where = (
            "at its home site"
            if s.near_home
            else "away from its home site"
            if s.near_home is False
            else ""
        )
        summary = (
            f"Parked {where}: data flows but the machine has not run for {idle_h:.0f} h,"
            f" {s.missed} working days."
            if open_
            else "No longer parked: the machine runs again."
        )
        evidence: dict[str, EvidenceValue] = {
            "cause": "parked",
            "idle_hours": idle_h,
            "missed_working_days": s.missed,
            "near_home": s.near_home,
        }
        return finding(
            s.device, KEY, "parked", open_=open_, severity=Severity.INFO, since=since, at=now,
            summary=summary, evidence=evidence, confidence=confidence,
        )  # fmt: skip

    def _finding(
        self, episode: Episode, now: datetime, *, open_: bool, evidence: dict[str, EvidenceValue]
    ) -> Finding:
        minutes = (now - episode.since).total_seconds() / 60
        if open_:
            why = _WORDS[episode.cause]
            summary = f"Quiet for {minutes:.0f} min: {why} ({episode.confidence:.0%} sure)."
        else:
            cause = episode.cause.replace("_", " ")
            summary = f"Data back after {minutes:.0f} min; the silence was a {cause}."
        return finding(
            self.state.device, KEY, "gateway", open_=open_, severity=_SEVERITY[episode.cause],
            since=episode.since, at=now, summary=summary, evidence=evidence,
            confidence=episode.confidence,
        )  # fmt: skip


def _zero_step(
    sample: MinuteSample, felt: bool, zero_run: int, t: SilenceThresholds
) -> tuple[bool, int]:
    """Samples in a row whose vibration and current both read zero (after they read more)."""
    vibration = sample.values.get("vibration_rms")
    current = sample.values.get("motor_current")
    if vibration is None or current is None:
        return felt, zero_run
    zero = vibration <= t.zero_vibration and current <= t.zero_current
    felt = felt or not zero
    return felt, zero_run + 1 if zero and felt else 0


def distance_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance between two (lat, lon) points."""
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * 6371.0 * math.asin(min(1.0, math.sqrt(h)))


def silence_inputs(data: AssetData) -> SilenceInputs:
    """The value function: samples, events, status, registry and positions from the runner."""
    return SilenceInputs(
        data.minutes, data.events, data.status, data.last_live_at, data.boot, data.positions,
        data.home, data.holidays,
    )  # fmt: skip
