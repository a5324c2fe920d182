"""QoS 1 publishing for fleet mode, cheaper per message than aiomqtt's `publish`.

aiomqtt's `publish` waits for the PUBACK through an `asyncio.Event` inside `asyncio.wait_for`
(a task and a timer per message), and paho decodes every PUBACK into two new `ReasonCode`
objects (each copying a 45-entry table and searching it) and new `Properties`. Fleet mode sends
thousands of messages a second, so it publishes through the connection's paho client itself:
`Acknowledgements.publish` awaits a plain future that paho's `on_publish` resolves with the
PUBACK's reason code. A publish outstanding when the connection drops is not timed out here:
fleet mode's watcher sees the drop and cancels its publishers, which hold the message.

`decode_puback` is paho's PUBACK decoding for the packets brokers send (message id, a reason
code, no properties) without rebuilding those tables; anything else (properties, an invalid
code, a wrong length) goes to paho's own decoder, which reads or rejects it as before
(`tests/firmware_sim/test_fleet_publish.py` compares both on every PUBACK reason code).
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiomqtt
import paho.mqtt.client as mqtt
from paho.mqtt import _packet
from paho.mqtt.enums import MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from cloud.mqtt_decoding import SharedTableProperties, install_shared_table_properties

_PAHO_DECODE_PUBACK = _packet.decode_puback


class SharedNamesReasonCode(ReasonCode):
    """paho's `ReasonCode` reading its name table from the class instead of copying it."""

    def __init__(self, packetType: int, identifier: int) -> None:  # noqa: N803 - paho's name
        self.packetType = packetType
        self.value = identifier


_PUBACK_CODES = frozenset(
    code
    for code, names in ReasonCode.names.items()
    if sum(PacketTypes.PUBACK in types for types in names.values()) == 1
)


def decode_puback(
    header: int, packet: bytes | bytearray, protocol: MQTTProtocolVersion
) -> _packet.PubackPacket:
    """A PUBACK as paho decodes it; the usual packet (no properties) without paho's overhead."""
    size = len(packet)
    plain = size == 2 or (
        protocol == MQTTProtocolVersion.MQTTv5 and (size == 3 or (size == 4 and packet[3] == 0))
    )
    code = packet[2] if size > 2 else 0
    if not plain or code not in _PUBACK_CODES:
        return _PAHO_DECODE_PUBACK(header, packet, protocol)
    return _packet.PubackPacket(
        mid=(packet[0] << 8) | packet[1],
        reason=SharedNamesReasonCode(PacketTypes.PUBACK, code),
        properties=SharedTableProperties(PacketTypes.PUBACK),
    )


def install_fast_puback() -> None:
    """Make paho decode PUBACKs with `decode_puback` (process-wide, idempotent)."""
    install_shared_table_properties()
    _packet.decode_puback = decode_puback


class Acknowledgements:
    """QoS 1 publishes through a connected client, each awaiting its PUBACK's reason code."""

    def __init__(self, client: aiomqtt.Client) -> None:
        """Take over the client's publish acknowledgements (others still reach aiomqtt)."""
        self._paho = paho = client._client
        self._loop = asyncio.get_running_loop()
        self._waiting: dict[int, asyncio.Future[int]] = {}
        forward: Any = paho.on_publish
        waiting = self._waiting

        def on_publish(c: Any, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
            future = waiting.pop(mid, None)
            if future is None:
                forward(c, userdata, mid, reason, properties)
            elif not future.done():
                future.set_result(int(getattr(reason, "value", 0) or 0))

        paho.on_publish = on_publish

    async def publish(self, topic: str, payload: bytes, *, retain: bool) -> int:
        """Publish at QoS 1 and return the PUBACK's reason code (0 on MQTT 3.1.1)."""
        info = self._paho.publish(topic, payload, 1, retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise aiomqtt.MqttCodeError(info.rc, "Could not publish message")
        future = self._loop.create_future()
        self._waiting[info.mid] = future
        try:
            code: int = await future
        except BaseException:
            self._waiting.pop(info.mid, None)
            raise
        return code
