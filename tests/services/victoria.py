"""VictoriaMetrics started by the tests: one private instance per test on a free loopback port."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.services.ports import free_port

BINARY = "victoria-metrics"
FALLBACK_PATH = "/usr/bin/victoria-metrics"
START_TIMEOUT_S = 15.0


@dataclass
class VictoriaMetricsServer:
    """A running single-node VictoriaMetrics with its own data directory."""

    url: str
    data_dir: Path
    process: subprocess.Popen[bytes]
    log_path: Path

    def force_flush(self) -> None:
        """Make every sample VM has accepted searchable (and drop its cached empty answers)."""
        httpx.get(f"{self.url}/internal/force_flush", timeout=5).raise_for_status()

    def stop(self) -> None:
        """Stop the server gracefully (SIGTERM); it flushes what it holds before exiting."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log_tail(self, lines: int = 20) -> str:
        """The last lines VM logged, for failure messages."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def victoria_binary() -> str:
    """Path of the victoria-metrics binary, or fail the test with how to install it."""
    found = shutil.which(BINARY) or (FALLBACK_PATH if Path(FALLBACK_PATH).exists() else None)
    if found is None:
        pytest.fail(
            "VictoriaMetrics is not installed (no `victoria-metrics` on PATH or in /usr/bin): "
            "install it with `sudo apt-get install victoria-metrics`.",
            pytrace=False,
        )
    return found


def start_victoria_metrics(
    data_dir: Path, extra_flags: Sequence[str] = (), *, dedup: bool = True, port: int | None = None
) -> VictoriaMetricsServer:
    """Start VM on a free port (ms deduplication unless told not to); wait until /health answers.

    Give `port` to restart a stopped server where its clients expect it.
    """
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / "victoria-metrics.log"
    command = [
        victoria_binary(),
        f"-storageDataPath={data_dir / 'storage'}",
        f"-httpListenAddr=127.0.0.1:{port}",
        *(["-dedup.minScrapeInterval=1ms"] if dedup else []),
        *extra_flags,
    ]
    with log_path.open("ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    server = VictoriaMetricsServer(f"http://127.0.0.1:{port}", data_dir, process, log_path)
    try:
        _wait_healthy(server)
    except (TimeoutError, OSError) as err:
        server.stop()
        pytest.fail(f"VictoriaMetrics did not start: {err}\n{server.log_tail()}", pytrace=False)
    return server


@contextlib.contextmanager
def victoria_metrics_running(
    data_dir: Path, extra_flags: Sequence[str] = (), *, dedup: bool = True
) -> Iterator[VictoriaMetricsServer]:
    """A VM for the duration of a with block; stopped and its directory deleted afterwards."""
    server = start_victoria_metrics(data_dir, extra_flags, dedup=dedup)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def _wait_healthy(server: VictoriaMetricsServer) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if server.process.poll() is not None:
            raise OSError(f"victoria-metrics exited with code {server.process.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{server.url}/health", timeout=1).status_code == httpx.codes.OK:
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{server.url}/health did not answer within {START_TIMEOUT_S} s")
        time.sleep(0.02)


@pytest.fixture
def victoria_metrics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaMetricsServer]:
    """A fresh VictoriaMetrics (starts in ~0.1 s), stopped and deleted after the test."""
    with victoria_metrics_running(tmp_path_factory.mktemp("victoria-metrics")) as server:
        yield server
