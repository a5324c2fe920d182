"""Issue 5, Proof: every message stored exactly once while workers, broker and store fail.

Real processes: Mosquitto with the deployed config (persistence on), VictoriaMetrics, a private
PostgreSQL as state store, and two `leasewatch cloud ingest` workers on one shared subscription.
The fleet simulator (`fleet-load`, 200 assets, ~500 msg/s of 32 readings) publishes from this
process while the test injects, in this order:

    kill -9 of worker-1, started again 3 s later under the same client id (its persistent
        session gets back what it had not acknowledged);
    a stop of VictoriaMetrics (SIGTERM, not SIGKILL: see docs/ingestion.md, known limits) for
        30 s, then a start on the same port and data directory;
    a broker restart (SIGTERM, Mosquitto saves its persistence file; start on the same port)
        while VictoriaMetrics is down, so the workers' backlog sits in the broker's queues.

The fleet publishes one continuous run through all of it, as gateways would: it keeps and
publishes again whatever the broker acknowledged without delivering (PUBACK 0x10 "no matching
subscribers" while the ingestors' shared subscription is not back after the restart) and
reconnects after the restart, publishing first what had no PUBACK when the connection dropped.
Its report lists only what the broker took, so the sent set is exact; a message the broker took
whose PUBACK the restart swallowed is published again and stored once (the copy is counted as a
duplicate). Each sent key gets the phase (last fault before its PUBACK) for the table printed to
the log.

Found when this test was written (Mosquitto 2.0.11): the broker does not restore *shared*
subscriptions of offline persistent sessions from its persistence file. Until an ingestor
reconnects and subscribes again, a telemetry publish is answered with 0x10 and dropped;
publishers that took any PUBACK as success lost 11,971 messages, then (ingestor reconnecting at
once) 998 in the ~2 s window, until fleet mode learnt to retry like the edge link does.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import secrets
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, func, select

from cloud.broker_access import Principal
from cloud.schema import devices, message_ledger
from cloud.state import StateStore
from firmware_sim.fleet import BrokerTarget, FleetPlan, FleetReport, FleetStats, run_fleet
from firmware_sim.scenarios.expand import ResolvedScenario, resolve
from firmware_sim.scenarios.loader import load_scenario
from tests.services.ingest_workers import IngestWorker, RestartableMosquitto, RestartableVictoria
from tests.services.victoria import VictoriaMetricsServer

pytestmark = pytest.mark.integration

SIMULATOR, INGESTOR = "lw-fault-simulator", "lw-fault-ingestor"
ASSETS = 200
SPEED = 750.0  # simulated s per real s: 200 assets x 750 / 300 s batches = 500 msg/s
FLEET_S = 66.0
BROKER_RESTART_AT_S = 36.0
KILL_AT_S, WORKER_DOWN_S = 6.0, 3.0
VM_STOP_AT_S, VM_DOWN_S = 16.0, 30.0
DRAIN_TIMEOUT_S, DRAIN_STALL_S = 240.0, 30.0  # a loaded CI machine drained for 100+ s
VM_FLAGS = ("-retentionPeriod=10y",)  # readings are ~31 days old: past VM's default retention
SPOT_DEVICES = 5

Key = tuple[str, str, int]


@dataclass
class SentMessage:
    """One (device, boot, seq) the broker acknowledged: its readings, when, in which phase."""

    readings: int
    sent_at: float
    phase: str


@dataclass
class FaultLog:
    """Wall-clock times at which each phase began (the first is the fleet's start)."""

    marks: list[tuple[float, str]] = field(default_factory=list)

    def mark(self, phase: str) -> None:
        """A new phase begins now."""
        self.marks.append((time.time(), phase))

    def phase_at(self, at: float) -> str:
        """The phase a publish acknowledged at `at` belongs to."""
        index = bisect.bisect_right([t for t, _ in self.marks], at) - 1
        return self.marks[max(index, 0)][1]

    def insert(self, at: float, phase: str) -> None:
        """A phase that began at `at`, learnt afterwards (from a log)."""
        self.marks = sorted([*self.marks, (at, phase)])

    def began(self, phase: str) -> float:
        """When a phase began."""
        return next(t for t, p in self.marks if p == phase)

    def phases(self) -> list[str]:
        """Phase names in order."""
        return [phase for _, phase in self.marks]


@dataclass
class Rig:
    """Everything the test started."""

    broker: RestartableMosquitto
    victoria: RestartableVictoria
    workers: list[IngestWorker]
    state_url: str
    workdir: Path
    broker_exit: list[int] = field(default_factory=list)


@pytest.fixture
def rig(tmp_path: Path, postgres_url: str) -> Iterator[Rig]:
    """Broker, VictoriaMetrics, migrated state store and two ingest workers, all running."""
    principals = [
        Principal.simulator(SIMULATOR, secrets.token_urlsafe(16)),
        Principal.ingestor(INGESTOR, secrets.token_urlsafe(16)),
    ]
    (tmp_path / "mosquitto").mkdir()
    broker = RestartableMosquitto(tmp_path / "mosquitto", principals)
    with ExitStack() as stack:
        stack.callback(broker.stop)
        broker.start()
        victoria = RestartableVictoria(tmp_path / "vm", VM_FLAGS)
        stack.callback(victoria.close)
        StateStore(postgres_url).close()  # migrate once, before the workers race for it
        workers = [
            IngestWorker(
                broker,
                tmp_path,
                client_id=f"fault-ingestor-{n}",
                username=INGESTOR,
                telemetry_url=victoria.server.url.replace("http://", "victoriametrics://"),
                state_url=postgres_url,
            )
            for n in (1, 2)
        ]
        for worker in workers:
            stack.callback(worker.stop)
            worker.start()
        yield Rig(broker, victoria, workers, postgres_url, tmp_path)


def _scenario(days_ago: int) -> ResolvedScenario:
    """`fleet-load` for 200 assets, starting `days_ago` days before today (readings in the past)."""
    scenario = load_scenario("fleet-load").with_asset_count(ASSETS)
    start = (datetime.now(UTC) - timedelta(days=days_ago)).date()
    return resolve(scenario.model_copy(update={"start": start}))


async def _fleet(rig: Rig, tag: str, days_ago: int, duration_s: float) -> FleetStats:
    """Publish paced for `duration_s`, riding out the faults; the fleet's totals."""
    path = rig.workdir / f"sent-{tag}.jsonl"
    target = BrokerTarget(
        rig.broker.host, rig.broker.port, SIMULATOR, rig.broker.password(SIMULATOR)
    )
    plan = FleetPlan(
        speed=SPEED,
        duration_s=duration_s,
        connections=4,
        window=32,
        boot_tag=tag,
        report=path,
        client_prefix=f"lw-fault-{tag}",
        reconnect_max_s=1.0,
    )
    return await run_fleet(_scenario(days_ago), target, plan, FleetReport(path))


async def _publish_through_faults(rig: Rig, log: FaultLog) -> tuple[list[Path], FleetStats]:
    """One fleet run with the faults injected on schedule; its report and totals."""
    began = time.monotonic()

    async def at(offset_s: float) -> None:
        await asyncio.sleep(max(0.0, began + offset_s - time.monotonic()))

    worker = rig.workers[0]
    log.mark("no fault yet")
    fleet = asyncio.create_task(_fleet(rig, "fa", 31, FLEET_S))
    try:
        await at(KILL_AT_S)
        await asyncio.to_thread(worker.kill)
        log.mark("worker-1 killed (-9)")
        await at(KILL_AT_S + WORKER_DOWN_S)
        await asyncio.to_thread(worker.start)
        log.mark("worker-1 restarted")
        await at(VM_STOP_AT_S)
        await asyncio.to_thread(rig.victoria.stop)
        log.mark("VM stopped")
        await at(BROKER_RESTART_AT_S)
        log.mark("broker stopping (VM down)")
        rig.broker_exit.append(await asyncio.to_thread(rig.broker.restart))
        log.mark("broker restarted (VM down)")
        await at(VM_STOP_AT_S + VM_DOWN_S)
        await asyncio.to_thread(rig.victoria.start)
        log.mark("VM started again")
    except BaseException:  # a fault step failed: stop the fleet before the loop closes
        fleet.cancel()
        await asyncio.wait({fleet}, timeout=30)
        raise
    stats = await fleet
    return [rig.workdir / "sent-fa.jsonl"], stats


def _sent(reports: list[Path], log: FaultLog) -> tuple[dict[Key, SentMessage], Counter[str]]:
    """Unique valid telemetry keys acknowledged by the broker; publishes per phase."""
    sent: dict[Key, SentMessage] = {}
    publishes: Counter[str] = Counter()
    for report in reports:
        for line in report.read_text().splitlines():
            row = json.loads(line)
            if row["kind"] != "telemetry" or row["fault"] == "malformed":
                continue
            at = datetime.fromisoformat(row["sent_at"]).timestamp()
            key = (row["device"], row["boot"], int(row["seq"]))
            publishes[log.phase_at(at)] += 1
            sent.setdefault(key, SentMessage(row["readings"], at, log.phase_at(at)))
    return sent, publishes


def _ledger_count(state_url: str) -> int:
    engine = create_engine(state_url)
    with engine.connect() as conn:
        count = conn.execute(select(func.count()).select_from(message_ledger)).scalar_one()
    engine.dispose()
    return int(count)


def _drain(state_url: str, expected: int) -> float:
    """Wait until the ledger holds `expected` rows (bounded; stops early if it stalls)."""
    began = last_change = time.monotonic()
    last = -1
    while time.monotonic() - began < DRAIN_TIMEOUT_S:
        count = _ledger_count(state_url)
        if count >= expected:
            break
        if count != last:
            last, last_change = count, time.monotonic()
        elif time.monotonic() - last_change > DRAIN_STALL_S:
            break
        time.sleep(0.5)
    return time.monotonic() - began


@dataclass
class Stored:
    """What the state store holds: ledger rows by key, device counters by device."""

    ledger: dict[Key, int]
    counters: dict[str, tuple[int, int, int]]  # messages, readings, duplicates


def _stored(state_url: str) -> Stored:
    engine = create_engine(state_url)
    ledger, d = message_ledger.c, devices.c
    with engine.connect() as conn:
        rows = conn.execute(select(ledger.device, ledger.boot, ledger.seq, ledger.readings))
        keys = {(dev, boot, seq): n for dev, boot, seq, n in rows}
        counts = conn.execute(select(d.device, d.messages, d.readings, d.duplicates))
        counters = {dev: (m, r, dup) for dev, m, r, dup in counts}
    engine.dispose()
    return Stored(keys, counters)


def _vm_samples(url: str, device: str) -> int:
    """Raw samples VictoriaMetrics holds for a device, all metrics, all time."""
    now = time.time()
    params = {
        "match[]": f'{{__name__=~"lw_.+",device="{device}"}}',
        "start": str(int(now - 60 * 86_400)),
        "end": str(int(now + 86_400)),
    }
    response = httpx.get(f"{url}/api/v1/export", params=params, timeout=30)
    response.raise_for_status()
    return sum(len(json.loads(line)["timestamps"]) for line in response.text.splitlines())


def _vm_spot_check(server: VictoriaMetricsServer, expected: dict[str, int]) -> dict[str, int]:
    """Samples in VM for each spot-checked device, polled until they match (or 20 s pass)."""
    deadline = time.monotonic() + 20
    while True:
        server.force_flush()
        found = {device: _vm_samples(server.url, device) for device in expected}
        if found == expected or time.monotonic() > deadline:
            return found
        time.sleep(1)


def _table(
    sent: dict[Key, SentMessage], publishes: Counter[str], stored: Stored, log: FaultLog
) -> str:
    """Publishes, unique keys, stored and missing, per phase and in total."""
    by_phase: defaultdict[str, list[Key]] = defaultdict(list)
    for key, message in sent.items():
        by_phase[message.phase].append(key)
    head = f"{'phase (last fault before the PUBACK)':<32} {'publishes':>9} {'unique':>7} "
    lines = [head + f"{'stored':>7} {'missing':>7}"]
    for phase in log.phases():
        keys = by_phase.get(phase, [])
        kept = sum(k in stored.ledger for k in keys)
        lines.append(
            f"{phase:<32} {publishes[phase]:>9} {len(keys):>7} {kept:>7} {len(keys) - kept:>7}"
        )
    kept = sum(k in stored.ledger for k in sent)
    total = f"{'total':<32} {sum(publishes.values()):>9} {len(sent):>7} {kept:>7}"
    lines.append(total + f" {len(sent) - kept:>7}")
    return "\n".join(lines)


def _ledger_readings(stored: Stored, spot: list[str]) -> dict[str, int]:
    """Readings the ledger accounts for, per spot-checked device."""
    totals = dict.fromkeys(spot, 0)
    for (device, _, _), readings in stored.ledger.items():
        if device in totals:
            totals[device] += readings
    return totals


def _expected_counters(sent: dict[Key, SentMessage]) -> dict[str, tuple[int, int]]:
    """Per device: unique messages and their readings, what its counters must say."""
    counts: defaultdict[str, list[int]] = defaultdict(lambda: [0, 0])
    for (device, _, _), message in sent.items():
        counts[device][0] += 1
        counts[device][1] += message.readings
    return {device: (m, r) for device, (m, r) in counts.items()}


def _duplicates(sent: dict[Key, SentMessage], publishes: Counter[str], stored: Stored) -> str:
    """What was counted more than once, and the repeats the ingestors dropped."""
    messages = sum(m for m, _, _ in stored.counters.values()) - len(stored.ledger)
    readings = sum(r for _, r, _ in stored.counters.values()) - sum(stored.ledger.values())
    dropped = sum(dup for _, _, dup in stored.counters.values())
    copies = sum(publishes.values()) - len(sent)
    return (
        f"duplicates stored: ledger rows not sent {len(stored.ledger.keys() - sent.keys())}, "
        f"device counters beyond the ledger: messages {messages:+d}, readings {readings:+d}\n"
        f"repeats dropped by the ingestors: {dropped} "
        f"(simulator copies {copies}, broker redeliveries {dropped - copies})"
    )


async def test_every_message_is_stored_once_through_worker_broker_and_store_faults(
    rig: Rig, capsys: pytest.CaptureFixture[str]
) -> None:
    log = FaultLog()
    began = time.monotonic()
    reports, fleet = await _publish_through_faults(rig, log)
    back = rig.broker.first_connect_after_restart("fault-ingestor-")
    if back is not None:
        log.insert(back, "an ingestor reconnected (log, 1 s)")
    sent, publishes = _sent(reports, log)
    drain_s = await asyncio.to_thread(_drain, rig.state_url, len(sent))
    stored = await asyncio.to_thread(_stored, rig.state_url)
    expected = _expected_counters(sent)
    spot = sorted(expected)[:: max(1, len(expected) // SPOT_DEVICES)][:SPOT_DEVICES]
    vm_expected = {device: expected[device][1] for device in spot}
    vm_found = await asyncio.to_thread(_vm_spot_check, rig.victoria.server, vm_expected)
    with capsys.disabled():
        print(
            f"\nexactly once under faults ({time.monotonic() - began:.0f} s, drain {drain_s:.0f} s)"
        )
        print(_table(sent, publishes, stored, log))
        print(_duplicates(sent, publishes, stored))
        print(
            f"fleet: {fleet.not_delivered} publishes answered 0x10 (no subscriber), "
            f"{fleet.retries} retries, {fleet.reconnects} reconnects, {fleet.abandoned} abandoned"
        )
        print(f"VictoriaMetrics samples per device, sent: {vm_expected}")
        print(f"  in the ledger: {_ledger_readings(stored, spot)}, in VictoriaMetrics: {vm_found}")

    assert fleet.abandoned == 0, "the fleet gave up on messages the broker never took"
    missing = sorted(sent.keys() - stored.ledger.keys())
    unexpected = sorted(stored.ledger.keys() - sent.keys())
    assert not missing, _missing(missing, sent, log)
    assert not unexpected, f"{len(unexpected)} stored messages never sent: {unexpected[:10]}"
    assert {k: stored.ledger[k] for k in sent} == {k: m.readings for k, m in sent.items()}
    counters = {dev: (m, r) for dev, (m, r, _) in stored.counters.items() if m or r}
    assert counters == expected, "device counters differ from the unique messages sent"
    assert vm_found == vm_expected, "VictoriaMetrics lost or doubled readings"
    assert rig.victoria.exit_codes == [0], "VictoriaMetrics did not stop cleanly on SIGTERM"
    assert rig.broker_exit == [0], "Mosquitto did not stop cleanly on SIGTERM"


def _missing(missing: list[Key], sent: dict[Key, SentMessage], log: FaultLog) -> str:
    """Which sent messages were never stored: by phase, and when they were sent."""
    phases = Counter(sent[key].phase for key in missing)
    restart = log.began("broker restarted (VM down)")
    times = sorted(sent[key].sent_at - restart for key in missing)
    return (
        f"{len(missing)} acknowledged messages never stored, by phase {dict(phases)}; "
        f"sent {times[0]:+.1f} s .. {times[-1]:+.1f} s from the broker restart; e.g. {missing[:5]}"
    )
