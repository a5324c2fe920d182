"""The alert store: findings open, update and resolve alerts; people acknowledge and resolve them.

Rules (cloud/alerts/README.md has the whole story):
- At most one unresolved alert per (device, detector, key): a partial unique index is the
  ON CONFLICT target, so two workers applying the same finding open one alert.
- Findings are ordered by `evaluated_at`, never by arrival: a finding not newer than the
  alert's `last_evaluated_at` changes nothing (applying the same finding twice is a no-op).
- An open finding updates the alert: occurrences + 1, evidence, summary and confidence
  refreshed, severity only escalates. A cleared finding resolves it (resolved_by "system").
- After a resolution, an open finding evaluated later opens a new alert; earlier ones are stale.
- Inside a maintenance window the alert is recorded with `suppression` saying why, and
  nothing is delivered. If the condition outlasts the window, the next finding delivers it.
- A historical finding (from a replayed backlog) is recorded with `suppression` saying so and
  never delivered: a backlog is not a live alarm. A later live finding delivers it.
- Notifications (opened, escalated, acknowledged, resolved) go to the outbox in the same
  transaction; receivers only hear about alerts they were told were opened.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import (
    ColumnElement,
    Connection,
    DateTime,
    Engine,
    bindparam,
    case,
    func,
    literal,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.sql.dml import ReturningInsert, ReturningUpdate

from cloud.alerts.maintenance import windows_between
from cloud.alerts.outbox import enqueue
from cloud.alerts.records import (
    SEVERITY_RANK,
    SYSTEM,
    Alert,
    AlertEvent,
    AlertStatus,
    MaintenanceWindow,
    alert_from_row,
    clean_evidence,
    explain,
    utc,
)
from cloud.alerts.signals import Finding, Severity
from cloud.schema import ACTIVE_ALERT_PREDICATE, alerts

TZ = DateTime(timezone=True)
SUMMARY_CHARS = 1000
_A = alerts.c
_SAME_ALERT = ("device", "detector", "key")


class AlertNotFoundError(LookupError):
    """No alert has this id."""


class AlertStateError(Exception):
    """The alert's status does not allow the action; `code` is the API's stable problem code."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code


@dataclass
class ApplyOutcome:
    """What one `apply` did, by alert id."""

    opened: list[int] = field(default_factory=list)
    updated: list[int] = field(default_factory=list)
    resolved: list[int] = field(default_factory=list)
    suppressed: list[int] = field(default_factory=list)
    ignored: int = 0
    notifications: int = 0


