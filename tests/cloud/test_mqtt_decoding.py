"""paho's PUBLISH decoding with shared property tables reads every property as paho's own does."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from paho.mqtt import _packet
from paho.mqtt.enums import MQTTProtocolVersion
from paho.mqtt.exception import MQTTException
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from cloud.mqtt_decoding import SharedTableProperties, install_shared_table_properties


def _publish_packet(properties: Properties | None) -> bytes:
    """The variable header and payload of a QoS 1 PUBLISH (what follows the fixed header)."""
    topic = b"lw/v1/gw-0001/telemetry"
    packed = properties.pack() if properties is not None else b"\x00"
    return len(topic).to_bytes(2, "big") + topic + (7).to_bytes(2, "big") + packed + b'{"v":1}'


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
    stock = _packet.decode_publish(0x32, packet, MQTTProtocolVersion.MQTTv5)
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
