"""The leasing store: lessees, leases and assets on the state store's engine (blocking calls)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import Connection, Engine, Select, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from cloud.access.tables import device_tenants, tenants
from cloud.leasing.models import (
    Asset,
    AssetIn,
    Lease,
    LeaseIn,
    LeaseStatus,
    LeaseUpdate,
    Lessee,
    LesseeIn,
)
from cloud.leasing.tables import assets, leases, lessees


class LeasingError(Exception):
    """A leasing operation that cannot be done; `code` is the API's stable problem code."""

    status = 409
    code = "leasing_conflict"

    def __init__(self, detail: str, field: str | None = None) -> None:
        super().__init__(detail)
        self.field = field


class NotFoundError(LeasingError):
    """No lessee, lease or asset has this id."""

    status = 404

    def __init__(self, kind: str, key: str, field: str | None = None) -> None:
        super().__init__(f"no {kind} {key!r}", field)
        self.code = f"{kind}_not_found"


class LeaseExistsError(LeasingError):
    """A lease with this id exists already."""

    code = "lease_exists"


class IdTakenError(LeasingError):
    """The id belongs to another tenant's lessee, lease or asset."""

    def __init__(self, kind: str, key: str, field: str) -> None:
        super().__init__(f"{kind} id {key!r} is taken (by another lessor)", field)
        self.code = f"{kind}_id_taken"


class TenantMismatchError(LeasingError):
    """A tenant's user named another tenant."""

    status = 403
    code = "tenant_mismatch"


class DeviceMountedError(LeasingError):
    """The gateway is mounted on another asset."""

    code = "device_mounted_elsewhere"