class AlertStore:
    """Alerts in the state store (blocking; the async side calls it in a worker thread)."""

    def __init__(self, engine: Engine, receivers: Sequence[str] = ()) -> None:
        self.engine = engine
        self.receivers = tuple(receivers)
        self._insert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert
        # Built once, values bound at execution: building them per finding (case(), excluded,
        # cache keys) was a tenth of an ingest worker's CPU (docs/ingestion.md, Throughput).
        self._upsert = _open_upsert(self._insert)
        self._notify_steps = _notify_steps()

    # --- findings -------------------------------------------------------------------------

    def apply(self, findings: Iterable[Finding], now: datetime | None = None) -> ApplyOutcome:
        """Open, update and resolve alerts from findings, in one transaction."""
        with self.engine.begin() as conn:
            return self.apply_in(conn, findings, now)

    def apply_in(
        self, conn: Connection, findings: Iterable[Finding], now: datetime | None = None
    ) -> ApplyOutcome:
        """As `apply`, in the caller's transaction (e.g. with the detector state it saves)."""
        now = utc(now or datetime.now(UTC))
        # per alert in evaluation order; across alerts in one global order, so two workers
        # applying overlapping batches lock rows in the same order (no deadlocks)
        ordered = sorted(findings, key=lambda f: (f.device, f.detector, f.key, utc(f.evaluated_at)))
        outcome = ApplyOutcome()
        opening = [f for f in ordered if f.state == "open"]
        times = [utc(f.evaluated_at) for f in opening]
        devices = {f.device for f in opening}
        windows = windows_between(conn, devices, min(times), max(times)) if opening else []
        resolved = _resolutions(conn, devices)
        for finding in ordered:
            if finding.state == "open":
                self._open(conn, finding, windows, now, outcome, resolved=resolved)
            else:
                self._clear(conn, finding, now, outcome, resolved=resolved)
        return outcome

    def _open(
        self, conn: Connection, finding: Finding, windows: Sequence[MaintenanceWindow],
        now: datetime, outcome: ApplyOutcome, *, resolved: Resolutions,
    ) -> None:  # fmt: skip
        evaluated = utc(finding.evaluated_at)
        latest = resolved.get((finding.device, finding.detector, finding.key))
        if latest is not None and latest >= evaluated:  # a resolution at or after it closed it
            outcome.ignored += 1
            return
        window = next((w for w in windows if w.covers(finding.device, evaluated)), None)
        values = _new_alert(finding, window, now)
        row = conn.execute(self._upsert, values).first()
        if row is None:
            outcome.ignored += 1
            return
        (outcome.opened if row.occurrences == 1 else outcome.updated).append(row.id)
        if window is not None or finding.historical:
            outcome.suppressed.append(row.id)
        if row.occurrences > 1:
            outcome.notifications += self._notify_if_due(conn, row.id, now)
        elif values["notified_rank"] and self.receivers:  # inserted announced: tell receivers
            alert = self._get(conn, row.id)
            outcome.notifications += enqueue(conn, alert, "opened", self.receivers, now)

    def _notify_if_due(self, conn: Connection, alert_id: int, now: datetime) -> int:
        """Queue "opened" or "escalated" when the alert is deliverable and not yet announced."""
        for event, stmt in self._notify_steps:
            row = conn.execute(stmt, {"alert_id": alert_id}).mappings().first()
            if row is not None:
                return enqueue(conn, alert_from_row(row), event, self.receivers, now)
        return 0

    def _clear(
        self, conn: Connection, finding: Finding, now: datetime, outcome: ApplyOutcome,
        *, resolved: Resolutions,
    ) -> None:  # fmt: skip
        evaluated = utc(finding.evaluated_at)
        note = explain(finding.summary, clean_evidence(finding.evidence))
        stmt = (
            update(alerts)
            .where(*(_A[name] == getattr(finding, name) for name in _SAME_ALERT))
            .where(_A.status != "resolved", _A.last_evaluated_at <= evaluated)
            .values(
                status="resolved",
                resolved_by=SYSTEM,
                resolved_at=now,
                resolve_note=note[:SUMMARY_CHARS],
                updated_at=now,
                last_evaluated_at=evaluated,
            )
            .returning(*alerts.c)
        )
        row = conn.execute(stmt).mappings().first()
        if row is None:
            outcome.ignored += 1
            return
        alert = alert_from_row(row)
        outcome.resolved.append(alert.id)
        same = (finding.device, finding.detector, finding.key)
        resolved[same] = max(evaluated, resolved.get(same, evaluated))
        if alert.delivered:
            outcome.notifications += enqueue(conn, alert, "resolved", self.receivers, now)

    # --- people ---------------------------------------------------------------------------

    def acknowledge(
        self, alert_id: int, by: str, note: str | None = None, now: datetime | None = None
    ) -> Alert:
        """A person takes an open alert: who and when; AlertStateError unless it is open."""
        now = utc(now or datetime.now(UTC))
        values = {"acknowledged_by": by, "acknowledged_at": now, "acknowledge_note": note}
        return self._by_person(alert_id, ("open",), "acknowledged", values, now)

    def resolve(
        self, alert_id: int, by: str, note: str | None = None, now: datetime | None = None
    ) -> Alert:
        """A person closes an alert; only findings evaluated after now can open a new one."""
        now = utc(now or datetime.now(UTC))
        later = case(
            (_A.last_evaluated_at > literal(now, TZ), _A.last_evaluated_at),
            else_=literal(now, TZ),
        )
        values = {
            "resolved_by": by,
            "resolved_at": now,
            "resolve_note": note,
            "last_evaluated_at": later,
        }
        return self._by_person(alert_id, ("open", "acknowledged"), "resolved", values, now)

    def _by_person(
        self,
        alert_id: int,
        allowed: tuple[AlertStatus, ...],
        status: Literal["acknowledged", "resolved"],
        values: dict[str, Any],
        now: datetime,
    ) -> Alert:
        stmt = (
            update(alerts)
            .where(_A.id == alert_id, _A.status.in_(allowed))
            .values(status=status, updated_at=now, **values)
            .returning(*alerts.c)
        )
        with self.engine.begin() as conn:
            row = conn.execute(stmt).mappings().first()
            if row is None:
                raise _refusal(self._get(conn, alert_id), status)
            alert = alert_from_row(row)
            if alert.delivered:
                enqueue(conn, alert, status, self.receivers, now)
        return alert

    # --- reads ----------------------------------------------------------------------------

    def get(self, alert_id: int) -> Alert:
        """One alert, or AlertNotFoundError."""
        with self.engine.connect() as conn:
            return self._get(conn, alert_id)

    def _get(self, conn: Connection, alert_id: int) -> Alert:
        row = conn.execute(select(alerts).where(_A.id == alert_id)).mappings().first()
        if row is None:
            raise AlertNotFoundError(f"no alert {alert_id}")
        return alert_from_row(row)

    def query(
        self,
        *,
        status: AlertStatus | None = None,
        severity: Severity | None = None,
        device: str | None = None,
        detector: str | None = None,
        before_id: int | None = None,
        limit: int = 100,
        devices: Collection[str] | None = None,
    ) -> list[Alert]:
        """Alerts newest first (by id, i.e. by opening), filtered; `before_id` pages on.

        `devices` limits them to those devices (a tenant's); None means every device.
        """
        stmt = select(alerts).order_by(_A.id.desc()).limit(limit)
        if devices is not None:
            stmt = stmt.where(_A.device.in_(sorted(devices)))
        for column, wanted in (
            (_A.status, status),
            (_A.severity, severity.value if severity else None),
            (_A.device, device),
            (_A.detector, detector),
        ):
            if wanted is not None:
                stmt = stmt.where(column == wanted)
        if before_id is not None:
            stmt = stmt.where(_A.id < before_id)
        with self.engine.connect() as conn:
            return [alert_from_row(r) for r in conn.execute(stmt).mappings()]


