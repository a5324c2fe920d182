"""Reads MQTT packets out of a client's byte stream, to see every PUBLISH a gateway sends.

Only the framing is parsed (fixed header, CONNECT's protocol level, PUBLISH topic, packet id
and MQTT 5 properties); payloads are decoded by `leasewatch.wire`. Anything the parser cannot
frame (`MqttFrameError`, or paho's `MalformedPacket` for an over-long variable byte integer)
ends the tap for that connection with a counted error, never a guess.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cloud.mqtt_decoding import variable_int

CONNECT, PUBLISH = 1, 3


class MqttFrameError(Exception):
    """The byte stream is not MQTT as this parser knows it."""


@dataclass(frozen=True, slots=True)
class Publish:
    """One PUBLISH packet as the client sent it."""

    topic: str
    payload: bytes
    qos: int
    dup: bool


@dataclass
class MqttStreamParser:
    """Feed it client-to-broker bytes; it returns the PUBLISH packets completed so far."""

    protocol_level: int = 4
    _buffer: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> list[Publish]:
        """Append bytes; every PUBLISH completed by them, in order."""
        self._buffer.extend(data)
        found: list[Publish] = []
        while (packet := self._next_packet()) is not None:
            kind, flags, body = packet
            if kind == CONNECT:
                self.protocol_level = self._connect_level(body)
            elif kind == PUBLISH:
                found.append(self._publish(flags, body))
        return found

    def _next_packet(self) -> tuple[int, int, bytes] | None:
        if len(self._buffer) < 2:
            return None
        length = variable_int(self._buffer, 1)
        if length is None:
            return None
        size, start = length
        if len(self._buffer) < start + size:
            return None
        first = self._buffer[0]
        body = bytes(self._buffer[start : start + size])
        del self._buffer[: start + size]
        return first >> 4, first & 0x0F, body

    @staticmethod
    def _connect_level(body: bytes) -> int:
        name_length = int.from_bytes(body[0:2], "big")
        return body[2 + name_length]

    def _publish(self, flags: int, body: bytes) -> Publish:
        qos = (flags >> 1) & 0x03
        topic_length = int.from_bytes(body[0:2], "big")
        index = 2 + topic_length
        topic = body[2:index].decode("utf-8")
        if qos:
            index += 2
        if self.protocol_level == 5:
            props = variable_int(body, index)
            if props is None:
                raise MqttFrameError("PUBLISH properties length is cut short")
            index = props[1] + props[0]
        return Publish(topic, body[index:], qos, bool(flags & 0x08))
