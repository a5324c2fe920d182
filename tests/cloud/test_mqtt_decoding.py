"""Our PUBLISH decoding (shared property tables, plain slicing) reads packets as paho does."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt import _packet
from paho.mqtt.enums import MQTTProtocolVersion
from paho.mqtt.exception import MalformedPacket, MQTTException
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from cloud.mqtt_decoding import (
    PAHO_DECODE_PUBLISH,
    SharedTableProperties,
    decode_publish,
    install_fast_publish_decoding,
    install_shared_table_properties,
)

TOPIC = b"lw/v1/gw-0001/telemetry"


def _publish_packet(
    properties: Properties | None, topic: bytes = TOPIC, mid: int = 7, payload: bytes = b'{"v":1}'
) -> bytes:
    """The variable header and payload of a QoS 1 PUBLISH (what follows the fixed header)."""
    packed = properties.pack() if properties is not None else b"\x00"
    return len(topic).to_bytes(2, "big") + topic + mid.to_bytes(2, "big") + packed + payload


def _all_publish_properties() -> Properties:
    found = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    found.PayloadFormatIndicator = 1
    found.MessageExpiryInterval = 3600
    found.ContentType = "application/json"
    found.ResponseTopic = "lw/v1/gw-0001/reply"
    found.CorrelationData = b"\x01\x02"
    found.SubscriptionIdentifier = 42
    found.TopicAlias = 3
    found.UserProperty = ("tenant", "acme")
    found.UserProperty = ("site", "rotterdam")
    return found


@pytest.fixture
def stock_properties() -> Iterator[None]:
    """paho's own Properties in the decoder for the test's duration."""
    saved = _packet.Properties
    _packet.Properties = Properties  # type: ignore[attr-defined]
    yield
    _packet.Properties = saved  # type: ignore[attr-defined]


@pytest.mark.parametrize("properties", [None, _all_publish_properties()])
@pytest.mark.usefixtures("stock_properties")
def test_shared_tables_decode_every_publish_property_as_paho_does(
    properties: Properties | None,
) -> None:
    packet = _publish_packet(properties)
    stock = PAHO_DECODE_PUBLISH(0x32, packet, MQTTProtocolVersion.MQTTv5)
    install_shared_table_properties()
    shared = _packet.decode_publish(0x32, packet, MQTTProtocolVersion.MQTTv5)
    assert type(stock.properties) is Properties
    assert type(shared.properties) is SharedTableProperties
    assert shared.properties is not None and stock.properties is not None
    assert shared.properties.json() == stock.properties.json()
    assert shared.properties.isEmpty() == (properties is None)
    assert (shared.payload, shared.mid, shared.topic) == (stock.payload, stock.mid, stock.topic)
    if properties is not None:
        assert shared.properties.json()["UserProperty"] == [
            ("tenant", "acme"),
            ("site", "rotterdam"),
        ]


def test_shared_tables_refuse_a_property_the_packet_may_not_carry() -> None:
    found = SharedTableProperties(PacketTypes.PUBLISH)
    with pytest.raises(MQTTException, match="does not apply"):
        found.SessionExpiryInterval = 10
    found.MessageExpiryInterval = 5
    found.clear()
    assert found.isEmpty()
    assert found.json() == {}


def _outcome(
    decode: Callable[..., _packet.PublishPacket], header: int, packet: bytes, protocol: int
) -> tuple[object, ...]:
    try:
        found = decode(header, packet, MQTTProtocolVersion(protocol))
    except MalformedPacket:
        return ("malformed",)
    properties = None if found.properties is None else found.properties.json()
    return (found.dup, found.qos, found.retain, found.topic, found.mid, properties, found.payload)


PACKETS = st.one_of(
    st.binary(max_size=40),
    st.builds(
        lambda topic, mid, properties, payload, cut: _publish_packet(
            properties, topic, mid, payload
        )[: cut or None],
        st.binary(max_size=30),
        st.integers(0, 65_535),
        st.sampled_from([None, _all_publish_properties()]),
        st.binary(max_size=40),
        st.integers(0, 80),
    ),
)


@settings(max_examples=500)
@given(header=st.integers(0x30, 0x3F), packet=PACKETS, protocol=st.sampled_from([4, 5]))
def test_publish_decoding_matches_paho_on_any_packet(
    header: int, packet: bytes, protocol: int
) -> None:
    ours = _outcome(decode_publish, header, packet, protocol)
    assert ours == _outcome(PAHO_DECODE_PUBLISH, header, packet, protocol)


def test_the_ingestor_installs_the_publish_decoder() -> None:
    install_fast_publish_decoding()
    assert _packet.decode_publish is decode_publish
    decoded = _packet.decode_publish(0x32, _publish_packet(None), MQTTProtocolVersion.MQTTv5)
    assert (decoded.topic, decoded.mid, decoded.payload) == (TOPIC, 7, b'{"v":1}')
