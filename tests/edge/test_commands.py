"""Commands: acks, idempotency, expiry, and a round trip through Mosquitto to a device."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer
from pymodbus.simulator import DataType, SimData, SimDevice

from edge.agent import EdgeAgent
from edge.commands import (
    CommandFailedError,
    CommandLedger,
    CommandProcessor,
    CommandRejectedError,
    Result,
    salvage_id,
)
from edge.config import (
    ControlConfig,
    DeliveryConfig,
    EdgeConfig,
    GatewayConfig,
    HealthConfig,
    ImmobilizerConfig,
    ModbusRtuBusConfig,
    ModbusSlaveConfig,
)
from firmware_sim.pty_pair import PtyPair
from leasewatch.demo import machine_fields
from leasewatch.wire import Command, CommandAck, decode_ack, decode_health
from tests.edge.brokers import gateway_mqtt
from tests.services.mosquitto import MosquittoBroker

DEVICE = "gw-0001"
NOW = datetime.now(UTC)


def _command(name: str, command_id: str | None = None, **args: Any) -> Command:
    return Command.model_validate(
        {"id": command_id or secrets.token_hex(6), "name": name, "args": args, "issued_at": NOW}
    )


class FakeGateway:
    """A CommandTarget that records what it was asked."""

    device = DEVICE
    boot = "boot-1"

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    async def read_now(self, sensor: str | None) -> int:
        self.calls.append(("read_now", sensor))
        return 6

    async def set_poll_interval(self, sensor: str, seconds: float) -> None:
        self.calls.append(("set_poll_interval", (sensor, seconds)))

    async def push_config(self, text: str) -> str:
        raise CommandFailedError("rolled back: no sensor answered")

    async def set_immobilized(self, immobilized: bool) -> Result:
        if not immobilized:
            raise CommandRejectedError("no immobilizer is configured on this gateway")
        return {"coil": 3, "value": True}


@pytest.fixture
def processor(tmp_path: Path) -> tuple[CommandProcessor, list[CommandAck], FakeGateway]:
    acks: list[CommandAck] = []
    gateway = FakeGateway()
    ledger = CommandLedger(tmp_path / "c.sqlite", remember=10)
    return CommandProcessor(gateway, ledger, ControlConfig(), acks.append), acks, gateway


Processor = tuple[CommandProcessor, list[CommandAck], FakeGateway]


async def test_each_command_is_accepted_then_done_failed_or_rejected(processor: Processor) -> None:
    run, acks, gateway = processor
    for command in (
        _command("ping"),
        _command("read_now", sensor="machine"),
        _command("set_poll_interval", sensor="machine", interval=0.5),
        _command("set_poll_interval", sensor="machine", interval=-1),
        _command("push_config", config="[features]"),
        _command("immobilize"),
        _command("release"),
    ):
        await run.handle(command.model_dump_json().encode())
    assert [a.status for a in acks] == [
        *("accepted", "done"),
        *("accepted", "done"),
        *("accepted", "done"),
        *("accepted", "rejected"),
        *("accepted", "failed"),
        *("accepted", "done"),
        *("accepted", "rejected"),
    ]
    assert acks[1].result == {"boot": "boot-1"}
    assert acks[3].result == {"readings": 6}
    assert "(0, 86400]" in acks[7].detail
    assert acks[11].result == {"coil": 3, "value": True}
    assert gateway.calls == [("read_now", "machine"), ("set_poll_interval", ("machine", 0.5))]


async def test_a_repeated_command_gets_the_same_answer_and_does_not_run_again(
    processor: Processor, tmp_path: Path
) -> None:
    run, acks, gateway = processor
    command = _command("read_now", command_id="cmd-repeat-0001").model_dump_json().encode()
    await run.handle(command)
    again = CommandProcessor(
        gateway, CommandLedger(tmp_path / "c.sqlite", 10), ControlConfig(), acks.append
    )  # after a restart
    await again.handle(command)
    assert [a.status for a in acks] == ["accepted", "done", "done"]
    assert acks[2] == acks[1]
    assert len(gateway.calls) == 1


async def test_expired_and_unknown_commands_are_answered_and_never_run(
    processor: Processor,
) -> None:
    run, acks, gateway = processor
    expired = _command("read_now").model_copy(update={"expires_at": NOW - timedelta(seconds=1)})
    stale = _command("read_now").model_copy(update={"issued_at": NOW - timedelta(hours=2)})
    unknown = {
        "v": 1,
        "id": "cmd-unknown-01",
        "name": "self_destruct",
        "issued_at": NOW.isoformat(),
    }
    await run.handle(expired.model_dump_json().encode())
    await run.handle(stale.model_dump_json().encode())
    await run.handle(json.dumps(unknown).encode())
    await run.handle(b"not json at all")
    assert [(a.status, a.id) for a in acks] == [
        ("expired", expired.id),
        ("expired", stale.id),
        ("rejected", "cmd-unknown-01"),
    ]
    assert "name" in acks[2].detail
    assert gateway.calls == []


def test_the_ledger_forgets_the_oldest_beyond_its_bound(tmp_path: Path) -> None:
    ledger = CommandLedger(tmp_path / "c.sqlite", remember=10)
    for n in range(15):
        ledger.record(
            CommandAck(device=DEVICE, boot="b", id=f"command-{n:04d}", status="done", ts=NOW)
        )
    assert ledger.final_ack("command-0004") is None
    assert ledger.final_ack("command-0005") is not None


def test_salvage_id_only_takes_ids_the_contract_allows() -> None:
    assert salvage_id(b'{"id": "abcdefgh"}') == "abcdefgh"
    assert salvage_id(b'{"id": "short"}') is None
    assert salvage_id(b'{"id": "bad id with spaces"}') is None
    assert salvage_id(b"[1, 2]") is None


@asynccontextmanager
async def coil_device(port_path: str) -> AsyncIterator[None]:
    """Unit 1 on a pty: the simulated machine's seven holding registers and 16 coils."""
    registers = [1, 1234, 300, 421, 0, 1000, 0]
    device = SimDevice(
        id=1,
        simdata=(
            [SimData(address=0, values=[False] * 16, datatype=DataType.BITS)],
            [SimData(address=0, values=[False] * 16, datatype=DataType.BITS)],
            [SimData(address=0, values=registers, datatype=DataType.REGISTERS)],
            [SimData(address=0, values=[0] * 7, datatype=DataType.REGISTERS)],
        ),
    )
    server = ModbusSerialServer([device], framer=FramerType.RTU, port=port_path, baudrate=19200)
    await server.serve_forever(background=True)
    try:
        yield
    finally:
        await server.shutdown()  # type: ignore[no-untyped-call]


