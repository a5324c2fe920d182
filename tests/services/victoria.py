"""VictoriaMetrics started by the tests: one private instance per test on a free loopback port.

A thin pytest layer over the package's runner (leasewatch/services/victoria.py): a server that
does not start fails the test with the reason and the log's tail.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from leasewatch.services.process import ServiceError
from leasewatch.services.victoria import VictoriaService

VictoriaMetricsServer = VictoriaService


def start_victoria_metrics(
    data_dir: Path, extra_flags: Sequence[str] = (), *, dedup: bool = True, port: int | None = None
) -> VictoriaMetricsServer:
    """Start VM on a free port (ms deduplication unless told not to); wait until /health answers.

    Give `port` to restart a stopped server where its clients expect it.
    """
    try:
        server = VictoriaService(data_dir, extra_flags, dedup=dedup, port=port)
        server.start()
    except ServiceError as err:
        pytest.fail(f"VictoriaMetrics did not start: {err}", pytrace=False)
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


@pytest.fixture
def victoria_metrics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaMetricsServer]:
    """A fresh VictoriaMetrics (starts in ~0.1 s), stopped and deleted after the test."""
    with victoria_metrics_running(tmp_path_factory.mktemp("victoria-metrics")) as server:
        yield server
