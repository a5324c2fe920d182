"""The wire contract between gateways and the cloud: topics, payload schema, validation.

This module is the only code shared by `edge` and `cloud`. A change to what travels
over MQTT is a change here, with a new SCHEMA_VERSION when it is not backwards compatible.

Topics (one device per gateway; the topic names the device):
    lw/v1/{device}/telemetry   gateway -> cloud, QoS 1, TelemetryBatch
    lw/v1/{device}/status      gateway -> cloud, QoS 1, retained, GatewayStatus (birth/last will)
    lw/v1/{device}/health      gateway -> cloud, QoS 1, GatewayHealth
    lw/v1/{device}/cmd         cloud -> gateway, QoS 1, Command
    lw/v1/{device}/ack         gateway -> cloud, QoS 1, CommandAck

Payloads are JSON objects, or the same JSON zlib-compressed (the first byte tells: `{` or 0x78).
"""

from __future__ import annotations

import json
import math
import zlib
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

SCHEMA_VERSION: Literal[1] = 1
TOPIC_ROOT = "lw/v1"
TELEMETRY_FILTER = f"{TOPIC_ROOT}/+/telemetry"
STATUS_FILTER = f"{TOPIC_ROOT}/+/status"
HEALTH_FILTER = f"{TOPIC_ROOT}/+/health"
ACK_FILTER = f"{TOPIC_ROOT}/+/ack"
TOPIC_KINDS = ("telemetry", "status", "health", "cmd", "ack")
MAX_PAYLOAD_BYTES = 256 * 1024
MAX_READINGS_PER_BATCH = 5000
MAX_DECOMPRESSED_BYTES = 4 * 1024 * 1024
MAX_EVENTS_PER_BATCH = 1000

DeviceId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
SensorName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
MetricName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
Unit = Annotated[str, StringConstraints(max_length=16, pattern=r"^[^\s\"'\\,=]*$")]


def _require_finite(value: float) -> float:
    """Reject NaN and infinities: a missing reading is left out, never encoded as a number."""
    if not math.isfinite(value):
        raise ValueError("value must be a finite number")
    return value


FiniteFloat = Annotated[float, AfterValidator(_require_finite)]


def _to_millis(ts: datetime) -> datetime:
    """Truncate to whole milliseconds in UTC, the resolution every store keeps.

    Runs for every timestamp of every message: `astimezone` (about 0.3 us) also turns
    pydantic's own UTC object of a parsed "...Z" into `datetime.UTC`, where `replace(tzinfo=)`
    took 0.9 us; sub-millisecond stamps (rare) pay one `replace` more.
    """
    micros = ts.microsecond % 1000
    if micros:
        ts = ts.replace(microsecond=ts.microsecond - micros)
    return ts if ts.tzinfo is UTC else ts.astimezone(UTC)


