"""Fleet mode: gateways published straight to MQTT, and a report a test can hold the broker to."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import secrets
from collections import Counter
from pathlib import Path

import aiomqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from typer.testing import CliRunner

from cloud.broker_access import Access, Principal, grants, mosquitto_acl
from firmware_sim.bench import figures, run_bench
from firmware_sim.cli import app
from firmware_sim.fleet import (
    BrokerTarget,
    FleetError,
    FleetPlan,
    FleetReport,
    run_fleet,
)
from firmware_sim.fleet_processes import run_fleet_processes, run_fleet_with_progress
from firmware_sim.scenarios import load_scenario, resolve
from leasewatch.wire import decode_status, decode_telemetry
from tests.services.ingest_workers import RestartableMosquitto
from tests.services.mosquitto import MosquittoBroker, MosquittoFactory

SIMULATOR, INGESTOR = "lw-sim", "ingestor"
_KEY = re.compile(rb'"boot":"([A-Za-z0-9_-]+)","seq":(\d+)')
Key = tuple[str, str, str, int | None]  # kind, device, boot, seq


def _principals() -> list[Principal]:
    return [
        Principal.simulator(SIMULATOR, secrets.token_urlsafe(16)),
        Principal.ingestor(INGESTOR, secrets.token_urlsafe(16)),
    ]


def _target(broker: MosquittoBroker) -> BrokerTarget:
    return BrokerTarget(broker.host, broker.port, *broker.credentials(SIMULATOR))


def _key(topic: str, payload: bytes) -> Key:
    """(kind, device, boot, seq) of a received message, malformed payloads included."""
    _, _, device, kind = topic.split("/")
    if kind == "status":
        return kind, device, decode_status(topic, payload).boot, None
    found = _KEY.search(payload)
    assert found, payload[:200]
    return kind, device, found[1].decode(), int(found[2])


def _sent(report: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in report.read_text().splitlines()]


def _sent_keys(sent: list[dict[str, object]]) -> Counter[Key]:
    return Counter(
        (
            str(s["kind"]),
            str(s["device"]),
            str(s["boot"]),
            None if s["seq"] is None else int(str(s["seq"])),
        )
        for s in sent
    )


class Subscriber:
    """An ingestor-side subscriber that keeps every telemetry and status message it gets."""

    def __init__(self, broker: MosquittoBroker) -> None:
        self.client = aiomqtt.Client(
            broker.host,
            broker.port,
            username=INGESTOR,
            password=broker.password(INGESTOR),
            identifier="fleet-check",
            max_queued_incoming_messages=0,
        )
        self.received: list[tuple[str, bytes]] = []
        self._wanted = 0
        self._enough = asyncio.Event()

    async def collect(self) -> None:
        async for message in self.client.messages:
            assert isinstance(message.payload, bytes)
            self.received.append((str(message.topic), message.payload))
            if self._wanted and len(self.received) >= self._wanted:
                self._enough.set()

    async def until(self, count: int, timeout: float = 20.0) -> None:
        self._wanted = count
        if len(self.received) >= count:
            self._enough.set()
        await asyncio.wait_for(self._enough.wait(), timeout)
        await asyncio.sleep(0.3)  # nothing more may arrive


@contextlib.asynccontextmanager
async def subscribed(broker: MosquittoBroker):  # type: ignore[no-untyped-def]
    """A running subscriber to every device's telemetry and status."""
    async with subscribed_with(Subscriber(broker)) as subscriber:
        yield subscriber


@contextlib.asynccontextmanager
async def subscribed_with(subscriber: Subscriber):  # type: ignore[no-untyped-def]
    """Connect and subscribe `subscriber`; collect until the block ends or the broker goes."""
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(subscriber.client)
        await subscriber.client.subscribe([("lw/v1/+/telemetry", 1), ("lw/v1/+/status", 1)])
        task = asyncio.create_task(subscriber.collect())
        try:
            yield subscriber
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await task


