"""Commands end to end: API -> command link -> Mosquitto -> a real agent process -> acks -> API.

The agent (`leasewatch edge` in its own process) reads a simulated Modbus RTU machine on a pty
pair. Commands to it are run and acknowledged; while it is stopped, a command waits in its
persistent session (QoS 1) and is answered when it comes back, or expires first.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from cloud.runtime import CloudRuntime
from firmware_sim.machine import HeldMachine
from firmware_sim.modbus_slave import ModbusRtuSlave
from firmware_sim.pty_pair import PtyPair
from leasewatch.wire import CommandAck, device_topic, encode
from tests.edge.test_agent import agent_process, agent_toml
from tests.services.mosquitto import MosquittoBroker
from tests.slice import BrokerAddress, api_get, api_post, cloud_settings, eventually, running_cloud

DEVICE, NEVER_SEEN = "gw-0001", "gw-0002"
FINAL = ("acknowledged", "failed", "expired")


async def _history(api_url: str, device: str = DEVICE) -> dict[str, dict[str, Any]]:
    rows: list[dict[str, Any]] = await api_get(api_url, f"/v1/devices/{device}/commands")
    return {row["id"]: row for row in rows}


async def _status_of(api_url: str) -> str:
    devices = await api_get(api_url, "/v1/devices")
    return str(next(d["status"] for d in devices if d["device"] == DEVICE))


async def _boot(api_url: str) -> str:
    devices = await api_get(api_url, "/v1/devices")
    return str(next(d["last_boot"] for d in devices if d["device"] == DEVICE))


async def _answered(api_url: str, ids: list[str], timeout: float = 60) -> dict[str, Any]:
    history: dict[str, Any] = await eventually(
        lambda: _history(api_url),
        lambda h: all(h[i]["status"] in FINAL and h[i]["ack_status"] not in (None, "accepted")
                      for i in ids),
        timeout=timeout,
    )  # fmt: skip
    return history


@asynccontextmanager
async def _agent_online(config: Path, log: Path, api_url: str) -> AsyncIterator[Any]:
    async with agent_process(config, log) as agent:
        await eventually(lambda: _status_of(api_url), lambda s: s == "online", timeout=60)
        yield agent


async def _stop_agent(agent: Any, log: Path) -> None:
    agent.send_signal(signal.SIGTERM)
    code = await asyncio.wait_for(agent.wait(), 30)
    assert code == 0, await asyncio.to_thread(lambda: log.read_text()[-3000:])


async def _commands_run_by_the_agent(api_url: str, data_dir: Path) -> None:
    ping = await api_post(api_url, f"/v1/devices/{DEVICE}/commands", {"name": "ping"})
    interval = await api_post(
        api_url, f"/v1/devices/{DEVICE}/commands",
        {"name": "set_poll_interval", "args": {"sensor": "machine", "interval": 0.5}},
    )  # fmt: skip
    assert ping["requested_by"] == "bootstrap-admin"
    history = await _answered(api_url, [ping["id"], interval["id"]])
    boot = await _boot(api_url)
    assert history[ping["id"]]["status"] == "acknowledged"
    assert history[ping["id"]]["ack_result"] == {"boot": boot}
    assert history[interval["id"]]["status"] == "acknowledged"
    assert history[interval["id"]]["ack_result"] == {"sensor": "machine", "interval": 0.5}
    for row in history.values():
        assert row["sent_at"] <= row["acked_at"], row
    pushed = json.loads((data_dir / "pushed-config.json").read_text())
    assert pushed["scheduler"]["poll_intervals"] == {"machine": 0.5}, "the agent applied it"


async def _repeated_and_unknown_acks(broker: MosquittoBroker, api_url: str) -> None:
    """A repeated ack changes nothing; an ack for no command is counted and dead-lettered."""
    before = await _history(api_url)
    done = next(r for r in before.values() if r["name"] == "ping")
    user, password = broker.credentials(DEVICE)
    acks = [
        CommandAck.model_validate({"device": DEVICE, "boot": "b-other", "id": ident, "status": s,
                                   "ts": done["acked_at"]})
        for ident, s in ((done["id"], "done"), (done["id"], "accepted"), ("never-sent-1", "done"))
    ]  # fmt: skip
    async with aiomqtt.Client(
        broker.host, broker.port, username=user, password=password, identifier="gw-0001-test"
    ) as client:
        for ack in acks:
            await client.publish(device_topic(DEVICE, "ack"), encode(ack), qos=1)
    rejections = await eventually(
        lambda: api_get(api_url, "/v1/ingest/rejections", limit=1000),
        lambda r: r["counts"].get("unknown_command") == 1,
    )
    letters = [r for r in rejections["recent"] if r["reason"] == "unknown_command"]
    assert len(letters) == 1, rejections["counts"]  # other rejections name themselves here
    (letter,) = letters
    assert letter["detail"] == f"no command 'never-sent-1' was sent to {DEVICE}"
    assert letter["topic"] == device_topic(DEVICE, "ack")
    assert await _history(api_url) == before


async def _offline_gateway(api_url: str, config: Path, log: Path, runtime: CloudRuntime) -> None:
    """Stopped agent: one command waits and is answered on return, a short-lived one expires."""
    waiting = await api_post(api_url, f"/v1/devices/{DEVICE}/commands", {"name": "ping"})
    short = await api_post(api_url, f"/v1/devices/{DEVICE}/commands", {"name": "ping", "ttl_s": 5})
    history = await eventually(
        lambda: _history(api_url),
        lambda h: h[waiting["id"]]["status"] == "sent" and h[short["id"]]["status"] == "expired",
        timeout=30,
    )
    assert history[short["id"]]["sent_at"] is not None, "it reached the broker, not the gateway"
    assert history[short["id"]]["detail"] == "no final answer before it expired"
    assert history[waiting["id"]]["ack_status"] is None

    async with _agent_online(config, log, api_url) as agent:
        history = await _answered(api_url, [waiting["id"], short["id"]])
        await _stop_agent(agent, log)
    assert history[waiting["id"]]["status"] == "acknowledged"
    assert history[waiting["id"]]["ack_result"] == {"boot": await _boot(api_url)}
    assert history[short["id"]]["status"] == "expired"
    assert history[short["id"]]["ack_status"] == "expired", "the agent did not run it late"
    expired = runtime.services.metrics.registry.get_sample_value("lw_commands_expired_total")
    assert expired is not None and expired >= 1


@pytest.mark.integration
@pytest.mark.timeout(300)
async def test_commands_reach_a_real_agent_and_the_acks_land_in_the_history(
    mosquitto_broker: MosquittoBroker, tmp_path: Path
) -> None:
    address = BrokerAddress(
        "127.0.0.1", mosquitto_broker.port, 5, "ingest", mosquitto_broker.password("ingestor"),
        {DEVICE: mosquitto_broker.password(DEVICE)},
    )  # fmt: skip
    settings = cloud_settings(address, f"sqlite:///{tmp_path / 't.sqlite'}", tmp_path)
    settings = settings.model_copy(update={"command_poll_s": 0.2})
    data_dir, log, config = tmp_path / "edge", tmp_path / "agent.log", tmp_path / "edge.toml"
    machine = HeldMachine(running=True, motor_current=10.0, temperature=30.0)
    async with (
        PtyPair() as pair,
        ModbusRtuSlave(machine, pair.device_path),
        running_cloud(settings) as (runtime, api_url),
    ):
        assert runtime.commands is not None
        await asyncio.wait_for(runtime.commands.connected.wait(), 15)
        config.write_text(
            agent_toml(password=address.device_passwords[DEVICE], port=address.port,
                       data_dir=data_dir, port_path=pair.client_path)
        )  # fmt: skip
        async with _agent_online(config, log, api_url) as agent:
            await _commands_run_by_the_agent(api_url, data_dir)
            await _repeated_and_unknown_acks(mosquitto_broker, api_url)
            await _stop_agent(agent, log)
        await eventually(lambda: _status_of(api_url), lambda s: s == "offline")
        await _offline_gateway(api_url, config, log, runtime)

        lost = await api_post(api_url, f"/v1/devices/{NEVER_SEEN}/commands", {"name": "ping"})
        history = await eventually(
            lambda: _history(api_url, NEVER_SEEN), lambda h: h[lost["id"]]["status"] == "failed"
        )
    assert history[lost["id"]]["detail"].startswith("broker answered 0x10: the gateway has no")
