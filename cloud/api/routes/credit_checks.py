"""Credit checks: the lessor's decision engine asks for a lease's or lessee's risk as of a time."""

from __future__ import annotations

from typing import Annotated, Self

from fastapi import APIRouter
from pydantic import AwareDatetime, BaseModel, ConfigDict, StringConstraints, model_validator

from cloud.api.deps import ReadRisk
from cloud.api.routes.risk import AssessorDep, RiskCaller, ScorePublic, as_of_or_now, serve
from cloud.leasing.models import EntityId

router = APIRouter(prefix="/v1/credit-checks", tags=["credit checks"], dependencies=[ReadRisk])


class CreditCheckRequest(BaseModel):
    """What to check: a lease or a lessee, as of a time (default now)."""

    model_config = ConfigDict(extra="forbid")

    lease_id: EntityId | None = None
    lessee_id: EntityId | None = None
    as_of: AwareDatetime | None = None
    requested_by: Annotated[str, StringConstraints(min_length=1, max_length=128)] = "credit-check"

    @model_validator(mode="after")
    def _one_subject(self) -> Self:
        if (self.lease_id is None) == (self.lessee_id is None):
            raise ValueError("give exactly one of lease_id and lessee_id")
        return self


@router.post("", response_model=ScorePublic)
def credit_check(
    assessor: AssessorDep, caller: RiskCaller, body: CreditCheckRequest
) -> ScorePublic:
    """Signals, score, band, ranked reasons, data completeness and model version (audited).

    The audit names the authenticated caller, and what it says it acts for (`requested_by`).
    """
    return serve(
        assessor,
        lease_id=body.lease_id,
        lessee_id=body.lessee_id,
        as_of=as_of_or_now(body.as_of),
        caller=caller,
        purpose="credit_check",
        requested_by=body.requested_by,
    )
