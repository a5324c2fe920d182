"""A gateway whose clock runs ahead: its boot's stamps are re-based, not refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiomqtt
import pytest

from leasewatch.wire import Reading, TelemetryBatch, encode, telemetry_topic
from tests.services.mosquitto import MosquittoBroker
from tests.slice import api_get, cloud_settings, eventually, running_cloud
from tests.test_end_to_end import mosquitto_address

pytestmark = pytest.mark.integration

LEAD = timedelta(hours=1)


def _batch(boot: str, seq: int, taken: datetime, *, historical: bool = False) -> TelemetryBatch:
    """A message of a gateway whose timeline runs LEAD ahead: readings taken at true `taken`."""
    readings = [
        Reading(sensor="machine", metric="motor_current", ts=taken + LEAD + timedelta(seconds=i),
                value=float(seq * 10 + i), unit="A")
        for i in range(3)
    ]  # fmt: skip
    sent_at = datetime.now(UTC) + LEAD
    return TelemetryBatch(
        device="gw-0001", boot=boot, seq=seq, sent_at=sent_at, historical=historical,
        readings=readings,
    )  # fmt: skip


async def _publish(broker: MosquittoBroker, payloads: list[bytes]) -> None:
    user, password = broker.credentials("gw-0001")
    async with aiomqtt.Client(
        "127.0.0.1", broker.port, username=user, password=password,
        identifier="gw-0001-clock", protocol=aiomqtt.ProtocolVersion.V5,
    ) as client:  # fmt: skip
        for payload in payloads:
            await client.publish(telemetry_topic("gw-0001"), payload, qos=1)


@pytest.fixture(params=["sqlite", "postgresql"])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The state store: SQLite and PostgreSQL keep the leads with different SQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.sqlite'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


async def test_a_boot_stamped_an_hour_ahead_is_stored_at_the_true_time(
    mosquitto_broker: MosquittoBroker, state_url: str, tmp_path: Path
) -> None:
    address = mosquitto_address(mosquitto_broker)
    telemetry = f"sqlite:///{tmp_path / 't.sqlite'}"
    settings = cloud_settings(address, telemetry, tmp_path).model_copy(
        update={"state_url": state_url}
    )
    taken = datetime.now(UTC) - timedelta(seconds=30)
    async with running_cloud(settings) as (runtime, api_url):
        # A historical message first: no lead is known for its boot yet, so it is refused.
        await _publish(mosquitto_broker, [encode(_batch("boot-b", 0, taken, historical=True))])
        await eventually(
            lambda: api_get(api_url, "/v1/ingest/rejections"),
            lambda r: r["counts"] == {"timestamp_out_of_range": 1},
        )
        # Live messages of the boot show its lead; then a historical one of the same boot.
        live = [_batch("boot-b", seq, taken + timedelta(seconds=seq * 5)) for seq in (1, 2)]
        backlog = _batch("boot-b", 3, taken - timedelta(minutes=10), historical=True)
        await _publish(mosquitto_broker, [encode(b) for b in [*live, backlog]])
        ledger = await eventually(
            lambda: api_get(api_url, "/v1/devices/gw-0001/ledger"), lambda rows: len(rows) == 3
        )
        since = (taken - timedelta(minutes=11)).isoformat()
        until = (datetime.now(UTC) + 2 * LEAD).isoformat()
        stored = await api_get(
            api_url, "/v1/devices/gw-0001/readings", start=since, end=until, limit=100
        )
        leads = await api_get(api_url, "/v1/devices/gw-0001/clock-leads")
        rebased = runtime.services.metrics.clock_rebased._value.get()
    assert sorted(row["seq"] for row in ledger) == [1, 2, 3]
    stamps = sorted(datetime.fromisoformat(r["ts"]) for r in stored["readings"])
    starts = [
        taken - timedelta(minutes=10),
        taken + timedelta(seconds=5),
        taken + timedelta(seconds=10),
    ]
    truth = sorted(t + timedelta(seconds=i) for t in starts for i in range(3))
    assert len(stamps) == len(truth) == 9
    for stored_at, true_at in zip(stamps, truth, strict=True):
        # the lead is estimated from the send-to-receive time: off by the delivery delay only
        assert abs((stored_at - true_at).total_seconds()) < 5, (stored_at, true_at)
    (lead,) = leads
    assert lead["boot"] == "boot-b" and abs(lead["lead_s"] - LEAD.total_seconds()) < 5
    assert lead["rebased_messages"] == 3 and rebased == 3
