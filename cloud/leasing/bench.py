"""`leasewatch bench credit-check`: p50/p99 of POST /v1/credit-checks at 10,000 leases.

It fills a state store (a fresh SQLite file, or the empty database at `--state-url`) with
lessees, leases, one asset and gateway per lease, 1-hour `running` rollups for the signals'
42 days, an hourly message ledger for the completeness window (with gaps on some gateways),
and open alerts on a tenth of the gateways; then serves the real API with uvicorn on a
loopback port and times credit checks (lease and lessee) over HTTP with one keep-alive client
in its own process (a credit engine is another process: a client thread in the server's
process would contend for its interpreter lock). Every check is also written to the audit
trail, as in production. The peer group's levels for the bench's as-of day are computed
before the checks, as the API's refresher does at start and before each midnight
(`cloud.leasing.peer_refresh`). On PostgreSQL the fill ends with `VACUUM ANALYZE`: the state
autovacuum reaches minutes after a bulk load (without it the timed checks race autovacuum
over 13 M fresh rows, and index-only scans still visit the heap).
"""

from __future__ import annotations

import multiprocessing
import os
import random
import secrets
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import uvicorn
from pydantic import SecretStr
from sqlalchemy import Connection, insert

from cloud.api.deps import Services
from cloud.api.main import create_app
from cloud.leasing.peer_refresh import precompute
from cloud.leasing.signals import BASELINE_DAYS, RECENT_DAYS
from cloud.leasing.tables import assets, leases, lessees
from cloud.metrics import IngestMetrics
from cloud.risk.rules import load_rules
from cloud.schema import alerts
from cloud.settings import CloudSettings
from cloud.state import StateStore
from cloud.telemetry.sqlite import SqliteTelemetryStore

AS_OF = datetime(2026, 12, 1, tzinfo=UTC)
CHUNK = 20_000


@dataclass(frozen=True)
class CreditBenchResult:
    """Latency figures of one run."""

    backend: str
    leases: int
    rows: int
    fill_s: float
    checks: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    lessee_p99_ms: float
    load_average: tuple[float, float] = (0.0, 0.0)  # 1-minute load before and after the checks


def _hours(device_index: int) -> Iterator[tuple[datetime, float]]:
    """(hour, running share) over the signals' days; every seventh gateway declines lately."""
    days = RECENT_DAYS + BASELINE_DAYS
    start = AS_OF - timedelta(days=days)
    declining = device_index % 7 == 0
    for h in range(days * 24):
        hour = start + timedelta(hours=h)
        late = hour >= AS_OF - timedelta(days=RECENT_DAYS)
        busy = 8 <= hour.hour < (10 if declining and late else 16)
        yield hour, 1.0 if busy else 0.0


