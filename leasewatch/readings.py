"""Readings, machine events and the telemetry batch that carries them (msgspec Structs).

Telemetry is the one message every gateway sends all the time, so its types are msgspec Structs:
decoded straight from JSON bytes in C, untracked by the garbage collector (a reading holds no
containers). The rules pydantic checked before 2026-12-05 hold on construction and on decoding
alike (`__post_init__` runs on both): names match their patterns, values are finite, times are
timezone-aware and come out as whole milliseconds in UTC. Names are checked once per distinct
(sensor, metric, unit): a fleet uses a handful, and a pattern match per reading was most of the
decoding's cost. `wire.decode_telemetry` decodes these; `wire.encode` writes them.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Final, Literal

import msgspec
from msgspec.structs import force_setattr

SCHEMA_VERSION: Literal[1] = 1
MAX_READINGS_PER_BATCH = 5000
MAX_EVENTS_PER_BATCH = 1000
NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"  # devices and sensors
METRIC_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
UNIT_PATTERN = r"^[^\s\"'\\,=]{0,16}$"
BOOT_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
EVENT_KINDS = ("start", "stop", "fault", "fault_cleared", "sensor_lost", "sensor_back")

_NAME = re.compile(NAME_PATTERN).fullmatch
_METRIC = re.compile(METRIC_PATTERN).fullmatch
_UNIT = re.compile(UNIT_PATTERN).fullmatch
_BOOT = re.compile(BOOT_PATTERN).fullmatch
_LARGEST = sys.float_info.max
#: (sensor, metric, unit) triples already checked; cleared when it outgrows a fleet's variety.
_CHECKED_NAMES: set[tuple[str, str, str]] = set()
_CHECKED_NAMES_MAX: Final = 10_000

EventKind = Literal["start", "stop", "fault", "fault_cleared", "sensor_lost", "sensor_back"]
AwareTime = Annotated[datetime, msgspec.Meta(tz=True)]


def millis_utc(ts: datetime, field: str) -> datetime:
    """`ts` truncated to whole milliseconds in UTC; a naive time is refused."""
    if ts.tzinfo is not UTC:
        if ts.tzinfo is None or ts.utcoffset() is None:
            raise ValueError(f"{field}: a timestamp needs a timezone (RFC 3339, e.g. ...Z)")
        ts = ts.astimezone(UTC)
    micros = ts.microsecond % 1000
    return ts.replace(microsecond=ts.microsecond - micros) if micros else ts


def _require(text: object, matches: Callable[[str], object], what: str) -> None:
    """Refuse `text` unless it is a string its pattern matches; `what` names it in the error."""
    if not isinstance(text, str) or matches(text) is None:
        raise ValueError(f"{what.split(maxsplit=1)[0]} {text!r} is not a valid {what}")


def _check_names(sensor: str, metric: str, unit: str) -> None:
    if (sensor, metric, unit) in _CHECKED_NAMES:
        return
    _require(sensor, _NAME, "sensor name")
    _require(metric, _METRIC, "metric name")
    _require(unit, _UNIT, "unit name")
    if len(_CHECKED_NAMES) >= _CHECKED_NAMES_MAX:
        _CHECKED_NAMES.clear()
    _CHECKED_NAMES.add((sensor, metric, unit))


class Reading(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, gc=False):
    """One measured value of one sensor at one instant."""

    sensor: str
    metric: str
    ts: AwareTime
    value: float
    unit: str = ""

    def __post_init__(self) -> None:
        _check_names(self.sensor, self.metric, self.unit)
        value = self.value
        if type(value) is not float:  # an int given in code; decoding makes floats
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise TypeError(f"value must be a number, not {type(value).__name__}")
            force_setattr(self, "value", value := float(value))
        if not -_LARGEST <= value <= _LARGEST:  # false for NaN too
            raise ValueError("value must be a finite number")
        ts = self.ts
        if ts.tzinfo is not UTC or ts.microsecond % 1000:
            force_setattr(self, "ts", millis_utc(ts, "ts"))


class MachineEvent(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, gc=False):
    """Something that happened at an instant, detected at the edge (a start, a stop, a fault)."""

    sensor: str
    kind: EventKind
    ts: AwareTime
    detail: Annotated[str, msgspec.Meta(max_length=200)] = ""

    def __post_init__(self) -> None:
        _require(self.sensor, _NAME, "sensor name")
        if self.kind not in EVENT_KINDS:
            raise ValueError(f"kind {self.kind!r} is not one of {', '.join(EVENT_KINDS)}")
        force_setattr(self, "ts", millis_utc(self.ts, "ts"))


class TelemetryBatch(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A gateway's message: readings (and events) since the last one, numbered per boot."""

    v: Literal[1] = SCHEMA_VERSION
    device: str
    boot: str
    seq: Annotated[int, msgspec.Meta(ge=0)]
    sent_at: AwareTime
    historical: bool = False
    readings: Annotated[list[Reading], msgspec.Meta(max_length=MAX_READINGS_PER_BATCH)]
    events: Annotated[list[MachineEvent], msgspec.Meta(max_length=MAX_EVENTS_PER_BATCH)] = []

    def __post_init__(self) -> None:
        _require(self.device, _NAME, "device id")
        _require(self.boot, _BOOT, "boot id")
        if not self.readings and not self.events:
            raise ValueError("a batch carries at least one reading or event")
        if self.seq < 0 or len(self.readings) > MAX_READINGS_PER_BATCH:  # decoding checked both
            raise ValueError(f"seq {self.seq} < 0 or more than {MAX_READINGS_PER_BATCH} readings")
        force_setattr(self, "sent_at", millis_utc(self.sent_at, "sent_at"))

    @property
    def key(self) -> tuple[str, str, int]:
        """The (device, boot, seq) identity that makes ingestion idempotent."""
        return (self.device, self.boot, self.seq)
