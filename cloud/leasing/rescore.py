"""Rescore leases as data arrives: record band changes, enqueue the credit-system webhooks.

Every `risk_rescore_interval_s` the task picks the active leases whose inputs changed since
its last pass (a gateway on the lease sent data, an alert on it changed, the lease itself was
edited) and those whose newest score is older than `risk_rescore_max_age_s` (silence grows
with time alone), scores them in chunks, and for each lease whose band moved writes the new
band, a `band_changes` row, the score's audit row (`risk_scores`, purpose `band_change`: the
webhook serves a score) and one outbox notification per credit-system URL in one
transaction. The band update is conditional on the band it replaces, so two workers
rescoring the same lease record one change, not two. A lease's first score sets its band silently.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import Connection, Engine, insert, or_, select, update
from sqlalchemy.exc import SQLAlchemyError

from cloud.leasing.assessment import (
    Assessment,
    LeaseAssessment,
    RiskAssessor,
    reasons_document,
    record_score,
)
from cloud.leasing.assessment import signals_document as _signals_document
from cloud.leasing.store import lease_from_row
from cloud.leasing.tables import assets, band_changes, lease_bands, leases
from cloud.leasing.webhooks import credit_receiver_ids, enqueue_band_change, open_credit_delivery
from cloud.risk.model import Band
from cloud.risk.rules import ScoringRules, load_rules
from cloud.schema import alerts, devices
from cloud.settings import CloudSettings

log = structlog.get_logger(__name__)
CHUNK = 200
RESCORER = "rescoring"  # the audit trail's caller of a score sent with a band change
BAND_CHANGE_PURPOSE = "band_change"


@dataclass
class RescoreCounts:
    """What one pass did."""

    scored: int = 0
    changed: int = 0
    worsened: int = 0


def fingerprint(assessed: LeaseAssessment) -> str:
    """A digest of the signals that do not move with the clock alone."""
    signals = _signals_document(assessed.signals)
    for moving in ("as_of", "lease_age_days", "days_silent"):
        signals.pop(moving, None)
    text = json.dumps(signals, sort_keys=True) + assessed.score.model_version
    return hashlib.sha256(text.encode()).hexdigest()


class Rescorer:
    """Finds leases to rescore, scores them, and records band changes with their webhooks."""

    def __init__(self, engine: Engine, rules: ScoringRules, receivers: Sequence[str]) -> None:
        self.assessor = RiskAssessor(engine, rules)
        self.engine = engine
        self.receivers = tuple(receivers)

    def due(self, changed_since: datetime | None, stale_before: datetime) -> list[str]:
        """Active leases with new inputs since `changed_since` (None: all) or a stale score."""
        lc, ac, bc = leases.c, assets.c, lease_bands.c
        active = select(lc.lease_id).where(lc.status == "active")
        if changed_since is None:
            query = active
        else:
            fresh_device = select(ac.lease_id).join(devices, devices.c.device == ac.device)
            fresh_device = fresh_device.where(devices.c.last_message_at > changed_since)
            fresh_alert = select(ac.lease_id).join(alerts, alerts.c.device == ac.device)
            fresh_alert = fresh_alert.where(alerts.c.updated_at > changed_since)
            stale = select(bc.lease_id).where(bc.scored_at < stale_before)
            scored = select(bc.lease_id)
            query = active.where(
                or_(
                    lc.updated_at > changed_since, lc.lease_id.in_(fresh_device),
                    lc.lease_id.in_(fresh_alert), lc.lease_id.in_(stale),
                    lc.lease_id.not_in(scored),
                )
            )  # fmt: skip
        with self.engine.connect() as conn:
            return [row[0] for row in conn.execute(query.order_by(lc.lease_id))]

    def rescore(self, lease_ids: Sequence[str], now: datetime) -> RescoreCounts:
        """Score these leases as of now; record band changes and enqueue their webhooks."""
        counts = RescoreCounts()
        for start in range(0, len(lease_ids), CHUNK):
            chunk = list(lease_ids[start : start + CHUNK])
            with self.engine.connect() as conn:
                rows = conn.execute(select(leases).where(leases.c.lease_id.in_(chunk))).mappings()
                found = [lease_from_row(r) for r in rows]
                scored = self.assessor.score_leases(conn, found, now)
            for assessed in scored:
                counts.scored += 1
                with self.engine.begin() as conn:
                    change = self._apply(conn, assessed, now)
                if change is not None:
                    counts.changed += 1
                    counts.worsened += int(change["worsened"])
        return counts

    def _apply(
        self, conn: Connection, assessed: LeaseAssessment, now: datetime
    ) -> dict[str, Any] | None:
        score, lease_id = assessed.score, assessed.signals.lease_id
        values = {
            "lessee_id": assessed.signals.lessee_id, "band": str(score.band),
            "score": score.score, "as_of": score.as_of, "fingerprint": fingerprint(assessed),
            "model_version": score.model_version, "scored_at": now,
        }  # fmt: skip
        b = lease_bands.c
        current = conn.execute(select(b.band, b.score).where(b.lease_id == lease_id)).first()
        if current is None:
            conn.execute(insert(lease_bands).values(lease_id=lease_id, **values))
            return None
        moved = conn.execute(
            update(lease_bands)
            .where(b.lease_id == lease_id, b.band == current.band)
            .values(**values)
            .returning(b.lease_id)
        ).first()
        if moved is None or current.band == values["band"]:
            return None
        return self._record_change(conn, assessed, current.band, current.score, now)

    def _record_change(
        self, conn: Connection, assessed: LeaseAssessment, old: str, old_score: float,
        now: datetime,
    ) -> dict[str, Any]:  # fmt: skip
        score = assessed.score
        change: dict[str, Any] = {
            "lease_id": assessed.signals.lease_id, "lessee_id": assessed.signals.lessee_id,
            "from_band": old, "to_band": str(score.band), "from_score": old_score,
            "to_score": score.score, "worsened": score.band.rank > Band(old).rank,
            "as_of": score.as_of, "recorded_at": now,
            "reasons": reasons_document(score.reasons), "model_version": score.model_version,
        }  # fmt: skip
        change["id"] = conn.execute(
            insert(band_changes).values(**change).returning(band_changes.c.id)
        ).scalar_one()
        served = Assessment(assessed.signals.lessee_id, assessed.signals.lease_id, score,
                            (assessed,))  # fmt: skip
        audit_id = record_score(conn, served, RESCORER, BAND_CHANGE_PURPOSE, now)
        published = change | {
            "as_of": score.as_of.isoformat(), "recorded_at": now.isoformat(), "audit_id": audit_id,
        }  # fmt: skip
        enqueue_band_change(conn, published, self.receivers, now)
        return change


async def run_rescoring(settings: CloudSettings, engine: Engine, stop: asyncio.Event) -> None:
    """Rescore changed leases every interval and deliver band-change webhooks, until stopped."""
    if settings.risk_rescore_interval_s <= 0:
        log.info("lease rescoring is off (risk_rescore_interval_s = 0)")
        return
    rules = load_rules(settings.risk_rules_file)
    rescorer = Rescorer(engine, rules, credit_receiver_ids(settings))
    async with open_credit_delivery(settings, engine) as delivery, asyncio.TaskGroup() as group:
        group.create_task(delivery.run(stop))
        await _rescore_loop(rescorer, settings, stop, delivery.wake)


async def _rescore_loop(
    rescorer: Rescorer, settings: CloudSettings, stop: asyncio.Event, wake: Any
) -> None:
    since: datetime | None = None
    max_age = timedelta(seconds=settings.risk_rescore_max_age_s)
    while not stop.is_set():
        started = datetime.now(UTC)
        try:
            due = await asyncio.to_thread(rescorer.due, since, started - max_age)
            counts = await asyncio.to_thread(rescorer.rescore, due, started)
        except SQLAlchemyError as err:
            log.warning("lease rescoring failed, retrying next interval", error=str(err))
        else:
            since = started
            if counts.changed:
                wake()
                log.info("leases rescored", **vars(counts))
        try:
            await asyncio.wait_for(stop.wait(), timeout=settings.risk_rescore_interval_s)
        except TimeoutError:
            continue
