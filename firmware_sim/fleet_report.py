"""What fleet mode sent: running totals, one JSON line per delivered publish, per-device totals.

Report (`--report FILE`): one JSON line per publish the broker took (PUBACK reason below 0x80
and not 0x10 "no matching subscribers"), e.g.
    {"device":"gw-00001","boot":"r1a2b-0","seq":3,"kind":"telemetry","copy":0,"fault":"",
     "detail":"","historical":false,"readings":32,"sim_at":"2025-10-06T00:20:00.000Z",
     "sent_at":"2026-01-05T10:00:01.234Z","puback_ms":1.87,"attempts":1}
(`seq` is null for status messages; `fault` is duplicate | late | out_of_order | malformed;
`attempts` > 1 when the broker did not deliver earlier publishes of it or the connection was
lost before their PUBACK), and next to it `FILE.devices.csv` (per-device totals) and
`FILE.summary.json`.
"""

from __future__ import annotations

import csv
import json
import shutil
import statistics
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from firmware_sim.scenarios.encoding import iso
from firmware_sim.scenarios.gateway import Outgoing

_DEVICE_COLUMNS = (
    "telemetry", "unique_keys", "duplicate", "late", "out_of_order", "malformed", "historical",
    "readings", "status", "boots", "retries",
)  # fmt: skip


@dataclass
class FleetStats:
    """Running totals of a fleet run (what the progress bar and the summary show)."""

    messages: int = 0
    telemetry: int = 0
    readings: int = 0
    bytes: int = 0
    windows_done: int = 0
    max_lag_s: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    faults: Counter[str] = field(default_factory=Counter)
    unsent: int = 0  # held back by the gateways at the end (an outage or late past the end)
    retries: int = 0  # publishes repeated: not delivered, or the connection dropped first
    not_delivered: int = 0  # PUBACKs with 0x10 "no matching subscribers" or a code >= 0x80
    reconnects: int = 0  # connections made again after one was lost
    abandoned: int = 0  # messages still not delivered when the run gave up on them
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    shares_cpu_s: float = 0.0  # CPU seconds of the processes publishing shares (--processes)

    @property
    def elapsed_s(self) -> float:
        """Real seconds since the start (to the end once finished)."""
        return (self.finished or time.monotonic()) - self.started

    def percentile_ms(self, q: float) -> float:
        """PUBACK latency percentile in milliseconds (0 when nothing was acknowledged)."""
        if len(self.latencies_s) < 2:
            return 1000 * (self.latencies_s[0] if self.latencies_s else 0.0)
        cuts = statistics.quantiles(self.latencies_s, n=1000, method="inclusive")
        return 1000 * cuts[min(998, max(0, round(q * 1000) - 1))]

    def summary(self) -> dict[str, object]:
        """The headline figures of the run."""
        seconds = max(self.elapsed_s, 1e-9)
        return {
            "messages": self.messages,
            "telemetry_messages": self.telemetry,
            "readings": self.readings,
            "bytes": self.bytes,
            "elapsed_s": round(seconds, 3),
            "messages_per_s": round(self.messages / seconds, 1),
            "readings_per_s": round(self.readings / seconds, 1),
            "puback_p50_ms": round(self.percentile_ms(0.50), 3),
            "puback_p99_ms": round(self.percentile_ms(0.99), 3),
            "windows": self.windows_done,
            "max_lag_s": round(self.max_lag_s, 3),
            "unsent": self.unsent,
            "retries": self.retries,
            "not_delivered": self.not_delivered,
            "reconnects": self.reconnects,
            "abandoned": self.abandoned,
            "faults": dict(self.faults),
        }


