"""Alerts: list and read them (with their evidence), acknowledge, resolve, delivery dead letters."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field, StringConstraints

from cloud.alerts.outbox import DeadLetterNotFoundError, Outbox
from cloud.alerts.receivers import MQTT_RECEIVER, receiver_ids, redact, webhook_id
from cloud.alerts.records import Alert, DeadLetter, Delivery
from cloud.alerts.signals import EvidenceValue, Severity
from cloud.alerts.store import AlertNotFoundError, AlertStateError, AlertStore
from cloud.api.deps import (
    ActOnAlerts,
    CallerDep,
    DeviceScope,
    OperateDeliveries,
    ReadAlerts,
    ReadOperations,
    ServicesDep,
    access_store,
    visible_devices,
)
from cloud.api.problems import Problem
from leasewatch.wire import DeviceId

router = APIRouter(prefix="/v1/alerts", tags=["alerts"], dependencies=[DeviceScope])

Person = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]
Note = Annotated[str, StringConstraints(max_length=1000)]
DetectorName = Annotated[str, StringConstraints(min_length=1, max_length=64)]


def get_alert_store(services: ServicesDep) -> AlertStore:
    """The alert store on the state store's engine, writing events for configured receivers."""
    return AlertStore(services.state.engine, receiver_ids(services.settings))


def get_outbox(services: ServicesDep) -> Outbox:
    """The notification outbox on the state store's engine."""
    return Outbox(services.state.engine)


AlertStoreDep = Annotated[AlertStore, Depends(get_alert_store)]


def get_visible(services: ServicesDep, caller: CallerDep) -> frozenset[str] | None:
    """The devices whose alerts the caller may see (its tenant's); None: every device."""
    visible = visible_devices(services, caller)
    return None if visible is None else frozenset(visible)


VisibleDep = Annotated[frozenset[str] | None, Depends(get_visible)]


def scoped_alert(
    services: ServicesDep, store: AlertStoreDep, caller: CallerDep, alert_id: int
) -> Alert:
    """The path's alert, or 404 alert_not_found when it is unknown or another tenant's."""
    try:
        alert = store.get(alert_id)
    except AlertNotFoundError as err:
        raise Problem(404, "alert_not_found", str(err)) from err
    if caller.tenant is not None and access_store(services).device_tenant(alert.device) != (
        caller.tenant
    ):
        raise Problem(404, "alert_not_found", f"no alert {alert_id}")
    return alert


ScopedAlertDep = Annotated[Alert, Depends(scoped_alert)]


OutboxDep = Annotated[Outbox, Depends(get_outbox)]


class AlertPublic(BaseModel):
    """An alert: what was found, since when, why (summary and evidence), and its lifecycle."""

    id: int
    device: str
    detector: str
    key: str
    severity: Severity
    status: Literal["open", "acknowledged", "resolved"]
    since: datetime
    opened_at: datetime
    updated_at: datetime
    last_evaluated_at: datetime
    summary: str
    evidence: dict[str, EvidenceValue]
    explanation: str = Field(description="The summary followed by the evidence numbers")
    confidence: float
    magnitude: float | None
    occurrences: int
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    acknowledge_note: str | None
    resolved_by: str | None = Field(description='A person, or "system" when the detector cleared')
    resolved_at: datetime | None
    resolve_note: str | None
    suppressed: bool = Field(description="Raised during planned maintenance: not delivered")
    suppressed_by_window: int | None
    suppression: str | None


class AlertPage(BaseModel):
    """Alerts newest first; pass `next_before` as `before` for the next page."""

    alerts: list[AlertPublic]
    next_before: int | None


class PersonAction(BaseModel):
    """Who acknowledges or resolves an alert, and why."""

    by: Person
    note: Note | None = None


class DeliveryPublic(BaseModel):
    """One notification of an alert event to one receiver."""

    id: int
    alert_id: int
    event: str
    receiver: str
    idempotency_key: str
    status: str
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


class DeadLetterPublic(BaseModel):
    """A notification that failed on its last attempt."""

    id: int
    delivery_id: int
    alert_id: int
    event: str
    receiver: str
    idempotency_key: str
    attempts: int
    last_error: str
    failed_at: datetime


def _public(alert: Alert) -> AlertPublic:
    return AlertPublic.model_validate(alert.document())


def _targets(services: ServicesDep) -> dict[str, str]:
    targets = {webhook_id(url): redact(url) for url in services.settings.alert_webhook_urls}
    return {**targets, MQTT_RECEIVER: "mqtt"}


