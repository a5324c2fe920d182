"""The production telemetry store: VictoriaMetrics, written as InfluxDB line protocol, read raw.

Writes go through influxdb-client's synchronous WriteApi (in a worker thread) to `/api/v2/write`
with ms precision: measurement `lw`, field = metric, tags device, sensor and unit (left out when
empty), so a reading becomes a sample of `lw_<metric>{device, sensor, unit}`. VM accepts any
org, bucket and token. Reads use the raw-sample export `/api/v1/export` (JSON lines);
downsampled reads one `/api/v1/query_range` of `aggr_over_time` (count, avg, min, max) whose
window is shifted by 1 ms so that VM's (t - step, t] becomes the bucket [t - step, t).

What the server must run with, and what it does (checked against the Debian build 1.79):
- `-dedup.minScrapeInterval=1ms` is required, in production too: it makes a rewritten reading
  (same series, same ms) one sample. Without it re-delivered readings are stored twice.
- Samples outside [now - retentionPeriod, now + 2 days] are answered with 204 and dropped,
  only logged by the server. This store refuses them itself (ReadingsRejectedError, the rest of
  the call is stored), with an hour's margin at both edges. `connect` reads the retention and
  checks the dedup flag at `/flags`; `?retention_days=` in the URL overrides the retention.
- Values are stored as decimals, and a block of one series' values shares one exponent. Values
  of up to 10 significant digits round-trip exactly (12.34 is 12.34) while a series stays within
  about 6 decades; longer values are cut near the 12th digit (3.141592653589793 comes back as
  3.141592653589), and in a series that also holds values 1e10 times larger, a small value
  keeps only about 8 digits (0.0002892932127 came back as 0.00028929).
- A 204 means the sample is in VM's memory. A VM (1.79) killed with SIGKILL lost writes it had
  acknowledged up to about 10 s earlier, new series included, and `/internal/force_flush` does
  not change that (it makes samples searchable, not durable); a graceful stop loses nothing.
  So a write is durable only after `/snapshot/create`, which flushes VM's in-memory rows,
  parts and index to disk (the snapshot itself, hard links, is deleted at once): `write`
  returns only after that (`durable`, the default; `?durable=0` in the URL turns it off for a
  store whose durability lies elsewhere). Measured: 57-140 ms per call on this machine, and no
  sample lost by a SIGKILL right after it (`tests/cloud/test_telemetry_stores.py`).

Visibility: a written sample is not searchable at once. Samples of an existing series appear
within about a second; a brand-new series takes about a second and, when a query for it ran
before it was indexed, VM caches that empty answer for up to about 10 s. `query` returns what
VM can see now and never waits; code that must read its own writes polls with a deadline (the
tests call `/internal/force_flush` between polls, which resets that cache).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import httpx
import urllib3
from influxdb_client.client.exceptions import InfluxDBError
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.domain.write_precision import WritePrecision

from cloud.telemetry import (
    ReadingBucket,
    ReadingsRejectedError,
    StoredReading,
    TelemetryStoreError,
    bucket_span,
    epoch_ms,
    from_epoch_ms,
)
from leasewatch.wire import Reading, TelemetryBatch

MEASUREMENT = "lw"
DEFAULT_RETENTION = timedelta(days=31)
_DEFAULT_TIMEOUT_S = 5.0
# VM refuses samples more than 2 days ahead; both edges keep a margin for clock drift.
_MAX_AHEAD = timedelta(days=2)
_EDGE_MARGIN = timedelta(hours=1)
_LINES_PER_REQUEST = 10_000
_TAG_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\\": "\\\\"})
_ERRORS_ON_WRITE = (InfluxDBError, urllib3.exceptions.HTTPError)
_FLAG_LINE = re.compile(r'^-([\w.]+)="(.*)"$', re.MULTILINE)
_RETENTION = re.compile(r"(\d+(?:\.\d+)?)([hdwy]?)")
_ROLLUPS = ("count_over_time", "avg_over_time", "min_over_time", "max_over_time")
_RETENTION_UNIT_HOURS = {"": 31 * 24, "h": 1, "d": 24, "w": 7 * 24, "y": 365 * 24}


class VictoriaMetricsStore:
    """Readings in a single-node VictoriaMetrics (the cluster's URL paths differ: not yet)."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = _DEFAULT_TIMEOUT_S,
        retries: int = 2,
        retention: timedelta = DEFAULT_RETENTION,
        durable: bool = True,
    ) -> None:
        """Prepare the clients; nothing is contacted until `connect` or the first call."""
        self.url = url.rstrip("/")
        self.retention = retention
        self.durable = durable
        self._influx = InfluxDBClient(
            url=self.url,
            token="leasewatch",  # noqa: S106 - VM ignores it, the client requires one
            org="leasewatch",
            timeout=round(timeout * 1000),
            retries=_retry_policy(retries),
        )
        self._write_api = self._influx.write_api(write_options=SYNCHRONOUS)
        self._http = httpx.AsyncClient(base_url=self.url, timeout=timeout)

    @classmethod
    async def connect(cls, url: str) -> VictoriaMetricsStore:
        """Open the store a URL names; check VM's flags and take its retention from them."""
        base_url, timeout, retention, durable = _parse_url(url)
        store = cls(base_url, timeout=timeout, durable=durable)
        try:
            flags = await store._server_flags()
            store.retention = retention or _retention_of(flags.get("retentionPeriod", "1"))
        except TelemetryStoreError:
            await store.close()
            raise
        return store

    async def _server_flags(self) -> dict[str, str]:
        """The flags VM was started with (`/flags`); refuse a server without ms deduplication."""
        try:
            response = await self._http.get("/flags")
            response.raise_for_status()
        except httpx.HTTPError as err:
            raise TelemetryStoreError(
                f"VictoriaMetrics at {self.url} unreachable: {err!r}"
            ) from err
        flags = dict(_FLAG_LINE.findall(response.text))
        if flags.get("dedup.minScrapeInterval") != "1ms":
            raise TelemetryStoreError(
                f"VictoriaMetrics at {self.url} must run with -dedup.minScrapeInterval=1ms"
                " (it has "
                f"{flags.get('dedup.minScrapeInterval', 'none')}): without it re-delivered"
                " readings are stored twice, with more it merges distinct readings"
            )
        return flags

    async def write(self, batches: Sequence[TelemetryBatch]) -> None:
        """Store every reading VM can keep, then raise ReadingsRejectedError for the others."""
        now = datetime.now(UTC)
        oldest = now - self.retention + _EDGE_MARGIN
        newest = now + _MAX_AHEAD - _EDGE_MARGIN
        accepted: list[tuple[str, list[Reading]]] = []
        rejected: list[tuple[str, Reading]] = []
        for batch in batches:
            device, readings = batch.device, batch.readings
            kept = [r for r in readings if oldest <= r.ts <= newest]
            if len(kept) < len(readings):
                rejected += [(device, r) for r in readings if not oldest <= r.ts <= newest]
            if kept:
                accepted.append((device, kept))
        if accepted:
            await asyncio.to_thread(self._post_lines, accepted)
            if self.durable:
                await self._persist()
        if rejected:
            device, first = rejected[0]
            raise ReadingsRejectedError(
                f"VictoriaMetrics keeps {oldest:%Y-%m-%dT%H:%MZ}..{newest:%Y-%m-%dT%H:%MZ} only:"
                f" refused {len(rejected)} readings, the first {device}/{first.sensor}/"
                f"{first.metric} at {first.ts.isoformat()}",
                rejected,
            )

    async def _persist(self) -> None:
        """Make everything VM accepted so far survive a crash: a snapshot, deleted at once."""
        created = await self._get_ok("/snapshot/create", {})
        name = created.get("snapshot")
        if not isinstance(name, str) or not name:
            raise TelemetryStoreError(f"VictoriaMetrics /snapshot/create answered {created!r}")
        await self._get_ok("/snapshot/delete", {"snapshot": name})

    async def _get_ok(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        """A snapshot call's JSON answer when its status is "ok", else TelemetryStoreError."""
        try:
            response = await self._http.get(path, params=params)
            body = response.json()
        except (httpx.HTTPError, json.JSONDecodeError) as err:
            raise TelemetryStoreError(f"VictoriaMetrics {path} failed: {err!r}") from err
        if response.status_code != httpx.codes.OK or not isinstance(body, dict):
            raise TelemetryStoreError(
                f"VictoriaMetrics {path} answered {response.status_code}: {response.text[:200]}"
            )
        if body.get("status") != "ok":
            raise TelemetryStoreError(f"VictoriaMetrics {path} answered {response.text[:200]}")
        return body

    async def query(
        self,
        device: str,
        start: datetime,
        end: datetime,
        metric: str | None = None,
        limit: int = 10_000,
    ) -> list[StoredReading]:
        """Readings of one device with start <= ts < end, oldest first (what VM can see now)."""
        if limit < 1:
            raise ValueError(f"limit must be positive, got {limit}")
        start_ms, end_ms = epoch_ms(start), epoch_ms(end)
        params = {
            "match[]": self._selector(device, metric),
            # VM turns fractional seconds into ms through a float: pad by 1 ms, filter below.
            "start": _seconds(start_ms - 1),
            "end": _seconds(end_ms),
        }
        try:
            response = await self._http.get("/api/v1/export", params=params)
        except httpx.HTTPError as err:
            raise TelemetryStoreError(f"VictoriaMetrics at {self.url} failed: {err!r}") from err
        if response.status_code != httpx.codes.OK:
            raise TelemetryStoreError(
                f"VictoriaMetrics export answered {response.status_code}: {response.text[:200]}"
            )
        rows = [r for r in _parse_export(device, response.text) if start_ms <= r[0] < end_ms]
        rows.sort(key=lambda row: (row[0], row[1].sensor, row[1].metric))
        return [row[1] for row in rows[:limit]]

    async def downsample(
        self,
        device: str,
        start: datetime,
        end: datetime,
        step_s: int,
        metric: str | None = None,
    ) -> list[ReadingBucket]:
        """Count, mean, min, max per series and epoch-aligned bucket, computed by VM.

        One `query_range` of `aggr_over_time` (count, avg, min, max): VM's window at t is
        (t - step, t]; `offset 1ms` makes it [t - step, t) in whole ms, the bucket t - step.
        `nocache=1`: a replayed backlog lands in the past, where VM's result cache would hide it.
        """
        first, last = bucket_span(start, end, step_s)
        rollups = ",".join(f'"{name}"' for name in _ROLLUPS)
        query = (
            f"aggr_over_time(({rollups}), {self._selector(device, metric)}[{step_s}s]"
            " offset 1ms) keep_metric_names"
        )
        params = {
            "query": query,
            "start": _seconds(epoch_ms(first) + step_s * 1000),
            "end": _seconds(epoch_ms(last)),
            "step": f"{step_s}s",
            "nocache": "1",
        }
        body = await self._get_json("/api/v1/query_range", params)
        return _buckets(device, step_s, body)

    def _selector(self, device: str, metric: str | None) -> str:
        """The series selector of one device's readings (one metric, or all of them)."""
        name = (
            f'__name__="{MEASUREMENT}_{_label(metric)}"'
            if metric is not None
            else rf'__name__=~"{MEASUREMENT}_.+"'
        )
        return f'{{{name},device="{_label(device)}"}}'

    async def _get_json(self, path: str, params: dict[str, str]) -> Any:
        """A successful Prometheus API answer's `data`, or TelemetryStoreError."""
        try:
            response = await self._http.get(path, params=params)
            body = response.json()
        except (httpx.HTTPError, json.JSONDecodeError) as err:
            raise TelemetryStoreError(f"VictoriaMetrics at {self.url} failed: {err!r}") from err
        if response.status_code != httpx.codes.OK or body.get("status") != "success":
            raise TelemetryStoreError(
                f"VictoriaMetrics {path} answered {response.status_code}: {response.text[:200]}"
            )
        return body["data"]

    async def prune(self, before: datetime) -> int:
        """Nothing to do: VictoriaMetrics enforces its own -retentionPeriod (see `retention`)."""
        del before
        return 0

    async def close(self) -> None:
        """Release both HTTP clients (writes are synchronous: nothing is buffered)."""
        await self._http.aclose()
        await asyncio.to_thread(self._influx.close)

    def _post_lines(self, readings: list[tuple[str, list[Reading]]]) -> None:
        """Send line protocol in bounded requests; each returns after VM answered 204."""
        lines = [line for device, kept in readings for line in _lines(device, kept)]
        for first in range(0, len(lines), _LINES_PER_REQUEST):
            chunk = lines[first : first + _LINES_PER_REQUEST]
            # one body: the client would serialise and join a list of lines one by one
            body = "\n".join(chunk).encode()
            try:
                self._write_api.write(
                    bucket="leasewatch",
                    record=body,
                    # The client annotates WritePrecision but its members are plain strings.
                    write_precision=WritePrecision.MS,  # type: ignore[arg-type]
                )
            except _ERRORS_ON_WRITE as err:
                raise TelemetryStoreError(
                    f"VictoriaMetrics at {self.url} did not take {len(chunk)} readings: {err!r}"
                ) from err


def _retry_policy(retries: int) -> urllib3.Retry:
    """Bounded retries, POST included (writes are idempotent), never sleeping on Retry-After."""
    return urllib3.Retry(
        total=retries,
        backoff_factor=0.2,
        status_forcelist=(429, 500, 502, 503, 504),
        allowed_methods=None,
        respect_retry_after_header=False,
        raise_on_status=True,
    )


def _parse_url(url: str) -> tuple[str, float, timedelta | None, bool]:
    """Split a store URL: HTTP base URL, timeout, retention (if given), durable writes."""
    parts = urlsplit(url)
    if not parts.hostname:
        raise ValueError(
            f"{url!r}: VictoriaMetrics URLs name a host, e.g. victoriametrics://vm:8428"
        )
    timeout, retention, durable = _DEFAULT_TIMEOUT_S, None, True
    for key, value in parse_qsl(parts.query, strict_parsing=bool(parts.query)):
        if key == "timeout":
            timeout = float(value)
        elif key == "retention_days":
            retention = timedelta(days=float(value))
        elif key == "durable" and value in ("0", "1"):
            durable = value == "1"
        else:
            raise ValueError(
                f"{url!r}: unknown option {key}={value!r}"
                " (known: timeout, retention_days, durable=0|1)"
            )
    scheme = "http" if parts.scheme == "victoriametrics" else parts.scheme
    base = urlunsplit((scheme, parts.netloc, parts.path, "", ""))
    return base, timeout, retention, durable


def _retention_of(flag: str) -> timedelta:
    """VM's -retentionPeriod as a duration: a bare number counts months of 31 days."""
    match = _RETENTION.fullmatch(flag)
    if match is None:
        raise TelemetryStoreError(
            f"cannot read VictoriaMetrics -retentionPeriod={flag!r}: set retention_days in the URL"
        )
    number, unit = float(match[1]), match[2]
    return timedelta(hours=number * _RETENTION_UNIT_HOURS[unit])


def _lines(device: str, readings: Sequence[Reading]) -> list[str]:
    """One device's readings as InfluxDB line protocol with ms timestamps.

    The hot path of every write: tags are escaped once per (sensor, unit) and a time is
    converted once per run of readings that share it (a sample's measures do), which took
    1.7 -> 0.6 us per reading against formatting each line on its own.
    """
    head = f"{MEASUREMENT},device={device.translate(_TAG_ESCAPES)},sensor="
    prefixes: dict[tuple[str, str], str] = {}
    lines: list[str] = []
    append = lines.append
    last: datetime | None = None
    ms = 0
    for reading in readings:
        if (prefix := prefixes.get(key := (reading.sensor, reading.unit))) is None:
            unit = f",unit={reading.unit.translate(_TAG_ESCAPES)}" if reading.unit else ""
            prefix = prefixes[key] = f"{head}{reading.sensor.translate(_TAG_ESCAPES)}{unit} "
        if (ts := reading.ts) != last:
            ms, last = epoch_ms(ts), ts
        append(f"{prefix}{reading.metric}={reading.value!r} {ms}")
    return lines


def _label(value: str) -> str:
    """A string quoted safely inside a Prometheus label matcher."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _seconds(ms: int) -> str:
    """Epoch milliseconds as the decimal seconds VM's `start`/`end` take."""
    whole, frac = divmod(ms, 1000)
    return f"{whole}.{frac:03d}"


def _parse_export(device: str, text: str) -> Iterator[tuple[int, StoredReading]]:
    """(epoch ms, reading) pairs from `/api/v1/export` JSON lines."""
    for line in text.splitlines():
        if line:
            labels, timestamps, values = _series(line)
            metric = labels["__name__"].removeprefix(f"{MEASUREMENT}_")
            sensor, unit = labels.get("sensor", ""), labels.get("unit", "")
            for ts, value in zip(timestamps, values, strict=True):
                yield ts, StoredReading(device, sensor, metric, from_epoch_ms(ts), value, unit)


def _series(line: str) -> tuple[dict[str, str], list[int], list[float]]:
    """Labels, timestamps and values of one export line, checked for shape."""
    try:
        series = json.loads(line)
        labels: dict[str, str] = series["metric"]
        timestamps = [int(ts) for ts in series["timestamps"]]
        # VM prints large values as integer literals (1e300 as 1000...0): convert them all.
        values = [float(value) for value in series["values"]]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise TelemetryStoreError(f"VictoriaMetrics export line unreadable: {line[:200]}") from err
    if "__name__" not in labels or len(timestamps) != len(values):
        raise TelemetryStoreError(f"VictoriaMetrics export line malformed: {line[:200]}")
    return labels, timestamps, values


def _buckets(device: str, step_s: int, data: Any) -> list[ReadingBucket]:
    """ReadingBuckets from a query_range matrix of aggr_over_time series (label `rollup`)."""
    stats: dict[tuple[int, str, str, str], dict[str, float]] = {}
    try:
        for series in data["result"]:
            labels: dict[str, str] = series["metric"]
            key = (
                labels["__name__"].removeprefix(f"{MEASUREMENT}_"),
                labels.get("sensor", ""),
                labels.get("unit", ""),
            )
            for ts, value in series["values"]:
                bucket_ms = round(float(ts) * 1000) - step_s * 1000
                stats.setdefault((bucket_ms, *key), {})[labels["rollup"]] = float(value)
    except (KeyError, TypeError, ValueError) as err:
        raise TelemetryStoreError(f"VictoriaMetrics query_range unreadable: {err!r}") from err
    rows = sorted(stats.items(), key=lambda item: (item[0][0], item[0][2], item[0][1], item[0][3]))
    return [
        ReadingBucket(
            device,
            sensor,
            metric,
            unit,
            from_epoch_ms(bucket_ms),
            round(v["count_over_time"]),
            v["avg_over_time"],
            v["min_over_time"],
            v["max_over_time"],
        )
        for (bucket_ms, metric, sensor, unit), v in rows
        if len(v) == len(_ROLLUPS)
    ]
