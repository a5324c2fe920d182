"""What the gateways sent, as seen on their wire: every telemetry message by (device, boot, seq).

`WireRecord.on_publish` is the relays' tap. A message sent more than once (QoS 1 re-sends
after a reconnect) is one message with a send count; what it carried is recorded once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from leasewatch.chaos.mqtt_tap import Publish
from leasewatch.wire import (
    GatewayHealth,
    RejectedMessageError,
    decode_health,
    decode_telemetry,
    parse_topic,
)

MessageKey = tuple[str, str, int]  # device, boot, seq
ReadingKey = tuple[str, str, str, int]  # device, sensor, metric, epoch ms


@dataclass
class SentMessage:
    """One telemetry message a gateway published (at least once)."""

    device: str
    boot: str
    seq: int
    readings: frozenset[ReadingKey]
    historical: bool
    first_seen: datetime  # true time the relay first saw it
    sends: int = 1


@dataclass
class WireRecord:
    """Every telemetry message and the newest health report of each gateway."""

    messages: dict[MessageKey, SentMessage] = field(default_factory=dict)
    health: dict[str, GatewayHealth] = field(default_factory=dict)
    undecodable: int = 0

    def on_publish(self, publish: Publish) -> None:
        """Record one PUBLISH from a gateway."""
        try:
            _, kind = parse_topic(publish.topic)
            if kind == "telemetry":
                self._telemetry(publish)
            elif kind == "health":
                report = decode_health(publish.topic, publish.payload)
                self.health[report.device] = report
        except (RejectedMessageError, ValueError):
            self.undecodable += 1

    def _telemetry(self, publish: Publish) -> None:
        batch = decode_telemetry(publish.topic, publish.payload)
        key = (batch.device, batch.boot, batch.seq)
        if (known := self.messages.get(key)) is not None:
            known.sends += 1
            return
        readings = frozenset(
            (batch.device, r.sensor, r.metric, round(r.ts.timestamp() * 1000))
            for r in batch.readings
        )
        self.messages[key] = SentMessage(*key, readings, batch.historical, datetime.now(UTC))