_REFRESHED = (
    "since",
    "updated_at",
    "last_evaluated_at",
    "summary",
    "evidence",
    "confidence",
    "magnitude",
    "suppressed_by",
    "suppression",
)


Resolutions = dict[tuple[str, str, str], datetime]  # (device, detector, key) -> latest

_RESOLVED = (
    select(_A.device, _A.detector, _A.key, func.max(_A.last_evaluated_at))
    .where(_A.status == "resolved", _A.device.in_(bindparam("devices", expanding=True)))
    .group_by(_A.device, _A.detector, _A.key)
)


def _resolutions(conn: Connection, devices: Collection[str]) -> Resolutions:
    """Per resolved alert of these devices its last evaluation (one query; `_clear` adds)."""
    if not devices:
        return {}
    rows = conn.execute(_RESOLVED, {"devices": sorted(devices)})
    return {(device, detector, key): utc(at) for device, detector, key, at in rows}


def _open_upsert(insert: Any) -> ReturningInsert[tuple[int, int]]:
    """Insert an alert, or refresh the active one of its (device, detector, key); id and count.

    The row's values are bound at execution (`_new_alert`).
    """
    stmt = insert(alerts)
    new = stmt.excluded
    escalates = new.severity_rank > _A.severity_rank
    upsert = stmt.on_conflict_do_update(
        index_elements=list(_SAME_ALERT),
        index_where=text(ACTIVE_ALERT_PREDICATE),
        set_={
            "severity": case((escalates, new.severity), else_=_A.severity),
            "severity_rank": case((escalates, new.severity_rank), else_=_A.severity_rank),
            **{name: new[name] for name in _REFRESHED},
            "occurrences": _A.occurrences + 1,
        },
        where=_A.last_evaluated_at < new.last_evaluated_at,
    )
    return upsert.returning(_A.id, _A.occurrences)  # type: ignore[no-any-return]


def _notify_steps() -> tuple[tuple[AlertEvent, ReturningUpdate[Any]], ...]:
    """Mark an alert announced, once per event it is due for (alert id bound at execution)."""
    deliverable = (_A.id == bindparam("alert_id")) & _A.suppression.is_(None)
    steps: tuple[tuple[AlertEvent, ColumnElement[bool]], ...] = (
        ("opened", _A.notified_rank == 0),
        ("escalated", (_A.notified_rank > 0) & (_A.notified_rank < _A.severity_rank)),
    )
    return tuple(
        (
            event,
            update(alerts)
            .where(deliverable & announced)
            .values(notified_rank=_A.severity_rank)
            .returning(*alerts.c),
        )
        for event, announced in steps
    )


def _new_alert(finding: Finding, window: MaintenanceWindow | None, now: datetime) -> dict[str, Any]:
    """The alerts row an open finding inserts (announced unless suppressed), or refreshes."""
    suppression = window.suppression() if window else _replayed(finding)
    return {
        "device": finding.device,
        "detector": finding.detector,
        "key": finding.key,
        "severity": finding.severity.value,
        "severity_rank": SEVERITY_RANK[finding.severity],
        "status": "open",
        "since": utc(finding.since),
        "opened_at": now,
        "updated_at": now,
        "last_evaluated_at": utc(finding.evaluated_at),
        "summary": finding.summary[:SUMMARY_CHARS],
        "evidence": clean_evidence(finding.evidence),
        "confidence": finding.confidence,
        "magnitude": finding.magnitude,
        "occurrences": 1,
        "notified_rank": 0 if suppression else SEVERITY_RANK[finding.severity],  # announced
        "suppressed_by": window.id if window else None,
        "suppression": suppression,
    }


def _replayed(finding: Finding) -> str | None:
    """Why a finding from replayed (historical) data is recorded but not announced."""
    if not finding.historical:
        return None
    return (
        f"found in replayed data (evaluated {utc(finding.evaluated_at).isoformat()}): "
        "recorded, not announced as a live alarm"
    )


def _refusal(alert: Alert, wanted: AlertStatus) -> AlertStateError:
    if alert.status == "resolved":
        return AlertStateError(
            "alert_already_resolved",
            f"alert {alert.id} was resolved by {alert.resolved_by} at "
            f"{alert.resolved_at.isoformat() if alert.resolved_at else 'an unknown time'}",
        )
    return AlertStateError(
        "alert_already_acknowledged",
        f"alert {alert.id} was acknowledged by {alert.acknowledged_by} at "
        f"{alert.acknowledged_at.isoformat() if alert.acknowledged_at else 'an unknown time'}"
        f" and cannot be {wanted} again",
    )
