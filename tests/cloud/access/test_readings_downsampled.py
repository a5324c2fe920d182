"""GET /v1/devices/{device}/readings with `step`: per-bucket count, mean, min, max."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from cloud.access.roles import Role
from leasewatch.wire import Reading, TelemetryBatch
from tests.cloud.access.conftest import AccessApp

MINUTE = timedelta(minutes=1)


def write(app: AccessApp, device: str, readings: list[Reading]) -> None:
    """Store readings as one gateway message."""
    batch = TelemetryBatch(
        device=device, boot="b", seq=0, sent_at=datetime.now(UTC), readings=readings
    )
    asyncio.run(app.services.telemetry.write([batch]))


def test_step_answers_buckets_and_no_step_answers_readings(access_app: AccessApp) -> None:
    base = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)
    values = [(timedelta(0), 1.0), (timedelta(seconds=59), 3.0), (MINUTE, 7.0)]
    write(access_app, "gw-7", [Reading(sensor="engine", metric="rpm", ts=base + o, value=v)
                               for o, v in values])  # fmt: skip
    params = {
        "start": (base + timedelta(seconds=5)).isoformat(),
        "end": (base + 2 * MINUTE).isoformat(),
    }
    auth = access_app.auth(Role.ASSET_MANAGER)

    stepped = access_app.client.get(
        "/v1/devices/gw-7/readings", params=params | {"step": 60}, headers=auth
    )
    raw = access_app.client.get("/v1/devices/gw-7/readings", params=params, headers=auth)

    assert stepped.status_code == 200, stepped.text
    body = stepped.json()
    assert (body["step"], body["count"]) == (60, 2)
    assert datetime.fromisoformat(body["start"]) == base  # rounded down to a whole step
    assert [(b["count"], b["mean"], b["min"], b["max"]) for b in body["buckets"]] == [
        (2, 2.0, 1.0, 3.0),
        (1, 7.0, 7.0, 7.0),
    ]
    assert datetime.fromisoformat(body["buckets"][1]["bucket"]) == base + MINUTE
    assert raw.status_code == 200
    assert set(raw.json()) == {"device", "start", "end", "count", "readings"}
    assert [r["value"] for r in raw.json()["readings"]] == [3.0, 7.0]


def test_step_is_bounded(access_app: AccessApp) -> None:
    auth = access_app.auth(Role.OPERATOR)
    end = datetime.now(UTC)
    week = {"start": (end - timedelta(days=7)).isoformat(), "end": end.isoformat()}

    too_many = access_app.client.get(
        "/v1/devices/gw-7/readings", params=week | {"step": 1}, headers=auth
    )
    zero = access_app.client.get("/v1/devices/gw-7/readings", params={"step": 0}, headers=auth)

    assert too_many.status_code == 422
    assert too_many.json()["code"] == "too_many_buckets"
    assert zero.status_code == 422
    assert [e["field"] for e in zero.json()["errors"]] == ["query.step"]