@pytest.mark.integration
async def test_the_broker_delivers_exactly_what_the_report_says_was_sent(
    mosquitto_factory: MosquittoFactory, tmp_path: Path
) -> None:
    broker = mosquitto_factory(_principals())
    resolved = resolve(load_scenario("data-faults"))
    path = tmp_path / "sent.jsonl"
    plan = FleetPlan(speed=None, connections=3, window=16, boot_tag="it1", report=path)
    async with subscribed(broker) as subscriber:
        stats = await run_fleet(resolved, _target(broker), plan, FleetReport(path))
        await subscriber.until(stats.messages)
    sent = _sent(path)
    assert len(sent) == stats.messages > 10_000
    assert Counter(_key(t, p) for t, p in subscriber.received) == _sent_keys(sent)
    twice = [k for k, n in _sent_keys(sent).items() if n == 2]
    assert len(twice) == stats.faults["duplicate"] > 0
    assert {"late", "out_of_order", "malformed"} <= stats.faults.keys()
    malformed = _malformed(sent)
    valid = [
        (t, p)
        for t, p in subscriber.received
        if t.endswith("telemetry") and _key(t, p) not in malformed
    ]
    for topic, payload in valid[::50]:
        decode_telemetry(topic, payload)  # the full contract, on a sample
    stored = {_key(t, p): len(json.loads(p)["readings"]) for t, p in valid}
    assert sum(stored.values()) == sum(
        int(str(s["readings"]))
        for s in sent
        if s["kind"] == "telemetry" and s["copy"] == 0 and s["fault"] != "malformed"
    )
    devices = (tmp_path / "sent.devices.csv").read_text().splitlines()
    assert len(devices) == 1 + 10
    assert json.loads((tmp_path / "sent.summary.json").read_text())["messages"] == len(sent)


def _malformed(sent: list[dict[str, object]]) -> set[Key]:
    return {
        ("telemetry", str(s["device"]), str(s["boot"]), int(str(s["seq"])))
        for s in sent
        if s["fault"] == "malformed"
    }


@pytest.mark.integration
async def test_paced_fleet_follows_the_clock_and_stops_after_its_duration(
    mosquitto_factory: MosquittoFactory, tmp_path: Path
) -> None:
    broker = mosquitto_factory(_principals())
    resolved = resolve(load_scenario("smoke"))
    path = tmp_path / "paced.jsonl"
    speed = 100 * resolved.scenario.batch_s  # 100 windows a second
    plan = FleetPlan(
        speed=speed, duration_s=1.5, connections=2, window=8, boot_tag="p", report=path
    )
    async with subscribed(broker) as subscriber:
        stats = await run_fleet_with_progress(
            resolved, _target(broker), plan, FleetReport(path), show=False
        )
        await subscriber.until(stats.messages)
    assert 100 <= stats.windows_done <= 160
    assert stats.max_lag_s < 0.5
    assert Counter(_key(t, p) for t, p in subscriber.received) == _sent_keys(_sent(path))


@pytest.mark.integration
async def test_a_wrong_password_stops_fleet_mode_with_a_sentence(
    mosquitto_factory: MosquittoFactory,
) -> None:
    broker = mosquitto_factory(_principals())
    target = BrokerTarget(broker.host, broker.port, SIMULATOR, "not-the-password")
    resolved = resolve(load_scenario("smoke"))
    with pytest.raises(FleetError, match=r"connection \d+ to 127\.0\.0\.1:\d+"):
        await run_fleet(resolved, target, FleetPlan(speed=None, duration_s=1), FleetReport(None))


