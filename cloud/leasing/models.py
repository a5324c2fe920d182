"""Typed lessees, leases and assets: what the API and the bulk import accept and answer.

A lease's contract terms are what monitoring compares the assets against: expected running
hours (per asset, per day or per month), an hours cap per month, a permitted region (a circle
or a polygon of (lat, lon) corners), dates, payment schedule and asset value.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from cloud.detectors.inputs import Region
from leasewatch.wire import DeviceId

EntityId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")]
Latitude = Annotated[float, Field(ge=-90.0, le=90.0)]
Longitude = Annotated[float, Field(ge=-180.0, le=180.0)]
Point = tuple[Latitude, Longitude]
PaymentSchedule = Literal["monthly", "quarterly", "semiannual", "annual"]
LeaseStatus = Literal["pending", "active", "ended", "terminated"]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
Hours = Annotated[float, Field(ge=0.0)]
DAYS_PER_MONTH = 365.25 / 12


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PermittedRegion(_Strict):
    """Where the assets may be: a circle (`center`, `radius_km`) or a `polygon` of corners."""

    center: Point | None = None
    radius_km: Annotated[float, Field(gt=0.0, le=20_000.0)] | None = None
    polygon: Annotated[list[Point], Field(min_length=3, max_length=500)] | None = None

    @model_validator(mode="after")
    def _one_shape(self) -> Self:
        circle = self.center is not None or self.radius_km is not None
        if circle and self.polygon is not None:
            raise ValueError("give either center and radius_km, or polygon, not both")
        if circle and (self.center is None or self.radius_km is None):
            raise ValueError("a circular region needs both center and radius_km")
        if not circle and self.polygon is None:
            raise ValueError("give center and radius_km, or polygon")
        return self

    def region(self) -> Region:
        """The detectors' form of the region."""
        if self.polygon is not None:
            return Region(polygon=tuple(self.polygon))
        return Region(center=self.center, radius_km=self.radius_km)


class LesseeIn(_Strict):
    """A lessee to create or replace."""

    lessee_id: EntityId
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    external_ref: Annotated[str, StringConstraints(max_length=64)] | None = None
    tenant: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = Field(
        default=None,
        description="The lessor: default the caller's tenant; only a user without one may choose",
    )


class Lessee(LesseeIn):
    """A stored lessee."""

    created_at: datetime
    updated_at: datetime


class LeaseTerms(_Strict):
    """The contract terms of a lease (everything but its ids)."""

    starts_on: date
    ends_on: date
    region: PermittedRegion | None = None
    expected_hours_per_day: Annotated[float, Field(ge=0.0, le=24.0)] | None = None
    expected_hours_per_month: Annotated[float, Field(ge=0.0, le=744.0)] | None = None
    hours_cap_per_month: Annotated[float, Field(gt=0.0, le=744.0)] | None = None
    payment_schedule: PaymentSchedule = "monthly"
    payment_amount: Hours | None = None
    currency: Currency = "EUR"
    asset_value: Annotated[float, Field(gt=0.0)]
    status: LeaseStatus = "active"

    @field_validator("ends_on")
    @classmethod
    def _after_start(cls, value: date, info: ValidationInfo) -> date:
        starts_on = info.data.get("starts_on")
        if starts_on is not None and value <= starts_on:
            raise ValueError(f"must be after starts_on ({starts_on.isoformat()})")
        return value

    @field_validator("expected_hours_per_month")
    @classmethod
    def _one_expectation(cls, value: float | None, info: ValidationInfo) -> float | None:
        if value is not None and info.data.get("expected_hours_per_day") is not None:
            raise ValueError("give expected_hours_per_day or expected_hours_per_month, not both")
        return value

    def expected_hours_per_asset_day(self) -> float | None:
        """Running hours the contract expects of each asset per calendar day, if it says."""
        if self.expected_hours_per_day is not None:
            return self.expected_hours_per_day
        if self.expected_hours_per_month is not None:
            return self.expected_hours_per_month / DAYS_PER_MONTH
        return None


class LeaseIn(LeaseTerms):
    """A lease to create: its id, its lessee and its terms."""

    lease_id: EntityId
    lessee_id: EntityId


class LeaseUpdate(_Strict):
    """Terms to change on a lease (absent fields stay as they are)."""

    starts_on: date | None = None
    ends_on: date | None = None
    region: PermittedRegion | None = None
    expected_hours_per_day: Annotated[float, Field(ge=0.0, le=24.0)] | None = None
    expected_hours_per_month: Annotated[float, Field(ge=0.0, le=744.0)] | None = None
    hours_cap_per_month: Annotated[float, Field(gt=0.0, le=744.0)] | None = None
    payment_schedule: PaymentSchedule | None = None
    payment_amount: Hours | None = None
    currency: Currency | None = None
    asset_value: Annotated[float, Field(gt=0.0)] | None = None
    status: LeaseStatus | None = None


class Lease(LeaseIn):
    """A stored lease."""

    created_at: datetime
    updated_at: datetime


class AssetIn(_Strict):
    """An asset to create or replace: its type, region, gateway and lease."""

    asset_id: EntityId
    asset_type: Annotated[str, StringConstraints(min_length=1, max_length=32)]
    region: Annotated[str, StringConstraints(max_length=64)] | None = None
    device: DeviceId | None = None
    lease_id: EntityId | None = None


class Asset(AssetIn):
    """A stored asset."""

    created_at: datetime
    updated_at: datetime
