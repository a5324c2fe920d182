"""Fleet mode's PUBACK decoding reads every PUBACK as paho's own decoder does."""

from __future__ import annotations

import pytest
from paho.mqtt import _packet
from paho.mqtt.enums import MQTTProtocolVersion
from paho.mqtt.exception import MalformedPacket
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from firmware_sim.fleet_publish import _PAHO_DECODE_PUBACK, decode_puback, install_fast_puback

V5, V311 = MQTTProtocolVersion.MQTTv5, MQTTProtocolVersion.MQTTv311
HEADER = 0x40
PUBACK_CODES = [0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99]


def _same(packet: bytes, protocol: MQTTProtocolVersion) -> _packet.PubackPacket:
    """Decode with both; assert they agree on id, reason and properties; return ours."""
    ours = decode_puback(HEADER, packet, protocol)
    paho = _PAHO_DECODE_PUBACK(HEADER, packet, protocol)
    assert ours.mid == paho.mid
    assert (ours.reason.value, ours.reason.getName(), str(ours.reason), repr(ours.reason)) == (
        paho.reason.value,
        paho.reason.getName(),
        str(paho.reason),
        repr(paho.reason),
    )
    assert ours.reason == paho.reason and ours.reason.packetType == paho.reason.packetType
    assert ours.properties.json() == paho.properties.json()  # type: ignore[no-untyped-call]
    assert ours.properties.pack() == paho.properties.pack()  # type: ignore[no-untyped-call]
    return ours


def test_paho_lists_exactly_the_puback_codes_of_mqtt_5() -> None:
    valid = [c for c in range(256) if _valid(c)]
    assert valid == PUBACK_CODES


def _valid(code: int) -> bool:
    try:
        ReasonCode(PacketTypes.PUBACK, identifier=code)
    except (KeyError, ValueError):
        return False
    return True


@pytest.mark.parametrize("code", PUBACK_CODES)
def test_every_reason_code_decodes_as_paho_decodes_it(code: int) -> None:
    mid = (0x12AB).to_bytes(2, "big")
    assert _same(mid + bytes([code]), V5).reason.value == code
    assert _same(mid + bytes([code, 0]), V5).mid == 0x12AB


def test_short_and_mqtt_3_pubacks_are_a_success() -> None:
    assert _same(b"\x00\x07", V5).reason.value == 0
    assert _same(b"\xff\xff", V311).mid == 0xFFFF


def test_pubacks_with_properties_are_paho_s_own() -> None:
    properties = Properties(PacketTypes.PUBACK)  # type: ignore[no-untyped-call]
    properties.ReasonString = "quota exceeded"
    properties.UserProperty = ("tenant", "acme")
    packed: bytes = properties.pack()  # type: ignore[no-untyped-call]
    decoded = _same(b"\x00\x09\x97" + packed, V5)
    assert getattr(decoded.properties, "ReasonString", None) == "quota exceeded"


@pytest.mark.parametrize(
    ("packet", "protocol"),
    [(b"\x00\x01\x05", V5), (b"\x00", V5), (b"\x00\x01\x10", V311), (b"\x00\x01\x00\x03", V5)],
)
def test_malformed_pubacks_are_rejected_as_paho_rejects_them(
    packet: bytes, protocol: MQTTProtocolVersion
) -> None:
    with pytest.raises(MalformedPacket) as paho:
        _PAHO_DECODE_PUBACK(HEADER, packet, protocol)
    with pytest.raises(MalformedPacket) as ours:
        decode_puback(HEADER, packet, protocol)
    assert str(ours.value) == str(paho.value)


def test_installing_makes_paho_use_it() -> None:
    install_fast_puback()
    install_fast_puback()
    assert _packet.decode_puback is decode_puback
