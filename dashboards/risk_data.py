"""What the risk view reads: current lease bands, lessee scores, the watchlist, score trends.

Current lease scores and bands come from `lease_bands` (the rescoring task keeps them), the
reasons and the trend from the audited scores in `risk_scores` (every score served, newest per
subject by a window function) and the band changes in `band_changes`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, Select, func, select

from cloud.leasing.store import LeasingStore
from cloud.leasing.tables import band_changes, lease_bands, risk_scores
from cloud.risk.model import Band

TREND_LEASES = 10  # the riskiest leases get a trend line


@dataclass(frozen=True, slots=True)
class ScoredSubject:
    """A lease or lessee with its score, band, when it was scored and its top reasons."""

    subject_id: str
    lessee_id: str
    score: float
    band: str
    as_of: datetime
    reasons: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class RiskView:
    """Everything the risk view draws."""

    leases: list[ScoredSubject]
    lessees: list[ScoredSubject]
    bands: dict[str, int]  # leases per band (all leases, before the filter)
    watchlist: list[dict[str, Any]]
    trends: dict[str, list[tuple[datetime, float]]] = field(default_factory=dict)


def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts


def newest_scores(conn: Connection, subjects: Sequence[str] | None, prefix: str) -> dict[str, Any]:
    """The newest audited score row per subject (given ones, or every one with the prefix)."""
    s = risk_scores.c
    newest = func.row_number().over(partition_by=s.subject, order_by=s.id.desc())
    inner = select(risk_scores, newest.label("rank"))
    if subjects is not None:
        inner = inner.where(s.subject.in_(list(subjects)))
    else:
        inner = inner.where(s.subject.like(f"{prefix}%"))
    ranked = inner.subquery()
    rows = conn.execute(select(ranked).where(ranked.c.rank == 1)).mappings()
    return {str(r["subject"]): r for r in rows}


Scope = Select[tuple[str]] | None  # a tenant's lessee ids; None: every tenant


def _lease_rows(
    conn: Connection, band: str | None, lessee: str | None, limit: int, scope: Scope
) -> list[Any]:
    b = lease_bands.c
    query = select(lease_bands).order_by(b.score.desc(), b.lease_id).limit(limit)
    if scope is not None:
        query = query.where(b.lessee_id.in_(scope))
    if band:
        query = query.where(b.band == band)
    if lessee:
        query = query.where(b.lessee_id == lessee)
    return list(conn.execute(query).mappings())


def _trends(conn: Connection, lease_ids: Sequence[str]) -> dict[str, list[tuple[datetime, float]]]:
    """Score over time per lease: audited scores and band changes, by as-of time."""
    s, c = risk_scores.c, band_changes.c
    subjects = {f"lease:{lease}": lease for lease in lease_ids}
    points: dict[str, dict[datetime, float]] = {lease: {} for lease in lease_ids}
    audited = select(s.subject, s.as_of, s.score).where(s.subject.in_(list(subjects)))
    for subject, as_of, score in conn.execute(audited):
        points[subjects[subject]][_utc(as_of)] = float(score)
    changes = select(c.lease_id, c.as_of, c.to_score).where(c.lease_id.in_(list(lease_ids)))
    for lease, as_of, score in conn.execute(changes):
        points[lease].setdefault(_utc(as_of), float(score))
    return {lease: sorted(p.items()) for lease, p in points.items() if p}


def _watchlist(conn: Connection, limit: int, scope: Scope) -> list[dict[str, Any]]:
    c = band_changes.c
    query = (
        select(band_changes)
        .where(c.worsened.is_(True))
        .order_by(c.as_of.desc(), c.id.desc())
        .limit(limit)
    )
    if scope is not None:
        query = query.where(c.lessee_id.in_(scope))
    return [dict(r) | {"as_of": _utc(r["as_of"])} for r in conn.execute(query).mappings()]


def risk_view(
    engine: Engine, *, band: str | None = None, lessee: str | None = None, limit: int = 100,
    tenant: str | None = None,
) -> RiskView:  # fmt: skip
    """Leases by score (filtered), lessees by score, bands, watchlist and the top trends.

    With a tenant, only that lessor's lessees and their leases (None: every tenant).
    """
    scope = None if tenant is None else LeasingStore(engine, tenant).lessee_ids()
    with engine.connect() as conn:
        rows = _lease_rows(conn, band, lessee, limit, scope)
        audited = newest_scores(conn, [f"lease:{r['lease_id']}" for r in rows], "lease:")
        leases = [
            ScoredSubject(r["lease_id"], r["lessee_id"], float(r["score"]), r["band"],
                          _utc(r["as_of"]),
                          list(audited.get(f"lease:{r['lease_id']}", {}).get("reasons", [])))
            for r in rows
        ]  # fmt: skip
        lessee_rows = list(newest_scores(conn, None, "lessee:").values())
        if scope is not None:
            mine = set(conn.execute(scope).scalars())
            lessee_rows = [r for r in lessee_rows if r["lessee_id"] in mine]
        lessees = sorted(
            (ScoredSubject(str(r["lessee_id"]), str(r["lessee_id"]), float(r["score"]),
                           str(r["band"]), _utc(r["as_of"]), list(r["reasons"]))
             for r in lessee_rows),
            key=lambda x: (-x.score, x.subject_id),
        )  # fmt: skip
        per_band = select(lease_bands.c.band, func.count()).group_by(lease_bands.c.band)
        if scope is not None:
            per_band = per_band.where(lease_bands.c.lessee_id.in_(scope))
        counts = {str(b): int(n) for b, n in conn.execute(per_band)}
        trends = _trends(conn, [x.subject_id for x in leases[:TREND_LEASES]])
        watch = _watchlist(conn, limit, scope)
    bands = {str(b): counts.get(str(b), 0) for b in Band}
    return RiskView(leases, lessees, bands, watch, trends)
