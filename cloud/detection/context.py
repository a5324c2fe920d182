"""Asset context for the detectors: what the lease and asset registry know about a gateway.

The detectors need, per gateway, the asset's type (it picks the fault profile), the lease's
permitted region (geofence), the asset's home site (parked), the public holidays of its region
(utilization, parked: from its region's calendar, `cloud.risk.calendars`) and the hours it is
expected to work. `AssetContextSource` is the one
interface the detection worker reads them through; `FileContextSource` serves them from a TOML
file (or defaults) until the leasing store (cloud/leasing/) provides its own source.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Protocol

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from cloud.detectors.inputs import Region
from cloud.risk.calendars import NO_CALENDAR, RegionHolidays, checked_calendar

GENERIC = "generic"  # no profile limits: statistics and sensor checks only


@dataclass(frozen=True, slots=True)
class AssetContext:
    """What the detectors need to know about the asset behind one gateway."""

    device: str
    asset_type: str = GENERIC
    region: Region | None = None  # the lease's permitted region; None: no geofence
    home: tuple[float, float] | None = None  # the asset's site (lat, lon)
    holidays: frozenset[date] = frozenset()
    expected_hours: Mapping[int, float] = field(default_factory=dict)  # weekday -> hours


class AssetContextSource(Protocol):
    """Where the worker gets asset context; must be cheap for a batch of gateways."""

    def contexts(self, devices: Iterable[str]) -> dict[str, AssetContext]:
        """The context of each device (every device gets one; unknown ones the defaults)."""
        ...


class ContextFileError(Exception):
    """The asset context file cannot be used; the message names the file and the problem."""


class _RegionSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    center: tuple[float, float] | None = None
    radius_km: float | None = None
    polygon: tuple[tuple[float, float], ...] = ()


class _AssetSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    asset_type: str = GENERIC
    region: _RegionSpec | None = None
    home: tuple[float, float] | None = None
    # public holidays: a `holidays` calendar code ("NL", "DE-NW")
    calendar: Annotated[str, AfterValidator(checked_calendar)] = NO_CALENDAR
    holidays: tuple[date, ...] = ()  # further days off (a plant's own shutdown days)
    expected_hours: dict[int, float] = Field(default_factory=dict)


class _ContextFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    defaults: _AssetSpec = _AssetSpec()
    assets: dict[str, _AssetSpec] = Field(default_factory=dict)


class FileContextSource:
    """Asset context from a TOML file: `[defaults]` and `[assets.<device>]` tables.

    Example:
        [defaults]
        asset_type = "truck"
        calendar = "NL"
        holidays = [2025-12-24, 2025-12-31]
        [assets.gw-0001]
        asset_type = "excavator"
        home = [52.37, 4.89]
        region = { center = [52.37, 4.89], radius_km = 50 }
    """

    def __init__(self, spec: _ContextFile | None = None) -> None:
        """Serve the given spec (defaults only when None)."""
        self._spec = spec or _ContextFile()
        self._day: date | None = None
        self._built: dict[str, AssetContext] = {}  # today's contexts, by device

    @classmethod
    def from_file(cls, path: Path) -> FileContextSource:
        """Read and validate the file; ContextFileError with the reason when it is unusable."""
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
            source = cls(_ContextFile.model_validate(raw))
            source.contexts([*source._spec.assets, ""])  # regions are checked when built
        except (OSError, tomllib.TOMLDecodeError, ValidationError, ValueError) as err:
            raise ContextFileError(f"asset context file {path}: {err}") from err
        return source

    @classmethod
    def of_types(cls, types: Mapping[str, str]) -> FileContextSource:
        """Only asset types per device (the demo knows what it simulates)."""
        assets = {device: _AssetSpec(asset_type=kind) for device, kind in types.items()}
        return cls(_ContextFile(assets=assets))

    def contexts(self, devices: Iterable[str]) -> dict[str, AssetContext]:
        """The context of each device: its own table, else the defaults (built once a day)."""
        today = datetime.now(UTC).date()
        if today != self._day:  # holidays are the three years around today
            self._day, self._built = today, {}
        specs, built = self._spec.assets, self._built
        found: dict[str, AssetContext] = {}
        for device in devices:
            context = built.get(device)
            if context is None:
                spec = specs.get(device, self._spec.defaults)
                context = built[device] = _context(device, spec, today)
            found[device] = context
        return found


def _context(device: str, spec: _AssetSpec, today: date) -> AssetContext:
    region = None
    if spec.region is not None:
        r = spec.region
        region = Region(center=r.center, radius_km=r.radius_km, polygon=r.polygon)
    return AssetContext(
        device=device,
        asset_type=spec.asset_type,
        region=region,
        home=spec.home,
        holidays=frozenset(spec.holidays) | RegionHolidays().around(spec.calendar, today),
        expected_hours=dict(spec.expected_hours),
    )
