"""The wire contract: what is accepted, what is rejected and why."""

from __future__ import annotations

import json
import math
import zlib
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from leasewatch.wire import (
    MAX_DECOMPRESSED_BYTES,
    Command,
    CommandAck,
    GatewayHealth,
    GatewayStatus,
    MachineEvent,
    Reading,
    RejectedMessageError,
    RejectReason,
    TelemetryBatch,
    decode_ack,
    decode_command,
    decode_health,
    decode_status,
    decode_telemetry,
    device_topic,
    encode,
    status_topic,
    telemetry_topic,
)

NOW = datetime(2026, 12, 4, 12, 0, 0, 123456, tzinfo=UTC)


def _batch(device: str = "gw-0001", **changes: object) -> dict[str, object]:
    reading = {"sensor": "machine", "metric": "motor_current", "ts": NOW.isoformat(), "value": 12.5}
    document: dict[str, object] = {
        "v": 1,
        "device": device,
        "boot": "b1",
        "seq": 7,
        "sent_at": NOW.isoformat(),
        "readings": [reading | {"unit": "A"}],
    }
    document.update(changes)
    return document


def _payload(document: dict[str, object]) -> bytes:
    return json.dumps(document).encode()


def test_round_trip_keeps_values_units_and_millisecond_timestamps() -> None:
    batch = TelemetryBatch(
        device="gw-0001",
        boot="b1",
        seq=3,
        sent_at=NOW,
        readings=[Reading(sensor="machine", metric="temperature", ts=NOW, value=41.7, unit="degC")],
    )
    decoded = decode_telemetry(telemetry_topic("gw-0001"), encode(batch))
    assert decoded == batch
    assert decoded.readings[0].ts == datetime(2026, 12, 4, 12, 0, 0, 123000, tzinfo=UTC)
    assert decoded.key == ("gw-0001", "b1", 3)
    assert decoded.historical is False


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        (telemetry_topic("gw-0001"), b"{not json", RejectReason.MALFORMED),
        (telemetry_topic("gw-0001"), b"[1, 2]", RejectReason.MALFORMED),
        (telemetry_topic("gw-0001"), _payload(_batch(v=2)), RejectReason.SCHEMA_VERSION),
        (telemetry_topic("gw-0001"), _payload(_batch(seq=-1)), RejectReason.INVALID),
        (telemetry_topic("gw-0001"), _payload(_batch(readings=[])), RejectReason.INVALID),
        (telemetry_topic("gw-0001"), _payload(_batch(extra=1)), RejectReason.INVALID),
        (telemetry_topic("gw-0002"), _payload(_batch()), RejectReason.TOPIC_MISMATCH),
        ("lw/v1/gw-0001/other", _payload(_batch()), RejectReason.UNKNOWN_TOPIC),
        ("elsewhere/gw-0001/telemetry", _payload(_batch()), RejectReason.UNKNOWN_TOPIC),
        (telemetry_topic("gw-0001"), b" " * 300_000, RejectReason.OVERSIZE),
    ],
)
def test_rejections_carry_a_stable_reason(topic: str, payload: bytes, reason: RejectReason) -> None:
    with pytest.raises(RejectedMessageError) as caught:
        decode_telemetry(topic, payload)
    assert caught.value.reason is reason
    assert caught.value.detail