def _config(broker: MosquittoBroker, port_path: str, data_dir: Path) -> EdgeConfig:
    slave = ModbusSlaveConfig(
        sensor="machine", unit_id=1, poll_interval=0.5, timeout=0.2, fields=machine_fields()
    )
    return EdgeConfig(
        gateway=GatewayConfig(device=DEVICE, data_dir=data_dir),
        mqtt=gateway_mqtt(broker, DEVICE),
        delivery=DeliveryConfig(publish_interval=0.3),
        health=HealthConfig(interval=0.5),
        control=ControlConfig(immobilizer=ImmobilizerConfig(sensor="machine", coil=3)),
        modbus_rtu=[ModbusRtuBusConfig(port=port_path, slaves=[slave])],
    )


class Cloud:
    """The cloud's side of the command topic: publish commands, collect acks and health."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.client = client
        self.acks: asyncio.Queue[CommandAck] = asyncio.Queue()
        self.health: list[Any] = []

    async def pump(self) -> None:
        async for message in self.client.messages:
            assert isinstance(message.payload, bytes)
            if str(message.topic).endswith("/ack"):
                self.acks.put_nowait(decode_ack(str(message.topic), message.payload))
            else:
                self.health.append(decode_health(str(message.topic), message.payload))

    async def send(self, command: Command | dict[str, Any], answers: int = 2) -> list[CommandAck]:
        payload = command if isinstance(command, dict) else command.model_dump(mode="json")
        await self.client.publish(f"lw/v1/{DEVICE}/cmd", json.dumps(payload), qos=1)
        return [await asyncio.wait_for(self.acks.get(), 20) for _ in range(answers)]


@asynccontextmanager
async def cloud_side(broker: MosquittoBroker) -> AsyncIterator[Cloud]:
    user, password = broker.credentials("ingestor")
    async with aiomqtt.Client(
        "127.0.0.1", broker.port, username=user, password=password, identifier="test-cloud"
    ) as client:
        await client.subscribe(f"lw/v1/{DEVICE}/ack", qos=1)
        await client.subscribe(f"lw/v1/{DEVICE}/health", qos=1)
        cloud = Cloud(client)
        task = asyncio.create_task(cloud.pump())
        try:
            yield cloud
        finally:
            task.cancel()


@asynccontextmanager
async def running(config: EdgeConfig) -> AsyncIterator[EdgeAgent]:
    agent = EdgeAgent(config)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    try:
        await asyncio.wait_for(agent.link.up.wait(), 15)
        yield agent
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


@pytest.mark.integration
async def test_commands_round_trip_through_the_broker_to_the_device(
    mosquitto_broker: MosquittoBroker, tmp_path: Path
) -> None:
    async with (
        PtyPair() as pair,
        coil_device(pair.device_path),
        cloud_side(mosquitto_broker) as cloud,
    ):
        config = _config(mosquitto_broker, pair.client_path, tmp_path / "edge")
        async with running(config) as agent:
            ping = _command("ping", command_id="ping-00000001")
            assert [a.status for a in await cloud.send(ping)] == ["accepted", "done"]
            (again,) = await cloud.send(ping, answers=1)
            assert (again.status, again.boot) == ("done", agent.boot)

            handled = agent.commands.handled  # another gateway cannot command this one
            user, password = mosquitto_broker.credentials("gw-0002")
            async with aiomqtt.Client(
                "127.0.0.1", mosquitto_broker.port, username=user, password=password
            ) as intruder:
                forged = _command("immobilize", command_id="forged-00000001")
                await intruder.publish(f"lw/v1/{DEVICE}/cmd", forged.model_dump_json(), qos=1)
            await asyncio.sleep(1.0)
            assert (agent.commands.handled, cloud.acks.qsize()) == (handled, 0)

            _, read = await cloud.send(_command("read_now", sensor="machine"))
            assert (read.status, read.result) == ("done", {"readings": 6})

            _, immobilized = await cloud.send(_command("immobilize"))
            assert immobilized.status == "done", immobilized.detail
            assert immobilized.result == {"coil": 3, "value": True, "immobilized": True}
            _, released = await cloud.send(_command("release"))
            assert released.result["value"] is False

            _, interval = await cloud.send(
                _command("set_poll_interval", sensor="machine", interval=0.25)
            )
            assert interval.status == "done", interval.detail
            assert agent.acquisition.pollers[0].interval == 0.25

            _, local = await cloud.send(_command("push_config", config='[mqtt]\nhost = "evil"\n'))
            assert (local.status, "cannot be changed remotely" in local.detail) == (
                "rejected",
                True,
            )
            bad = '[[features.machine_state]]\nsensor = "nobody"\nmetric = "x"\n'
            _, invalid = await cloud.send(
                _command("push_config", config=bad + "idle_above = 1\nrunning_above = 2\n")
            )
            assert (invalid.status, "unknown sensor" in invalid.detail) == ("rejected", True)

            wrong_unit = _push_bus(pair.client_path, unit_id=9)
            _, rolled_back = await cloud.send(_command("push_config", config=wrong_unit))
            assert (rolled_back.status, "rolled back" in rolled_back.detail) == ("failed", True)
            assert agent.config.modbus_rtu[0].slaves[0].unit_id == 1
            taken = agent.health.readings_taken
            await asyncio.sleep(1.0)
            assert agent.health.readings_taken > taken, "the old drivers run again"

            features = _push_features() + _push_bus(pair.client_path, unit_id=1, interval=0.2)
            _, pushed = await cloud.send(_command("push_config", config=features))
            assert (pushed.status, pushed.result) == ("done", {"applied": "drivers restarted"})
            assert any(h.buffer_readings >= 0 and h.rss_bytes for h in cloud.health)

        restarted = EdgeAgent(config)  # the pushed sections are kept across restarts
        assert restarted.config.scheduler.poll_intervals == {"machine": 0.25}
        assert restarted.config.modbus_rtu[0].slaves[0].poll_interval == 0.2
        assert restarted.config.features.machine_state[0].metric == "motor_current"
        restarted.buffer.close()
        restarted.ledger.close()


def _push_bus(port: str, unit_id: int, interval: float = 0.5) -> str:
    fields = "".join(
        f'[[modbus_rtu.slaves.fields]]\nmetric = "{f.metric}"\naddress = {f.address}\n'
        f'kind = "{f.kind}"\nscale = {f.scale}\nunit = "{f.unit}"\n'
        for f in machine_fields()
    )
    return (
        f'[[modbus_rtu]]\nport = "{port}"\n[[modbus_rtu.slaves]]\nsensor = "machine"\n'
        f"unit_id = {unit_id}\npoll_interval = {interval}\ntimeout = 0.2\n{fields}"
    )


def _push_features() -> str:
    return (
        '[[features.machine_state]]\nsensor = "machine"\nmetric = "motor_current"\n'
        "idle_above = 0.5\nrunning_above = 5.0\n"
    )


@pytest.mark.integration
async def test_a_command_sent_while_the_gateway_is_offline_waits_in_its_mqtt5_session(
    mosquitto_broker: MosquittoBroker, tmp_path: Path
) -> None:
    async with (
        PtyPair() as pair,
        coil_device(pair.device_path),
        cloud_side(mosquitto_broker) as cloud,
    ):
        config = _config(mosquitto_broker, pair.client_path, tmp_path / "edge")
        async with running(config):
            pass  # the first connection creates the persistent session and its subscription
        ping = _command("ping", command_id="while-offline-1")
        await cloud.client.publish(f"lw/v1/{DEVICE}/cmd", ping.model_dump_json(), qos=1)
        await asyncio.sleep(0.5)
        assert cloud.acks.empty()
        async with running(config) as agent:
            acks = [await asyncio.wait_for(cloud.acks.get(), 20) for _ in range(2)]
        assert [(a.id, a.status, a.boot) for a in acks] == [
            ("while-offline-1", "accepted", agent.boot),
            ("while-offline-1", "done", agent.boot),
        ]
