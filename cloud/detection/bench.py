"""`leasewatch bench detect`: alert latency with thousands of gateways publishing.

It starts a Mosquitto with the deployed config (`firmware_sim.bench.local_mosquitto`), N
`leasewatch cloud ingest` processes on one shared group, which store each batch and then run
the detectors on it (alerts published on the MQTT alert topic), and publishes, for `duration`
seconds, one batch every `interval` seconds from each of `assets` gateways (1 reading per
second of `running`, `motor_current`, `fault_code`). Among them `triggers` gateways each report
a fault code once: a batch with the code in a minute, then the batch that closes that minute
(the triggering message: only then may the code be judged). Latency: from that message's
PUBACK (it reached the broker; the path is broker -> ingest -> stored -> detected) to the alert
row's `opened_at` (stored) and to the broker's PUBACK of the alert event on `lw/v1/alerts/...`
(published: the outbox's `delivered_at` of the MQTT receiver).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import aiomqtt
import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import select

from cloud.bench import IngestBenchError, ingest_workers
from cloud.schema import alert_deliveries, alerts
from cloud.state import StateStore
from firmware_sim.bench import LocalBroker, local_mosquitto, process_cpu_s
from leasewatch.wire import Reading, TelemetryBatch, encode, telemetry_topic

CONNECTIONS = 8


class DetectBenchError(Exception):
    """The benchmark could not run; the message says which part failed."""


@dataclass(frozen=True)
class DetectBenchOptions:
    """What to run."""

    assets: int = 10_000
    interval_s: float = 10.0
    duration_s: float = 120.0
    warmup_s: float = 30.0
    triggers: int = 100
    workers: int = 2
    state_url: str | None = None  # an empty database; default: a SQLite file
    telemetry_url: str | None = None  # default: a SQLite file


@dataclass
class DetectBenchResult:
    """The figures."""

    options: DetectBenchOptions
    published: int = 0
    publish_s: float = 0.0
    stored_s: list[float] = field(default_factory=list)
    mqtt_s: list[float] = field(default_factory=list)
    worker_cpu_percent: list[float] = field(default_factory=list)
    publisher_cpu_percent: float = 0.0
    broker_cpu_percent: float = 0.0
    behind_s: float = 0.0  # how far the publisher fell behind its schedule at worst
    load_average: tuple[float, float] = (0.0, 0.0)  # 1-minute load before and after

    def percentile(self, values: list[float], q: float) -> float:
        """The q-quantile (0..1) of values; NaN when there are none."""
        if not values:
            return float("nan")
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _batch(device: str, seq: int, start: datetime, seconds: int, code: float) -> TelemetryBatch:
    readings = [
        Reading(sensor="plc", metric=metric, ts=start + timedelta(seconds=i), value=value)
        for i in range(seconds)
        for metric, value in (("running", 1.0), ("motor_current", 40.0 + i % 3),
                              ("fault_code", code))
    ]  # fmt: skip
    sent = start + timedelta(seconds=seconds)
    return TelemetryBatch(device=device, boot="bench", seq=seq, sent_at=sent, readings=readings)


class _Payloads:
    """Encoded fleet batches: one encoding per (start second, seq), the device id swapped in.

    Every gateway of a tick sends the same readings, so the publisher spends its CPU on
    publishing, not on building and validating 30-reading models (it shares the 2 cores).
    """

    def __init__(self, template_device: str) -> None:
        self.template = template_device
        self.needle = f'"device":"{template_device}"'.encode()
        self.cache: dict[tuple[datetime, int], bytes] = {}

    def of(self, device: str, seq: int, start: datetime, seconds: int) -> bytes:
        """The encoded batch of `device`."""
        key = (start, seq)
        encoded = self.cache.get(key)
        if encoded is None:
            if len(self.cache) > 64:
                self.cache.clear()
            encoded = encode(_batch(self.template, seq, start, seconds, 0.0))
            self.cache[key] = encoded
        if len(device) != len(self.template):
            return encode(_batch(device, seq, start, seconds, 0.0))
        return encoded.replace(self.needle, f'"device":"{device}"'.encode(), 1)


async def _publish_fleet(
    client: aiomqtt.Client,
    devices: list[str],
    options: DetectBenchOptions,
    result: DetectBenchResult,
) -> None:
    """Each device one batch per interval, its readings the last interval up to now."""
    seconds = max(1, int(options.interval_s))
    payloads = _Payloads(devices[0])
    begun = time.monotonic()
    seq = 0
    while time.monotonic() - begun < options.duration_s:
        tick = time.monotonic()
        for index, device in enumerate(devices):
            start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=seconds)
            payload = payloads.of(device, seq, start, seconds)
            await client.publish(telemetry_topic(device), payload, qos=1)
            result.published += 1
            pause = tick + options.interval_s * (index + 1) / len(devices) - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
            elif index % 100 == 0:
                result.behind_s = max(result.behind_s, -pause)
        seq += 1


async def _publish_triggers(
    client: aiomqtt.Client, options: DetectBenchOptions, sent: dict[str, float]
) -> None:
    """Each trigger gateway: the code in the current minute, then the batch that closes it."""
    await asyncio.sleep(options.warmup_s)
    spacing = (options.duration_s - options.warmup_s - 5) / max(1, options.triggers)
    for n in range(options.triggers):
        device = f"trig-{n:05d}"
        minute = datetime.now(UTC).replace(second=0, microsecond=0)
        await client.publish(telemetry_topic(device), encode(_batch(device, 0, minute, 10, 42.0)),
                             qos=1)  # fmt: skip
        closing = _batch(device, 1, minute + timedelta(seconds=65), 5, 0.0)
        await client.publish(telemetry_topic(device), encode(closing), qos=1)
        sent[device] = time.time()  # PUBACK received: the broker has it
        await asyncio.sleep(spacing)


async def _drive(
    broker: LocalBroker, options: DetectBenchOptions, result: DetectBenchResult,
    sent: dict[str, float],
) -> None:  # fmt: skip
    devices = [f"gw-{i:05d}" for i in range(options.assets)]
    t = broker.target
    clients = [
        aiomqtt.Client(t.host, t.port, username=t.username, password=t.password,
                       identifier=f"bench-pub-{i}")
        for i in range(CONNECTIONS + 1)
    ]  # fmt: skip
    started = time.monotonic()
    async with asyncio.TaskGroup() as group:
        for i, client in enumerate(clients):
            await client.__aenter__()
            if i < CONNECTIONS:
                group.create_task(_publish_fleet(client, devices[i::CONNECTIONS], options, result))
        group.create_task(_publish_triggers(clients[-1], options, sent))
    result.publish_s = time.monotonic() - started
    await asyncio.sleep(10)  # the last alerts
    for client in clients:
        await client.__aexit__(None, None, None)


def run_detect_bench(options: DetectBenchOptions) -> DetectBenchResult:
    """Run the benchmark and return its figures."""
    result = DetectBenchResult(options)
    sent: dict[str, float] = {}
    with (
        tempfile.TemporaryDirectory(prefix="lw-detect-bench-") as work,
        local_mosquitto() as broker,
    ):
        workdir = Path(work)
        state_url = options.state_url or f"sqlite:///{workdir / 'state.sqlite'}"
        telemetry_url = options.telemetry_url or f"sqlite:///{workdir / 'telemetry.sqlite'}"
        StateStore(state_url).close()
        with ingest_workers(
            broker, count=options.workers, telemetry=telemetry_url, state=state_url,
            workdir=workdir, settings={"ALERT_MQTT": "true", "ALERT_POLL_S": "0.1"},
        ) as workers:  # fmt: skip
            watched = [*(w.pid for w in workers), os.getpid(), broker.pid]
            cpu0 = [process_cpu_s(pid) or 0.0 for pid in watched]
            load0 = os.getloadavg()[0]
            wall0 = time.monotonic()
            asyncio.run(_drive(broker, options, result, sent))
            spent = time.monotonic() - wall0
            used = [
                round(100 * ((process_cpu_s(pid) or 0.0) - c) / spent, 1)
                for pid, c in zip(watched, cpu0, strict=True)
            ]
            result.worker_cpu_percent = used[: len(workers)]
            result.publisher_cpu_percent, result.broker_cpu_percent = used[-2], used[-1]
            result.load_average = (load0, os.getloadavg()[0])
        state = StateStore(state_url)
        with state.engine.connect() as conn:
            rows = conn.execute(select(alerts.c.device, alerts.c.opened_at)).all()
            published = conn.execute(
                select(alerts.c.device, alert_deliveries.c.delivered_at)
                .join(alert_deliveries, alert_deliveries.c.alert_id == alerts.c.id)
                .where(alert_deliveries.c.event == "opened", alert_deliveries.c.receiver == "mqtt")
                .where(alert_deliveries.c.delivered_at.is_not(None))
            ).all()
        state.close()
    opened = {r.device: _epoch(r.opened_at) for r in rows}
    got = {r.device: _epoch(r.delivered_at) for r in published}
    result.stored_s = [opened[d] - at for d, at in sent.items() if d in opened]
    result.mqtt_s = [got[d] - at for d, at in sent.items() if d in got]
    return result


def _epoch(ts: datetime) -> float:
    return (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).timestamp()


def summary(result: DetectBenchResult) -> list[tuple[str, str, str]]:
    """The figures as (figure, value, target) rows."""
    o, p = result.options, result.percentile
    rate = result.published / max(result.publish_s, 1e-9)
    found = len(result.stored_s)
    return [
        ("gateways / workers", f"{o.assets:,} / {o.workers}", ""),
        (
            "published",
            f"{result.published:,} msgs in {result.publish_s:.0f} s ({rate:,.0f}/s)",
            f"{o.assets / o.interval_s:,.0f}/s",
        ),
        ("publisher behind schedule (worst)", f"{result.behind_s:.1f} s", "0 s"),
        ("alerts found", f"{found} of {o.triggers}", f"{o.triggers}"),
        ("broker -> stored p50", f"{p(result.stored_s, 0.5):.2f} s", ""),
        ("broker -> stored p99", f"{p(result.stored_s, 0.99):.2f} s", "< 2 s"),
        ("broker -> MQTT alert topic p50", f"{p(result.mqtt_s, 0.5):.2f} s", ""),
        ("broker -> MQTT alert topic p99", f"{p(result.mqtt_s, 0.99):.2f} s", "< 2 s"),
        ("mean broker -> stored", f"{statistics.fmean(result.stored_s or [0]):.2f} s", ""),
        ("worker CPU (% of one core)", ", ".join(f"{c}%" for c in result.worker_cpu_percent), ""),
        (
            "publisher / broker CPU",
            f"{result.publisher_cpu_percent}% / {result.broker_cpu_percent}%",
            "",
        ),
        (
            "machine load (1 min, before / after)",
            f"{result.load_average[0]:.1f} / {result.load_average[1]:.1f}"
            f" on {os.cpu_count()} cores",
            "",
        ),
    ]


def detect(  # noqa: PLR0917 - a command's options
    assets: Annotated[int, typer.Option(min=10, help="Simulated gateways publishing.")] = 10_000,
    interval: Annotated[
        float, typer.Option(min=1, help="Seconds between a gateway's batches.")
    ] = 10.0,
    duration: Annotated[float, typer.Option(min=40, help="Seconds of publishing.")] = 120.0,
    triggers: Annotated[int, typer.Option(min=1, help="Fault codes to raise.")] = 100,
    workers: Annotated[int, typer.Option(min=1, max=8, help="Ingest processes (they detect).")] = 2,
    state_url: Annotated[
        str | None, typer.Option(help="State store URL (an empty database); default SQLite.")
    ] = None,
    telemetry_url: Annotated[
        str | None, typer.Option(help="Telemetry store URL; default a SQLite file.")
    ] = None,
) -> None:
    """Gateways -> Mosquitto -> N ingest workers -> stored -> detected: alert latency p50/p99."""
    options = DetectBenchOptions(
        assets, interval, duration, 30.0, triggers, workers, state_url, telemetry_url
    )
    try:
        result = run_detect_bench(options)
    except (DetectBenchError, IngestBenchError) as err:
        typer.echo(f"benchmark failed: {err}", err=True)
        raise typer.Exit(1) from err
    table = Table("figure", "value", "target", title="leasewatch bench detect")
    for row in summary(result):
        table.add_row(*row)
    Console().print(table)
