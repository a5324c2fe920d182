"""The wire contract between gateways and the cloud: topics, payload schema, validation.

This module is the only code shared by `edge` and `cloud`. A change to what travels
over MQTT is a change here, with a new SCHEMA_VERSION when it is not backwards compatible.

Topics (one device per gateway; the topic names the device):
    lw/v1/{device}/telemetry   QoS 1, TelemetryBatch (JSON)
    lw/v1/{device}/status      QoS 1, retained, GatewayStatus (birth "online", last will "offline")
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

SCHEMA_VERSION: Literal[1] = 1
TOPIC_ROOT = "lw/v1"
TELEMETRY_FILTER = f"{TOPIC_ROOT}/+/telemetry"
STATUS_FILTER = f"{TOPIC_ROOT}/+/status"
MAX_PAYLOAD_BYTES = 256 * 1024
MAX_READINGS_PER_BATCH = 5000

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
    """Truncate to whole milliseconds, the resolution every store keeps."""
    return ts.astimezone(UTC).replace(microsecond=ts.microsecond // 1000 * 1000)


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


class TelemetryBatch(_Frozen):
    """A gateway's message: readings taken since the last one, numbered per boot."""

    v: Literal[1] = SCHEMA_VERSION
    device: DeviceId
    boot: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    seq: Annotated[int, Field(ge=0)]
    sent_at: MillisTime
    historical: bool = False
    readings: Annotated[list[Reading], Field(min_length=1, max_length=MAX_READINGS_PER_BATCH)]

    @property
    def key(self) -> tuple[str, str, int]:
        """The (device, boot, seq) identity that makes ingestion idempotent."""
        return (self.device, self.boot, self.seq)


class GatewayStatus(_Frozen):
    """Retained online/offline state of a gateway (birth message and last will)."""

    v: Literal[1] = SCHEMA_VERSION
    device: DeviceId
    boot: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    state: Literal["online", "offline"]
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


class RejectedMessageError(Exception):
    """A message that does not honour the contract; `reason` is stable, `detail` is for people."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


def telemetry_topic(device: str) -> str:
    """Topic a gateway publishes its telemetry on."""
    return f"{TOPIC_ROOT}/{device}/telemetry"


def status_topic(device: str) -> str:
    """Topic of a gateway's retained online/offline state."""
    return f"{TOPIC_ROOT}/{device}/status"


def parse_topic(topic: str) -> tuple[str, str]:
    """Split a LeaseWatch topic into (device, kind) or reject it."""
    parts = topic.split("/")
    if (
        len(parts) != 4
        or "/".join(parts[:2]) != TOPIC_ROOT
        or parts[3]
        not in (
            "telemetry",
            "status",
        )
    ):
        raise RejectedMessageError(
            RejectReason.UNKNOWN_TOPIC, f"topic {topic!r} is not a LeaseWatch topic"
        )
    return parts[2], parts[3]


def encode(message: TelemetryBatch | GatewayStatus) -> bytes:
    """Serialise a message for the wire."""
    return message.model_dump_json().encode()


def _load_json(payload: bytes) -> dict[str, object]:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise RejectedMessageError(
            RejectReason.OVERSIZE, f"{len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}"
        )
    try:
        document = json.loads(payload)
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
    document = _load_json(payload)
    try:
        batch = TelemetryBatch.model_validate(document)
    except ValidationError as err:
        raise RejectedMessageError(RejectReason.INVALID, _describe(err)) from err
    if batch.device != device:
        raise RejectedMessageError(
            RejectReason.TOPIC_MISMATCH,
            f"topic names device {device!r} but the payload is from {batch.device!r}",
        )
    return batch


def decode_status(topic: str, payload: bytes) -> GatewayStatus:
    """Validate a gateway status message against the contract and its topic."""
    device, kind = parse_topic(topic)
    if kind != "status":
        raise RejectedMessageError(RejectReason.UNKNOWN_TOPIC, f"{topic!r} is not a status topic")
    try:
        status = GatewayStatus.model_validate(_load_json(payload))
    except ValidationError as err:
        raise RejectedMessageError(RejectReason.INVALID, _describe(err)) from err
    if status.device != device:
        raise RejectedMessageError(
            RejectReason.TOPIC_MISMATCH,
            f"topic names device {device!r} but the status is from {status.device!r}",
        )
    return status
