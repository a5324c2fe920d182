"""Assets: the machines under lease, each with the gateway mounted on it (tenant-scoped)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from cloud.api.deps import ReadLeases
from cloud.api.routes.lessees import LeasingStoreDep, Limit, problem
from cloud.leasing.models import Asset, EntityId
from cloud.leasing.store import LeasingError
from leasewatch.wire import DeviceId

router = APIRouter(prefix="/v1/assets", tags=["assets"], dependencies=[ReadLeases])
AssetType = Annotated[str, Query(min_length=1, max_length=32)]


@router.get("", response_model=list[Asset])
def list_assets(
    store: LeasingStoreDep,
    *,
    lease_id: EntityId | None = None,
    asset_type: AssetType | None = None,
    device: DeviceId | None = None,
    after: Annotated[
        str | None, Query(description="The last asset_id of the previous page")
    ] = None,
    limit: Limit = 100,
) -> list[Asset]:
    """Assets by id, optionally of one lease, of one type or carrying one gateway."""
    return store.list_assets(
        lease_id=lease_id, asset_type=asset_type, device=device, after=after, limit=limit
    )


@router.get("/{asset_id}", response_model=Asset)
def get_asset(store: LeasingStoreDep, asset_id: EntityId) -> Asset:
    """One asset: type, region, gateway and lease (404 asset_not_found)."""
    try:
        return store.get_asset(asset_id)
    except LeasingError as err:
        raise problem(err) from err
