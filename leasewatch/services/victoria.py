"""A private single-node VictoriaMetrics on a free loopback port, stoppable and restartable.

Runs with `-dedup.minScrapeInterval=1ms` unless told not to (what the ingestor's exactly-once
design needs: a replayed sample with the same timestamp is one sample). `stop()` is graceful
(VM flushes); `start()` after it serves the same data on the same port.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from leasewatch.services.process import (
    ProcessHandle,
    ServiceError,
    free_port,
    http_ok,
    log_tail,
    terminate,
    wait_until,
)

START_TIMEOUT_S = 20.0
_ATTEMPTS = 3
_FUTURE_S = 3 * 86400  # VM takes samples up to 2 days ahead


class VictoriaService(ProcessHandle):
    """One VictoriaMetrics process with its data directory and log."""

    def __init__(
        self,
        data_dir: Path,
        flags: Sequence[str] = ("-retentionPeriod=10y",),
        *,
        dedup: bool = True,
        port: int | None = None,
    ) -> None:
        """Choose a port (or keep `port`, where clients expect it); `start()` launches it."""
        self.data_dir = data_dir
        self.flags = (*(["-dedup.minScrapeInterval=1ms"] if dedup else []), *flags)
        self.port = port or free_port()
        self.log_path = data_dir / "victoria-metrics.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._keep_port = port is not None
        found = shutil.which("victoria-metrics") or "/usr/bin/victoria-metrics"
        if not Path(found).exists():
            raise ServiceError(
                "victoria-metrics not found (Debian: apt-get install victoria-metrics)"
            )
        self._binary = found

    @property
    def url(self) -> str:
        """The HTTP address, e.g. http://127.0.0.1:8428."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def telemetry_url(self) -> str:
        """The ingestor's LEASEWATCH_TELEMETRY_URL for this server."""
        return f"victoriametrics://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start (again) on this port and data; wait until /health answers.

        On the first start a port someone took meanwhile means another port; a restart keeps
        its port (the clients expect it there), as does a port given to the constructor.
        """
        for _ in range(1 if self._keep_port else _ATTEMPTS):
            if self._launch():
                self._keep_port = True
                return
            if "address already in use" not in log_tail(self.log_path).lower():
                break
            self.port = free_port()
        raise ServiceError(f"victoria-metrics did not start:\n{log_tail(self.log_path)}")

    def _launch(self) -> bool:
        """One start; whether /health answered in time (stopped again if not)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = [
            self._binary,
            f"-storageDataPath={self.data_dir / 'storage'}",
            f"-httpListenAddr=127.0.0.1:{self.port}",
            *self.flags,
        ]
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
        if wait_until(lambda: http_ok(f"{self.url}/health"), self._process, START_TIMEOUT_S):
            return True
        self.stop()
        return False

    def stop(self) -> None:
        """Graceful stop: VM flushes what it holds and exits."""
        terminate(self._process)

    def force_flush(self) -> None:
        """Make every accepted sample searchable now."""
        httpx.get(f"{self.url}/internal/force_flush", timeout=10).raise_for_status()

    def export(self, match: str) -> list[dict[str, object]]:
        """Every series matching a selector with all its raw samples, future ones included.

        (/api/v1/export ends at "now" unless told otherwise: samples stamped by a gateway whose
        clock runs ahead would be left out.)
        """
        end = int(time.time()) + _FUTURE_S
        query = {"match[]": match, "start": "0", "end": str(end)}
        response = httpx.post(f"{self.url}/api/v1/export", data=query, timeout=120)
        response.raise_for_status()
        return [json.loads(line) for line in response.text.splitlines() if line.strip()]
