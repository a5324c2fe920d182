"""`leasewatch bench dashboards`: a 10,000-asset state store, each page timed through real HTTP.

The fill writes what the ingestor and detectors would have left: registry rows, 1-hour rollups
of `running` for every asset and day, 1-minute `state` rollups of the last minutes, 1-hour
positions, 1-minute and 1-hour measures for a few assets, open alerts and health reports. Rows
go in as bulk inserts (this is a fixture for the pages, not an ingest benchmark). The API then
serves on a loopback port and each page is fetched, logged in, `repeats` times.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr
from sqlalchemy import Engine, insert

from cloud.alerts.signals import Finding, Severity
from cloud.alerts.store import AlertStore
from cloud.runtime import CloudRuntime, bind_listener
from cloud.schema import devices, gateway_health, rollups
from cloud.settings import CloudSettings
from cloud.state import StateStore
from leasewatch.wire import GatewayHealth

TARGET_S = 1.5
BENCH_KEY = "dashboard-bench-key-0123456789"
DETAIL_ASSETS = 3  # assets with 1-minute measures over the last day
_MEASURES = (("motor_current", "A", 12.0), ("temperature", "degC", 60.0))
_CHUNK = 20_000


@dataclass(frozen=True, slots=True)
class DashboardBenchOptions:
    """What to fill and how to time it."""

    assets: int = 10_000
    days: int = 14
    repeats: int = 5
    state_url: str | None = None  # an empty database; default SQLite in a temporary directory


@dataclass(frozen=True, slots=True)
class PageTiming:
    """One page fetched `repeats` times: wall times (loopback HTTP) and response size."""

    page: str
    path: str
    seconds: list[float]
    bytes: int

    @property
    def median_s(self) -> float:
        """Median time of one fetch."""
        return statistics.median(self.seconds)


@dataclass(slots=True)
class DashboardBenchResult:
    """The fill and the timings."""

    options: DashboardBenchOptions
    rollup_rows: int = 0
    alerts: int = 0
    fill_s: float = 0.0
    pages: list[PageTiming] = field(default_factory=list)


def device_name(index: int) -> str:
    """The bench's name for asset number `index`."""
    return f"bench-{index:05d}"


def _rollup(
    device: str, measure: tuple[str, str], res: int, ts: Any, value: float
) -> dict[str, Any]:
    metric, unit = measure
    return {"device": device, "sensor": "machine", "metric": metric, "resolution_s": res,
            "bucket": ts, "unit": unit, "count": 10, "sum": 10 * value, "min": value,
            "max": value}  # fmt: skip