@pytest.mark.parametrize("bad", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_values_are_rejected(bad: str) -> None:
    text = _payload(_batch()).decode().replace("12.5", bad)
    with pytest.raises(RejectedMessageError) as caught:
        decode_telemetry(telemetry_topic("gw-0001"), text.encode())
    assert caught.value.reason is RejectReason.INVALID


def test_naive_timestamps_are_rejected() -> None:
    document = _batch(sent_at="2026-12-04T12:00:00")
    with pytest.raises(RejectedMessageError) as caught:
        decode_telemetry(telemetry_topic("gw-0001"), _payload(document))
    assert "sent_at" in caught.value.detail


def test_status_messages_validate_against_their_topic() -> None:
    status = GatewayStatus(device="gw-0001", boot="b1", state="offline", ts=NOW)
    assert decode_status(status_topic("gw-0001"), encode(status)).state == "offline"
    with pytest.raises(RejectedMessageError) as caught:
        decode_status(status_topic("gw-0009"), encode(status))
    assert caught.value.reason is RejectReason.TOPIC_MISMATCH


def test_compressed_payloads_decode_like_plain_ones() -> None:
    batch = TelemetryBatch(
        device="gw-0001",
        boot="b1",
        seq=1,
        sent_at=NOW,
        readings=[Reading(sensor="m", metric="x", ts=NOW, value=float(i)) for i in range(200)],
    )
    packed = encode(batch, compress=True)
    assert len(packed) < len(encode(batch)) / 3
    assert decode_telemetry(telemetry_topic("gw-0001"), packed) == batch


def test_zip_bombs_and_broken_streams_are_rejected() -> None:
    bomb = zlib.compress(b" " * (MAX_DECOMPRESSED_BYTES + 10))
    with pytest.raises(RejectedMessageError) as caught:
        decode_telemetry(telemetry_topic("gw-0001"), bomb)
    assert caught.value.reason is RejectReason.OVERSIZE
    with pytest.raises(RejectedMessageError) as caught:
        decode_telemetry(telemetry_topic("gw-0001"), b"\x78\x9c garbage")
    assert caught.value.reason is RejectReason.MALFORMED


def test_a_batch_may_carry_only_events_but_not_nothing() -> None:
    event = MachineEvent(sensor="machine", kind="start", ts=NOW)
    batch = TelemetryBatch(
        device="gw-0001", boot="b1", seq=0, sent_at=NOW, readings=[], events=[event]
    )
    assert decode_telemetry(telemetry_topic("gw-0001"), encode(batch)).events == [event]
    with pytest.raises(RejectedMessageError, match="at least one reading or event"):
        decode_telemetry(telemetry_topic("gw-0001"), _payload(_batch(readings=[])))


def test_health_commands_and_acks_round_trip() -> None:
    health = GatewayHealth(
        device="gw-0001",
        boot="b1",
        ts=NOW,
        uptime_s=5.0,
        buffer_messages=2,
        buffer_readings=12,
        sensor_errors={"machine": 3},
    )
    assert decode_health(device_topic("gw-0001", "health"), encode(health)) == health
    command = Command(
        id="cmd-00000001", name="set_poll_interval", args={"seconds": 2.5}, issued_at=NOW
    )
    assert decode_command(encode(command)) == command
    ack = CommandAck(device="gw-0001", boot="b1", id=command.id, status="done", ts=NOW)
    assert decode_ack(device_topic("gw-0001", "ack"), encode(ack)) == ack
    with pytest.raises(RejectedMessageError) as caught:
        decode_ack(device_topic("gw-0002", "ack"), encode(ack))
    assert caught.value.reason is RejectReason.TOPIC_MISMATCH
    with pytest.raises(RejectedMessageError):
        decode_command(
            b'{"v": 1, "id": "x", "name": "self_destruct", "issued_at": "2026-01-01T00:00:00Z"}'
        )


def test_decoded_times_are_whole_milliseconds_in_utc_whatever_the_offset_written() -> None:
    body = {
        "v": 1, "device": "gw-0001", "boot": "b1", "seq": 0, "sent_at": "2026-12-04T12:00:00Z",
        "readings": [
            {"sensor": "m", "metric": "a", "ts": "2026-12-04T12:00:00.123456Z", "value": 1},
            {"sensor": "m", "metric": "a", "ts": "2026-12-04T13:00:00.5+01:00", "value": 2},
        ],
    }  # fmt: skip
    batch = decode_telemetry(telemetry_topic("gw-0001"), json.dumps(body).encode())
    first, second = (r.ts for r in batch.readings)
    assert first.tzinfo is UTC and second.tzinfo is UTC
    assert first == datetime(2026, 12, 4, 12, 0, 0, 123000, tzinfo=UTC)
    assert second == datetime(2026, 12, 4, 12, 0, 0, 500000, tzinfo=UTC)


def test_readings_built_in_code_keep_the_contract_like_decoded_ones() -> None:
    paris = timezone(timedelta(hours=1))
    reading = Reading(sensor="machine", metric="rpm", ts=NOW.astimezone(paris), value=3)
    assert reading.ts == datetime(2026, 12, 4, 12, 0, 0, 123000, tzinfo=UTC)
    assert reading.ts.tzinfo is UTC
    assert (reading.value, type(reading.value)) == (3.0, float)
    bad: list[dict[str, object]] = [
        {"value": math.nan},
        {"value": math.inf},
        {"value": "3"},
        {"ts": NOW.replace(tzinfo=None)},  # naive
        {"sensor": "Machine 1"},
        {"metric": "9rpm"},
        {"unit": "m s"},
    ]
    for change in bad:
        fields: dict[str, Any] = {"sensor": "machine", "metric": "rpm", "ts": NOW, "value": 1.0}
        with pytest.raises((ValueError, TypeError)):
            Reading(**(fields | change))
    with pytest.raises(ValueError, match="at least one reading or event"):
        TelemetryBatch(device="gw-0001", boot="b1", seq=0, sent_at=NOW, readings=[])
    with pytest.raises(ValueError, match="seq -1"):
        TelemetryBatch(device="gw-0001", boot="b1", seq=-1, sent_at=NOW, readings=[reading])
