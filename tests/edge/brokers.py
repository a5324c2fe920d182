"""How the edge tests' gateways reach the Mosquitto a test started."""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from edge.config import MqttConfig
from tests.services.mosquitto import MosquittoBroker


def gateway_mqtt(broker: MosquittoBroker, device: str = "gw-0001", **update: Any) -> MqttConfig:
    """A gateway's MQTT section for a test broker: its password, no TLS, quick reconnects."""
    settings: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": broker.port,
        "username": device,
        "password": SecretStr(broker.password(device)),
        "tls": False,
        "reconnect_max": 1.0,
        **update,
    }
    return MqttConfig.model_validate(settings)
