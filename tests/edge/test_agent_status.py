"""A real agent process announces itself with a retained birth message; kill -9 leaves its last
will, retained, for whoever looks next."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiomqtt
import pytest

from firmware_sim.machine import HeldMachine
from firmware_sim.modbus_slave import ModbusRtuSlave
from firmware_sim.pty_pair import PtyPair
from leasewatch.wire import GatewayStatus, decode_status
from tests.edge.test_agent import DEVICE, agent_toml, start_agent
from tests.services.mosquitto import MosquittoBroker

TOPIC = f"lw/v1/{DEVICE}/status"


async def _next_status(client: aiomqtt.Client, seconds: float = 20) -> tuple[GatewayStatus, bool]:
    """The next status message and whether it came as a retained one."""
    message = await asyncio.wait_for(anext(aiter(client.messages)), seconds)
    assert isinstance(message.payload, bytes)
    return decode_status(str(message.topic), message.payload), bool(message.retain)


@pytest.mark.integration
async def test_retained_birth_then_the_last_will_after_kill_9(
    mosquitto_broker: MosquittoBroker, tmp_path: Path
) -> None:
    user, password = mosquitto_broker.credentials("ingestor")
    machine = HeldMachine(running=True, motor_current=10.0)
    async with PtyPair() as pair, ModbusRtuSlave(machine, pair.device_path):
        config = tmp_path / "edge.toml"
        config.write_text(
            agent_toml(
                password=mosquitto_broker.password(DEVICE),
                port=mosquitto_broker.port,
                data_dir=tmp_path / "edge",
                port_path=pair.client_path,
            )
        )
        async with aiomqtt.Client(
            "127.0.0.1", mosquitto_broker.port, username=user, password=password
        ) as watcher:
            await watcher.subscribe(TOPIC, qos=1)
            agent = await start_agent(config, tmp_path / "agent.log")
            try:
                birth, _ = await _next_status(watcher, 30)
                async with aiomqtt.Client(
                    "127.0.0.1", mosquitto_broker.port, username=user, password=password
                ) as early:
                    await early.subscribe(TOPIC, qos=1)
                    kept_birth, birth_retained = await _next_status(early)
                agent.send_signal(signal.SIGKILL)
                await agent.wait()
                will, _ = await _next_status(watcher)
            finally:
                if agent.returncode is None:
                    agent.kill()
                    await agent.wait()
        async with aiomqtt.Client(
            "127.0.0.1", mosquitto_broker.port, username=user, password=password
        ) as latecomer:
            await latecomer.subscribe(TOPIC, qos=1)
            kept, retained = await _next_status(latecomer)

    assert (birth.state, will.state) == ("online", "offline")
    assert (kept_birth, birth_retained) == (birth, True), "the birth message is retained"
    assert will.boot == birth.boot, "the will names the boot that died"
    assert (kept.state, kept.boot, retained) == ("offline", birth.boot, True)
