"""Tables of the leasing domain and the risk audit (migration 0004), on the shared metadata.

Lessees hold leases; a lease's contract terms (dates, permitted region, expected hours, hours
cap, payment schedule, asset value) are what monitoring compares the assets against. An asset
carries the gateway (`device`) mounted on it. Every score served lands in `risk_scores`; the
newest band of each lease in `lease_bands`; every band change in `band_changes` (the watchlist).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    Index,
    Integer,
    String,
    Table,
    text,
)

from cloud.schema import metadata, rollups

TZ = DateTime(timezone=True)

lessees = Table(
    "lessees",
    metadata,
    Column("lessee_id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("external_ref", String(64)),
    Column("created_at", TZ, nullable=False),
    Column("updated_at", TZ, nullable=False),
    Column("tenant", String(64)),  # the lessor (migration 0007); NULL: no tenant
    Index("ix_lessees_tenant", "tenant", "lessee_id"),
)

leases = Table(
    "leases",
    metadata,
    Column("lease_id", String(64), primary_key=True),
    Column("lessee_id", String(64), nullable=False),
    Column("starts_on", Date, nullable=False),
    Column("ends_on", Date, nullable=False),
    Column("region", JSON),  # {"center": [lat, lon], "radius_km": r} or {"polygon": [[lat, lon]..]}
    Column("expected_hours_per_day", Float),
    Column("expected_hours_per_month", Float),
    Column("hours_cap_per_month", Float),
    Column("payment_schedule", String(16), nullable=False),
    Column("payment_amount", Float),
    Column("currency", String(3), nullable=False),
    Column("asset_value", Float, nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", TZ, nullable=False),
    Column("updated_at", TZ, nullable=False),
    Index("ix_leases_lessee", "lessee_id"),
    Index("ix_leases_status", "status", "lease_id"),
)

assets = Table(
    "assets",
    metadata,
    Column("asset_id", String(64), primary_key=True),
    Column("asset_type", String(32), nullable=False),
    Column("region", String(64)),
    Column("device", String(64), unique=True),  # the gateway mounted on the asset
    Column("lease_id", String(64)),
    Column("created_at", TZ, nullable=False),
    Column("updated_at", TZ, nullable=False),
    Index("ix_assets_lease", "lease_id"),
)

risk_scores = Table(
    "risk_scores",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("subject", String(80), nullable=False),
    Column("lessee_id", String(64), nullable=False),
    Column("lease_id", String(64)),
    Column("as_of", TZ, nullable=False),
    Column("score", Float, nullable=False),
    Column("band", String(16), nullable=False),
    Column("reasons", JSON, nullable=False),
    Column("model_version", String(64), nullable=False),
    Column("inputs", JSON, nullable=False),
    Column("data_completeness", Float),
    Column("served_at", TZ, nullable=False),
    Column("caller", String(128), nullable=False),
    Column("purpose", String(32), nullable=False),
    Index("ix_risk_scores_subject", "subject", "id"),
)

lease_bands = Table(
    "lease_bands",
    metadata,
    Column("lease_id", String(64), primary_key=True),
    Column("lessee_id", String(64), nullable=False),
    Column("band", String(16), nullable=False),
    Column("score", Float, nullable=False),
    Column("as_of", TZ, nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("model_version", String(64), nullable=False),
    Column("scored_at", TZ, nullable=False),
    Index("ix_lease_bands_scored", "scored_at"),
)

band_changes = Table(
    "band_changes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("lease_id", String(64), nullable=False),
    Column("lessee_id", String(64), nullable=False),
    Column("from_band", String(16)),
    Column("to_band", String(16), nullable=False),
    Column("from_score", Float),
    Column("to_score", Float, nullable=False),
    Column("worsened", Boolean, nullable=False),
    Column("as_of", TZ, nullable=False),
    Column("recorded_at", TZ, nullable=False),
    Column("reasons", JSON, nullable=False),
    Column("model_version", String(64), nullable=False),
    Index("ix_band_changes_lease", "lease_id", "id"),
    Index("ix_band_changes_worsened", "worsened", "as_of"),
)

## The credit check reads hourly `running` rollups of a few devices over weeks. A partial index
## holding exactly those rows with their count and sum answers it from the index alone, and
## costs the ingest path nothing for any other measure. Queries must spell the predicate
## literally (RUNNING_HOURLY): neither SQLite nor a generic PostgreSQL plan matches parameters.
RUNNING_HOURLY = "metric = 'running' AND resolution_s = 3600"
ix_rollups_running = Index(
    "ix_rollups_running_hourly", rollups.c.device, rollups.c.bucket, rollups.c.count,
    rollups.c.sum, sqlite_where=text(RUNNING_HOURLY), postgresql_where=text(RUNNING_HOURLY),
)  # fmt: skip
