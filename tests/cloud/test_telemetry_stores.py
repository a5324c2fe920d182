"""Both telemetry stores honour one contract: the shared tests run on SQLite and VictoriaMetrics."""

from __future__ import annotations

import asyncio
import math
import random
import socket
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cloud.telemetry import (
    MAX_BUCKETS,
    ReadingBucket,
    ReadingsRejectedError,
    StoredReading,
    TelemetryStore,
    TelemetryStoreError,
    bucket_span,
    open_telemetry_store,
)
from cloud.telemetry.sqlite import SqliteTelemetryStore
from cloud.telemetry.victoria import VictoriaMetricsStore
from leasewatch.wire import Reading, TelemetryBatch
from tests.services.ports import free_port
from tests.services.victoria import VictoriaMetricsServer, victoria_metrics_running

VISIBLE_WITHIN_S = 5.0
FAILS_WITHIN_S = 5.0
MS = timedelta(milliseconds=1)

# (sensor, metric, value, unit): sensor-like values, units with non-ASCII and empty.
SAMPLES = [
    ("engine", "coolant_temp", 12.34, "°C"),
    ("engine", "oil_temp", -40.125, "°C"),
    ("engine", "rpm", 1234.5, "rpm"),
    ("hydraulics", "pressure", 1013.25, "hPa"),
    ("hydraulics", "flow", 0.001, "m³/s"),
    ("meter", "hours", 98765.4321, "h"),
    ("meter", "count", 65535.0, ""),
    ("gps", "speed", 0.0, "km/h"),
    ("gps", "lat", 52.5200066, "deg"),
    ("band", "vibration", -0.5, "m/s²"),
]


@dataclass
class Backend:
    """An open store, and for VictoriaMetrics the server behind it."""

    name: str
    store: TelemetryStore
    server: VictoriaMetricsServer | None = None

    async def read(
        self,
        device: str,
        start: datetime,
        end: datetime,
        *,
        expect: int,
        metric: str | None = None,
        limit: int = 10_000,
    ) -> list[StoredReading]:
        """Query; on VM poll (force-flushing) until `expect` readings show or time is up."""
        deadline = time.monotonic() + VISIBLE_WITHIN_S
        while True:
            if self.server is not None:
                await asyncio.to_thread(self.server.force_flush)
            found = await self.store.query(device, start, end, metric, limit)
            if self.server is None or len(found) >= expect or time.monotonic() > deadline:
                return found
            await asyncio.sleep(0.05)

    async def downsample(
        self, device: str, start: datetime, end: datetime, step_s: int, *, expect: int, **kw: str
    ) -> list[ReadingBucket]:
        """Downsample; on VM poll until the buckets hold `expect` readings or time is up."""
        deadline = time.monotonic() + VISIBLE_WITHIN_S
        while True:
            if self.server is not None:
                await asyncio.to_thread(self.server.force_flush)
            found = await self.store.downsample(device, start, end, step_s, **kw)
            seen = sum(b.count for b in found)
            if self.server is None or seen >= expect or time.monotonic() > deadline:
                return found
            await asyncio.sleep(0.05)


def make_batch(device: str, readings: list[Reading], seq: int = 0) -> TelemetryBatch:
    """A telemetry message as a gateway would send it."""
    return TelemetryBatch(
        device=device, boot="boot-1", seq=seq, sent_at=datetime.now(UTC), readings=readings
    )


def sample_readings(t0: datetime, step: timedelta = 137 * MS) -> list[Reading]:
    """SAMPLES at t0, t0 + step, ... (whole milliseconds)."""
    return [
        Reading(sensor=sensor, metric=metric, ts=t0 + i * step, value=value, unit=unit)
        for i, (sensor, metric, value, unit) in enumerate(SAMPLES)
    ]


def stored(device: str, readings: list[Reading]) -> list[StoredReading]:
    """What a store must give back for these readings, oldest first."""
    expected = [StoredReading(device, r.sensor, r.metric, r.ts, r.value, r.unit) for r in readings]
    return sorted(expected, key=lambda r: (r.ts, r.sensor, r.metric))


