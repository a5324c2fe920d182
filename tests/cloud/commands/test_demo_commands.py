"""The demo's embedded amqtt broker (no shared subscriptions, MQTT 3.1.1) carries commands too."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from leasewatch.demo import Demo, DemoOptions, gateway_id
from tests.services.ports import free_port
from tests.slice import eventually


@pytest.mark.integration
@pytest.mark.timeout(120)
async def test_a_demo_gateway_answers_a_command(tmp_path: Path) -> None:
    options = DemoOptions(
        assets=1, data_dir=tmp_path / "demo", mqtt_port=free_port(), api_port=free_port()
    )
    demo, stop, ready = Demo(options), asyncio.Event(), asyncio.Event()
    running = asyncio.create_task(demo.run(stop, ready))
    try:
        await asyncio.wait_for(ready.wait(), 60)
        assert demo.runtime is not None and demo.runtime.commands is not None
        assert demo.runtime.commands.connected.is_set(), "subscribed before gateways started"
        headers = {"X-API-Key": demo.api_key}
        async with httpx.AsyncClient(base_url=demo.api_url, headers=headers) as client:
            path = f"/v1/devices/{gateway_id(1)}/commands"
            sent = (await client.post(path, json={"name": "read_now"})).json()

            async def command() -> Any:
                return (await client.get(f"/v1/commands/{sent['id']}")).json()

            answered = await eventually(command, lambda c: c["status"] != "queued" and (
                c["ack_status"] not in (None, "accepted")), timeout=30)  # fmt: skip
    finally:
        stop.set()
        await asyncio.wait_for(running, 60)
    assert (answered["status"], answered["ack_status"]) == ("acknowledged", "done")
    assert answered["ack_result"]["readings"] >= 1
    assert answered["requested_by"] == "bootstrap-admin"
