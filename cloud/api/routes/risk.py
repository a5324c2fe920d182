"""Risk: the score of a lease or lessee (audited), score history, band changes, the watchlist."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import AwareDatetime, BaseModel, Field
from sqlalchemy import Engine, select

from cloud.api.deps import Caller, ReadRisk, ServicesDep
from cloud.api.problems import Problem
from cloud.leasing.assessment import Assessment, RiskAssessor, score_history
from cloud.leasing.asset_signals import AssetSignals
from cloud.leasing.models import EntityId
from cloud.leasing.store import LeasingStore, NotFoundError
from cloud.leasing.tables import band_changes, lease_bands
from cloud.risk.model import Band, LeaseSignals
from cloud.risk.rules import ScoringRules, load_rules
from cloud.risk.scoring import lease_subject, lessee_subject

router = APIRouter(prefix="/v1/risk", tags=["risk"], dependencies=[ReadRisk])
#: The caller of a risk route (a role holding read_risk), recorded in the audit trail.
RiskCaller = Annotated[Caller, ReadRisk]


@lru_cache(maxsize=4)
def _rules(path: Path | None) -> ScoringRules:
    return load_rules(path)


def get_assessor(services: ServicesDep) -> RiskAssessor:
    """A risk assessor on the state store with the configured scoring rules."""
    return RiskAssessor(services.state.engine, _rules(services.settings.risk_rules_file))


AssessorDep = Annotated[RiskAssessor, Depends(get_assessor)]
AsOf = Annotated[AwareDatetime | None, Query(description="Default: now; not in the future")]


class ReasonPublic(BaseModel):
    """One reason behind a score: its code, points, summary and evidence."""

    code: str
    points: float
    summary: str
    evidence: dict[str, str | int | float | bool | None]


class LeaseScorePublic(BaseModel):
    """One lease's score and the signals behind it."""

    lease_id: str
    score: float
    band: Band
    reasons: list[ReasonPublic]
    signals: LeaseSignals = Field(description="The inputs of the score (LeaseSignals)")
    assets: list[AssetSignals] = Field(
        default_factory=list, description="Each gateway's own figures behind the signals"
    )


class ScorePublic(BaseModel):
    """A served score: subject, as-of, score, band, reasons, model version, and its leases."""

    audit_id: int = Field(description="Id of the audit-trail row this answer was recorded as")
    subject: str
    lessee_id: str
    lease_id: str | None
    as_of: datetime
    score: float
    band: Band
    reasons: list[ReasonPublic]
    model_version: str
    data_completeness: float | None
    leases: list[LeaseScorePublic]


def _reasons(reasons: Any) -> list[ReasonPublic]:
    return [ReasonPublic(code=r.code, points=r.points, summary=r.summary,
                         evidence=dict(r.evidence)) for r in reasons]  # fmt: skip


def score_public(assessment: Assessment, audit_id: int) -> ScorePublic:
    """The API form of a served score."""
    s = assessment.score
    leases = [
        LeaseScorePublic(
            lease_id=a.signals.lease_id, score=a.score.score, band=a.score.band,
            reasons=_reasons(a.score.reasons),
            signals=a.signals, assets=list(a.assets),
        )
        for a in assessment.leases
    ]  # fmt: skip
    return ScorePublic(
        audit_id=audit_id, subject=s.subject, lessee_id=assessment.lessee_id,
        lease_id=assessment.lease_id, as_of=s.as_of, score=s.score, band=s.band,
        reasons=_reasons(s.reasons), model_version=s.model_version,
        data_completeness=s.data_completeness, leases=leases,
    )  # fmt: skip


def as_of_or_now(as_of: datetime | None) -> datetime:
    """The as-of time of a request: now by default; 422 invalid_as_of in the future."""
    now = datetime.now(UTC)
    if as_of is None:
        return now
    if as_of > now:
        raise Problem(422, "invalid_as_of", "as_of must not be in the future")
    return as_of.astimezone(UTC)


def check_scope(
    engine: Engine, tenant: str | None, *, lease_id: str | None, lessee_id: str | None
) -> None:
    """404 lease_not_found / lessee_not_found for a subject outside the caller's tenant."""
    if tenant is None:
        return
    store = LeasingStore(engine, tenant)
    try:
        if lease_id is not None:
            store.get_lease(lease_id)
        if lessee_id is not None:
            store.get_lessee(lessee_id)
    except NotFoundError as err:
        raise Problem(404, err.code, f"{err} in your tenant") from err


def serve(
    assessor: RiskAssessor, *, lease_id: str | None, lessee_id: str | None, as_of: datetime,
    caller: Caller, purpose: str, requested_by: str | None = None,
) -> ScorePublic:  # fmt: skip
    """Score a lease or lessee in the caller's tenant, record it in the audit, answer it (404)."""
    check_scope(assessor.engine, caller.tenant, lease_id=lease_id, lessee_id=lessee_id)
    subject = ("lease", lease_id) if lease_id is not None else ("lessee", str(lessee_id))
    audit_caller = caller.user if requested_by is None else f"{caller.user} ({requested_by})"
    try:
        assessment, audit_id = assessor.serve(
            subject, as_of, caller=audit_caller[:128], purpose=purpose, served_at=datetime.now(UTC)
        )
    except NotFoundError as err:
        raise Problem(404, err.code, str(err)) from err
    return score_public(assessment, audit_id)


