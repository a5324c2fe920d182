"""Settings of detection in the cloud processes, read once from LEASEWATCH_DETECT_*."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from cloud.detection.context import AssetContextSource, FileContextSource
from cloud.detection.runner import Timing
from cloud.settings import SettingsError


class DetectionSettings(BaseSettings):
    """Whether ingest processes detect, how often they sweep, and where asset context is."""

    model_config = SettingsConfigDict(
        env_prefix="LEASEWATCH_DETECT_", env_file=".env", extra="ignore", frozen=True
    )

    ## Run the detectors in `leasewatch cloud ingest` on each stored batch, and the sweep.
    ## false: the process only stores; then nothing detects what it stores.
    enabled: bool = True
    ## How often to look for quiet gateways (silence) and due utilization days.
    sweep_s: Annotated[float, Field(gt=0, le=3600)] = 30.0
    ## A minute closes when a later reading is this far past its end, or after idle_close_s.
    close_lag_s: Annotated[float, Field(ge=0, le=600)] = 2.0
    idle_close_s: Annotated[float, Field(gt=0, le=3600)] = 90.0
    ## TOML file with asset types, regions, homes and holidays (cloud.detection.context).
    context_file: Path | None = None

    def timing(self) -> Timing:
        """When minutes close."""
        return Timing(timedelta(seconds=self.close_lag_s), timedelta(seconds=self.idle_close_s))

    def context_source(self) -> AssetContextSource:
        """The asset context: from the file, else defaults (generic type, no region)."""
        if self.context_file is None:
            return FileContextSource()
        return FileContextSource.from_file(self.context_file)


def load_detection_settings() -> DetectionSettings:
    """Read the settings once; SettingsError with a sentence when they are unusable."""
    try:
        return DetectionSettings()
    except ValidationError as err:
        problems = "; ".join(
            f"LEASEWATCH_DETECT_{'.'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
            for e in err.errors()
        )
        raise SettingsError(f"invalid detection settings: {problems}") from err