MillisTime = Annotated[AwareDatetime, AfterValidator(_to_millis)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Reading(_Frozen):
    """One measured value of one sensor at one instant."""

    sensor: SensorName
    metric: MetricName
    ts: MillisTime
    value: FiniteFloat
    unit: Unit = ""


BootId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


class MachineEvent(_Frozen):
    """Something that happened at an instant, detected at the edge (a start, a stop, a fault)."""

    sensor: SensorName
    kind: Literal["start", "stop", "fault", "fault_cleared", "sensor_lost", "sensor_back"]
    ts: MillisTime
    detail: Annotated[str, StringConstraints(max_length=200)] = ""


class TelemetryBatch(_Frozen):
    """A gateway's message: readings (and events) since the last one, numbered per boot."""

    v: Literal[1] = SCHEMA_VERSION
    device: DeviceId
    boot: BootId
    seq: Annotated[int, Field(ge=0)]
    sent_at: MillisTime
    historical: bool = False
    readings: Annotated[list[Reading], Field(max_length=MAX_READINGS_PER_BATCH)]
    events: Annotated[list[MachineEvent], Field(max_length=MAX_EVENTS_PER_BATCH)] = []

    @model_validator(mode="after")
    def _not_empty(self) -> TelemetryBatch:
        if not self.readings and not self.events:
            raise ValueError("a batch carries at least one reading or event")
        return self

    @property
    def key(self) -> tuple[str, str, int]:
        """The (device, boot, seq) identity that makes ingestion idempotent."""
        return (self.device, self.boot, self.seq)


class GatewayStatus(_Frozen):
    """Retained online/offline state of a gateway (birth message and last will)."""

    v: Literal[1] = SCHEMA_VERSION
    device: DeviceId
    boot: BootId
    state: Literal["online", "offline"]
    ts: MillisTime


class GatewayHealth(_Frozen):
    """What a gateway reports about itself, periodically."""

    v: Literal[1] = SCHEMA_VERSION
    device: DeviceId
    boot: BootId
    ts: MillisTime
    uptime_s: Annotated[float, Field(ge=0)]
    buffer_messages: Annotated[int, Field(ge=0)]
    buffer_readings: Annotated[int, Field(ge=0)]
    oldest_buffered_age_s: Annotated[float, Field(ge=0)] | None = None
    evicted_messages: Annotated[int, Field(ge=0)] = 0
    evicted_readings: Annotated[int, Field(ge=0)] = 0
    sensor_errors: dict[SensorName, int] = {}
    overruns: dict[SensorName, int] = {}
    cpu_percent: Annotated[float, Field(ge=0)] | None = None
    rss_bytes: Annotated[int, Field(ge=0)] | None = None
    clock_offset_s: FiniteFloat | None = None
    #: Steps of the system clock this boot, and how far the agent's stamps are from the system
    #: clock because of one it holds (edge/clock.py); 0 while the stamps follow the clock.
    clock_steps: Annotated[int, Field(ge=0)] = 0
    clock_held_s: FiniteFloat = 0.0


CommandName = Literal[
    "ping", "read_now", "set_poll_interval", "push_config", "immobilize", "release"
]
CommandId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{8,64}$")]
ArgValue = str | int | float | bool | None


class Command(_Frozen):
    """A request from the cloud to one gateway; idempotent by `id`."""

    v: Literal[1] = SCHEMA_VERSION
    id: CommandId
    name: CommandName
    args: dict[str, ArgValue] = {}
    issued_at: MillisTime
    expires_at: MillisTime | None = None


class CommandAck(_Frozen):
    """A gateway's answer to a command: accepted, then done / failed / rejected / expired."""

    v: Literal[1] = SCHEMA_VERSION
    device: DeviceId
    boot: BootId
    id: CommandId
    status: Literal["accepted", "done", "failed", "rejected", "expired"]
    detail: Annotated[str, StringConstraints(max_length=500)] = ""
    result: dict[str, ArgValue] = {}
    ts: MillisTime


class RejectReason(StrEnum):
    """Why the cloud refused a message; every rejection is counted under one of these."""

    OVERSIZE = "oversize"
    MALFORMED = "malformed_json"
    SCHEMA_VERSION = "unsupported_schema_version"
    INVALID = "invalid_payload"
    TOPIC_MISMATCH = "topic_device_mismatch"
    UNKNOWN_TOPIC = "unknown_topic"
    STORE_REFUSED = "store_refused_reading"
    UNKNOWN_DEVICE = "unknown_device"
    TIMESTAMP_RANGE = "timestamp_out_of_range"
    UNKNOWN_COMMAND = "unknown_command"  # an ack for no command the cloud sent this gateway


class RejectedMessageError(Exception):
    """A message that does not honour the contract; `reason` is stable, `detail` is for people."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


def device_topic(device: str, kind: str) -> str:
    """Topic of one kind (telemetry, status, health, cmd, ack) for a device."""
    if kind not in TOPIC_KINDS:
        raise ValueError(f"unknown topic kind {kind!r}")
    return f"{TOPIC_ROOT}/{device}/{kind}"


def telemetry_topic(device: str) -> str:
    """Topic a gateway publishes its telemetry on."""
    return f"{TOPIC_ROOT}/{device}/telemetry"


def status_topic(device: str) -> str:
    """Topic of a gateway's retained online/offline state."""
    return f"{TOPIC_ROOT}/{device}/status"


def parse_topic(topic: str) -> tuple[str, str]:
    """Split a LeaseWatch topic into (device, kind) or reject it."""
    parts = topic.split("/")
    if len(parts) != 4 or "/".join(parts[:2]) != TOPIC_ROOT or parts[3] not in TOPIC_KINDS:
        raise RejectedMessageError(
            RejectReason.UNKNOWN_TOPIC, f"topic {topic!r} is not a LeaseWatch topic"
        )
    return parts[2], parts[3]


WireMessage = TelemetryBatch | GatewayStatus | GatewayHealth | Command | CommandAck


def encode(message: WireMessage, *, compress: bool = False) -> bytes:
    """Serialise a message for the wire, zlib-compressed when asked."""
    text = message.model_dump_json().encode()
    return zlib.compress(text, 6) if compress else text


def _inflate(payload: bytes) -> bytes:
    """Decompress a zlib payload, refusing to inflate past MAX_DECOMPRESSED_BYTES."""
    inflater = zlib.decompressobj()
    try:
        text = inflater.decompress(payload, MAX_DECOMPRESSED_BYTES)
    except zlib.error as err:
        raise RejectedMessageError(RejectReason.MALFORMED, f"bad zlib stream: {err}") from err
    if inflater.unconsumed_tail:
        raise RejectedMessageError(
            RejectReason.OVERSIZE, f"inflates past {MAX_DECOMPRESSED_BYTES} bytes"
        )
    return text


def _unpacked(payload: bytes) -> bytes:
    """The JSON text of a payload: size-checked, inflated when zlib-compressed."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise RejectedMessageError(
            RejectReason.OVERSIZE, f"{len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}"
        )
    return _inflate(payload) if payload[:1] == b"\x78" else payload


def _load_json(text: bytes) -> dict[str, object]:
    """The JSON object of a message, checked for its schema version (the slow path)."""
    try:
        document = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RejectedMessageError(RejectReason.MALFORMED, str(err)) from err
    if not isinstance(document, dict):
        raise RejectedMessageError(RejectReason.MALFORMED, "payload is not a JSON object")
    if document.get("v") != SCHEMA_VERSION:
        raise RejectedMessageError(
            RejectReason.SCHEMA_VERSION,
            f"schema version {document.get('v')!r}, this cloud speaks {SCHEMA_VERSION}",
        )
    return document


_Message = TypeVar("_Message", TelemetryBatch, GatewayStatus, GatewayHealth, Command, CommandAck)


def _validate(model: type[_Message], payload: bytes) -> _Message:
    """Validate a payload as `model`, or raise RejectedMessageError with the reason.

    A valid message is parsed and validated from its bytes in one pass (pydantic's
    `model_validate_json`, no intermediate dicts). Only a message that fails goes the slow
    way (`json.loads`, version check, `model_validate`), which names why: malformed JSON, an
    unsupported schema version or an invalid payload, with the same detail as always.
    """
    text = _unpacked(payload)
    try:
        return model.model_validate_json(text)
    except ValidationError:
        pass  # find out why below
    try:
        return model.model_validate(_load_json(text))
    except ValidationError as err:
        raise RejectedMessageError(RejectReason.INVALID, _describe(err)) from err


def _describe(err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    return f"{where}: {first['msg']} ({err.error_count()} error(s))"


def decode_telemetry(topic: str, payload: bytes) -> TelemetryBatch:
    """Validate a telemetry message against the contract and its topic."""
    device, kind = parse_topic(topic)
    if kind != "telemetry":
        raise RejectedMessageError(
            RejectReason.UNKNOWN_TOPIC, f"{topic!r} is not a telemetry topic"
        )
    batch = _validate(TelemetryBatch, payload)
    if batch.device != device:
        raise RejectedMessageError(
            RejectReason.TOPIC_MISMATCH,
            f"topic names device {device!r} but the payload is from {batch.device!r}",
        )
    return batch


_Reported = TypeVar("_Reported", GatewayStatus, GatewayHealth, CommandAck)


def _decode_as(model: type[_Reported], kind: str, topic: str, payload: bytes) -> _Reported:
    device, topic_kind = parse_topic(topic)
    if topic_kind != kind:
        raise RejectedMessageError(RejectReason.UNKNOWN_TOPIC, f"{topic!r} is not a {kind} topic")
    message = _validate(model, payload)
    if message.device != device:
        raise RejectedMessageError(
            RejectReason.TOPIC_MISMATCH,
            f"topic names device {device!r} but the {kind} message is from {message.device!r}",
        )
    return message


def decode_health(topic: str, payload: bytes) -> GatewayHealth:
    """Validate a gateway health report against the contract and its topic."""
    return _decode_as(GatewayHealth, "health", topic, payload)


def decode_ack(topic: str, payload: bytes) -> CommandAck:
    """Validate a command acknowledgement against the contract and its topic."""
    return _decode_as(CommandAck, "ack", topic, payload)


def decode_command(payload: bytes) -> Command:
    """Validate a command a gateway received (the topic was checked by the broker's ACL)."""
    return _validate(Command, payload)


def decode_status(topic: str, payload: bytes) -> GatewayStatus:
    """Validate a gateway status message against the contract and its topic."""
    return _decode_as(GatewayStatus, "status", topic, payload)
