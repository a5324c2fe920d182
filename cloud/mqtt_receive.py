"""The ingestor's MQTT receive path: PUBLISH packets taken straight off a buffered socket.

paho-mqtt reads one packet per readiness of the socket, with a `recv` for its command byte, one
per byte of its remaining length and one for its body; it then builds an `MQTTMessage`, matches
its topic against the callbacks, and aiomqtt wraps it once more in a `Message` on an asyncio
queue of its own, which the ingestor moves to its batch queue. Under `bench ingest` that was
about a third of an ingest worker's interpreter time (docs/ingestion.md, eighth round), taken
from the thread that holds SQLite's write lock. An ingestor needs none of it for a PUBLISH:
its topic, payload, packet identifier and QoS.

`install_publish_reader` replaces the packet reader of one paho client, before it connects.
Each call reads what the socket has (up to `READ_SIZE` bytes) into a buffer and takes every
whole packet from it, in order:
- a PUBLISH of QoS 0 or 1 with a UTF-8 topic goes to the sink, decoded by `decode_publish`
  (the decoder paho itself uses in an ingestor: properties, MQTT 3.1.1 and 5, the same
  `MalformedPacket` for a broken packet, which ends the connection as paho's reader does);
- every other packet (CONNACK, SUBACK, PINGRESP, DISCONNECT; a QoS 2 PUBLISH, a topic alias,
  a topic that is not UTF-8) goes to paho's own handler, exactly as its reader hands it over;
  such a PUBLISH (an ingestor's session gets none) reaches the ingestor through aiomqtt.
A partial packet stays in the buffer until the rest arrives. PUBACKs are still paho's
(`Client.ack`, manual acknowledgement), and so are connecting, keep-alive and writing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from paho.mqtt.client import Client
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.exception import MalformedPacket

from cloud.mqtt_decoding import decode_publish, variable_int

READ_SIZE = 256 * 1024  # bytes per recv: about 80 fleet messages
_PUBLISH = 0x30

#: Receives each PUBLISH: topic, payload, packet identifier (0 at QoS 0), QoS.
PublishSink = Callable[[str, bytes, int, int], None]


def install_publish_reader(client: Client, sink: PublishSink) -> None:
    """Read `client`'s packets with `PublishReader`, PUBLISHes going to `sink` (before connect).

    Every PUBLISH of QoS 0 or 1 then bypasses paho's and aiomqtt's message callbacks.
    """
    client._packet_read = PublishReader(client, sink).read  # type: ignore[method-assign]


class PublishReader:
    """A paho client's packet reader: buffered, PUBLISHes to a sink, the rest to paho."""

    def __init__(self, client: Client, sink: PublishSink) -> None:
        self.client = client
        self.sink = sink
        self.buffer = bytearray()

    def read(self) -> MQTTErrorCode:
        """What paho's `_packet_read` does, for every whole packet the socket has."""
        c: Any = self.client  # paho's private reader state
        try:
            data = c._sock.recv(READ_SIZE)
        except BlockingIOError:
            return MQTTErrorCode.MQTT_ERR_AGAIN
        except OSError:
            return MQTTErrorCode.MQTT_ERR_CONN_LOST
        if not data:
            return MQTTErrorCode.MQTT_ERR_CONN_LOST
        buffer = self.buffer
        buffer += data
        with c._msgtime_mutex:
            c._last_bytes_received = time.monotonic()  # paho's keep-alive clock
        rc, taken = self._take_packets(buffer)
        del buffer[:taken]
        return rc

    def _take_packets(self, buffer: bytearray) -> tuple[MQTTErrorCode, int]:
        """Handle every whole packet at the start of `buffer`: (result, bytes taken)."""
        size, pos = len(buffer), 0
        while size - pos >= 2:
            try:
                found = variable_int(buffer, pos + 1)  # the remaining length
            except MalformedPacket:
                return MQTTErrorCode.MQTT_ERR_PROTOCOL, pos
            if found is None:
                break  # the length is still coming
            length, body = found
            end = body + length
            if end > size:
                break  # the body is still coming
            header = buffer[pos]
            packet = buffer[body:end]
            pos = end
            if header & 0xF0 == _PUBLISH and (header & 0x06) >> 1 < 2:
                rc = self._publish(header, packet)
            else:
                rc = self._to_paho(header, packet)
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return rc, pos
        return MQTTErrorCode.MQTT_ERR_AGAIN, pos

    def _publish(self, header: int, packet: bytearray) -> MQTTErrorCode:
        try:
            found = decode_publish(header, packet, self.client.protocol)
        except MalformedPacket:
            return MQTTErrorCode.MQTT_ERR_PROTOCOL
        try:
            topic = found.topic.decode()
        except UnicodeDecodeError:
            return self._to_paho(header, packet)  # paho's way with such a topic
        if not topic:  # MQTT 5 topic alias: paho resolves it
            return self._to_paho(header, packet)
        self.sink(topic, bytes(found.payload), found.mid, found.qos)  # bytes already: no copy
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _to_paho(self, header: int, packet: bytearray) -> MQTTErrorCode:
        """Hand one whole packet to paho's handler, as its own reader does."""
        c: Any = self.client
        c._in_packet = _in_packet(header, packet)
        try:
            rc: MQTTErrorCode = c._packet_handle()
        except MalformedPacket:
            rc = MQTTErrorCode.MQTT_ERR_PROTOCOL
        c._in_packet = _in_packet(0, bytearray())
        return rc


def _in_packet(command: int, packet: bytearray) -> dict[str, Any]:
    """paho's reader state holding one whole packet (`command` 0: none)."""
    return {
        "command": command,
        "have_remaining": int(bool(command)),
        "remaining_count": [],
        "remaining_mult": 1,
        "remaining_length": len(packet),
        "packet": packet,
        "to_process": 0,
        "pos": 0,
    }
