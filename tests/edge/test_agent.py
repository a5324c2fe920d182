"""The edge agent on real parts: broker outages, kill -9 and SIGTERM of a real agent process."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from cloud.broker_access import Principal
from cloud.embedded_broker import EmbeddedBroker
from edge.buffer import ReadingBuffer
from edge.config import DeliveryConfig, MqttConfig
from edge.mqtt_client import make_client
from firmware_sim.machine import HeldMachine
from firmware_sim.modbus_slave import ModbusRtuSlave
from firmware_sim.pty_pair import PtyPair
from leasewatch.demo import machine_fields
from leasewatch.wire import TelemetryBatch, decode_telemetry
from tests.services.mosquitto import MosquittoBroker
from tests.services.ports import free_port
from tests.slice import (
    BrokerAddress,
    api_get,
    cloud_settings,
    eventually,
    running_cloud,
    running_gateway,
    settled,
)

PASSWORDS = {"gw-0001": "gateway-pass-1", "ingestor": "ingestor-pass-1", "monitor": "monitor-pass"}
DEVICE = "gw-0001"
REPO = Path(__file__).resolve().parents[2]
Key = tuple[str, str, int]  # sensor, metric, milliseconds since the epoch


@asynccontextmanager
async def watching(port: int) -> AsyncIterator[list[TelemetryBatch]]:
    """Every telemetry batch the broker delivers, in arrival order (as a monitor sees it)."""
    arrived: list[TelemetryBatch] = []
    async with aiomqtt.Client(
        "127.0.0.1", port, username="monitor", password=PASSWORDS["monitor"], identifier="mon"
    ) as client:
        await client.subscribe(f"lw/v1/{DEVICE}/telemetry", qos=1)

        async def pump() -> None:
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                arrived.append(decode_telemetry(str(message.topic), message.payload))

        task = asyncio.create_task(pump())
        try:
            yield arrived
        finally:
            task.cancel()


@pytest.mark.integration
async def test_readings_taken_while_the_broker_is_down_arrive_once_in_order_marked_historical(
    tmp_path: Path,
) -> None:
    port = free_port()
    address = BrokerAddress("127.0.0.1", port, 311, "", PASSWORDS["ingestor"], PASSWORDS)
    delivery = DeliveryConfig(publish_interval=0.5, historical_after=1.5)
    machine = HeldMachine(running=True, motor_current=10.0, temperature=30.0)
    principals = [
        Principal.gateway(DEVICE, PASSWORDS[DEVICE]),
        Principal.ingestor("ingestor", PASSWORDS["ingestor"]),
        Principal.monitor("monitor", PASSWORDS["monitor"]),
    ]
    cloud_listens = asyncio.Event()
    async with running_gateway(DEVICE, address, tmp_path / "edge", machine, delivery) as gw:
        gw.agent.link.client_factory = _held_until(cloud_listens)
        await asyncio.sleep(3.0)  # no broker yet: the agent polls and buffers
        assert gw.agent.buffer.stats()["outbox_messages"] >= 3
        assert gw.agent.link.health.published_messages == 0
        came_back = datetime.now(UTC)
        async with EmbeddedBroker(principals, port=port), watching(port) as arrived:
            settings = cloud_settings(address, f"sqlite:///{tmp_path / 't.sqlite'}", tmp_path)
            async with running_cloud(settings) as (_, api_url):
                cloud_listens.set()  # amqtt keeps no messages for an ingestor not yet subscribed
                await eventually(lambda: _ledger(api_url), lambda rows: len(rows) >= 8)
                await eventually(_now(arrived), lambda a: any(not b.historical for b in a))
                await gw.shutdown()
                taken = gw.agent.health.readings_taken
                ledger = await eventually(
                    lambda: _ledger(api_url),
                    lambda rows: sum(r["readings"] for r in rows) == taken,
                )
                device = (await api_get(api_url, "/v1/devices"))[0]

    assert [r["seq"] for r in ledger] == list(range(len(ledger)))
    assert device["readings"] == taken and device["duplicates"] == 0
    assert datetime.fromisoformat(device["latest_reading_at"]) >= came_back
    history = [b for b in arrived if b.historical]
    assert len(history) >= 5, "what was taken before the link came up is history"
    assert [b.seq for b in history] == sorted(b.seq for b in history), "replayed oldest first"
    assert any(not b.historical for b in arrived), "once caught up, new messages are live again"
    before = [b.historical for b in arrived for r in b.readings if r.ts < came_back]
    assert before and all(before), "every reading taken while the link was down is history"
    keys = [(r.sensor, r.metric, r.ts.isoformat()) for b in arrived for r in b.readings]
    assert len(set(keys)) == taken, "every reading taken arrived"
    for metric in {k[1] for k in keys}:
        replayed = [r.ts for b in history for r in b.readings if r.metric == metric]
        assert replayed == sorted(replayed), f"{metric}: history arrives in order"


def _now(value: object) -> Callable[[], Awaitable[object]]:
    """A probe for `eventually` that looks at a value the test holds."""

    async def probe() -> object:
        return value

    return probe


def _held_until(ready: asyncio.Event) -> Callable[[MqttConfig, str, str], aiomqtt.Client]:
    """A client factory that fails to connect until `ready` is set."""

    def factory(config: MqttConfig, device: str, boot: str) -> aiomqtt.Client:
        if not ready.is_set():
            raise aiomqtt.MqttError("held back by the test until the cloud listens")
        return make_client(config, device, boot)

    return factory


async def _ledger(api_url: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = await api_get(api_url, f"/v1/devices/{DEVICE}/ledger")
    return rows


def agent_toml(*, password: str, port: int, data_dir: Path, port_path: str, extra: str = "") -> str:
    """A fast-polling agent configuration file for a real agent process."""
    fields = "".join(
        f'[[modbus_rtu.slaves.fields]]\nmetric = "{f.metric}"\naddress = {f.address}\n'
        f'kind = "{f.kind}"\nscale = {f.scale}\nunit = "{f.unit}"\n'
        for f in machine_fields()
    )
    return (
        f'[gateway]\ndevice = "{DEVICE}"\ndata_dir = "{data_dir}"\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\nusername = "{DEVICE}"\n'
        f'password = "{password}"\ntls = false\nreconnect_max = 1.0\n'
        "[delivery]\npublish_interval = 0.3\nhistorical_after = 5.0\n"
        f"{extra}"
        f'[[modbus_rtu]]\nport = "{port_path}"\n[[modbus_rtu.slaves]]\nsensor = "machine"\n'
        f"unit_id = 1\npoll_interval = 0.1\ntimeout = 0.2\n{fields}"
    )


async def start_agent(config: Path, log: Path, prefix: tuple[str, ...] = ()) -> Any:
    """`leasewatch edge --config FILE` as its own process, logging to a file."""
    with log.open("ab") as sink:
        return await asyncio.create_subprocess_exec(
            *prefix,
            sys.executable,
            "-c",
            "from leasewatch.cli import app; app()",
            "edge",
            "--config",
            str(config),
            stdout=sink,
            stderr=sink,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )


@asynccontextmanager
async def agent_process(
    config: Path, log: Path, prefix: tuple[str, ...] = ()
) -> AsyncIterator[Any]:
    """`start_agent`, killed on the way out if the test left it running (a failed assertion)."""
    agent = await start_agent(config, log, prefix)
    try:
        yield agent
    finally:
        if agent.returncode is None:
            agent.kill()
            await agent.wait()


def _ms(ts: datetime) -> int:
    return round(ts.timestamp() * 1000)


def _keys(readings: list[dict[str, Any]]) -> list[Key]:
    return [
        (str(r["sensor"]), str(r["metric"]), _ms(datetime.fromisoformat(str(r["ts"]))))
        for r in readings
    ]


async def _stored(api_url: str) -> list[Key]:
    end = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    start = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    body = await api_get(api_url, f"/v1/devices/{DEVICE}/readings", start=start, end=end)
    return _keys(body["readings"])


async def _holding(data_dir: Path) -> int:
    """Readings the running agent holds in its buffer right now (a read-only look)."""
    uri = f"file:{data_dir / 'buffer.sqlite'}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True)) as db:
        (pending,) = db.execute("SELECT COUNT(*) FROM pending").fetchone()
        (sealed,) = db.execute("SELECT COUNT(*) FROM outbox").fetchone()
    return int(pending + sealed)


def _buffered(data_dir: Path, scratch: Path) -> set[Key]:
    """What the killed agent's buffer file held: readings taken and not yet acknowledged."""
    scratch.mkdir()
    for name in ("buffer.sqlite", "buffer.sqlite-wal"):
        if (data_dir / name).exists():
            shutil.copy(data_dir / name, scratch / name)
    buffer = ReadingBuffer(scratch / "buffer.sqlite", reserve_bytes=4096)
    buffer.seal("inspection", 0, 5000, datetime.now(UTC))
    held = {(r.sensor, r.metric, _ms(r.ts)) for m in buffer.oldest(100_000) for r in m.readings}
    buffer.close()
    return held


