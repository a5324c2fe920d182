"""Cloud settings, read once from the environment (prefix LEASEWATCH_) or a .env file."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import BeforeValidator, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

_KNOWN_WEAK = {"", "changeme", "change-me", "password", "secret", "admin", "demo"}


def _split_urls(value: object) -> object:
    """Comma-separated webhook URLs from the environment; each must be http(s)."""
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list | tuple):
        for url in value:
            if not str(url).startswith(("http://", "https://")):
                raise ValueError(f"webhook URL {url!r} must start with http:// or https://")
    return value


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

    ## Messages per batch at most: a worker takes what is waiting, so batches grow only under
    ## backlog, where larger ones cost less per message (docs/ingestion.md, sixth round).
    ingest_batch_max: Annotated[int, Field(ge=1, le=10_000)] = 5000
    ## Seconds a worker waits for more after a batch's first message. Longer waits make larger
    ## batches at a steady load, which cost less per message: 70,000 readings/s offered kept a
    ## p99 of 1.67 s with 0.5 and fell behind with 0.2; detection's p99 0.23 -> 0.54 s
    ## (docs/ingestion.md, seventh round).
    ingest_batch_wait: Annotated[float, Field(gt=0, le=10)] = 0.5
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
    ## Signs bearer tokens and dashboard sessions and peppers API-key digests (12+ characters).
    ## Empty: derived from LEASEWATCH_API_KEY (then rotating that key invalidates user keys too).
    auth_secret: SecretStr = SecretStr("")
    ## Lifetimes of bearer tokens (POST /v1/auth/token) and dashboard sessions, in seconds.
    token_ttl_s: Annotated[int, Field(ge=60, le=86_400)] = 900
    session_ttl_s: Annotated[int, Field(ge=300, le=7 * 86_400)] = 8 * 3600
    ## Mosquitto files the API rewrites when it provisions gateways (unset: broker managed
    ## elsewhere); base files hold the service accounts; the pid file names the process to SIGHUP.
    broker_password_file: Path | None = None
    broker_acl_file: Path | None = None
    broker_base_password_file: Path | None = None
    broker_base_acl_file: Path | None = None
    broker_pid_file: Path | None = None

    ## Raw readings older than this are deleted hourly (SQLite; VictoriaMetrics uses its own
    ## -retentionPeriod). Rollups and the ledger are kept.
    telemetry_retention_days: Annotated[int, Field(ge=1)] = 400
    ## Ingest-only processes serve /healthz and /metrics here (0: off), on api_host.
    ops_port: Annotated[int, Field(ge=0, le=65535)] = 0
    ## How long a starting process keeps retrying stores that do not answer yet.
    startup_timeout_s: Annotated[float, Field(ge=0)] = 60.0

    ## Alert webhooks: comma-separated http(s) URLs that receive every alert event (empty: none).
    alert_webhook_urls: Annotated[tuple[str, ...], NoDecode, BeforeValidator(_split_urls)] = ()
    ## HMAC-SHA256 key signing webhook bodies; 12+ characters, required outside demo with URLs.
    alert_webhook_secret: SecretStr = SecretStr("")
    alert_webhook_timeout_s: Annotated[float, Field(gt=0, le=120)] = 10.0
    ## Delivery attempts per receiver before a dead letter; back-off doubles from base to cap.
    alert_retry_max_attempts: Annotated[int, Field(ge=1, le=100)] = 12
    alert_retry_base_s: Annotated[float, Field(gt=0, le=3600)] = 2.0
    alert_retry_cap_s: Annotated[float, Field(gt=0, le=86_400)] = 600.0
    ## Publish alert events (QoS 1) on lw/v1/alerts/{severity}/{device} as the ingestor user.
    alert_mqtt: bool = False
    ## How often the delivery task looks for due notifications.
    alert_poll_s: Annotated[float, Field(gt=0, le=60)] = 0.5

    ## Credit-system webhooks: URLs told of every lease band change (empty: none), and the
    ## HMAC-SHA256 key signing them (12+ characters, required outside demo with URLs).
    risk_webhook_urls: Annotated[tuple[str, ...], NoDecode, BeforeValidator(_split_urls)] = ()
    risk_webhook_secret: SecretStr = SecretStr("")
    ## Rescore leases whose data changed this often (0: off); rescore any score older than max age.
    risk_rescore_interval_s: Annotated[float, Field(ge=0, le=86_400)] = 60.0
    risk_rescore_max_age_s: Annotated[float, Field(gt=0)] = 3600.0
    ## Scoring rules file (unset: the packaged cloud/risk/rules.toml).
    risk_rules_file: Path | None = None

    ## Gateway commands (docs/commands.md): how long a command stays valid unless its request
    ## says otherwise (unanswered by then: expired, and the gateway will not run it), and how
    ## often the API's command link looks for queued commands and expired ones.
    command_ttl_s: Annotated[float, Field(ge=5, le=7 * 86_400)] = 3600.0
    command_poll_s: Annotated[float, Field(gt=0, le=60)] = 0.5

    @model_validator(mode="after")
    def _webhook_secret_when_webhooks(self) -> Self:
        """Refuse webhooks without a strong signing secret outside demo mode."""
        secret = self.alert_webhook_secret.get_secret_value()
        weak = secret.lower() in _KNOWN_WEAK or len(secret) < 12
        if self.alert_webhook_urls and self.mode != "demo" and weak:
            raise ValueError(
                "LEASEWATCH_ALERT_WEBHOOK_SECRET must be set to a secret of 12 or more "
                "characters when LEASEWATCH_ALERT_WEBHOOK_URLS is set"
            )
        return self

    @model_validator(mode="after")
    def _access_settings(self) -> Self:
        """A set auth secret must be strong; broker password and ACL files come as a pair."""
        secret = self.auth_secret.get_secret_value()
        if secret and self.mode != "demo" and (secret.lower() in _KNOWN_WEAK or len(secret) < 12):
            raise ValueError("LEASEWATCH_AUTH_SECRET must be 12 or more characters when set")
        if (self.broker_password_file is None) != (self.broker_acl_file is None):
            raise ValueError(
                "LEASEWATCH_BROKER_PASSWORD_FILE and LEASEWATCH_BROKER_ACL_FILE go together"
            )
        return self

    @model_validator(mode="after")
    def _risk_secret_when_webhooks(self) -> Self:
        """Refuse credit-system webhooks without a strong signing secret outside demo mode."""
        secret = self.risk_webhook_secret.get_secret_value()
        weak = secret.lower() in _KNOWN_WEAK or len(secret) < 12
        if self.risk_webhook_urls and self.mode != "demo" and weak:
            raise ValueError(
                "LEASEWATCH_RISK_WEBHOOK_SECRET must be set to a secret of 12 or more "
                "characters when LEASEWATCH_RISK_WEBHOOK_URLS is set"
            )
        return self

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