def _utc(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _clean(row: Mapping[Any, Any]) -> dict[str, Any]:
    return {k: _utc(v) for k, v in row.items()}


def lease_from_row(row: Mapping[Any, Any]) -> Lease:
    """A Lease from a row of the leases table."""
    return Lease.model_validate(_clean(row))


class LeasingStore:
    """Create, update, read and list lessees, leases and assets, within one tenant (or all).

    With a `tenant`, every read sees only that lessor's lessees, their leases and the leases'
    assets (another tenant's row is NotFoundError), and new lessees join that tenant.
    """

    def __init__(self, engine: Engine, tenant: str | None = None) -> None:
        self.engine = engine
        self.tenant = tenant
        self._insert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert

    def lessee_ids(self) -> Select[tuple[str]]:
        """The ids of the tenant's lessees (a subquery; only meaningful with a tenant)."""
        return select(lessees.c.lessee_id).where(lessees.c.tenant == self.tenant)

    def _lessees(self, query: Select[Any]) -> Select[Any]:
        return query if self.tenant is None else query.where(lessees.c.tenant == self.tenant)

    def _leases(self, query: Select[Any]) -> Select[Any]:
        if self.tenant is None:
            return query
        return query.where(leases.c.lessee_id.in_(self.lessee_ids()))

    def _assets(self, query: Select[Any]) -> Select[Any]:
        if self.tenant is None:
            return query
        scoped = select(leases.c.lease_id).where(leases.c.lessee_id.in_(self.lessee_ids()))
        return query.where(assets.c.lease_id.in_(scoped))

    # --- lessees --------------------------------------------------------------------------

    def put_lessee(self, lessee: LesseeIn, now: datetime) -> Lessee:
        """Create a lessee, or replace its name and reference."""
        with self.engine.begin() as conn:
            self.upsert_lessee(conn, lessee, now)
        return self.get_lessee(lessee.lessee_id)

    def upsert_lessee(self, conn: Connection, lessee: LesseeIn, now: datetime) -> None:
        """Create or replace a lessee in the caller's transaction, in the store's tenant."""
        tenant = self._lessee_tenant(conn, lessee)
        taken = conn.execute(
            select(lessees.c.tenant).where(lessees.c.lessee_id == lessee.lessee_id)
        ).first()
        if taken is not None and self.tenant is not None and taken.tenant != self.tenant:
            raise IdTakenError("lessee", lessee.lessee_id, "lessee_id")
        values = lessee.model_dump() | {"tenant": tenant, "created_at": now, "updated_at": now}
        changes = {"name": lessee.name, "external_ref": lessee.external_ref, "updated_at": now}
        if lessee.tenant is not None:
            changes["tenant"] = tenant
        stmt = self._insert(lessees).values(**values)
        conn.execute(stmt.on_conflict_do_update(index_elements=["lessee_id"], set_=changes))

    def _lessee_tenant(self, conn: Connection, lessee: LesseeIn) -> str | None:
        """The tenant a lessee goes to: the store's; a user without one names a known tenant."""
        if self.tenant is not None:
            if lessee.tenant not in (None, self.tenant):
                raise TenantMismatchError(
                    f"you may create lessees in tenant {self.tenant!r} only", "tenant"
                )
            return self.tenant
        if lessee.tenant is not None:
            query = select(tenants.c.id).where(tenants.c.id == lessee.tenant)
            if conn.execute(query).first() is None:
                raise NotFoundError("tenant", lessee.tenant, "tenant")
        return lessee.tenant

    def get_lessee(self, lessee_id: str) -> Lessee:
        """One lessee, or NotFoundError."""
        with self.engine.connect() as conn:
            query = self._lessees(select(lessees).where(lessees.c.lessee_id == lessee_id))
            row = conn.execute(query).first()
        if row is None:
            raise NotFoundError("lessee", lessee_id)
        return Lessee.model_validate(_clean(row._mapping))

    def list_lessees(self, after: str | None = None, limit: int = 100) -> list[Lessee]:
        """Lessees by id; `after` pages on."""
        query = self._lessees(select(lessees).order_by(lessees.c.lessee_id).limit(limit))
        if after is not None:
            query = query.where(lessees.c.lessee_id > after)
        with self.engine.connect() as conn:
            return [Lessee.model_validate(_clean(r)) for r in conn.execute(query).mappings()]

    def lessee_exists(self, conn: Connection, lessee_id: str) -> bool:
        """Whether a lessee is known (in the caller's transaction)."""
        query = select(lessees.c.lessee_id).where(lessees.c.lessee_id == lessee_id)
        return conn.execute(self._lessees(query)).first() is not None

    # --- leases ---------------------------------------------------------------------------

    def create_lease(self, lease: LeaseIn, now: datetime) -> Lease:
        """Create a lease of a known lessee; LeaseExistsError when the id is taken."""
        with self.engine.begin() as conn:
            query = select(leases.c.lease_id).where(leases.c.lease_id == lease.lease_id)
            if conn.execute(query).first() is not None:
                raise LeaseExistsError(f"lease {lease.lease_id!r} exists", "lease_id")
            self.upsert_lease(conn, lease, now)
        return self.get_lease(lease.lease_id)

    def upsert_lease(
        self, conn: Connection, lease: LeaseIn, now: datetime
    ) -> Literal["created", "updated"]:
        """Create or replace a lease in the caller's transaction (its lessee must exist)."""
        if not self.lessee_exists(conn, lease.lessee_id):
            raise NotFoundError("lessee", lease.lessee_id, "lessee_id")
        values = lease.model_dump(mode="json") | {
            "starts_on": lease.starts_on, "ends_on": lease.ends_on, "updated_at": now,
        }  # fmt: skip
        stmt = self._insert(leases).values(**values, created_at=now)
        inserted = conn.execute(
            stmt.on_conflict_do_nothing(index_elements=["lease_id"]).returning(leases.c.lease_id)
        ).first()
        if inserted is not None:
            return "created"
        mine = self._leases(select(leases.c.lease_id).where(leases.c.lease_id == lease.lease_id))
        if conn.execute(mine).first() is None:
            raise IdTakenError("lease", lease.lease_id, "lease_id")
        conn.execute(update(leases).where(leases.c.lease_id == lease.lease_id).values(**values))
        return "updated"

    def update_lease(self, lease_id: str, changes: LeaseUpdate, now: datetime) -> Lease:
        """Change some terms of a lease; the result is validated as a whole."""
        current = self.get_lease(lease_id)
        merged = current.model_dump(exclude={"created_at", "updated_at"}) | changes.model_dump(
            exclude_unset=True
        )
        lease = LeaseIn.model_validate(merged)
        with self.engine.begin() as conn:
            self.upsert_lease(conn, lease, now)
        return self.get_lease(lease_id)

    def get_lease(self, lease_id: str) -> Lease:
        """One lease, or NotFoundError."""
        with self.engine.connect() as conn:
            query = self._leases(select(leases).where(leases.c.lease_id == lease_id))
            row = conn.execute(query).first()
        if row is None:
            raise NotFoundError("lease", lease_id)
        return lease_from_row(row._mapping)

    def list_leases(
        self,
        *,
        lessee_id: str | None = None,
        status: LeaseStatus | None = None,
        after: str | None = None,
        limit: int = 100,
    ) -> list[Lease]:
        """Leases by id, optionally of one lessee or in one status; `after` pages on."""
        c = leases.c
        query = self._leases(select(leases).order_by(c.lease_id).limit(limit))
        if lessee_id is not None:
            query = query.where(c.lessee_id == lessee_id)
        if status is not None:
            query = query.where(c.status == status)
        if after is not None:
            query = query.where(c.lease_id > after)
        with self.engine.connect() as conn:
            return [lease_from_row(r) for r in conn.execute(query).mappings()]

    # --- assets ---------------------------------------------------------------------------

    def put_asset(self, asset: AssetIn, now: datetime) -> Asset:
        """Create or replace an asset (its lease must exist; its gateway be free)."""
        with self.engine.begin() as conn:
            self.upsert_asset(conn, asset, now)
        return self.get_asset(asset.asset_id)

    def upsert_asset(self, conn: Connection, asset: AssetIn, now: datetime) -> None:
        """Create or replace an asset in the caller's transaction."""
        if asset.lease_id is not None:
            query = select(leases.c.lease_id).where(leases.c.lease_id == asset.lease_id)
            if conn.execute(self._leases(query)).first() is None:
                raise NotFoundError("lease", asset.lease_id, "lease_id")
        self._check_asset_scope(conn, asset)
        if asset.device is not None:
            query = select(assets.c.asset_id).where(
                assets.c.device == asset.device, assets.c.asset_id != asset.asset_id
            )
            other = conn.execute(query).scalar_one_or_none()
            if other is not None:
                raise DeviceMountedError(
                    f"gateway {asset.device!r} is mounted on asset {other!r}", "device"
                )
        values = asset.model_dump() | {"updated_at": now}
        stmt = self._insert(assets).values(**values, created_at=now)
        conn.execute(stmt.on_conflict_do_update(index_elements=["asset_id"], set_=values))

    def _check_asset_scope(self, conn: Connection, asset: AssetIn) -> None:
        """In a tenant: the asset id is not another's, the gateway is the tenant's own."""
        if self.tenant is None:
            return
        query = select(assets.c.asset_id).where(assets.c.asset_id == asset.asset_id)
        if conn.execute(query).first() and not conn.execute(self._assets(query)).first():
            raise IdTakenError("asset", asset.asset_id, "asset_id")
        if asset.device is not None:
            owner = select(device_tenants.c.tenant).where(device_tenants.c.device == asset.device)
            if conn.execute(owner).scalar_one_or_none() != self.tenant:
                raise NotFoundError("device", asset.device, "device")

    def get_asset(self, asset_id: str) -> Asset:
        """One asset, or NotFoundError."""
        with self.engine.connect() as conn:
            query = self._assets(select(assets).where(assets.c.asset_id == asset_id))
            row = conn.execute(query).first()
        if row is None:
            raise NotFoundError("asset", asset_id)
        return Asset.model_validate(_clean(row._mapping))

    def lease_assets(self, lease_id: str) -> list[Asset]:
        """The assets of a lease, by id."""
        query = select(assets).where(assets.c.lease_id == lease_id).order_by(assets.c.asset_id)
        with self.engine.connect() as conn:
            rows = conn.execute(self._assets(query)).mappings()
            return [Asset.model_validate(_clean(r)) for r in rows]

    def list_assets(
        self,
        *,
        lease_id: str | None = None,
        asset_type: str | None = None,
        device: str | None = None,
        after: str | None = None,
        limit: int = 100,
    ) -> list[Asset]:
        """Assets by id, optionally of one lease, of one type or carrying one gateway."""
        c = assets.c
        query = self._assets(select(assets).order_by(c.asset_id).limit(limit))
        for column, wanted in ((c.lease_id, lease_id), (c.asset_type, asset_type),
                               (c.device, device)):  # fmt: skip
            if wanted is not None:
                query = query.where(column == wanted)
        if after is not None:
            query = query.where(c.asset_id > after)
        with self.engine.connect() as conn:
            return [Asset.model_validate(_clean(r)) for r in conn.execute(query).mappings()]