@pytest.fixture
def t0() -> datetime:
    """A recent whole second (VictoriaMetrics keeps the last 31 days by default)."""
    return datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)


@pytest.fixture(
    params=[
        pytest.param("sqlite"),
        pytest.param("victoria", marks=pytest.mark.integration),
    ]
)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """An open store of each kind, closed after the test."""
    if request.param == "sqlite":
        result = Backend("sqlite", await open_telemetry_store(f"sqlite:///{tmp_path}/t.sqlite"))
    else:
        server: VictoriaMetricsServer = request.getfixturevalue("victoria_metrics")
        url = server.url.replace("http://", "victoriametrics://")
        result = Backend("victoria", await open_telemetry_store(url), server)
    yield result
    await result.store.close()


async def test_round_trip_keeps_values_units_and_timestamps(backend: Backend, t0: datetime) -> None:
    readings = sample_readings(t0 + 7 * MS)
    # Same instant, two sensors: ties are ordered by sensor, then metric.
    readings.append(Reading(sensor="aux", metric="rpm", ts=readings[0].ts, value=1.5, unit="rpm"))
    await backend.store.write([make_batch("excavator-7", readings)])

    found = await backend.read("excavator-7", t0, t0 + timedelta(hours=1), expect=len(readings))

    assert found == stored("excavator-7", readings)
    assert all(r.ts.utcoffset() == timedelta(0) for r in found)
    assert [r.value for r in found if r.metric == "coolant_temp"] == [12.34]


async def test_ten_significant_digits_over_six_decades_round_trip(
    backend: Backend, t0: datetime
) -> None:
    # VM's limit: one series' block shares a decimal exponent (see cloud/telemetry/victoria.py).
    rng = random.Random(1234)
    values = [
        float(f"{rng.randint(10**9, 10**10 - 1) * rng.choice((1, -1))}e{rng.randint(-12, -6)}")
        for _ in range(300)
    ]
    readings = [
        Reading(sensor="probe", metric="level", ts=t0 + i * MS, value=v)
        for i, v in enumerate(values)
    ]
    await backend.store.write([make_batch("crane-1", readings)])

    found = await backend.read("crane-1", t0, t0 + timedelta(seconds=1), expect=len(values))

    assert [r.value for r in found] == values


async def test_metric_filter(backend: Backend, t0: datetime) -> None:
    await backend.store.write([make_batch("loader-2", sample_readings(t0))])
    end = t0 + timedelta(minutes=1)
    await backend.read("loader-2", t0, end, expect=len(SAMPLES))

    found = await backend.read("loader-2", t0, end, metric="rpm", expect=1)

    assert [(r.sensor, r.metric, r.value) for r in found] == [("engine", "rpm", 1234.5)]
    assert await backend.store.query("loader-2", t0, end, metric="no_such_metric") == []


async def test_time_range_includes_start_excludes_end(backend: Backend, t0: datetime) -> None:
    start, end = t0 + timedelta(seconds=10), t0 + timedelta(seconds=20)
    times = [start - MS, start, start + MS, end - MS, end]
    readings = [Reading(sensor="s", metric="load", ts=ts, value=i) for i, ts in enumerate(times)]
    await backend.store.write([make_batch("truck-3", readings)])
    await backend.read("truck-3", t0, t0 + timedelta(minutes=1), expect=len(times))

    found = await backend.read("truck-3", start, end, expect=3)
    first_two = await backend.store.query("truck-3", start, end, limit=2)

    assert [r.ts for r in found] == [start, start + MS, end - MS]
    assert [r.ts for r in first_two] == [start, start + MS]


