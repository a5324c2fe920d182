"""The chaos run's summary: a table of faults x outcome, and the figures behind it."""

from __future__ import annotations

from rich.table import Table

from leasewatch.chaos.accounting import FaultOutcome
from leasewatch.chaos.run import ChaosReport

NO_DETECTION = "not measured (no detection worker)"


def _alerts(row: FaultOutcome) -> str:
    if row.alerts is None:
        return NO_DETECTION
    if not row.alerts:
        return "0"
    return f"{row.alerts}: " + ", ".join(sorted(set(row.alert_detail)))


def _lost(row: FaultOutcome) -> str:
    causes = []
    if row.lost_resubscribing:
        causes.append(f"{row.lost_resubscribing} sent while ingestors resubscribed")
    if row.lost_rejected:
        causes.append(f"{row.lost_rejected} rejected by the ingestor")
    return f"{row.lost} ({'; '.join(causes)})" if causes else str(row.lost)


def outcome_table(report: ChaosReport) -> Table:
    """Faults x outcome (readings by their poll time; messages by (device, boot, seq))."""
    table = Table(title=f"leasewatch chaos ({report.run_s:.0f} s)")
    for name in (
        "fault", "served", "not taken: kill -9", "not taken: other", "sent", "stored", "lost",
        "duplicated", "messages sent/lost/re-sent", "alerts raised", "what was done",
    ):  # fmt: skip
        table.add_column(name)
    for row in report.rows:
        table.add_row(
            row.fault, str(row.served), str(row.not_taken_killed), str(row.not_taken_other),
            str(row.sent), str(row.stored), _lost(row), str(row.duplicated),
            f"{row.sent_messages}/{row.lost_messages}/{row.resent_messages}",
            _alerts(row), row.notes,
        )  # fmt: skip
    return table


def figures(report: ChaosReport) -> list[str]:
    """The figures behind the table, one sentence each."""
    return [
        f"readings still held in gateway buffers at the end: {report.held_at_end}",
        f"re-deliveries the ledger recognised and dropped: {report.redeliveries}",
        f"rejections by reason: {report.rejections or 'none'}"
        f" (dead letters not readable as telemetry: {report.unreadable_dead_letters})",
        f"ledger readings beyond the distinct stored readings: {report.stored_twice}",
        f"sent readings matching no served poll: {report.unmatched_readings}",
        f"sent readings stamped on a stepped gateway clock: {report.stepped_readings}"
        f" (clock steps seen, held seconds, per gateway's newest health report:"
        f" {report.clock_steps})",
        f"undecodable publishes: {report.undecodable}; tap errors: {report.tap_errors}",
        f"evicted or dropped at the edge (newest health report): {report.evicted_or_dropped}",
    ]
