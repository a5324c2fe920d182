"""`leasewatch bench reference`: issue 5's two reference figures, measured on this machine now.

Issue 5 sets its ingest targets (100,000 readings/s into VictoriaMetrics, 50,000 into SQLite) for
"this 2-core machine" and gives two references measured there: influxdb-client alone pushes about
1M field values/s into VictoriaMetrics, and one paho QoS 1 subscriber keeps up with about 10k
messages/s. Sessions do not always get the same hardware (one day an AMD EPYC, the next an Intel
Xeon at half its speed per core), so this command measures both references again, with nothing
of LeaseWatch in the path, and prints each against the issue's figure. Divide an ingest figure by
these ratios to compare it with the issue's targets across machines.

- `influx`: pre-built line protocol in LeaseWatch's shape (one field value per line, tags
  device/sensor/unit, ms timestamps) posted through influxdb-client's synchronous WriteApi, one
  body per request, to a private VictoriaMetrics run as deployed (dedup flag on). Every value is
  then counted back through the query API, so a figure with values missing is reported as such.
- `subscriber`: one paho client (MQTT 5, QoS 1, automatic PUBACKs) drains messages that the
  broker (a private Mosquitto with the deployed config) queued for its persistent session while
  it was away: the rate at which one subscriber takes messages, with no publisher competing for
  the cores. Payloads are real `fleet-load` telemetry messages (32 readings each).
"""

from __future__ import annotations

import itertools
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS, WriteApi
from influxdb_client.domain.write_precision import WritePrecision
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from firmware_sim.bench import INGESTOR_USER, local_mosquitto, process_cpu_s
from firmware_sim.fleet import BrokerTarget
from firmware_sim.scenarios.expand import resolve
from firmware_sim.scenarios.loader import load_scenario
from firmware_sim.scenarios.run import simulated_assets
from leasewatch.services.process import ServiceError
from leasewatch.services.victoria import VictoriaService

#: The issue's reference figures, measured on the machine it was written for.
ISSUE_INFLUX_VALUES_PER_S = 1_000_000
ISSUE_SUBSCRIBER_MESSAGES_PER_S = 10_000
_LINES_PER_BODY = 10_000
_METRICS = ("running", "rpm", "temp_c", "vib_rms", "current_a", "pressure_bar", "fuel_pct", "lat")
_DEVICES = 2000
_ROUND = _DEVICES * len(_METRICS)  # field values per round: one sample of every series
_CONNECT_TIMEOUT_S = 10.0


class ReferenceBenchError(Exception):
    """A reference could not be measured; the message says which part failed."""


@dataclass(frozen=True)
class ReferenceFigure:
    """One reference measured: how much went through, in how long, at what CPU."""

    name: str
    unit: str
    count: int
    seconds: float
    client_cpu_s: float
    server_cpu_s: float | None
    issue_rate: int
    verified: int  # how many of `count` were found stored / received

    @property
    def rate(self) -> float:
        """Items per second of wall-clock time."""
        return self.count / self.seconds if self.seconds else 0.0

    @property
    def ratio(self) -> float:
        """This machine's rate over the issue's reference rate."""
        return self.rate / self.issue_rate


def influx_lines(values: int, start_ms: int, fields: int) -> list[bytes]:
    """Request bodies of line protocol: `values` field values, `fields` per line, ms stamps.

    One field per line is LeaseWatch's shape (a reading is a line); packed lines carry every
    metric. Every device has one series per metric, and each round of `_ROUND` values is one
    more timestamp of every series.
    """
    if fields not in {1, len(_METRICS)}:
        raise ValueError(f"fields per line: 1 or {len(_METRICS)}, not {fields}")
    lines = (_line(i, fields, start_ms) for i in range(0, values, fields))
    return [
        "\n".join(chunk).encode()
        for chunk in iter(lambda: list(itertools.islice(lines, _LINES_PER_BODY)), [])
    ]


