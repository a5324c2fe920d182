"""Score a lease or a lessee as of a time, and write every score served to the audit trail.

The scoring itself is the risk engine's (`cloud.risk.scoring`); this module reads the leases,
computes their signals (`cloud.leasing.signals`) and records what was served: subject, as-of,
score, band, reasons, model version, the inputs, when, to whom and why.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, insert, select

from cloud.leasing.asset_signals import AssetSignals, asset_signals
from cloud.leasing.models import Lease, LeaseStatus
from cloud.leasing.signals import lease_signals, read_lease_data
from cloud.leasing.store import LeasingStore, NotFoundError, lease_from_row
from cloud.leasing.tables import leases, risk_scores
from cloud.risk.model import LeaseSignals, Reason, RiskScore
from cloud.risk.rules import ScoringRules
from cloud.risk.scoring import score_lease, score_lessee

SCORED_STATUSES: tuple[LeaseStatus, ...] = ("active",)
#: Statements every check runs, built once (their values bound per check).
_LEASE = select(leases).where(leases.c.lease_id == bindparam("lease_id"))
_AUDIT = insert(risk_scores).returning(risk_scores.c.id)


@dataclass(frozen=True, slots=True)
class LeaseAssessment:
    """One lease's signals and score."""

    signals: LeaseSignals
    score: RiskScore
    devices: tuple[str, ...]
    assets: tuple[AssetSignals, ...] = ()  # each gateway's own figures


@dataclass(frozen=True, slots=True)
class Assessment:
    """A served score: of one lease, or of a lessee over its active leases."""

    lessee_id: str
    lease_id: str | None
    score: RiskScore
    leases: tuple[LeaseAssessment, ...]


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def signals_document(signals: LeaseSignals) -> dict[str, Any]:
    """The signals as JSON-ready data."""
    document: dict[str, Any] = _plain(dataclasses.asdict(signals))
    return document


def reasons_document(reasons: Sequence[Reason]) -> list[dict[str, Any]]:
    """Reasons as JSON-ready data, highest contribution first."""
    return [
        {"code": r.code, "points": r.points, "summary": r.summary, "evidence": dict(r.evidence)}
        for r in reasons
    ]


def inputs_document(assessment: Assessment) -> dict[str, Any]:
    """What the score was computed from, for the audit trail."""
    return {
        "leases": [
            {
                "lease_id": a.signals.lease_id,
                "devices": list(a.devices),
                "score": a.score.score,
                "band": str(a.score.band),
                "signals": signals_document(a.signals),
                "assets": [_plain(dataclasses.asdict(asset)) for asset in a.assets],
            }
            for a in assessment.leases
        ]
    }


class RiskAssessor:
    """Scores leases and lessees with one rule set; records what it serves."""

    def __init__(self, engine: Engine, rules: ScoringRules) -> None:
        self.engine = engine
        self.rules = rules
        self.store = LeasingStore(engine)
        self.per_tenant = rules.peers.scope == "tenant"
        self.holidays = rules.holidays.resolver()

    def score_leases(
        self, conn: Connection, leases: Sequence[Lease], as_of: datetime
    ) -> list[LeaseAssessment]:
        """Signals and scores of these leases (four queries for all of them)."""
        return [
            LeaseAssessment(signals, score_lease(signals, self.rules), data.devices,
                            asset_signals(data, as_of))
            for data in read_lease_data(
                conn, leases, as_of, per_tenant=self.per_tenant, holidays=self.holidays
            )
            for signals in [lease_signals(data, as_of)]
        ]  # fmt: skip

    def lease(self, conn: Connection, lease_id: str, as_of: datetime) -> Assessment:
        """The score of one lease (NotFoundError when unknown)."""
        row = conn.execute(_LEASE, {"lease_id": lease_id}).first()
        if row is None:
            raise NotFoundError("lease", lease_id)
        lease = lease_from_row(row._mapping)
        (assessed,) = self.score_leases(conn, [lease], as_of)
        return Assessment(lease.lessee_id, lease_id, assessed.score, (assessed,))

    def lessee(self, conn: Connection, lessee_id: str, as_of: datetime) -> Assessment:
        """The score of a lessee over its active leases (NotFoundError when unknown)."""
        if not self.store.lessee_exists(conn, lessee_id):
            raise NotFoundError("lessee", lessee_id)
        query = select(leases).where(
            leases.c.lessee_id == lessee_id, leases.c.status.in_(SCORED_STATUSES)
        )
        found = [lease_from_row(r) for r in conn.execute(query.order_by(leases.c.lease_id))
                 .mappings()]  # fmt: skip
        assessed = self.score_leases(conn, found, as_of)
        score = score_lessee(lessee_id, [a.score for a in assessed], self.rules, as_of)
        return Assessment(lessee_id, None, score, tuple(assessed))

    def serve(
        self, subject: tuple[str, str], as_of: datetime, *, caller: str, purpose: str,
        served_at: datetime,
    ) -> tuple[Assessment, int]:  # fmt: skip
        """Score ("lease" | "lessee", id) and record it in the audit before answering.

        In autocommit: under READ COMMITTED a transaction gives the reads no common snapshot
        anyway, and the audit row is one statement (atomic alone); so no BEGIN and no COMMIT
        round trips, two of a check's ten on PostgreSQL. The row is committed on return.
        """
        kind, key = subject
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            assessment = (self.lease if kind == "lease" else self.lessee)(conn, key, as_of)
            return assessment, record_score(conn, assessment, caller, purpose, served_at)


def record_score(
    conn: Connection, assessment: Assessment, caller: str, purpose: str, served_at: datetime
) -> int:
    """Insert one audit row in the caller's transaction."""
    score = assessment.score
    row = conn.execute(
        _AUDIT,
        {
            "subject": score.subject,
            "lessee_id": assessment.lessee_id,
            "lease_id": assessment.lease_id,
            "as_of": score.as_of,
            "score": score.score,
            "band": str(score.band),
            "reasons": reasons_document(score.reasons),
            "model_version": score.model_version,
            "inputs": inputs_document(assessment),
            "data_completeness": score.data_completeness,
            "served_at": served_at,
            "caller": caller[:128],
            "purpose": purpose[:32],
        },
    ).scalar_one()
    return int(row)


def score_history(
    engine: Engine, subject: str, *, before_id: int | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """Audit rows of one subject ("lease:<id>" or "lessee:<id>"), newest first."""
    s = risk_scores.c
    query = select(risk_scores).where(s.subject == subject).order_by(s.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(s.id < before_id)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]