@pytest.mark.integration
async def test_the_simulator_may_publish_for_every_device_but_read_nothing(
    mosquitto_factory: MosquittoFactory,
) -> None:
    broker = mosquitto_factory(_principals())
    user, password = broker.credentials(SIMULATOR)
    payload = b'{"v":1}'
    async with (
        subscribed(broker) as ingestor,
        aiomqtt.Client(broker.host, broker.port, username=user, password=password) as sim,
    ):
        await sim.subscribe("lw/v1/#", qos=1)
        for device in ("gw-0001", "any-device-at-all"):
            await sim.publish(f"lw/v1/{device}/telemetry", payload, qos=1)
        await ingestor.until(2)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                await anext(sim.messages)
    assert [t for t, _ in ingestor.received] == [
        "lw/v1/gw-0001/telemetry",
        "lw/v1/any-device-at-all/telemetry",
    ]
    rules = grants(Principal.simulator(SIMULATOR, "x" * 12))
    assert {(g.access, g.pattern) for g in rules} == {
        (Access.WRITE, "lw/v1/+/telemetry"),
        (Access.WRITE, "lw/v1/+/status"),
    }
    assert f"user {SIMULATOR}\ntopic write lw/v1/+/telemetry" in mosquitto_acl(_principals())


@pytest.mark.integration
def test_the_benchmark_starts_its_own_mosquitto_and_reports_figures() -> None:
    resolved = resolve(load_scenario("fleet-load").with_asset_count(200))
    plan = FleetPlan(speed=None, duration_s=1.0, window=8)
    result = run_bench(resolved, plan, subscriber=True)
    sent = int(str(result.summary["messages"]))
    assert sent > 500
    assert result.delivered is not None and result.delivered.messages == sent
    assert result.cpu.broker_percent is not None
    table = figures(result)
    assert table.row_count == 17
    rows = dict(zip(*(column.cells for column in table.columns), strict=True))
    per_cpu = re.fullmatch(
        r"([\d,]+) \(5,000 messages/s needs (\d+)% of a core\)",
        str(rows["messages per publisher CPU-second"]),
    )
    assert per_cpu, rows
    rate_row = re.fullmatch(r"([\d,.]+) \(target >= 5,000: (\d+\.\d\d)x\)", rows["messages/s"])
    assert rate_row, rows
    rate_shown = float(rate_row[1].replace(",", ""))
    assert rate_shown == float(str(result.summary["messages_per_s"]))
    assert float(rate_row[2]) == math.floor(rate_shown / 50) / 100  # rounded down
    rate = int(per_cpu[1].replace(",", ""))
    elapsed = float(str(result.summary["elapsed_s"]))
    assert rate == pytest.approx(sent / (result.cpu.publisher_percent / 100 * elapsed), rel=0.01)


def test_scenario_commands_list_check_and_run(tmp_path: Path) -> None:
    runner = CliRunner()
    listed = runner.invoke(app, ["scenario", "list"])
    assert listed.exit_code == 0
    for name in ("smoke", "utilization", "faults", "silence", "relocation", "portfolio"):
        assert name in listed.output
    bad = tmp_path / "bad.toml"
    bad.write_text(load_scenario("smoke").model_dump_json())
    checked = runner.invoke(app, ["scenario", "check", str(bad)])
    assert checked.exit_code == 2 and "not valid TOML" in checked.output
    ran = runner.invoke(
        app, ["scenario", "run", "smoke", "--out", str(tmp_path / "out"), "--no-progress"]
    )
    assert ran.exit_code == 0, ran.output
    assert "5 assets x 14 days, 7 labels" in ran.output
    assert {p.name for p in (tmp_path / "out").iterdir()} >= {"labels.jsonl", "days.csv"}


