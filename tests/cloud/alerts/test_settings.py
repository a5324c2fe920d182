"""Alert settings: webhook URLs from the environment, and a signing secret when they are set."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from cloud.alerts.receivers import MQTT_RECEIVER, receiver_ids, redact, webhook_id
from cloud.settings import CloudSettings, SettingsError, load_settings

URLS = "https://hooks.example.com/lw?token=t1, https://ops.example.com/alerts"


def test_webhook_urls_are_comma_separated_and_named_without_their_tokens(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LEASEWATCH_ALERT_WEBHOOK_URLS", URLS)
    monkeypatch.setenv("LEASEWATCH_ALERT_MQTT", "true")
    settings = CloudSettings(mode="demo")
    first, second = settings.alert_webhook_urls
    assert second == "https://ops.example.com/alerts"
    assert receiver_ids(settings) == (webhook_id(first), webhook_id(second), MQTT_RECEIVER)
    assert redact(first) == "https://hooks.example.com/lw"
    assert "t1" not in webhook_id(first)


def test_webhooks_need_a_strong_secret_outside_demo(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="LEASEWATCH_ALERT_WEBHOOK_SECRET"):
        CloudSettings(alert_webhook_urls=("https://a.example/h",), alert_webhook_secret="short")
    CloudSettings(
        alert_webhook_urls=("https://a.example/h",),
        alert_webhook_secret=SecretStr("a-long-enough-secret"),
    )
    CloudSettings()  # no webhooks: no secret needed
    monkeypatch.setenv("LEASEWATCH_ALERT_WEBHOOK_URLS", "https://a.example/h")
    monkeypatch.setenv("LEASEWATCH_MQTT_PASSWORD", "mqtt-password-0001")
    monkeypatch.setenv("LEASEWATCH_API_KEY", "api-key-0001-0001")
    with pytest.raises(SettingsError, match="LEASEWATCH_ALERT_WEBHOOK_SECRET"):
        load_settings()


def test_webhook_urls_must_be_http() -> None:
    with pytest.raises(ValidationError, match="must start with http"):
        CloudSettings(mode="demo", alert_webhook_urls=("ftp://a.example/h",))
