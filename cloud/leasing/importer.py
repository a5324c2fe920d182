"""Bulk import of leases (with their lessee and assets) from CSV or JSON, with a rejection report.

One row is one lease. Valid rows are created or updated (by `lease_id`); every invalid row is
left out and reported with its row number (1 = the first data row), the field and the reason,
so a lessor can fix the file and import it again. Nothing of a rejected row is written.

CSV columns: the lease's fields (`lease_id`, `lessee_id`, `starts_on`, ...), `lessee_name`
(creates or renames the lessee), the region as `region_center_lat`, `region_center_lon`,
`region_radius_km` or `region_polygon` (`lat lon; lat lon; ...`), and `assets` as
`asset_id/asset_type/device; ...` (device optional). Empty cells are absent values.
JSON: a list of objects (or `{"leases": [...]}`) with `region` and `assets` as objects.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints, ValidationError
from sqlalchemy import Connection, select

from cloud.leasing.models import AssetIn, EntityId, LeaseIn, LesseeIn
from cloud.leasing.store import LeasingError, LeasingStore
from cloud.leasing.tables import assets
from leasewatch.wire import DeviceId

ImportFormat = Literal["csv", "json"]
MAX_ROWS = 50_000
_REGION_COLUMNS = ("region_center_lat", "region_center_lon", "region_radius_km", "region_polygon")


class ImportAsset(BaseModel):
    """An asset of an imported lease."""

    asset_id: EntityId
    asset_type: Annotated[str, StringConstraints(min_length=1, max_length=32)]
    region: Annotated[str, StringConstraints(max_length=64)] | None = None
    device: DeviceId | None = None


class ImportRow(LeaseIn):
    """One imported lease: the lease, optionally its lessee's name, and its assets."""

    lessee_name: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    assets: Annotated[list[ImportAsset], Field(default_factory=list, max_length=1000)]


class Rejection(BaseModel):
    """Why one row (or one field of it) was not imported."""

    row: int
    field: str
    reason: str
    lease_id: str | None = None


class ImportReport(BaseModel):
    """What an import did: rows read, created, updated, and every rejection."""

    format: ImportFormat
    rows: int
    created: int
    updated: int
    rejected_rows: int
    rejections: list[Rejection]


class ImportFileError(ValueError):
    """The file as a whole cannot be read (not CSV/JSON, no rows, too many rows)."""


@dataclass
class _Tally:
    created: int = 0
    updated: int = 0
    rejections: list[Rejection] = field(default_factory=list)

    def reject(self, row: int, lease_id: str | None, where: str, reason: str) -> None:
        self.rejections.append(Rejection(row=row, field=where, reason=reason, lease_id=lease_id))


def _polygon(text: str) -> list[list[float]]:
    corners = []
    for corner in text.split(";"):
        parts = corner.split()
        if len(parts) != 2:
            raise ValueError(f"corner {corner.strip()!r} is not 'lat lon'")
        corners.append([float(parts[0]), float(parts[1])])
    return corners


def _csv_assets(text: str) -> list[dict[str, str]]:
    found = []
    for entry in filter(None, (e.strip() for e in text.split(";"))):
        parts = [p.strip() for p in entry.split("/")]
        if len(parts) not in (2, 3) or not all(parts[:2]):
            raise ValueError(f"{entry!r} is not asset_id/asset_type[/device]")
        found.append(dict(zip(("asset_id", "asset_type", "device"), parts, strict=False)))
    return found


def _csv_document(cells: Mapping[str, str | None]) -> dict[str, Any]:
    """A JSON-shaped row from CSV cells; ValueError names the column it cannot read."""
    doc: dict[str, Any] = {
        k: v.strip() for k, v in cells.items() if k and k not in _REGION_COLUMNS and v and v.strip()
    }
    region: dict[str, Any] = {}
    lat, lon = cells.get("region_center_lat"), cells.get("region_center_lon")
    if lat or lon:
        region["center"] = [lat, lon]
    if radius := cells.get("region_radius_km"):
        region["radius_km"] = radius
    if polygon := cells.get("region_polygon"):
        try:
            region["polygon"] = _polygon(polygon)
        except ValueError as err:
            raise _CellError("region_polygon", str(err)) from err
    if region:
        doc["region"] = region
    if "assets" in doc:
        try:
            doc["assets"] = _csv_assets(doc["assets"])
        except ValueError as err:
            raise _CellError("assets", str(err)) from err
    return doc


class _CellError(ValueError):
    def __init__(self, column: str, reason: str) -> None:
        super().__init__(reason)
        self.column = column