def _fleet_rollups(o: DashboardBenchOptions, now: datetime) -> Iterator[dict[str, Any]]:
    """Running share per hour (8-hour working days, varied by asset), state, positions."""
    hour = now.replace(minute=0, second=0, microsecond=0)
    minute = now.replace(second=0, microsecond=0)
    for i in range(o.assets):
        device = device_name(i)
        for h in range(o.days * 24):
            ts = hour - timedelta(hours=h)
            share = (0.4 + 0.6 * ((i * 7) % 10) / 10) if 7 <= ts.hour < 15 else 0.0
            yield _rollup(device, ("running", ""), 3600, ts, share)
        for m in range(10):
            ts = minute - timedelta(minutes=m)
            yield _rollup(device, ("state", ""), 60, ts, float(i % 3))
        for h in range(3):
            ts = hour - timedelta(hours=h)
            yield _rollup(device, ("lat", "deg"), 3600, ts, 44.0 + (i % 100) * 0.08)
            yield _rollup(device, ("lon", "deg"), 3600, ts, 2.0 + (i // 100 % 100) * 0.14)


def _detail_rollups(o: DashboardBenchOptions, now: datetime) -> Iterator[dict[str, Any]]:
    """Measures of the first few assets: 1-minute over a day, 1-hour over the whole window."""
    minute = now.replace(second=0, microsecond=0)
    for i in range(min(DETAIL_ASSETS, o.assets)):
        for metric, unit, level in _MEASURES:
            for m in range(24 * 60):
                ts = minute - timedelta(minutes=m)
                yield _rollup(device_name(i), (metric, unit), 60, ts, level + (m % 60) / 10)
            for h in range(o.days * 24):
                ts = minute.replace(minute=0) - timedelta(hours=h)
                yield _rollup(device_name(i), (metric, unit), 3600, ts, level + h % 24)


def _insert_chunked(engine: Engine, table: Any, rows: Iterator[dict[str, Any]]) -> int:
    written = 0
    chunk: list[dict[str, Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == _CHUNK:
            with engine.begin() as conn:
                conn.execute(insert(table), chunk)
            written, chunk = written + len(chunk), []
    if chunk:
        with engine.begin() as conn:
            conn.execute(insert(table), chunk)
    return written + len(chunk)


def _registry(engine: Engine, o: DashboardBenchOptions, now: datetime) -> Iterator[dict[str, Any]]:
    for i in range(o.assets):
        silent = i % 20 == 0  # one asset in 20 stopped reporting two hours ago
        latest = now - (timedelta(hours=2) if silent else timedelta(seconds=30))
        yield {"device": device_name(i), "first_seen": now - timedelta(days=o.days),
               "last_message_at": latest, "latest_reading_at": latest, "last_boot": "b1",
               "status": "online", "status_at": now - timedelta(days=1), "messages": 1000,
               "readings": 10_000, "duplicates": 0}  # fmt: skip


def _health(o: DashboardBenchOptions, now: datetime) -> Iterator[dict[str, Any]]:
    for i in range(o.assets):
        report = GatewayHealth(device=device_name(i), boot="b1", ts=now, uptime_s=86_400.0,
                               buffer_messages=i % 5, buffer_readings=(i % 5) * 10)  # fmt: skip
        yield {"device": report.device, "boot": "b1", "ts": now, "received_at": now,
               "report": report.model_dump_json()}  # fmt: skip


def _findings(o: DashboardBenchOptions, now: datetime) -> list[Finding]:
    found = []
    for i in range(0, o.assets, 20):
        found.append(Finding(device_name(i), "silence", "silence", "open", Severity.CRITICAL,
                             now - timedelta(hours=2), now, "No reading for 2.0 h.",
                             {"silent_h": 2.0}))  # fmt: skip
    for i in range(7, o.assets, 33):
        found.append(Finding(device_name(i), "utilization", "utilization", "open",
                             Severity.WARNING, now - timedelta(days=3), now,
                             "Running hours dropped to 45% of the usual.",
                             {"ratio": 0.45, "baseline_h": 8.0}))  # fmt: skip
    return found


def fill_state_store(state: StateStore, o: DashboardBenchOptions, now: datetime) -> tuple[int, int]:
    """Write the bench fleet; returns (rollup rows, alerts)."""
    engine = state.engine
    _insert_chunked(engine, devices, _registry(engine, o, now))
    rows = _insert_chunked(engine, rollups, _fleet_rollups(o, now))
    rows += _insert_chunked(engine, rollups, _detail_rollups(o, now))
    _insert_chunked(engine, gateway_health, _health(o, now))
    findings = _findings(o, now)
    AlertStore(engine).apply(findings, now)
    return rows, len(findings)


def bench_pages(o: DashboardBenchOptions) -> list[tuple[str, str]]:
    """(name, path) of every page the bench times."""
    asset = device_name(0)
    return [
        ("fleet overview", "/dashboards/fleet"),
        ("fleet, silent assets only", "/dashboards/fleet?state=silent"),
        ("asset page, 24 h (1-min rollups)", f"/dashboards/devices/{asset}?range=24h"),
        ("asset page, 30 d (1-h rollups)", f"/dashboards/devices/{asset}?range=30d"),
        ("alerts inbox", "/dashboards/alerts"),
        ("alerts inbox, critical open", "/dashboards/alerts?severity=critical&status=open"),
        ("risk view", "/dashboards/risk"),
        ("gateway list", "/dashboards"),
    ]


@contextmanager
def serving_api(state_url: str, telemetry_url: str, api_key: str = BENCH_KEY) -> Iterator[str]:
    """The real API (no ingestor) on a loopback port in a background thread; yields its URL."""
    settings = CloudSettings(mode="production", api_key=SecretStr(api_key),
                             state_url=state_url, telemetry_url=telemetry_url)  # fmt: skip
    sock = bind_listener("127.0.0.1", 0, fall_back=False)
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    runtime = CloudRuntime(settings)

    async def serve() -> None:
        await runtime.open()
        try:
            await runtime.run(stop, ingest=False, api_socket=sock)
        finally:
            await runtime.close()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        _wait_until_up(url)
        yield url
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=30)


def _wait_until_up(url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise RuntimeError(f"the API at {url} did not come up within 60 s")


def time_pages(url: str, o: DashboardBenchOptions) -> list[PageTiming]:
    """Log in, then fetch each page `repeats` times after one warm-up fetch."""
    timings = []
    with httpx.Client(base_url=url, timeout=60) as client:
        login = client.post("/login", data={"key": BENCH_KEY})
        if login.status_code != 303:
            raise RuntimeError(f"login refused: HTTP {login.status_code}")
        for name, path in bench_pages(o):
            client.get(path).raise_for_status()
            seconds, size = [], 0
            for _ in range(o.repeats):
                started = time.perf_counter()
                response = client.get(path)
                seconds.append(time.perf_counter() - started)
                response.raise_for_status()
                size = len(response.content)
            timings.append(PageTiming(name, path, seconds, size))
    return timings


def run_dashboard_bench(o: DashboardBenchOptions) -> DashboardBenchResult:
    """Fill a state store with the bench fleet and time every page through HTTP."""
    result = DashboardBenchResult(o)
    with tempfile.TemporaryDirectory(prefix="lw-dash-bench-") as tmp:
        state_url = o.state_url or f"sqlite:///{Path(tmp) / 'state.sqlite'}"
        state = StateStore(state_url)
        started = time.perf_counter()
        now = datetime.now(UTC)
        result.rollup_rows, result.alerts = fill_state_store(state, o, now)
        result.fill_s = time.perf_counter() - started
        state.close()
        with serving_api(state_url, f"sqlite:///{Path(tmp) / 'telemetry.sqlite'}") as url:
            result.pages = time_pages(url, o)
    return result
