"""The chaos suite on real processes, with short durations: nothing lost, nothing duplicated."""

from __future__ import annotations

from pathlib import Path

import pytest

from leasewatch.chaos.faults import ChaosOptions, Fault
from leasewatch.chaos.report import figures, outcome_table
from leasewatch.chaos.run import run_chaos

SHORT = ChaosOptions(
    faults=tuple(Fault),
    repetitions=1,
    store_down_s=10.0,
    cut_s=20.0,
    disk_full_s=10.0,
    clock_jump_s=3600.0,  # far beyond the ingestor's 300 s tolerance: the agent holds the step
    clock_hold_s=10.0,
    down_s=2.0,
    settle_s=5.0,
    drain_timeout_s=90.0,
)


@pytest.mark.integration
@pytest.mark.timeout(420)
async def test_every_fault_loses_and_duplicates_nothing_and_raises_no_alert(
    tmp_path: Path,
) -> None:
    report = await run_chaos(SHORT, tmp_path)

    table = "\n".join(f"{r}" for r in report.rows) + "\n" + "\n".join(figures(report))
    assert outcome_table(report).row_count == len(SHORT.faults) + 1, table
    assert [r.fault for r in report.rows] == ["steady (no fault)", *(f.value for f in Fault)]
    for row in report.rows:
        assert row.served > 0 and row.sent > 0, f"{row.fault}: the gateways kept reading\n{table}"
        assert row.stored + row.lost == row.sent, table
        assert row.lost == 0 and row.lost_messages == 0, f"{row.fault}: lost\n{table}"
        assert row.duplicated == 0, f"{row.fault}: stored twice\n{table}"
        assert row.alerts == 0, f"{row.fault}: alerts raised by the fault\n{table}"
    assert report.stored_twice == 0 and report.unmatched_readings == 0, table
    assert set(report.held_at_end.values()) == {0}, "every buffer drained at the end"
    assert report.undecodable == 0 and report.tap_errors == 0
    assert not report.rejections, f"nothing rejected: {report.rejections}"
    assert report.stepped_readings == 0, f"the agent held the clock step\n{table}"
    assert max(steps for steps, _ in report.clock_steps.values()) >= 2, report.clock_steps
    disk_full = next(r for r in report.rows if r.fault == Fault.DISK_FULL.value)
    assert "free after filling: 0 kB" in disk_full.notes, "the disk really was full"
