"""Wire payloads for simulated gateways, written directly as JSON for speed.

Fleet mode publishes thousands of messages a second, so batches are not built as pydantic models:
`encode_batch` writes JSON that decodes to the batch `leasewatch.wire.encode` would describe
(times with 3 fraction digits where `encode` writes 6; the tests prove that `decode_telemetry`
accepts every payload and reads back the same batch). Malformed payloads, for
the data-fault scenarios, are derived from good ones.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from datetime import UTC, datetime

from firmware_sim.scenarios.asset import METRICS, SENSOR, UNITS, Values
from leasewatch.wire import GatewayStatus, encode

GPS_SENSOR = "gps"
MALFORMED_VARIANTS = ("truncated", "nan_value", "bad_version")
_READING_HEAD = tuple(f'{{"sensor":"{SENSOR}","metric":"{metric}","ts":"' for metric in METRICS)
_READING_UNIT = tuple(f',"unit":"{unit}"}}' for unit in UNITS)

Sample = tuple[float, Values]
Position = tuple[float, tuple[float, float]]
MachineEventSpec = tuple[str, str, float, str]  # sensor, kind, ts, detail


@functools.lru_cache(maxsize=64)
def _day_prefix(day: int) -> str:
    """`YYYY-MM-DDT` of a day number since the epoch."""
    return datetime.fromtimestamp(day * 86_400, UTC).strftime("%Y-%m-%dT")


def iso(t: float) -> str:
    """An epoch second as RFC 3339 UTC text with millisecond resolution."""
    millis = round(t * 1000)
    day, rest = divmod(millis, 86_400_000)
    seconds, ms = divmod(rest, 1000)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    return f"{_day_prefix(day)}{hours:02d}:{minutes:02d}:{seconds:02d}.{ms:03d}Z"


@functools.lru_cache(maxsize=1024)
def _iso_shared(t: float) -> str:
    """`iso` of an instant many gateways stamp alike (sample times, batch seals): cached."""
    return iso(t)


@functools.lru_cache(maxsize=1024)
def _sample_heads(t: float) -> tuple[str, ...]:
    """Each metric's reading up to its value at sample time `t` (every gateway samples alike)."""
    ts = iso(t)
    return tuple(f'{head}{ts}","value":' for head in _READING_HEAD)


@functools.lru_cache(maxsize=1024)
def _sample_format(t: float) -> str:
    """A %-format template of all of a sample's readings at `t`, each value a `%r` (its repr)."""
    heads = (h.replace("%", "%%") for h in _sample_heads(t))
    units = (u.replace("%", "%%") for u in _READING_UNIT)
    return ",".join(f"{h}%r{u}" for h, u in zip(heads, units, strict=True))


def _readings(samples: Sequence[Sample], positions: Sequence[Position]) -> tuple[list[str], int]:
    """JSON of the readings of `samples` and `positions` (a part per sample), and their count."""
    parts: list[str] = []
    append, count = parts.append, 0
    for t, values in samples:
        if None not in values:  # the usual sample: one %-format writes all its readings
            append(_sample_format(t) % values)
            count += len(values)
            continue
        for head, value, unit in zip(_sample_heads(t), values, _READING_UNIT, strict=True):
            if value is not None:
                append(f"{head}{value!r}{unit}")
                count += 1
    for t, (lat, lon) in positions:
        ts = _iso_shared(t)
        append(
            f'{{"sensor":"{GPS_SENSOR}","metric":"lat","ts":"{ts}","value":{round(lat, 6)!r},'
            f'"unit":"deg"}}'
        )
        append(
            f'{{"sensor":"{GPS_SENSOR}","metric":"lon","ts":"{ts}","value":{round(lon, 6)!r},'
            f'"unit":"deg"}}'
        )
    return parts, count + 2 * len(positions)


def encode_batch(
    device: str,
    boot: str,
    seq: int,
    sent_at: float,
    *,
    samples: Sequence[Sample],
    positions: Sequence[Position] = (),
    events: Sequence[MachineEventSpec] = (),
    historical: bool = False,
) -> tuple[bytes, int]:
    """A TelemetryBatch payload and its number of readings."""
    readings, count = _readings(samples, positions)
    event_parts = [
        json.dumps(
            {"sensor": sensor, "kind": kind, "ts": iso(ts), "detail": detail},
            separators=(",", ":"),
        )
        for sensor, kind, ts, detail in events
    ]
    text = (
        f'{{"v":1,"device":"{device}","boot":"{boot}","seq":{seq},"sent_at":"{_iso_shared(sent_at)}",'
        f'"historical":{"true" if historical else "false"},'
        f'"readings":[{",".join(readings)}],"events":[{",".join(event_parts)}]}}'
    )
    return text.encode(), count


def encode_status(device: str, boot: str, state: str, at: float) -> bytes:
    """A GatewayStatus payload (birth, or the offline last will)."""
    status = GatewayStatus.model_validate(
        {"device": device, "boot": boot, "state": state, "ts": datetime.fromtimestamp(at, UTC)}
    )
    return encode(status)


def malformed(payload: bytes, variant: str) -> bytes:
    """A broken copy of a good payload: cut in half, a NaN value, or an unknown schema version."""
    match variant:
        case "truncated":
            return payload[: len(payload) // 2]
        case "nan_value":
            head, sep, tail = payload.partition(b'"value":')
            if not sep:
                return payload[: len(payload) // 2]
            number_end = min(i for i in (tail.find(b","), tail.find(b"}")) if i >= 0)
            return head + sep + b"NaN" + tail[number_end:]
        case "bad_version":
            return payload.replace(b'{"v":1,', b'{"v":99,', 1)
    raise ValueError(f"unknown malformed variant {variant!r}")
