"""The edge agent against real brokers: nothing taken is lost while the broker is away."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from cloud.broker_access import Principal
from cloud.embedded_broker import EmbeddedBroker
from edge.config import DeliveryConfig
from firmware_sim.machine import HeldMachine
from tests.services.ports import free_port
from tests.slice import (
    BrokerAddress,
    api_get,
    cloud_settings,
    eventually,
    running_cloud,
    running_gateway,
)

PASSWORDS = {"gw-0001": "gateway-pass-1", "ingestor": "ingestor-pass-1"}


async def test_readings_taken_while_the_broker_is_down_arrive_later_marked_historical(
    tmp_path: Path,
) -> None:
    port = free_port()
    address = BrokerAddress("127.0.0.1", port, 311, "", PASSWORDS["ingestor"], PASSWORDS)
    delivery = DeliveryConfig(publish_interval=0.5, historical_after=1.5)
    machine = HeldMachine(running=True, motor_current=10.0, temperature=30.0)
    principals = [
        Principal.gateway("gw-0001", PASSWORDS["gw-0001"]),
        Principal.ingestor("ingestor", PASSWORDS["ingestor"]),
    ]
    async with running_gateway("gw-0001", address, tmp_path / "edge", machine, delivery) as gw:
        await asyncio.sleep(3.0)  # no broker yet: the agent polls and buffers
        buffered = gw.agent.buffer.stats()
        assert buffered["outbox_messages"] >= 3
        assert gw.agent.link.health.published_messages == 0
        came_back = datetime.now(UTC)
        async with EmbeddedBroker(principals, port=port) as broker:
            assert broker.port == port
            settings = cloud_settings(address, f"sqlite:///{tmp_path / 't.sqlite'}", tmp_path)
            async with running_cloud(settings) as (_, api_url):
                await eventually(lambda: _ledger(api_url), lambda rows: len(rows) >= 8)
                await gw.shutdown()
                taken = gw.agent.health.readings_taken
                ledger = await eventually(
                    lambda: _ledger(api_url),
                    lambda rows: sum(r["readings"] for r in rows) == taken,
                )
                device = (await api_get(api_url, "/v1/devices"))[0]

    assert [r["seq"] for r in ledger] == list(range(len(ledger)))
    historical = [r for r in ledger if r["historical"]]
    live = [r for r in ledger if not r["historical"]]
    assert len(historical) >= 2, "a backlog older than historical_after is marked historical"
    assert ledger[0]["historical"], "the oldest buffered message is history by the time it is sent"
    flags = [r["historical"] for r in ledger]
    assert flags == sorted(flags, reverse=True), "oldest first: history, then live data"
    assert live, "once caught up, new messages are live again"
    assert device["readings"] == taken
    assert datetime.fromisoformat(device["latest_reading_at"]) >= came_back


async def _ledger(api_url: str) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = await api_get(api_url, "/v1/devices/gw-0001/ledger")
    return rows