async def test_rewriting_a_batch_stores_it_once(backend: Backend, t0: datetime) -> None:
    batch = make_batch("forklift-4", sample_readings(t0))
    end = t0 + timedelta(minutes=1)
    await backend.store.write([batch])
    assert len(await backend.read("forklift-4", t0, end, expect=len(SAMPLES))) == len(SAMPLES)

    await backend.store.write([batch, batch])  # a crash re-delivery, twice in one call
    await backend.store.write([batch])
    # Written last into an existing series: once it shows, the rewrites before it show too.
    marker = Reading(sensor="engine", metric="rpm", ts=t0 + timedelta(seconds=30), value=7.0)
    await backend.store.write([make_batch("forklift-4", [marker], seq=1)])

    found = await backend.read("forklift-4", t0, end, expect=len(SAMPLES) + 1)
    assert found == stored("forklift-4", [*batch.readings, marker])


async def test_devices_are_kept_apart(backend: Backend, t0: datetime) -> None:
    same = [Reading(sensor="engine", metric="rpm", ts=t0, value=1.0)]
    other = [Reading(sensor="engine", metric="rpm", ts=t0, value=2.0)]
    await backend.store.write([make_batch("tractor-a", same), make_batch("tractor-b", other)])
    end = t0 + timedelta(seconds=1)

    found_a = await backend.read("tractor-a", t0, end, expect=1)
    found_b = await backend.read("tractor-b", t0, end, expect=1)

    assert [(r.device, r.value) for r in found_a] == [("tractor-a", 1.0)]
    assert [(r.device, r.value) for r in found_b] == [("tractor-b", 2.0)]


def bucket_row(b: ReadingBucket) -> tuple[object, ...]:
    """A bucket as comparable values (the mean compared to 1e-9: VM stores decimals)."""
    return (b.bucket, b.sensor, b.metric, b.unit, b.count, pytest.approx(b.mean), b.min, b.max)


async def test_downsample_buckets_are_epoch_aligned_and_half_open(
    backend: Backend, t0: datetime
) -> None:
    base = t0.replace(second=0) + timedelta(minutes=1)  # a whole minute: a bucket edge
    minute = timedelta(minutes=1)
    rpm = [  # (offset, value): the edges of the first bucket, the next, one beyond
        (-MS, 999.0), (timedelta(0), 10.0), (MS, 20.0), (minute - MS, 30.0),
        (minute, 40.0), (2 * minute + timedelta(seconds=30), 50.0),
    ]  # fmt: skip
    readings = [Reading(sensor="engine", metric="rpm", ts=base + o, value=v) for o, v in rpm]
    readings.append(Reading(sensor="engine", metric="coolant_temp", ts=base, value=80.5, unit="°C"))
    other = [Reading(sensor="engine", metric="rpm", ts=base, value=5.0)]
    await backend.store.write([make_batch("dozer-9", readings), make_batch("dozer-0", other)])
    # start and end inside buckets: rounded out to base .. base + 3 min
    start, end = base + timedelta(seconds=10), base + 2 * minute + timedelta(seconds=50)

    found = await backend.downsample("dozer-9", start, end, 60, expect=6)
    rpm_only = await backend.downsample("dozer-9", start, end, 60, expect=5, metric="rpm")

    assert [bucket_row(b) for b in found] == [
        (base, "engine", "coolant_temp", "°C", 1, 80.5, 80.5, 80.5),
        (base, "engine", "rpm", "", 3, 20.0, 10.0, 30.0),
        (base + minute, "engine", "rpm", "", 1, 40.0, 40.0, 40.0),
        (base + 2 * minute, "engine", "rpm", "", 1, 50.0, 50.0, 50.0),
    ]
    assert all(b.device == "dozer-9" for b in found)
    assert [b.count for b in rpm_only] == [3, 1, 1]
    assert await backend.store.downsample("dozer-9", start, end, 60, metric="none") == []