class FleetReport:
    """Records every delivered publish: JSON lines, per-device totals, a summary."""

    def __init__(self, path: Path | None) -> None:
        """Open the report file (nothing is written when `path` is None)."""
        self.path = path
        self.stats = FleetStats()
        self._file: TextIO | None = path.open("w", encoding="utf-8") if path else None
        self._devices: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self._keys: defaultdict[str, set[tuple[str, int]]] = defaultdict(set)
        self._boots: defaultdict[str, set[str]] = defaultdict(set)
        self._absorbed: list[list[str]] = []  # device rows of shares published elsewhere

    def sent(self, message: Outgoing, latency_s: float, attempts: int = 1) -> None:
        """Count one delivered publish and write its report line."""
        stats, counts = self.stats, self._devices[message.device]
        stats.messages += 1
        stats.bytes += len(message.payload)
        stats.latencies_s.append(latency_s)
        if message.kind == "telemetry":
            stats.telemetry += 1
            stats.readings += message.readings
            counts["telemetry"] += 1
            counts["readings"] += message.readings
            counts["historical"] += message.historical
            self._keys[message.device].add((message.boot, message.seq))
        else:
            counts["status"] += 1
        counts["retries"] += attempts - 1
        self._boots[message.device].add(message.boot)
        if message.fault:
            stats.faults[message.fault] += 1
            counts[message.fault] += 1
        if self._file is not None:
            self._file.write(_line(message, latency_s, attempts))

    def close(self) -> None:
        """Finish the run: write per-device totals and the summary next to the report."""
        self.stats.finished = self.stats.finished or time.monotonic()
        if self._file is None or self.path is None or self._file.closed:
            return
        self._file.close()
        rows = self._absorbed + [self._device_row(device) for device in self._devices]
        with self.path.with_suffix(".devices.csv").open("w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(["device", *_DEVICE_COLUMNS])
            writer.writerows(sorted(rows))
        summary = json.dumps(self.stats.summary(), indent=2)
        self.path.with_suffix(".summary.json").write_text(summary + "\n")

    def _device_row(self, device: str) -> list[str]:
        """One device's totals as a CSV row."""
        counts = self._devices[device]
        counts["unique_keys"] = len(self._keys[device])
        counts["boots"] = len(self._boots[device])
        return [device, *(str(counts[c]) for c in _DEVICE_COLUMNS)]

    def absorb(self, part: Path) -> None:
        """Take over the report files another process wrote for its share, then remove them."""
        devices, summary = part.with_suffix(".devices.csv"), part.with_suffix(".summary.json")
        if self._file is not None and part.exists():
            with part.open(encoding="utf-8") as lines:
                shutil.copyfileobj(lines, self._file)
        if devices.exists():
            with devices.open(newline="") as file:
                self._absorbed += list(csv.reader(file))[1:]
        for path in (part, devices, summary):
            path.unlink(missing_ok=True)


def merged(shares: list[FleetStats]) -> FleetStats:
    """The totals of a run published by several processes, each with its share's totals."""
    total = FleetStats(started=min(s.started for s in shares))
    for share in shares:
        for name in _SUMMED:
            setattr(total, name, getattr(total, name) + getattr(share, name))
        total.latencies_s += share.latencies_s
        total.faults += share.faults
        total.max_lag_s = max(total.max_lag_s, share.max_lag_s)
    total.windows_done = min(s.windows_done for s in shares)
    total.finished = max(s.finished or s.started for s in shares)
    return total


_SUMMED = (
    "messages", "telemetry", "readings", "bytes", "unsent", "retries", "not_delivered",
    "reconnects", "abandoned",
)  # fmt: skip


def _line(message: Outgoing, latency_s: float, attempts: int) -> str:
    """One report line (written by hand: thousands a second)."""
    seq = "null" if message.seq < 0 else str(message.seq)
    return (
        f'{{"device":"{message.device}","boot":"{message.boot}","seq":{seq},'
        f'"kind":"{message.kind}","copy":{message.copy},"fault":"{message.fault}",'
        f'"detail":"{message.detail}","historical":{"true" if message.historical else "false"},'
        f'"readings":{message.readings},"sim_at":"{iso(message.due)}",'
        f'"sent_at":"{iso(time.time())}","puback_ms":{latency_s * 1000:.3f},'
        f'"attempts":{attempts}}}\n'
    )
