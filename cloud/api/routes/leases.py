"""Leases: create, read, change, list; their assets; bulk import from CSV or JSON with a report."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request

from cloud.api.deps import ManageLeases, ReadLeases
from cloud.api.problems import Problem
from cloud.api.routes.lessees import LeasingStoreDep, Limit, problem
from cloud.leasing.importer import ImportFileError, ImportFormat, ImportReport, import_leases
from cloud.leasing.models import (
    Asset,
    AssetIn,
    EntityId,
    Lease,
    LeaseIn,
    LeaseStatus,
    LeaseUpdate,
)
from cloud.leasing.store import LeasingError

router = APIRouter(prefix="/v1/leases", tags=["leases"])
MAX_IMPORT_BYTES = 20 * 1024 * 1024


class LeaseWithAssets(Lease):
    """A lease with its assets."""

    assets: list[Asset]


@router.get("", response_model=list[Lease], dependencies=[ReadLeases])
def list_leases(
    store: LeasingStoreDep,
    lessee_id: EntityId | None = None,
    status: LeaseStatus | None = None,
    after: str | None = None,
    limit: Limit = 100,
) -> list[Lease]:
    """Leases by id, optionally of one lessee or in one status; `after` pages on."""
    return store.list_leases(lessee_id=lessee_id, status=status, after=after, limit=limit)


@router.post("", response_model=Lease, status_code=201, dependencies=[ManageLeases])
def create_lease(store: LeasingStoreDep, body: LeaseIn) -> Lease:
    """Create a lease of a known lessee (409 lease_exists, 404 lessee_not_found)."""
    try:
        return store.create_lease(body, datetime.now(UTC))
    except LeasingError as err:
        raise problem(err) from err


@router.post("/import", response_model=ImportReport, dependencies=[ManageLeases])
async def import_file(
    store: LeasingStoreDep,
    request: Request,
    format: Annotated[
        Literal["csv", "json"] | None, Query(description="Default: from the Content-Type")
    ] = None,
) -> ImportReport:
    """Create or update leases (with lessees and assets) from a CSV or JSON body.

    Valid rows are imported; each rejected row is reported with its number, field and reason.
    """
    body = await request.body()
    if len(body) > MAX_IMPORT_BYTES:
        raise Problem(413, "import_too_large", f"the file exceeds {MAX_IMPORT_BYTES} bytes")
    fmt = format or _format_of(request.headers.get("content-type", ""))
    try:
        return import_leases(store, body, fmt, datetime.now(UTC))
    except ImportFileError as err:
        raise Problem(422, "invalid_import_file", str(err)) from err


def _format_of(content_type: str) -> ImportFormat:
    kind = content_type.split(";", maxsplit=1)[0].strip().lower()
    if kind in {"text/csv", "application/csv"}:
        return "csv"
    if kind == "application/json":
        return "json"
    raise Problem(
        415, "unsupported_import_format", "send text/csv or application/json (or ?format=)"
    )


@router.get("/{lease_id}", response_model=LeaseWithAssets, dependencies=[ReadLeases])
def get_lease(store: LeasingStoreDep, lease_id: EntityId) -> LeaseWithAssets:
    """One lease with its assets (404 lease_not_found)."""
    try:
        lease = store.get_lease(lease_id)
    except LeasingError as err:
        raise problem(err) from err
    return LeaseWithAssets(**lease.model_dump(), assets=store.lease_assets(lease_id))


@router.patch("/{lease_id}", response_model=Lease, dependencies=[ManageLeases])
def update_lease(store: LeasingStoreDep, lease_id: EntityId, body: LeaseUpdate) -> Lease:
    """Change some terms of a lease; the whole lease must stay valid (422 otherwise)."""
    try:
        return store.update_lease(lease_id, body, datetime.now(UTC))
    except LeasingError as err:
        raise problem(err) from err
    except ValueError as err:  # pydantic's ValidationError of the merged lease
        raise Problem(422, "invalid_lease", str(err)) from err


@router.put("/{lease_id}/assets/{asset_id}", response_model=Asset, dependencies=[ManageLeases])
def put_asset(
    store: LeasingStoreDep, lease_id: EntityId, asset_id: EntityId, body: AssetIn
) -> Asset:
    """Create or replace an asset of this lease (409 device_mounted_elsewhere)."""
    if body.asset_id != asset_id or body.lease_id not in (None, lease_id):
        raise Problem(422, "id_mismatch", "asset_id and lease_id must match the path")
    try:
        return store.put_asset(body.model_copy(update={"lease_id": lease_id}), datetime.now(UTC))
    except LeasingError as err:
        raise problem(err) from err


@router.get("/{lease_id}/assets", response_model=list[Asset], dependencies=[ReadLeases])
def lease_assets(store: LeasingStoreDep, lease_id: EntityId) -> list[Asset]:
    """The assets of a lease."""
    get_lease(store, lease_id)
    return store.lease_assets(lease_id)