@router.get("/leases/{lease_id}", response_model=ScorePublic)
def lease_score(
    assessor: AssessorDep, caller: RiskCaller, lease_id: EntityId, as_of: AsOf = None
) -> ScorePublic:
    """A lease's score as of a time, with its reasons and signals (recorded in the audit)."""
    when = as_of_or_now(as_of)
    return serve(assessor, lease_id=lease_id, lessee_id=None, as_of=when, caller=caller,
                 purpose="risk_api")  # fmt: skip


@router.get("/lessees/{lessee_id}", response_model=ScorePublic)
def lessee_score(
    assessor: AssessorDep, caller: RiskCaller, lessee_id: EntityId, as_of: AsOf = None
) -> ScorePublic:
    """A lessee's score over its active leases as of a time (recorded in the audit)."""
    when = as_of_or_now(as_of)
    return serve(assessor, lease_id=None, lessee_id=lessee_id, as_of=when, caller=caller,
                 purpose="risk_api")  # fmt: skip


class AuditPublic(BaseModel):
    """One score served: what, as of when, to whom, why, and from which inputs."""

    id: int
    subject: str
    as_of: datetime
    score: float
    band: Band
    reasons: list[ReasonPublic]
    model_version: str
    data_completeness: float | None
    inputs: dict[str, Any]
    served_at: datetime
    caller: str
    purpose: str


Limit = Annotated[int, Query(ge=1, le=1000)]


@router.get("/leases/{lease_id}/history", response_model=list[AuditPublic])
def lease_history(
    services: ServicesDep, caller: RiskCaller, lease_id: EntityId, before: int | None = None,
    limit: Limit = 100,
) -> list[dict[str, Any]]:  # fmt: skip
    """Every score served for a lease (the audit trail), newest first; `before` pages on."""
    check_scope(services.state.engine, caller.tenant, lease_id=lease_id, lessee_id=None)
    return score_history(
        services.state.engine, lease_subject(lease_id), before_id=before, limit=limit
    )


@router.get("/lessees/{lessee_id}/history", response_model=list[AuditPublic])
def lessee_history(
    services: ServicesDep, caller: RiskCaller, lessee_id: EntityId, before: int | None = None,
    limit: Limit = 100,
) -> list[dict[str, Any]]:  # fmt: skip
    """Every score served for a lessee (the audit trail), newest first; `before` pages on."""
    check_scope(services.state.engine, caller.tenant, lease_id=None, lessee_id=lessee_id)
    return score_history(
        services.state.engine, lessee_subject(lessee_id), before_id=before, limit=limit
    )


class BandChangePublic(BaseModel):
    """A lease's band moved: from, to, when (as of), why (the new score's reasons)."""

    id: int
    lease_id: str
    lessee_id: str
    from_band: Band | None
    to_band: Band
    from_score: float | None
    to_score: float
    worsened: bool
    as_of: datetime
    recorded_at: datetime
    reasons: list[ReasonPublic]
    model_version: str
    current_band: Band | None = None


def _changes(services: Any, query: Any) -> list[dict[str, Any]]:
    b = lease_bands.c
    with services.state.engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(query).mappings()]
        ids = sorted({r["lease_id"] for r in rows})
        current = dict(conn.execute(select(b.lease_id, b.band).where(b.lease_id.in_(ids))).all())
    return [r | {"current_band": current.get(r["lease_id"])} for r in rows]


@router.get("/watchlist", response_model=list[BandChangePublic])
def watchlist(
    services: ServicesDep,
    caller: RiskCaller,
    since: Annotated[AwareDatetime | None, Query(description="Changes as of this or later")] = None,
    limit: Limit = 100,
) -> list[dict[str, Any]]:
    """Leases whose band worsened (in the caller's tenant), newest first: when, from, to, why."""
    c = band_changes.c
    query = select(band_changes).where(c.worsened.is_(True)).order_by(c.as_of.desc(), c.id.desc())
    if caller.tenant is not None:
        in_tenant = LeasingStore(services.state.engine, caller.tenant).lessee_ids()
        query = query.where(c.lessee_id.in_(in_tenant))
    if since is not None:
        query = query.where(c.as_of >= since)
    return _changes(services, query.limit(limit))


@router.get("/leases/{lease_id}/bands", response_model=list[BandChangePublic])
def lease_band_changes(
    services: ServicesDep, caller: RiskCaller, lease_id: EntityId, limit: Limit = 100
) -> list[dict[str, Any]]:
    """Every band change of one lease, newest first."""
    check_scope(services.state.engine, caller.tenant, lease_id=lease_id, lessee_id=None)
    c = band_changes.c
    query = select(band_changes).where(c.lease_id == lease_id).order_by(c.id.desc()).limit(limit)
    return _changes(services, query)