@pytest.mark.integration
async def test_sim_fleet_command_publishes_and_writes_its_report(
    mosquitto_factory: MosquittoFactory, tmp_path: Path
) -> None:
    broker = mosquitto_factory(_principals())
    credentials = tmp_path / "sim.toml"
    user, password = broker.credentials(SIMULATOR)
    credentials.write_text(f'username = "{user}"\npassword = "{password}"\n')
    report = tmp_path / "cli.jsonl"
    args = ["fleet", "--scenario", "smoke", "--assets", "5", "--unpaced", "--duration", "1"]
    args += ["--host", broker.host, "--port", str(broker.port), "--credentials", str(credentials)]
    args += ["--report", str(report), "--no-progress", "--boot-tag", "cli", "--processes", "2"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "no populations" in result.output
    args[2], args[4] = "fleet-load", "20"
    async with subscribed(broker):  # no subscriber: every publish 0x10, retried like a gateway
        result = await asyncio.to_thread(CliRunner().invoke, app, args)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("sent ")
    assert len(report.read_text().splitlines()) == int(
        json.loads(report.with_suffix(".summary.json").read_text())["messages"]
    )


@pytest.mark.integration
@pytest.mark.parametrize("processes", [1, 2])
async def test_publishes_the_broker_did_not_deliver_are_kept_and_sent_again(
    mosquitto_factory: MosquittoFactory, tmp_path: Path, processes: int
) -> None:
    broker = mosquitto_factory(_principals())
    resolved = resolve(load_scenario("fleet-load").with_asset_count(20))
    path = tmp_path / "retried.jsonl"
    plan = FleetPlan(
        speed=20 * resolved.scenario.batch_s, duration_s=2.5, connections=2, window=4,
        boot_tag="nd", report=path, retry_max_s=0.2,
    )  # fmt: skip
    fleet = asyncio.create_task(
        run_fleet_processes(resolved, _target(broker), plan, FleetReport(path), processes)
    )
    await asyncio.sleep(1.5)  # no subscriber yet: Mosquitto answers 0x10 and drops
    async with subscribed(broker) as subscriber:
        stats = await fleet
        await subscriber.until(stats.messages)
    sent = _sent(path)
    assert stats.not_delivered > 0 and stats.retries >= stats.not_delivered
    assert stats.abandoned == 0
    assert set(_sent_keys(sent)) == {_key(t, p) for t, p in subscriber.received}
    assert stats.retries == sum(int(str(s["attempts"])) - 1 for s in sent)
    retried = {str(s["device"]) for s in sent if int(str(s["attempts"])) > 1}
    assert {"gw-00001", "gw-00002"} <= retried  # with 2 processes, one device of each
    summary = json.loads(path.with_suffix(".summary.json").read_text())
    assert summary["retries"] == stats.retries > 0


@pytest.mark.integration
async def test_fleet_mode_reconnects_after_a_broker_restart_and_loses_nothing(
    tmp_path: Path,
) -> None:
    (tmp_path / "mosquitto").mkdir()
    broker = RestartableMosquitto(tmp_path / "mosquitto", _principals())
    broker.start()
    try:
        resolved = resolve(load_scenario("fleet-load").with_asset_count(20))
        path = tmp_path / "restart.jsonl"
        plan = FleetPlan(
            speed=20 * resolved.scenario.batch_s, duration_s=4.0, connections=2, window=4,
            boot_tag="rs", report=path, retry_max_s=0.2, reconnect_max_s=0.5,
        )  # fmt: skip
        async with persistent_subscriber(broker) as first:
            fleet = asyncio.create_task(
                run_fleet(resolved, _target(broker), plan, FleetReport(path))
            )
            await asyncio.sleep(1.5)
            await asyncio.to_thread(broker.restart)
        async with persistent_subscriber(broker) as second:  # its session kept what came since
            stats = await fleet
            await second.until(stats.messages - len(first.received))
    finally:
        broker.stop()
    assert stats.reconnects >= 2 and stats.abandoned == 0  # both connections came back
    received = {_key(t, p) for t, p in first.received + second.received}
    assert set(_sent_keys(_sent(path))) == received


@contextlib.asynccontextmanager
async def persistent_subscriber(broker: MosquittoBroker):  # type: ignore[no-untyped-def]
    """A subscriber whose session (and plain subscription) survives a broker restart."""
    subscriber = Subscriber(broker)
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = 600
    subscriber.client = aiomqtt.Client(
        broker.host, broker.port, username=INGESTOR, password=broker.password(INGESTOR),
        identifier="fleet-persistent-check", protocol=aiomqtt.ProtocolVersion.V5,
        clean_start=False, properties=properties, max_queued_incoming_messages=0,
    )  # fmt: skip
    async with subscribed_with(subscriber) as running:
        yield running
