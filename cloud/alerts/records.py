"""What the alert store hands out: alerts, maintenance windows, deliveries and dead letters.

`Alert.document()` is the one public form of an alert: the API answers it and every webhook
and MQTT event carries it, so a receiver sees the same summary and evidence as a person does.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, cast

from cloud.alerts.signals import EvidenceValue, Severity

AlertStatus = Literal["open", "acknowledged", "resolved"]
AlertEvent = Literal["opened", "escalated", "acknowledged", "resolved"]
DeliveryStatus = Literal["pending", "delivered", "dead"]

SEVERITY_RANK: Mapping[Severity, int] = {
    Severity.INFO: 1,
    Severity.WARNING: 2,
    Severity.CRITICAL: 3,
}
SYSTEM = "system"  # resolved_by when a cleared Finding resolved the alert
EVENT_SCHEMA = "leasewatch.alert-event/v1"


def utc(value: datetime) -> datetime:
    """The same instant in UTC; naive values (SQLite gives them back) are taken as UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _utc_or_none(value: datetime | None) -> datetime | None:
    return None if value is None else utc(value)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else utc(value).isoformat()


def clean_evidence(evidence: Mapping[str, EvidenceValue]) -> dict[str, EvidenceValue]:
    """Evidence that JSON can hold: non-finite numbers (NaN, inf) become None (missing)."""
    return {
        str(k): None if isinstance(v, float) and not math.isfinite(v) else v
        for k, v in evidence.items()
    }


def _number(value: EvidenceValue) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return "missing" if value is None else str(value)