def _delivery(delivery: Delivery, targets: dict[str, str]) -> DeliveryPublic:
    return DeliveryPublic(
        id=delivery.id,
        alert_id=delivery.alert_id,
        event=delivery.event,
        receiver=targets.get(delivery.receiver, delivery.receiver),
        idempotency_key=delivery.idempotency_key,
        status=delivery.status,
        attempts=delivery.attempts,
        next_attempt_at=delivery.next_attempt_at,
        last_error=delivery.last_error,
        created_at=delivery.created_at,
        delivered_at=delivery.delivered_at,
    )


def _dead_letter(letter: DeadLetter, targets: dict[str, str]) -> DeadLetterPublic:
    return DeadLetterPublic(
        id=letter.id,
        delivery_id=letter.delivery_id,
        alert_id=letter.alert_id,
        event=letter.event,
        receiver=targets.get(letter.receiver, letter.receiver),
        idempotency_key=letter.idempotency_key,
        attempts=letter.attempts,
        last_error=letter.last_error,
        failed_at=letter.failed_at,
    )


@router.get("", response_model=AlertPage, dependencies=[ReadAlerts])
def list_alerts(
    store: AlertStoreDep,
    visible: VisibleDep,
    *,
    status: Literal["open", "acknowledged", "resolved"] | None = None,
    severity: Severity | None = None,
    device: DeviceId | None = None,
    detector: DetectorName | None = None,
    before: Annotated[int | None, Query(ge=1, description="Alerts with smaller ids")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> AlertPage:
    """Alerts newest first, filtered by status, severity, device and detector."""
    found = store.query(
        status=status,
        severity=severity,
        device=device,
        detector=detector,
        before_id=before,
        limit=limit,
        devices=visible,
    )
    next_before = found[-1].id if len(found) == limit else None
    return AlertPage(alerts=[_public(a) for a in found], next_before=next_before)


@router.get(
    "/deliveries/failed",
    response_model=list[DeadLetterPublic],
    dependencies=[ReadOperations],
)
def failed_deliveries(
    services: ServicesDep,
    outbox: OutboxDep,
    before: Annotated[int | None, Query(ge=1)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[DeadLetterPublic]:
    """Notifications that failed on their last attempt (dead letters), newest first."""
    targets = _targets(services)
    return [_dead_letter(d, targets) for d in outbox.dead_letters(before_id=before, limit=limit)]


@router.post(
    "/deliveries/failed/{dead_letter_id}/retry",
    response_model=DeliveryPublic,
    dependencies=[OperateDeliveries],
)
def retry_failed_delivery(
    services: ServicesDep, outbox: OutboxDep, dead_letter_id: int
) -> DeliveryPublic:
    """Send a dead-lettered notification again (same body and idempotency key)."""
    try:
        delivery = outbox.retry_dead_letter(dead_letter_id, datetime.now(UTC))
    except DeadLetterNotFoundError as err:
        raise Problem(404, "dead_letter_not_found", str(err)) from err
    return _delivery(delivery, _targets(services))


@router.get("/{alert_id}", response_model=AlertPublic, dependencies=[ReadAlerts])
def get_alert(alert: ScopedAlertDep) -> AlertPublic:
    """One alert with its summary, evidence and lifecycle."""
    return _public(alert)


@router.get(
    "/{alert_id}/deliveries", response_model=list[DeliveryPublic], dependencies=[ReadAlerts]
)
def alert_deliveries(
    services: ServicesDep, outbox: OutboxDep, alert: ScopedAlertDep
) -> list[DeliveryPublic]:
    """Every notification of one alert and where it stands."""
    targets = _targets(services)
    return [_delivery(d, targets) for d in outbox.deliveries(alert.id)]


def _act(store: AlertStore, alert_id: int, action: str, body: PersonAction) -> AlertPublic:
    act = store.acknowledge if action == "acknowledge" else store.resolve
    try:
        return _public(act(alert_id, body.by, body.note))
    except AlertNotFoundError as err:
        raise Problem(404, "alert_not_found", str(err)) from err
    except AlertStateError as err:
        raise Problem(409, err.code, str(err)) from err


@router.post("/{alert_id}/acknowledge", response_model=AlertPublic, dependencies=[ActOnAlerts])
def acknowledge_alert(
    store: AlertStoreDep, alert: ScopedAlertDep, body: PersonAction
) -> AlertPublic:
    """A person takes an open alert (409 alert_already_acknowledged or _resolved otherwise)."""
    return _act(store, alert.id, "acknowledge", body)


@router.post("/{alert_id}/resolve", response_model=AlertPublic, dependencies=[ActOnAlerts])
def resolve_alert(store: AlertStoreDep, alert: ScopedAlertDep, body: PersonAction) -> AlertPublic:
    """A person closes an alert (409 alert_already_resolved if it is closed already)."""
    return _act(store, alert.id, "resolve", body)
