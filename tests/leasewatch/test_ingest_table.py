"""`bench ingest`'s table: each figure against the right target."""

from __future__ import annotations

import re

from rich.console import Console

from cloud.bench import IngestBenchOptions, IngestBenchResult
from leasewatch.bench import ingest_table


def _rendered(options: IngestBenchOptions, stored_readings: int, ingest_s: float) -> str:
    result = IngestBenchResult(
        options=options, sent_messages=1000, sent_readings=stored_readings, publish_s=ingest_s,
        stored_messages=1000, stored_readings=stored_readings, ingest_s=ingest_s, missing=0,
        unexpected=0, latency_p50_s=0.2, latency_p99_s=0.5, worker_cpu_percent=[60.0, 55.0],
        mean_batch_messages=3456.7,
        cpu_cores={"workers": 1.15, "simulator (this process)": 0.4, "machine busy": 1.9},
    )  # fmt: skip
    console = Console(width=250, record=True)
    console.print(ingest_table(result))
    return console.export_text()


def test_an_unpaced_run_is_held_to_the_backends_target() -> None:
    text = _rendered(IngestBenchOptions(backend="sqlite"), 420_000, 10.0)
    assert "42,000" in text and "50,000 (0.84x)" in text
    assert "workers 1.15, simulator (this process) 0.40, machine busy 1.90" in text
    assert "2 / 2,000 / 5,000 msgs" in text  # the deployed batch size unless told otherwise
    assert re.search(r"messages per batch \(mean; grows with a backlog\) +│ 3,457 ", text)


def test_a_paced_run_is_held_to_what_it_offered_not_to_the_maximum() -> None:
    options = IngestBenchOptions(backend="victoriametrics", rate=8000.0)
    text = _rendered(options, 78_000, 10.0)
    assert "the offered 8,000 (0.97x)" in text
    assert "100,000" not in text
