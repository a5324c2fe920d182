"""What the ingestor refused: counts by reason and the dead letters themselves."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from cloud.api.deps import ReadOperations, ServicesDep

router = APIRouter(prefix="/v1/ingest", tags=["ingest"], dependencies=[ReadOperations])


class DeadLetterPublic(BaseModel):
    """A rejected message, its payload shown as text (undecodable bytes replaced)."""

    received_at: datetime
    reason: str
    topic: str
    detail: str
    payload: str


class RejectionsPublic(BaseModel):
    """Lifetime rejection counts by reason and the newest dead letters."""

    counts: dict[str, int]
    recent: list[DeadLetterPublic]


@router.get("/rejections", response_model=RejectionsPublic)
def rejections(
    services: ServicesDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> RejectionsPublic:
    """Counts of rejected messages by reason, and the newest dead letters."""
    # Counts first: the two reads are separate snapshots, and a rejection recorded between them
    # (count and letter commit together) then shows as a letter beyond the counts, never as a
    # count whose letter is missing.
    counts = services.state.rejection_counts()
    recent = [
        DeadLetterPublic(
            received_at=r.received_at,
            reason=r.reason.value,
            topic=r.topic,
            detail=r.detail,
            payload=r.payload.decode("utf-8", errors="replace"),
        )
        for r in services.state.recent_rejections(limit)
    ]
    return RejectionsPublic(counts=counts, recent=recent)