@pytest.mark.integration
async def test_kill_9_mid_stream_loses_nothing_duplicates_nothing_and_sigterm_flushes(
    mosquitto_broker: MosquittoBroker, tmp_path: Path
) -> None:
    address = BrokerAddress(
        "127.0.0.1",
        mosquitto_broker.port,
        5,
        "ingest",
        mosquitto_broker.password("ingestor"),
        {DEVICE: mosquitto_broker.password(DEVICE)},
    )
    settings = cloud_settings(address, f"sqlite:///{tmp_path / 't.sqlite'}", tmp_path)
    machine = HeldMachine(running=True, motor_current=10.0, temperature=30.0)
    data_dir, log = tmp_path / "edge", tmp_path / "agent.log"
    async with (
        PtyPair() as pair,
        ModbusRtuSlave(machine, pair.device_path),
        running_cloud(settings) as (_, api_url),
    ):
        config = tmp_path / "edge.toml"
        config.write_text(
            agent_toml(
                password=address.device_passwords[DEVICE],
                port=address.port,
                data_dir=data_dir,
                port_path=pair.client_path,
            )
        )
        first = await start_agent(config, log)
        await eventually(lambda: _stored(api_url), lambda keys: len(keys) >= 60, timeout=30)
        await eventually(lambda: _holding(data_dir), bool)  # mid-stream, readings in hand
        first.send_signal(signal.SIGKILL)
        await first.wait()
        # what the broker accepted before the kill is stored a moment later: wait for it
        delivered_before = set(await settled(lambda: _stored(api_url)))
        held = _buffered(data_dir, tmp_path / "snapshot")
        assert held, "the killed agent had readings not yet acknowledged"

        second = await start_agent(config, log)
        # up (its SIGTERM handler installed: a loaded machine takes seconds to import), then 3 s
        await eventually(
            lambda: asyncio.to_thread(log.read_text),
            lambda t: t.count("mqtt link up") >= 2,
            timeout=30,
        )
        await asyncio.sleep(3.0)
        second.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(second.wait(), 20) == 0, log.read_text()[-3000:]
        stopped = re.findall(r"edge agent stopped.*readings_taken=(\d+)", log.read_text())
        taken_after = int(stopped[-1])
        expected = len(delivered_before | held) + taken_after
        final = await eventually(lambda: _stored(api_url), lambda k: len(k) >= expected)
        devices = await eventually(
            lambda: api_get(api_url, "/v1/devices"), lambda d: d[0]["status"] == "offline"
        )

    assert len(final) == len(set(final)), "no reading stored twice"
    assert len(final) == expected, "exactly what was taken, once"
    assert held <= set(final), "every reading the killed agent held arrived after its restart"
    assert delivered_before <= set(final)
    assert devices[0]["readings"] == expected