def csv_column(where: str) -> str:
    """The CSV column a validation error's location points at."""
    for prefix, column in (
        ("region.center.0", "region_center_lat"), ("region.center.1", "region_center_lon"),
        ("region.radius_km", "region_radius_km"), ("region.polygon", "region_polygon"),
        ("assets.", "assets"),
    ):  # fmt: skip
        if where.startswith(prefix):
            return column
    return where


def _rows(body: bytes, fmt: ImportFormat) -> Iterator[dict[str, Any] | _CellError]:
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ImportFileError(f"the file is not UTF-8 text: {err}") from err
    if fmt == "csv":
        reader = csv.DictReader(io.StringIO(text))
        if not reader.fieldnames or "lease_id" not in reader.fieldnames:
            raise ImportFileError("the CSV needs a header row with at least lease_id")
        for cells in reader:
            try:
                yield _csv_document(cells)
            except _CellError as err:
                yield err
        return
    try:
        document = json.loads(text)
    except json.JSONDecodeError as err:
        raise ImportFileError(f"not valid JSON: {err}") from err
    if isinstance(document, dict) and isinstance(document.get("leases"), list):
        document = document["leases"]
    if not isinstance(document, list):
        raise ImportFileError('JSON must be a list of leases or {"leases": [...]}')
    for item in document:
        yield item if isinstance(item, dict) else _CellError("row", "not a JSON object")


def _device_taken(conn: Connection, row: ImportRow) -> tuple[str, str] | None:
    for asset in row.assets:
        if asset.device is None:
            continue
        query = select(assets.c.asset_id).where(
            assets.c.device == asset.device, assets.c.asset_id != asset.asset_id
        )
        other = conn.execute(query).scalar_one_or_none()
        if other is not None:
            return asset.device, other
    return None


def _write(store: LeasingStore, conn: Connection, row: ImportRow, now: datetime) -> str:
    """Write one checked row; LeasingError (nothing written) when it cannot be."""
    if row.lessee_name is None and not store.lessee_exists(conn, row.lessee_id):
        raise LeasingError(
            f"lessee {row.lessee_id!r} is unknown: give lessee_name to create it", "lessee_id"
        )
    if taken := _device_taken(conn, row):
        raise LeasingError(f"gateway {taken[0]!r} is mounted on asset {taken[1]!r}", "assets")
    if row.lessee_name is not None:
        store.upsert_lessee(conn, LesseeIn(lessee_id=row.lessee_id, name=row.lessee_name), now)
    lease = LeaseIn.model_validate(row.model_dump(exclude={"lessee_name", "assets"}))
    outcome = store.upsert_lease(conn, lease, now)
    for asset in row.assets:
        store.upsert_asset(conn, AssetIn(**asset.model_dump(), lease_id=row.lease_id), now)
    return outcome


def import_leases(
    store: LeasingStore, body: bytes, fmt: ImportFormat, now: datetime
) -> ImportReport:
    """Import leases from a CSV or JSON file; ImportFileError when the file cannot be read."""
    tally = _Tally()
    count = 0
    with store.engine.begin() as conn:
        run = _Import(store, conn, now, tally, fmt)
        for number, item in enumerate(_rows(body, fmt), start=1):
            count = number
            if number > MAX_ROWS:
                raise ImportFileError(f"more than {MAX_ROWS} rows: split the file")
            run.one(number, item)
    if count == 0:
        raise ImportFileError("the file holds no rows")
    rejected = len({r.row for r in tally.rejections})
    return ImportReport(
        format=fmt, rows=count, created=tally.created, updated=tally.updated,
        rejected_rows=rejected, rejections=tally.rejections,
    )  # fmt: skip


@dataclass
class _Import:
    store: LeasingStore
    conn: Connection
    now: datetime
    tally: _Tally
    fmt: ImportFormat
    seen: set[str] = field(default_factory=set)

    def one(self, number: int, item: dict[str, Any] | _CellError) -> None:
        """Validate and write one row, or record why not."""
        tally = self.tally
        if isinstance(item, _CellError):
            tally.reject(number, None, item.column, str(item))
            return
        lease_id = item.get("lease_id") if isinstance(item.get("lease_id"), str) else None
        try:
            row = ImportRow.model_validate(item)
        except ValidationError as err:
            for e in err.errors(include_url=False):
                where = ".".join(str(p) for p in e["loc"]) or "row"
                where = csv_column(where) if self.fmt == "csv" else where
                tally.reject(number, lease_id, where, e["msg"].removeprefix("Value error, "))
            return
        if row.lease_id in self.seen:
            tally.reject(number, row.lease_id, "lease_id", "repeats the lease_id of an earlier row")
            return
        self.seen.add(row.lease_id)
        try:
            outcome = _write(self.store, self.conn, row, self.now)
        except LeasingError as err:
            tally.reject(number, row.lease_id, err.field or "row", str(err))
            return
        if outcome == "created":
            tally.created += 1
        else:
            tally.updated += 1
