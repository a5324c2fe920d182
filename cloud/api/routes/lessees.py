"""Lessees: create or replace, read, list, and their leases."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from cloud.api.deps import CallerDep, ManageLeases, ReadLeases, ServicesDep
from cloud.api.problems import Problem
from cloud.leasing.models import EntityId, Lease, Lessee, LesseeIn
from cloud.leasing.store import LeasingError, LeasingStore

router = APIRouter(prefix="/v1/lessees", tags=["lessees"])


def get_leasing_store(services: ServicesDep, caller: CallerDep) -> LeasingStore:
    """The leasing store on the state store's engine, within the caller's tenant."""
    return LeasingStore(services.state.engine, caller.tenant)


LeasingStoreDep = Annotated[LeasingStore, Depends(get_leasing_store)]
Limit = Annotated[int, Query(ge=1, le=1000)]


def problem(err: LeasingError) -> Problem:
    """The problem document of a leasing error (404 not found, 409 conflicts)."""
    field = f" (field {err.field})" if err.field else ""
    return Problem(err.status, err.code, f"{err}{field}")


@router.get("", response_model=list[Lessee], dependencies=[ReadLeases])
def list_lessees(
    store: LeasingStoreDep, after: str | None = None, limit: Limit = 100
) -> list[Lessee]:
    """Lessees by id; `after` (the last id of a page) pages on."""
    return store.list_lessees(after, limit)


@router.post("", response_model=Lessee, status_code=201, dependencies=[ManageLeases])
def put_lessee(store: LeasingStoreDep, body: LesseeIn) -> Lessee:
    """Create a lessee in the caller's tenant, or replace the name and reference of a known one."""
    try:
        return store.put_lessee(body, datetime.now(UTC))
    except LeasingError as err:
        raise problem(err) from err


@router.get("/{lessee_id}", response_model=Lessee, dependencies=[ReadLeases])
def get_lessee(store: LeasingStoreDep, lessee_id: EntityId) -> Lessee:
    """One lessee (404 lessee_not_found)."""
    try:
        return store.get_lessee(lessee_id)
    except LeasingError as err:
        raise problem(err) from err


@router.get("/{lessee_id}/leases", response_model=list[Lease], dependencies=[ReadLeases])
def lessee_leases(
    store: LeasingStoreDep, lessee_id: EntityId, after: str | None = None, limit: Limit = 100
) -> list[Lease]:
    """The leases of one lessee, by id."""
    get_lessee(store, lessee_id)
    return store.list_leases(lessee_id=lessee_id, after=after, limit=limit)