def _domain(conn: Connection, count: int, now: datetime) -> None:
    stamp = {"created_at": now, "updated_at": now}
    people = [{"lessee_id": f"L-{i:05d}", "name": f"Lessee {i}"} | stamp for i in range(count // 3)]
    conn.execute(insert(lessees), people)
    rows = [
        {"lease_id": f"LS-{i:05d}", "lessee_id": f"L-{i % (count // 3):05d}",
         "starts_on": date(2026, 1, 1), "ends_on": date(2029, 1, 1), "region": None,
         "expected_hours_per_day": 8.0, "expected_hours_per_month": None,
         "hours_cap_per_month": 220.0, "payment_schedule": "monthly", "payment_amount": 2000.0,
         "currency": "EUR", "asset_value": 120_000.0, "status": "active"} | stamp
        for i in range(count)
    ]  # fmt: skip
    conn.execute(insert(leases), rows)
    machines = [
        {"asset_id": f"A-{i:05d}", "asset_type": "excavator", "region": "south",
         "device": f"gw-{i:05d}", "lease_id": f"LS-{i:05d}"} | stamp
        for i in range(count)
    ]  # fmt: skip
    conn.execute(insert(assets), machines)


def _stamp(conn: Connection, when: datetime) -> object:
    """A datetime as the driver takes it (SQLAlchemy keeps SQLite datetimes as naive text)."""
    return when if conn.dialect.name == "postgresql" else when.strftime("%Y-%m-%d %H:%M:%S.%f")


def _bucket(conn: Connection, when: datetime) -> object:
    """A rollup bucket as the driver takes it (SQLite: epoch seconds, `schema.BucketStart`)."""
    return when if conn.dialect.name == "postgresql" else int(when.timestamp())


def _bulk(conn: Connection, table: str, columns: str, rows: list[tuple[object, ...]]) -> None:
    """Insert many rows with the driver's executemany (COPY on PostgreSQL)."""
    if conn.dialect.name == "postgresql":
        raw = conn.connection.driver_connection
        with raw.cursor() as cursor, cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:  # type: ignore[union-attr]
            for row in rows:
                copy.write_row(row)
        return
    marks = ", ".join("?" * len(rows[0]))
    conn.exec_driver_sql(f"INSERT INTO {table} ({columns}) VALUES ({marks})", rows)  # noqa: S608


def _telemetry(conn: Connection, count: int) -> int:
    written = 0
    batch_r: list[tuple[object, ...]] = []
    batch_l: list[tuple[object, ...]] = []
    ledger_from = AS_OF - timedelta(days=RECENT_DAYS)
    for i in range(count):
        device = f"gw-{i:05d}"
        for seq, (hour, share) in enumerate(_hours(i)):
            at = _bucket(conn, hour)
            batch_r.append((device, "machine", "running", 3600, at, "", 60, 60 * share, share,
                            share))  # fmt: skip
            lost = i % 5 == 0 and seq % 4 == 0  # a poor link on every fifth gateway
            if hour >= ledger_from and not lost:
                sent = _stamp(conn, hour + timedelta(minutes=59))
                batch_l.append((device, "b1", seq, sent, sent, 60, False))
        if len(batch_r) >= CHUNK or i == count - 1:
            _bulk(conn, "rollups", "device, sensor, metric, resolution_s, bucket, unit, count, "
                  "sum, min, max", batch_r)  # fmt: skip
            _bulk(conn, "message_ledger", "device, boot, seq, sent_at, received_at, readings, "
                  "historical", batch_l)  # fmt: skip
            written += len(batch_r) + len(batch_l)
            batch_r, batch_l = [], []
    return written


def _alerts(conn: Connection, count: int) -> int:
    rows = []
    for i in range(0, count, 10):
        at = AS_OF - timedelta(days=3)
        detector, key = ("faults", "bearing") if i % 20 else ("utilization", "decline")
        rows.append({
            "device": f"gw-{i:05d}", "detector": detector, "key": key, "severity": "warning",
            "severity_rank": 2, "status": "open", "since": at, "opened_at": at, "updated_at": at,
            "last_evaluated_at": at, "summary": "bench", "evidence": {}, "confidence": 0.9,
            "magnitude": 0.4, "occurrences": 1, "notified_rank": 2,
        })  # fmt: skip
    conn.execute(insert(alerts), rows)
    return len(rows)


def fill(state: StateStore, count: int) -> int:
    """Write the bench portfolio; returns the number of rows written."""
    with state.engine.begin() as conn:
        _domain(conn, count, AS_OF)
        rows = 2 * count + count // 3
        rows += _telemetry(conn, count)
        rows += _alerts(conn, count)
    if state.engine.dialect.name == "postgresql":
        with state.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
    return rows


@contextmanager
def serving(services: Services) -> Iterator[str]:
    """The real API under uvicorn on a free loopback port, in a thread."""
    config = uvicorn.Config(create_app(services), host="127.0.0.1", port=0, log_level="warning",
                            access_log=False, lifespan="off")  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _time(client: httpx.Client, body: dict[str, str]) -> float:
    """One credit check's round trip in ms (RuntimeError unless 200)."""
    started = time.perf_counter()
    response = client.post("/v1/credit-checks", json=body)
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise RuntimeError(f"credit check failed: {response.status_code} {response.text[:200]}")
    return elapsed * 1000


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def client_timings(url: str, key: str, bodies: list[dict[str, str]]) -> list[float]:
    """Each body's credit check timed in ms, in order, over one keep-alive connection."""
    with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=30) as client:
        return [_time(client, body) for body in bodies]


def _bodies(leases_count: int, checks: int) -> tuple[list[dict[str, str]], ...]:
    """Warm-up, lease and lessee checks (a seeded draw of subjects, as of `AS_OF`)."""
    rng = random.Random(7)
    as_of = AS_OF.isoformat()
    warm = [
        {"lease_id": f"LS-{rng.randrange(leases_count):05d}", "as_of": as_of} for _ in range(100)
    ]
    lease = [
        {"lease_id": f"LS-{rng.randrange(leases_count):05d}", "as_of": as_of} for _ in range(checks)
    ]
    lessee = [
        {"lessee_id": f"L-{rng.randrange(leases_count // 3):05d}", "as_of": as_of}
        for _ in range(max(100, checks // 10))
    ]
    return warm, lease, lessee


def _client_process() -> ProcessPoolExecutor:
    """One fresh interpreter for the client (spawned: no threads or locks of the server)."""
    return ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))


def run_credit_bench(
    leases_count: int = 10_000, checks: int = 2000, state_url: str | None = None
) -> CreditBenchResult:
    """Fill a store, serve the API, time credit checks; the figures."""
    with tempfile.TemporaryDirectory(prefix="lw-credit-bench-") as tmp:
        state = StateStore(state_url or f"sqlite:///{Path(tmp) / 'state.sqlite'}")
        try:
            started = time.perf_counter()
            rows = fill(state, leases_count)
            fill_s = time.perf_counter() - started
            key = secrets.token_urlsafe(24)
            settings = CloudSettings(api_key=SecretStr(key), risk_rescore_interval_s=0)
            telemetry = SqliteTelemetryStore(Path(tmp) / "telemetry.sqlite")
            services = Services(settings, telemetry, state, IngestMetrics())
            warm, lease, lessee = _bodies(leases_count, checks)
            precompute(state.engine, AS_OF, load_rules())  # as the API does at start
            load_before = os.getloadavg()[0]
            with serving(services) as url, _client_process() as client:
                client.submit(client_timings, url, key, warm).result()  # connections, caches
                lease_ms = client.submit(client_timings, url, key, lease).result()
                lessee_ms = client.submit(client_timings, url, key, lessee).result()
            load = (load_before, os.getloadavg()[0])
        finally:
            state.close()
    return CreditBenchResult(
        state.engine.dialect.name, leases_count, rows, fill_s, len(lease_ms),
        _pct(lease_ms, 50), _pct(lease_ms, 99), max(lease_ms), _pct(lessee_ms, 99), load,
    )  # fmt: skip