def _line(i: int, fields: int, start_ms: int) -> str:
    """The line holding field value number i (of a line of `fields` values)."""
    device = i // fields % _DEVICES
    if fields == 1:
        metric = (i // _DEVICES) % len(_METRICS)
        values = f"{_METRICS[metric]}={(i % 997) * 0.25!r}"
    else:
        values = ",".join(f"{m}={(i + k) % 997 * 0.25!r}" for k, m in enumerate(_METRICS))
    stamp = start_ms + i // _ROUND * 1000
    return f"lw,device=gw-{device:05d},sensor=band,unit=u {values} {stamp}"


def measure_influx(values: int, workdir: Path, fields: int = 1) -> ReferenceFigure:
    """Post `values` field values through influxdb-client into a private VictoriaMetrics.

    The series are created by an untimed first round (VM's cost per new series is a one-off,
    much larger than a sample's); the timed values are further samples of those series.
    """
    start_ms = (int(time.time()) - 3600) * 1000
    warm_up = influx_lines(_ROUND, start_ms, fields)
    bodies = influx_lines(values, start_ms + 1000, fields)
    server = VictoriaService(workdir / "vm")
    try:
        server.start()
    except ServiceError as err:
        raise ReferenceBenchError(str(err)) from err
    pid = server.pid or 0  # set once started
    try:
        with InfluxDBClient(url=server.url, token="reference", org="lw") as client:  # noqa: S106
            write = client.write_api(write_options=SYNCHRONOUS)
            for body in warm_up:
                _post(write, body)
            vm_before = process_cpu_s(pid) or 0.0
            cpu, began = time.process_time(), time.perf_counter()
            for body in bodies:
                _post(write, body)
            seconds = time.perf_counter() - began
            cpu = time.process_time() - cpu
            vm_cpu = (process_cpu_s(pid) or 0.0) - vm_before
        stored = _count_samples(server.url) - _ROUND
    finally:
        server.stop()
    shape = "one value per line" if fields == 1 else f"{fields} values per line"
    return ReferenceFigure(
        f"influxdb-client -> VictoriaMetrics ({shape})", "field values", values, seconds, cpu,
        vm_cpu, ISSUE_INFLUX_VALUES_PER_S, stored,
    )  # fmt: skip


def _post(write: WriteApi, body: bytes) -> None:
    """One synchronous write of a body of lines (returns once VM answered)."""
    # The client annotates WritePrecision but its members are plain strings.
    write.write(bucket="reference", record=body, write_precision=WritePrecision.MS)  # type: ignore[arg-type]


def _count_samples(url: str) -> int:
    """How many samples VictoriaMetrics holds (after making what it took searchable)."""
    with httpx.Client(base_url=url, timeout=60) as http:
        http.get("/internal/force_flush").raise_for_status()
        query = 'sum(count_over_time({__name__=~"lw_.+"}[2h]))'
        answer = http.get("/api/v1/query", params={"query": query}).raise_for_status().json()
    found = answer["data"]["result"]
    return int(float(found[0]["value"][1])) if found else 0


def fleet_payloads(count: int) -> list[tuple[str, bytes]]:
    """`count` telemetry messages (topic, payload) of the fleet-load scenario, as gateways send."""
    scenario = load_scenario("fleet-load").with_asset_count(max(10, min(2000, count // 4)))
    assets = simulated_assets(resolve(scenario))
    found: list[tuple[str, bytes]] = []
    for window in itertools.count():
        for asset in assets:
            found += [(m.topic, m.payload) for m in asset.gateway.window(window)
                      if m.kind == "telemetry"]  # fmt: skip
            if len(found) >= count:
                return found[:count]
    raise AssertionError("unreachable: itertools.count never ends")


def _client(target: BrokerTarget, client_id: str) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.username_pw_set(target.username, target.password)
    return client


def _connect(client: mqtt.Client, target: BrokerTarget, *, clean_start: bool) -> None:
    """Connect (MQTT 5 session kept an hour) and start paho's network thread."""
    connected = threading.Event()
    client.on_connect = lambda *_args: connected.set()
    session = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    session.SessionExpiryInterval = 3600
    client.connect(target.host, target.port, clean_start=clean_start, properties=session)
    client.loop_start()
    if not connected.wait(_CONNECT_TIMEOUT_S):
        raise ReferenceBenchError(f"no CONNACK from the broker at {target.host}:{target.port}")


def _publish_all(target: BrokerTarget, messages: list[tuple[str, bytes]]) -> None:
    """Publish every message at QoS 1 and wait for all PUBACKs (not timed)."""
    publisher = _client(target, "reference-publisher")
    _connect(publisher, target, clean_start=True)
    try:
        infos = [publisher.publish(topic, payload, qos=1) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(timeout=60)
    finally:
        publisher.disconnect()
        publisher.loop_stop()


def measure_subscriber(
    messages: list[tuple[str, bytes]], broker_pid: int, publisher: BrokerTarget,
    subscriber: BrokerTarget,
) -> ReferenceFigure:  # fmt: skip
    """One paho QoS 1 subscriber draining `messages`, queued for its session while it was away."""
    client = _client(subscriber, "reference-subscriber")
    _connect(client, subscriber, clean_start=True)
    subscribed = threading.Event()
    client.on_subscribe = lambda *_args: subscribed.set()
    client.subscribe("lw/v1/+/telemetry", qos=1)
    if not subscribed.wait(_CONNECT_TIMEOUT_S):
        raise ReferenceBenchError("no SUBACK for lw/v1/+/telemetry")
    client.disconnect()
    client.loop_stop()
    _publish_all(publisher, messages)  # the broker queues them for the away session
    counter = _Counter(len(messages))
    client.on_message = counter.on_message
    broker_before = process_cpu_s(broker_pid) or 0.0
    cpu, began = time.process_time(), time.perf_counter()
    _connect(client, subscriber, clean_start=False)
    counter.done.wait(max(60.0, len(messages) / 500))
    seconds = time.perf_counter() - began
    cpu = time.process_time() - cpu
    broker_cpu = (process_cpu_s(broker_pid) or 0.0) - broker_before
    client.disconnect()
    client.loop_stop()
    return ReferenceFigure(
        "one paho QoS 1 subscriber", "messages", len(messages), seconds, cpu, broker_cpu,
        ISSUE_SUBSCRIBER_MESSAGES_PER_S, counter.received,
    )  # fmt: skip


class _Counter:
    """Counts messages paho delivers; `done` is set when all expected have arrived."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.received = 0
        self.done = threading.Event()

    def on_message(self, *_args: object) -> None:
        """paho's on_message: one more received."""
        self.received += 1
        if self.received >= self.expected:
            self.done.set()


def run_reference_bench(values: int, messages: int) -> Iterator[ReferenceFigure]:
    """Measure the references one after the other (each alone on the machine)."""
    with tempfile.TemporaryDirectory(prefix="lw-reference-") as work:
        yield measure_influx(values, Path(work) / "one", fields=1)
        yield measure_influx(values, Path(work) / "many", fields=len(_METRICS))
    payloads = fleet_payloads(messages)
    with local_mosquitto() as broker:
        subscriber = BrokerTarget(
            broker.target.host, broker.target.port, INGESTOR_USER, broker.ingestor_password
        )
        yield measure_subscriber(payloads, broker.pid, broker.target, subscriber)
