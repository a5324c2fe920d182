"""The wire contract between gateways and the cloud: topics, payload schema, validation.

This module and `leasewatch.readings` (the telemetry payload: readings, machine events,
batches) are the only code shared by `edge` and `cloud`. A change to what travels over MQTT is
a change here, with a new SCHEMA_VERSION when it is not backwards compatible.

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
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal, TypeVar

import msgspec
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

from leasewatch.readings import (
    BOOT_PATTERN,
    MAX_EVENTS_PER_BATCH,
    MAX_READINGS_PER_BATCH,
    METRIC_PATTERN,
    NAME_PATTERN,
    SCHEMA_VERSION,
    UNIT_PATTERN,
    MachineEvent,
    Reading,
    TelemetryBatch,
    millis_utc,
)

__all__ = [  # the telemetry contract lives in leasewatch.readings; this module names it too
    "MAX_EVENTS_PER_BATCH",
    "MAX_READINGS_PER_BATCH",
    "MachineEvent",
    "Reading",
    "TelemetryBatch",
]

TOPIC_ROOT = "lw/v1"
TELEMETRY_FILTER = f"{TOPIC_ROOT}/+/telemetry"
STATUS_FILTER = f"{TOPIC_ROOT}/+/status"
HEALTH_FILTER = f"{TOPIC_ROOT}/+/health"
ACK_FILTER = f"{TOPIC_ROOT}/+/ack"
TOPIC_KINDS = ("telemetry", "status", "health", "cmd", "ack")
MAX_PAYLOAD_BYTES = 256 * 1024
MAX_DECOMPRESSED_BYTES = 4 * 1024 * 1024

DeviceId = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
SensorName = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
MetricName = Annotated[str, StringConstraints(pattern=METRIC_PATTERN)]
Unit = Annotated[str, StringConstraints(pattern=UNIT_PATTERN)]


def _require_finite(value: float) -> float:
    """Reject NaN and infinities: a missing value is left out, never encoded as a number."""
    if not math.isfinite(value):
        raise ValueError("value must be a finite number")
    return value


FiniteFloat = Annotated[float, AfterValidator(_require_finite)]


def _to_millis(ts: datetime) -> datetime:
    """Truncate to whole milliseconds in UTC, the resolution every store keeps."""
    return millis_utc(ts, "ts")


MillisTime = Annotated[AwareDatetime, AfterValidator(_to_millis)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


BootId = Annotated[str, StringConstraints(pattern=BOOT_PATTERN)]


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


_TELEMETRY = msgspec.json.Decoder(TelemetryBatch)
_ENCODER = msgspec.json.Encoder()


def encode(message: WireMessage, *, compress: bool = False) -> bytes:
    """Serialise a message for the wire, zlib-compressed when asked."""
    if isinstance(message, TelemetryBatch):
        text = _ENCODER.encode(message)
    else:
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


_Message = TypeVar("_Message", GatewayStatus, GatewayHealth, Command, CommandAck)


def _telemetry(payload: bytes) -> TelemetryBatch:
    """Decode a telemetry payload, or raise RejectedMessageError with the reason.

    A valid batch is decoded and checked from its bytes in one pass (msgspec, no intermediate
    dicts). Only a payload that fails is parsed again (`json.loads`, version check) to tell
    malformed JSON and an unsupported schema version from an invalid payload.
    """
    text = _unpacked(payload)
    try:
        return _TELEMETRY.decode(text)
    except msgspec.ValidationError as err:
        _load_json(text)  # another schema version is not an invalid payload
        raise RejectedMessageError(RejectReason.INVALID, str(err)) from err
    except msgspec.DecodeError as err:
        malformed = err
    document = _load_json(text)  # Python's parser is laxer: NaN, Infinity
    try:
        msgspec.convert(document, TelemetryBatch)
    except msgspec.ValidationError as err:  # e.g. value NaN: invalid, not malformed
        raise RejectedMessageError(RejectReason.INVALID, str(err)) from err
    raise RejectedMessageError(RejectReason.MALFORMED, str(malformed)) from malformed


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
    batch = _telemetry(payload)
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
