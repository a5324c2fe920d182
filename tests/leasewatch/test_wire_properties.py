"""Property-based tests: no input makes the payload parser do anything but accept or reject."""

from __future__ import annotations

import json
import zlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leasewatch.wire import (
    RejectedMessageError,
    TelemetryBatch,
    decode_ack,
    decode_health,
    decode_status,
    decode_telemetry,
    device_topic,
    encode,
)

TOPICS = st.sampled_from(
    [device_topic("gw-0001", k) for k in ("telemetry", "status", "health", "ack", "cmd")]
    + ["lw/v1/gw-0001", "lw/v1//telemetry", "#", "", "lw/v1/gw-0001/telemetry/extra"]
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)
NEAR_VALID = st.fixed_dictionaries(
    {
        "v": st.sampled_from([1, 2, "1", None]),
        "device": st.sampled_from(["gw-0001", "gw-0002", "", "GW 1", 5]),
        "boot": st.text(max_size=70),
        "seq": st.integers(min_value=-5, max_value=2**70) | st.text(max_size=3),
        "sent_at": st.sampled_from(["2026-12-04T10:00:00Z", "2026-12-04T10:00:00", "yesterday", 0]),
        "readings": st.lists(
            st.fixed_dictionaries(
                {
                    "sensor": st.sampled_from(["machine", "", "x" * 70]),
                    "metric": st.sampled_from(["rpm", "Bad Metric", ""]),
                    "ts": st.sampled_from(["2026-12-04T10:00:00.5Z", "nope", None]),
                    "value": st.floats() | st.integers() | st.text(max_size=4),
                }
            ),
            max_size=4,
        ),
    }
)
DECODERS = (decode_telemetry, decode_status, decode_health, decode_ack)


def _rejection(decoder: object, topic: str, payload: bytes) -> RejectedMessageError | None:
    try:
        decoder(topic, payload)  # type: ignore[operator]
    except RejectedMessageError as err:
        return err
    return None


def _accepts_or_rejects(topic: str, payload: bytes) -> None:
    for decoder in DECODERS:
        rejection = _rejection(decoder, topic, payload)
        assert rejection is None or (rejection.detail and rejection.reason.value)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(TOPICS, st.binary(max_size=300))
def test_arbitrary_bytes_are_accepted_or_rejected(topic: str, payload: bytes) -> None:
    _accepts_or_rejects(topic, payload)
    _accepts_or_rejects(topic, zlib.compress(payload))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(TOPICS, JSON_VALUES)
def test_arbitrary_json_is_accepted_or_rejected(topic: str, document: object) -> None:
    _accepts_or_rejects(topic, json.dumps(document).encode())


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(NEAR_VALID)
def test_near_valid_batches_are_accepted_or_rejected_and_accepted_ones_round_trip(
    document: dict[str, object],
) -> None:
    topic = device_topic("gw-0001", "telemetry")
    try:
        batch = decode_telemetry(topic, json.dumps(document).encode())
    except RejectedMessageError:
        return
    assert isinstance(batch, TelemetryBatch)
    assert decode_telemetry(topic, encode(batch)) == batch