async def test_downsample_one_bucket_per_step_over_many_readings(
    backend: Backend, t0: datetime
) -> None:
    base = t0.replace(minute=0, second=0)  # a whole hour
    readings = [
        Reading(sensor="band", metric="vibration", ts=base + i * timedelta(seconds=7), value=i)
        for i in range(1000)  # 7,000 s: buckets of 300 s hold 42 or 43 readings
    ]
    await backend.store.write([make_batch("pump-5", readings)])

    found = await backend.downsample(
        "pump-5", base, base + timedelta(hours=2), 300, expect=len(readings)
    )

    expected: dict[int, list[int]] = {}
    for i in range(1000):
        expected.setdefault(i * 7 // 300, []).append(i)
    assert [bucket_row(b) for b in found] == [
        (base + k * timedelta(seconds=300), "band", "vibration", "", len(v), sum(v) / len(v),
         min(v), max(v))
        for k, v in sorted(expected.items())
    ]  # fmt: skip


async def test_downsample_includes_the_latest_seconds(backend: Backend) -> None:
    # VM's query_range must not leave out the newest points (its -search.latencyOffset)
    now = datetime.now(UTC).replace(microsecond=0)
    reading = Reading(sensor="engine", metric="rpm", ts=now - timedelta(seconds=2), value=9.0)
    await backend.store.write([make_batch("skid-1", [reading])])

    found = await backend.downsample("skid-1", now - timedelta(minutes=5), now, 60, expect=1)

    assert [(b.count, b.max) for b in found] == [(1, 9.0)]


def test_bucket_span_rounds_out_and_bounds_the_bucket_count() -> None:
    t = datetime(2026, 3, 1, 10, 0, 30, 500_000, tzinfo=UTC)
    assert bucket_span(t, t + MS, 60) == (t.replace(second=0, microsecond=0),
                                          t.replace(minute=1, second=0, microsecond=0))  # fmt: skip
    with pytest.raises(ValueError, match="at least 1 second"):
        bucket_span(t, t + MS, 0)
    with pytest.raises(ValueError, match="before end"):
        bucket_span(t, t, 60)
    with pytest.raises(ValueError, match="at most"):
        bucket_span(t, t + timedelta(seconds=MAX_BUCKETS + 1), 1)


async def test_sqlite_file_reopened_keeps_data(tmp_path: Path, t0: datetime) -> None:
    url = f"sqlite:///{tmp_path}/fleet/telemetry.sqlite"
    store = await open_telemetry_store(url)
    await store.write([make_batch("dozer-5", sample_readings(t0))])
    await store.close()

    reopened = await open_telemetry_store(url)
    try:
        found = await reopened.query("dozer-5", t0, t0 + timedelta(minutes=1))
    finally:
        await reopened.close()
    assert found == stored("dozer-5", sample_readings(t0))


async def test_sqlite_keeps_full_float64_precision(tmp_path: Path, t0: datetime) -> None:
    values = [math.pi, 0.1 + 0.2, 5e-324, 1.7976931348623157e308, -1 / 3]
    readings = [
        Reading(sensor="x", metric="v", ts=t0 + i * MS, value=v) for i, v in enumerate(values)
    ]
    store = SqliteTelemetryStore(tmp_path / "t.sqlite")
    await store.write([make_batch("d", readings)])
    found = await store.query("d", t0, t0 + timedelta(seconds=1))
    await store.close()
    assert [r.value for r in found] == values


async def test_sqlite_closed_or_unopenable_raises(tmp_path: Path, t0: datetime) -> None:
    store = SqliteTelemetryStore(tmp_path / "t.sqlite")
    await store.close()
    with pytest.raises(TelemetryStoreError, match="closed"):
        await store.write([make_batch("d", sample_readings(t0))])
    (tmp_path / "taken").mkdir()
    with pytest.raises(TelemetryStoreError, match="cannot open") as caught:
        SqliteTelemetryStore(tmp_path / "taken")  # a directory, not a database file
    assert caught.value.__cause__ is not None


@pytest.mark.integration
async def test_victoria_rounds_values_past_twelve_digits(
    victoria_metrics: VictoriaMetricsServer, t0: datetime
) -> None:
    backend = Backend("victoria", VictoriaMetricsStore(victoria_metrics.url), victoria_metrics)
    reading = Reading(sensor="x", metric="v", ts=t0, value=math.pi)
    await backend.store.write([make_batch("d", [reading])])
    found = await backend.read("d", t0, t0 + MS, expect=1)
    await backend.store.close()
    # VM 1.79 stores decimals: 3.141592653589793 comes back as 3.141592653589.
    assert found[0].value == pytest.approx(math.pi, rel=1e-11)


@pytest.mark.integration
async def test_victoria_refuses_readings_outside_retention(
    victoria_metrics: VictoriaMetricsServer, t0: datetime
) -> None:
    backend = Backend("victoria", VictoriaMetricsStore(victoria_metrics.url), victoria_metrics)
    fresh = sample_readings(t0)
    too_old = Reading(sensor="s", metric="m", ts=t0 - timedelta(days=40), value=1.0)
    too_new = Reading(sensor="s", metric="m", ts=t0 + timedelta(days=3), value=2.0)

    with pytest.raises(ReadingsRejectedError, match="refused 2 readings") as caught:
        await backend.store.write([make_batch("grader-6", [too_old, *fresh, too_new])])

    assert [reading for _, reading in caught.value.rejected] == [too_old, too_new]
    found = await backend.read("grader-6", t0, t0 + timedelta(minutes=1), expect=len(fresh))
    await backend.store.close()
    assert found == stored("grader-6", fresh)


@pytest.mark.integration
async def test_victoria_without_ms_dedup_is_refused(tmp_path: Path) -> None:
    with (
        victoria_metrics_running(tmp_path / "vm", dedup=False) as server,
        pytest.raises(TelemetryStoreError, match=r"-dedup\.minScrapeInterval=1ms"),
    ):
        await open_telemetry_store(server.url)


@pytest.mark.integration
async def test_victoria_retention_comes_from_its_flags_unless_the_url_says(
    tmp_path: Path,
) -> None:
    with victoria_metrics_running(tmp_path / "vm", ["-retentionPeriod=2y"]) as server:
        from_flags = await open_telemetry_store(server.url)
        from_url = await open_telemetry_store(f"{server.url}?retention_days=10")
        await from_flags.close()
        await from_url.close()
    assert isinstance(from_flags, VictoriaMetricsStore)
    assert isinstance(from_url, VictoriaMetricsStore)
    assert (from_flags.retention, from_url.retention) == (timedelta(days=730), timedelta(days=10))


def _many_batches(prefix: str, t0: datetime, messages: int = 200) -> list[TelemetryBatch]:
    """Messages of 32 readings each from 50 gateways (new series in VM's index too)."""
    return [
        make_batch(
            f"{prefix}-{m % 50:03d}",
            [
                Reading(sensor="s", metric=f"m{k % 4}", ts=t0 + (m * 32 + k) * MS, value=k)
                for k in range(32)
            ],
            seq=m,
        )
        for m in range(messages)
    ]


def _exported(server: VictoriaMetricsServer, prefix: str) -> int:
    """Samples VM holds for the devices of one prefix."""
    series = server.export(f'{{__name__=~"lw_.+",device=~"{prefix}-.+"}}')
    return sum(len(s["values"]) for s in series)  # type: ignore[arg-type]


@pytest.mark.integration
async def test_victoria_acknowledged_writes_survive_kill_9(
    victoria_metrics: VictoriaMetricsServer, t0: datetime
) -> None:
    """What `write` returned for is on disk: a SIGKILL right after loses none of it.

    The same write with `durable=0` shows what the barrier is for: VM 1.79 keeps recent
    samples (and new series) in memory for seconds, and a SIGKILL loses them.
    """
    fast = await open_telemetry_store(f"{victoria_metrics.telemetry_url}?durable=0")
    await fast.write(_many_batches("fast", t0))
    durable = await open_telemetry_store(victoria_metrics.telemetry_url)
    await durable.write(_many_batches("safe", t0))
    await fast.write(_many_batches("late", t0))  # after the barrier, none of its own
    victoria_metrics.kill()
    await fast.close()
    await durable.close()
    victoria_metrics.start()
    await asyncio.to_thread(victoria_metrics.force_flush)

    assert _exported(victoria_metrics, "fast") == 200 * 32  # written before a barrier
    assert _exported(victoria_metrics, "safe") == 200 * 32
    assert _exported(victoria_metrics, "late") < 200 * 32  # acknowledged, then lost


async def test_victoria_durable_option_is_checked() -> None:
    with pytest.raises(ValueError, match=r"durable=0\|1"):
        await open_telemetry_store("victoriametrics://vm:8428?durable=yes")
    store = VictoriaMetricsStore("http://vm:8428", durable=False)
    await store.close()
    assert not store.durable


@pytest.mark.integration
async def test_victoria_stopped_raises_quickly(
    victoria_metrics: VictoriaMetricsServer, t0: datetime
) -> None:
    store = await open_telemetry_store(victoria_metrics.url)
    victoria_metrics.stop()
    try:
        await assert_fails_fast(store, t0)
    finally:
        await store.close()


async def test_unreachable_port_raises_quickly(t0: datetime) -> None:
    url = f"victoriametrics://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(TelemetryStoreError, match="unreachable"):
        await open_telemetry_store(url)
    assert time.monotonic() - started < FAILS_WITHIN_S
    store = VictoriaMetricsStore(url.replace("victoriametrics", "http"))
    try:
        await assert_fails_fast(store, t0)
    finally:
        await store.close()


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A TCP port that accepts connections (kernel backlog) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


async def test_silent_server_times_out(silent_server: str, t0: datetime) -> None:
    store = VictoriaMetricsStore(silent_server, timeout=0.5, retries=1)
    try:
        await assert_fails_fast(store, t0)
    finally:
        await store.close()


async def assert_fails_fast(store: TelemetryStore, t0: datetime) -> None:
    """Both write and query raise TelemetryStoreError, chained, within FAILS_WITHIN_S each."""
    started = time.monotonic()
    with pytest.raises(TelemetryStoreError) as caught:
        await store.write([make_batch("d", sample_readings(t0))])
    assert caught.value.__cause__ is not None
    assert time.monotonic() - started < FAILS_WITHIN_S
    started = time.monotonic()
    with pytest.raises(TelemetryStoreError):
        await store.query("d", t0, t0 + timedelta(minutes=1))
    assert time.monotonic() - started < FAILS_WITHIN_S


@pytest.mark.parametrize(
    "url",
    [
        "mysql://db/x",
        "sqlite://host/x.sqlite",
        "sqlite://",
        "victoriametrics://",
        "victoriametrics://vm:8428?batch=5",
    ],
)
async def test_factory_refuses_bad_urls(url: str) -> None:
    with pytest.raises(ValueError, match=r"telemetry URLs|sqlite:///|name a host|unknown option"):
        await open_telemetry_store(url)


async def test_factory_sqlite_paths_follow_sqlalchemy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    relative = await open_telemetry_store("sqlite:///data/telemetry.sqlite")
    absolute = await open_telemetry_store(f"sqlite:///{tmp_path}/abs.sqlite")
    await relative.close()
    await absolute.close()
    assert (tmp_path / "data" / "telemetry.sqlite").is_file()
    assert (tmp_path / "abs.sqlite").is_file()


async def test_sqlite_retention_prunes_only_old_readings(tmp_path: Path, t0: datetime) -> None:
    store = await open_telemetry_store(f"sqlite:///{tmp_path}/t.sqlite")
    old = sample_readings(t0 - timedelta(days=500))
    recent = sample_readings(t0)
    await store.write([make_batch("gw-0001", old), make_batch("gw-0001", recent, seq=1)])
    assert await store.prune(t0 - timedelta(days=400)) == len(old)
    found = await store.query("gw-0001", t0 - timedelta(days=600), t0 + timedelta(hours=1))
    assert found == stored("gw-0001", recent)
    await store.close()


@pytest.mark.integration
async def test_victoria_leaves_retention_to_the_server(
    victoria_metrics: VictoriaMetricsServer,
) -> None:
    store = await open_telemetry_store(
        victoria_metrics.url.replace("http://", "victoriametrics://")
    )
    assert await store.prune(datetime.now(UTC)) == 0
    await store.close()