def explain(summary: str, evidence: Mapping[str, EvidenceValue]) -> str:
    """A summary followed by its evidence numbers, in one line of text."""
    if not evidence:
        return summary
    numbers = ", ".join(f"{k}={_number(v)}" for k, v in evidence.items())
    return f"{summary} Evidence: {numbers}."


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert: the condition a detector found, its lifecycle, and why it was raised."""

    id: int
    device: str
    detector: str
    key: str
    severity: Severity
    status: AlertStatus
    since: datetime
    opened_at: datetime
    updated_at: datetime
    last_evaluated_at: datetime
    summary: str
    evidence: dict[str, EvidenceValue]
    confidence: float
    magnitude: float | None
    occurrences: int
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    acknowledge_note: str | None
    resolved_by: str | None
    resolved_at: datetime | None
    resolve_note: str | None
    suppressed_by: int | None
    suppression: str | None
    delivered: bool

    def explanation(self) -> str:
        """The summary in words followed by the evidence numbers."""
        return explain(self.summary, self.evidence)

    def document(self) -> dict[str, Any]:
        """The public JSON form of the alert (API responses and notification payloads)."""
        return {
            "id": self.id,
            "device": self.device,
            "detector": self.detector,
            "key": self.key,
            "severity": self.severity.value,
            "status": self.status,
            "since": _iso(self.since),
            "opened_at": _iso(self.opened_at),
            "updated_at": _iso(self.updated_at),
            "last_evaluated_at": _iso(self.last_evaluated_at),
            "summary": self.summary,
            "evidence": self.evidence,
            "explanation": self.explanation(),
            "confidence": self.confidence,
            "magnitude": self.magnitude,
            "occurrences": self.occurrences,
            "acknowledged_by": self.acknowledged_by,
            "acknowledged_at": _iso(self.acknowledged_at),
            "acknowledge_note": self.acknowledge_note,
            "resolved_by": self.resolved_by,
            "resolved_at": _iso(self.resolved_at),
            "resolve_note": self.resolve_note,
            "suppressed": self.suppression is not None,
            "suppressed_by_window": self.suppressed_by,
            "suppression": self.suppression,
        }


def alert_from_row(row: Mapping[Any, Any]) -> Alert:
    """An Alert from a row of the alerts table."""
    return Alert(
        id=int(row["id"]),
        device=row["device"],
        detector=row["detector"],
        key=row["key"],
        severity=Severity(row["severity"]),
        status=cast("AlertStatus", row["status"]),
        since=utc(row["since"]),
        opened_at=utc(row["opened_at"]),
        updated_at=utc(row["updated_at"]),
        last_evaluated_at=utc(row["last_evaluated_at"]),
        summary=row["summary"],
        evidence=dict(row["evidence"] or {}),
        confidence=float(row["confidence"]),
        magnitude=row["magnitude"],
        occurrences=int(row["occurrences"]),
        acknowledged_by=row["acknowledged_by"],
        acknowledged_at=_utc_or_none(row["acknowledged_at"]),
        acknowledge_note=row["acknowledge_note"],
        resolved_by=row["resolved_by"],
        resolved_at=_utc_or_none(row["resolved_at"]),
        resolve_note=row["resolve_note"],
        suppressed_by=row["suppressed_by"],
        suppression=row["suppression"],
        delivered=int(row["notified_rank"]) > 0,
    )


def _headline(alert: Alert, event: AlertEvent) -> str:
    what = {
        "opened": "opened",
        "escalated": f"escalated to {alert.severity.value}",
        "acknowledged": f"acknowledged by {alert.acknowledged_by}",
        "resolved": f"resolved by {alert.resolved_by}",
    }[event]
    where = f"{alert.device} {alert.detector}/{alert.key}"
    return f"[{alert.severity.value.upper()}] {where} {what}: {alert.explanation()}"


def event_payload(alert: Alert, event: AlertEvent, idempotency_key: str, at: datetime) -> str:
    """The JSON body of one notification; stored in the outbox so every retry sends these bytes."""
    document = {
        "schema": EVENT_SCHEMA,
        "event": event,
        "idempotency_key": idempotency_key,
        "occurred_at": _iso(at),
        "text": _headline(alert, event),
        "alert": alert.document(),
    }
    return json.dumps(document, separators=(",", ":"), sort_keys=True, allow_nan=False)


@dataclass(frozen=True, slots=True)
class MaintenanceWindow:
    """Planned maintenance: findings on the device (or every device) in [starts_at, ends_at)."""

    id: int
    device: str | None
    starts_at: datetime
    ends_at: datetime
    reason: str
    created_by: str
    created_at: datetime

    def covers(self, device: str, at: datetime) -> bool:
        """Whether a finding on `device` evaluated at `at` falls in this window."""
        return self.device in (None, device) and self.starts_at <= utc(at) < self.ends_at

    def suppression(self) -> str:
        """Why an alert in this window was not delivered, in words."""
        scope = self.device or "all devices"
        return (
            f"Suppressed by planned maintenance window {self.id} ({scope}, "
            f"{_iso(self.starts_at)} to {_iso(self.ends_at)}, set by {self.created_by}): "
            f"{self.reason}"
        )


def window_from_row(row: Mapping[Any, Any]) -> MaintenanceWindow:
    """A MaintenanceWindow from a row of the maintenance_windows table."""
    return MaintenanceWindow(
        id=int(row["id"]),
        device=row["device"],
        starts_at=utc(row["starts_at"]),
        ends_at=utc(row["ends_at"]),
        reason=row["reason"],
        created_by=row["created_by"],
        created_at=utc(row["created_at"]),
    )


@dataclass(frozen=True, slots=True)
class Delivery:
    """One notification of one alert event to one receiver (a row of the outbox)."""

    id: int
    alert_id: int
    event: AlertEvent
    receiver: str
    idempotency_key: str
    payload: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


def delivery_from_row(row: Mapping[Any, Any]) -> Delivery:
    """A Delivery from a row of the alert_deliveries table."""
    return Delivery(
        id=int(row["id"]),
        alert_id=int(row["alert_id"]),
        event=cast("AlertEvent", row["event"]),
        receiver=row["receiver"],
        idempotency_key=row["idempotency_key"],
        payload=row["payload"],
        status=cast("DeliveryStatus", row["status"]),
        attempts=int(row["attempts"]),
        next_attempt_at=utc(row["next_attempt_at"]),
        last_error=row["last_error"],
        created_at=utc(row["created_at"]),
        delivered_at=_utc_or_none(row["delivered_at"]),
    )


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A delivery that failed on its last attempt; kept until an operator retries it."""

    id: int
    delivery_id: int
    alert_id: int
    event: AlertEvent
    receiver: str
    idempotency_key: str
    attempts: int
    last_error: str
    failed_at: datetime


def dead_letter_from_row(row: Mapping[Any, Any]) -> DeadLetter:
    """A DeadLetter from a row of the alert_dead_letters table."""
    return DeadLetter(
        id=int(row["id"]),
        delivery_id=int(row["delivery_id"]),
        alert_id=int(row["alert_id"]),
        event=cast("AlertEvent", row["event"]),
        receiver=row["receiver"],
        idempotency_key=row["idempotency_key"],
        attempts=int(row["attempts"]),
        last_error=row["last_error"],
        failed_at=utc(row["failed_at"]),
    )
