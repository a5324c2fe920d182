"""Cloud settings, read once from the environment (prefix LEASEWATCH_) or a .env file."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

_KNOWN_WEAK = {"", "changeme", "change-me", "password", "secret", "admin", "demo"}


class SettingsError(Exception):
    """The settings cannot be used; the message names the variable and the reason."""


class CloudSettings(BaseSettings):
    """Everything the ingestor and the API need to start."""

    model_config = SettingsConfigDict(
        env_prefix="LEASEWATCH_", env_file=".env", extra="ignore", frozen=True
    )

    mode: Literal["production", "demo"] = "production"

    mqtt_host: str = "127.0.0.1"
    mqtt_port: Annotated[int, Field(ge=1, le=65535)] = 8883
    mqtt_username: str = "ingestor"
    mqtt_password: SecretStr = SecretStr("")
    mqtt_protocol: Annotated[Literal[5, 311], BeforeValidator(int)] = 5
    mqtt_tls: bool = True
    mqtt_ca_file: Path | None = None
    mqtt_client_id: str = "ingestor-1"
    ## Shared-subscription group; empty for brokers without $share (the embedded amqtt).
    mqtt_shared_group: str = "ingest"

    telemetry_url: str = "sqlite:///var/leasewatch/telemetry.sqlite"
    state_url: str = "sqlite:///var/leasewatch/state.sqlite"

    ingest_batch_max: Annotated[int, Field(ge=1, le=10_000)] = 500
    ingest_batch_wait: Annotated[float, Field(gt=0, le=10)] = 0.2
    dead_letter_max: Annotated[int, Field(ge=10)] = 10_000
    ## Accept messages from devices the registry does not know (demo and tests only).
    auto_register_devices: bool = False
    ## Readings older than this, or further ahead of the cloud's clock, are rejected.
    max_reading_age_days: Annotated[int, Field(ge=1)] = 400
    max_clock_ahead_s: Annotated[int, Field(ge=0)] = 300
    ## A live (non-historical) message received this long after it was sent counts as late.
    late_after_s: Annotated[int, Field(ge=1)] = 120

    api_host: str = "127.0.0.1"
    api_port: Annotated[int, Field(ge=0, le=65535)] = 8000
    api_key: SecretStr = SecretStr("")

    ## Raw readings older than this are deleted hourly (SQLite; VictoriaMetrics uses its own
    ## -retentionPeriod). Rollups and the ledger are kept.
    telemetry_retention_days: Annotated[int, Field(ge=1)] = 400
    ## Ingest-only processes serve /healthz and /metrics here (0: off), on api_host.
    ops_port: Annotated[int, Field(ge=0, le=65535)] = 0
    ## How long a starting process keeps retrying stores that do not answer yet.
    startup_timeout_s: Annotated[float, Field(ge=0)] = 60.0

    def weak_secrets(self, needed: Collection[str]) -> list[str]:
        """Environment variables of needed secrets that are unset or well-known defaults."""
        if self.mode == "demo":
            return []
        weak = []
        for name in needed:
            value = getattr(self, name).get_secret_value()
            if value.lower() in _KNOWN_WEAK or len(value) < 12:
                weak.append(f"LEASEWATCH_{name.upper()}")
        return weak


INGEST_SECRETS = ("mqtt_password",)
API_SECRETS = ("api_key",)


def load_settings(needed: Collection[str] = INGEST_SECRETS + API_SECRETS) -> CloudSettings:
    """Read settings once; SettingsError with a sentence when they are unusable.

    Outside demo mode every secret the process needs must be set to 12+ characters that are not a
    well-known default; a process only needs the secrets of its role (ingest, api, or both).
    """
    try:
        settings = CloudSettings()
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in err.errors()
        )
        raise SettingsError(f"invalid cloud settings: {problems}") from err
    weak = settings.weak_secrets(needed)
    if weak:
        raise SettingsError(
            f"{', '.join(weak)} must be set to a secret of 12 or more characters "
            "(no defaults outside LEASEWATCH_MODE=demo)"
        )
    return settings
