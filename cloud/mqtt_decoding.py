"""Cheaper MQTT 5 packet decoding for paho-mqtt 2.x, installed by the ingestor.

paho decodes every incoming PUBLISH into a new `Properties` object whose constructor builds
its constant tables (27 property names, 27 property types with their packet lists) again, and
whose `unpack` first probes all 27 names with `hasattr` to clear it. On the ingestor's receive
path that was about 15 us per message, more than the payload's own decoding per reading.
`SharedTableProperties` keeps the tables on the class (built once from paho's own) and clears
only the attributes it holds; decoding is otherwise paho's, so every property decodes, checks
and reads as before (`tests/cloud/test_mqtt_decoding.py` compares both on every property a
PUBLISH may carry).

`decode_publish` is paho's PUBLISH decoder without its `struct` formats made from each
packet's length (`f"!H{len(packet) - 2}s"`): every new length missed `struct`'s format cache
and the payload was copied three times; 6% of an ingest worker's CPU under `bench ingest`.
It slices instead, and hands a PUBLISH with properties to paho's own `Properties.unpack`.
"""

from __future__ import annotations

from paho.mqtt import _packet
from paho.mqtt.enums import MQTTProtocolVersion
from paho.mqtt.exception import MalformedPacket
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

_TABLES = ("types", "names", "properties")
PAHO_DECODE_PUBLISH = _packet.decode_publish  # paho's own, which the tests compare against


class SharedTableProperties(Properties):
    """paho's `Properties` whose constant tables are built once, on the class."""

    def __init__(self, packetType: int) -> None:  # noqa: N803 - paho's name
        object.__setattr__(self, "packetType", packetType)

    def clear(self) -> None:
        """Remove every property this object holds (paho probes each of the 27 names)."""
        for name in [n for n in vars(self) if n != "packetType"]:
            object.__delattr__(self, name)


_template = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
for _table in _TABLES:
    setattr(SharedTableProperties, _table, getattr(_template, _table))


def install_shared_table_properties() -> None:
    """Make paho's packet decoder build `SharedTableProperties` (process-wide, idempotent)."""
    _packet.Properties = SharedTableProperties  # type: ignore[attr-defined]


def variable_int(data: bytes | bytearray, start: int) -> tuple[int, int] | None:
    """(value, index after it) of the MQTT variable byte integer at `start`; None while it is
    incomplete, `MalformedPacket` when it runs past its 4 bytes (a packet's remaining length,
    an MQTT 5 properties length)."""
    value, shift = 0, 0
    for index in range(start, min(start + 4, len(data))):
        byte = data[index]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, index + 1
        shift += 7
    if len(data) >= start + 4:
        raise MalformedPacket("variable byte integer longer than 4 bytes")
    return None


def decode_publish(
    header: int, packet: bytes | bytearray, protocol: MQTTProtocolVersion
) -> _packet.PublishPacket:
    """Decode a PUBLISH's variable header and payload as paho's `decode_publish` does."""
    size = len(packet)
    if size < 2:
        raise MalformedPacket("PUBLISH shorter than its topic length")
    end = 2 + ((packet[0] << 8) | packet[1])
    if end > size:
        raise MalformedPacket("topic longer than the PUBLISH")
    topic = bytes(packet[2:end])
    if protocol != MQTTProtocolVersion.MQTTv5 and not topic:
        raise MalformedPacket("topic can't be empty in MQTTv3")
    qos = (header & 0x06) >> 1
    mid = 0
    if qos > 0:
        if end + 2 > size:
            raise MalformedPacket("PUBLISH without its packet identifier")
        mid, end = (packet[end] << 8) | packet[end + 1], end + 2
    properties = None
    if protocol == MQTTProtocolVersion.MQTTv5:
        properties = SharedTableProperties(PacketTypes.PUBLISH)
        if end < size and packet[end] == 0:  # no properties: the usual PUBLISH
            end += 1
        else:
            try:
                _found, length = properties.unpack(packet[end:])  # type: ignore[no-untyped-call]
            except _packet.DECODE_ERRORS as err:
                raise MalformedPacket(str(err)) from err
            end += length
    return _packet.PublishPacket(
        dup=bool(header & 0x08),
        qos=qos,
        retain=bool(header & 0x01),
        topic=topic,
        mid=mid,
        properties=properties,
        payload=bytes(packet[end:]),
    )


def install_fast_publish_decoding() -> None:
    """Make paho decode PUBLISHes with `decode_publish` and `SharedTableProperties`."""
    install_shared_table_properties()
    _packet.decode_publish = decode_publish
