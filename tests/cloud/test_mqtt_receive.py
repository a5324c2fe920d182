"""The buffered PUBLISH reader delivers what paho's own reader delivers, however bytes arrive.

Both read the same packets from a real socket pair: paho's `_packet_read` with its message
callback, and `PublishReader` with its sink. Packets that are not a QoS 0/1 PUBLISH must reach
paho's handler unchanged (PINGRESP here; CONNACK and SUBACK in every test that talks to
Mosquitto through `cloud.ingest_link`).
"""

from __future__ import annotations

import itertools
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt.client import Client, MQTTMessage
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from cloud.mqtt_receive import READ_SIZE, PublishReader, install_publish_reader

PINGRESP = b"\xd0\x00"
Delivered = tuple[str, bytes, int, int]


def _length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


#: A PUBLISH to send: topic, payload, packet identifier, QoS, MQTT 5 properties.
PublishItem = tuple[str, bytes, int, int, Properties | None]


def _publish(item: PublishItem, *, v5: bool) -> bytes:
    topic, payload, mid, qos, properties = item
    name = topic.encode()
    body = len(name).to_bytes(2, "big") + name
    if qos:
        body += mid.to_bytes(2, "big")
    if v5:
        body += properties.pack() if properties is not None else b"\x00"  # type: ignore[no-untyped-call]
    body += payload
    return bytes([0x30 | qos << 1]) + _length(len(body)) + body


def _properties(expiry: int, user: tuple[str, str] | None) -> Properties:
    found = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    found.MessageExpiryInterval = expiry
    if user is not None:
        found.UserProperty = user
    return found


@contextmanager
def _socket_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A connected socket pair: (the broker's end, the client's non-blocking end)."""
    broker, ours = socket.socketpair()
    try:
        for end in (broker, ours):  # room for a whole READ_SIZE in flight
            end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 2 * READ_SIZE)
            end.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2 * READ_SIZE)
        ours.setblocking(False)
        yield broker, ours
    finally:
        broker.close()
        ours.close()


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """`_socket_pair` for one test."""
    with _socket_pair() as ends:
        yield ends


def _client(sock: socket.socket, v5: bool) -> Client:
    protocol = MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311
    client = Client(CallbackAPIVersion.VERSION2, protocol=protocol, manual_ack=True)
    client._sock = sock
    return client


def _handled(client: Client) -> list[bytes]:
    """Record every packet paho's handler gets (command byte and body), then let it run."""
    seen: list[bytes] = []
    handle = client._packet_handle

    def recording() -> MQTTErrorCode:
        packet: Any = client._in_packet
        seen.append(bytes([packet["command"]]) + bytes(packet["packet"]))
        return handle()

    client._packet_handle = recording  # type: ignore[method-assign]
    return seen


def _through_paho(data: bytes, v5: bool) -> tuple[list[Delivered], list[bytes]]:
    with _socket_pair() as (broker, ours):
        client = _client(ours, v5)
        got: list[Delivered] = []

        def on_message(_c: Client, _u: object, m: MQTTMessage) -> None:
            got.append((m.topic, bytes(m.payload), m.mid, m.qos))

        client.on_message = on_message
        handled = _handled(client)
        broker.sendall(data)
        while client._packet_read() == MQTTErrorCode.MQTT_ERR_SUCCESS:
            pass
        return got, [p for p in handled if p[0] & 0xF0 != 0x30]


def _through_reader(
    pair: tuple[socket.socket, socket.socket], chunks: list[bytes], v5: bool
) -> tuple[list[Delivered], list[bytes], list[MQTTErrorCode]]:
    broker, ours = pair
    client = _client(ours, v5)
    got: list[Delivered] = []
    install_publish_reader(client, lambda *found: got.append(found))
    handled = _handled(client)
    results: list[MQTTErrorCode] = []
    for chunk in chunks:
        broker.sendall(chunk)
        while (rc := client._packet_read()) == MQTTErrorCode.MQTT_ERR_SUCCESS:
            pass
        results.append(rc)
    return got, handled, results


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


# MQTT strings: UTF-8 without U+0000 (control characters left out altogether)
names = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=8)
topics = st.from_regex(r"lw/v1/gw-[0-9]{4}/(telemetry|status|health)", fullmatch=True)
packets = st.one_of(
    st.builds(
        lambda topic, payload, mid, qos, props: (topic, payload, mid, qos, props),
        topics,
        st.binary(max_size=3000),
        st.integers(1, 65535),
        st.sampled_from([0, 1]),
        st.one_of(
            st.none(),
            st.builds(
                _properties,
                st.integers(1, 2**31),
                st.one_of(st.none(), st.tuples(names, names)),
            ),
        ),
    ),
    st.just(PINGRESP),
)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(packets, min_size=1, max_size=12),
    st.booleans(),
    st.lists(st.integers(0, 40_000), max_size=8),
)
def test_the_reader_delivers_what_paho_delivers_in_any_chunking(
    items: list[Any], v5: bool, cuts: list[int]
) -> None:
    data = b"".join(item if isinstance(item, bytes) else _publish(item, v5=v5) for item in items)
    expected, expected_other = _through_paho(data, v5)
    with _socket_pair() as ends:
        got, handled, results = _through_reader(ends, _split(data, cuts), v5)
    assert got == expected
    assert handled == expected_other  # PINGRESPs, in order, and no PUBLISH
    assert set(results) == {MQTTErrorCode.MQTT_ERR_AGAIN}
    assert len(got) == sum(not isinstance(item, bytes) for item in items)


def test_a_partial_packet_waits_for_the_rest(pair: tuple[socket.socket, socket.socket]) -> None:
    packet = _publish(("lw/v1/gw-0001/telemetry", b'{"v":1}' * 100, 9, 1, None), v5=True)
    broker, ours = pair
    client = _client(ours, True)
    got: list[Delivered] = []
    install_publish_reader(client, lambda *found: got.append(found))
    for part in (packet[:1], packet[1:2], packet[2:50]):  # command, half the length, some body
        broker.sendall(part)
        assert client._packet_read() == MQTTErrorCode.MQTT_ERR_AGAIN
        assert got == []
    broker.sendall(packet[50:])
    assert client._packet_read() == MQTTErrorCode.MQTT_ERR_AGAIN
    assert got == [("lw/v1/gw-0001/telemetry", b'{"v":1}' * 100, 9, 1)]


def test_many_packets_in_one_read_are_all_taken(pair: tuple[socket.socket, socket.socket]) -> None:
    one = _publish(("lw/v1/gw-0001/telemetry", b"x" * 3000, 1, 1, None), v5=True)
    count = READ_SIZE // len(one) - 1
    broker, ours = pair
    client = _client(ours, True)
    got: list[Delivered] = []
    install_publish_reader(client, lambda *found: got.append(found))
    broker.sendall(one * count)
    assert client._packet_read() == MQTTErrorCode.MQTT_ERR_AGAIN
    assert len(got) == count


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\x32\x03\x00\x09a", "topic longer than the packet"),
        (b"\x32\xff\xff\xff\xff\x01", "remaining length over 4 bytes"),
    ],
)
def test_a_malformed_packet_is_a_protocol_error_as_with_paho(
    pair: tuple[socket.socket, socket.socket], data: bytes, why: str
) -> None:
    broker, ours = pair
    client = _client(ours, True)
    install_publish_reader(client, lambda *found: pytest.fail(f"delivered: {found} ({why})"))
    broker.sendall(data)
    assert client._packet_read() == MQTTErrorCode.MQTT_ERR_PROTOCOL


def test_a_closed_connection_is_reported(pair: tuple[socket.socket, socket.socket]) -> None:
    broker, ours = pair
    client = _client(ours, True)
    install_publish_reader(client, lambda *found: None)
    assert client._packet_read() == MQTTErrorCode.MQTT_ERR_AGAIN  # nothing yet
    broker.close()
    assert client._packet_read() == MQTTErrorCode.MQTT_ERR_CONN_LOST


def test_the_reader_keeps_its_buffer_per_client() -> None:
    first, second = Client(CallbackAPIVersion.VERSION2), Client(CallbackAPIVersion.VERSION2)
    install_publish_reader(first, lambda *found: None)
    install_publish_reader(second, lambda *found: None)
    readers = [c._packet_read.__self__ for c in (first, second)]  # type: ignore[attr-defined]
    assert all(isinstance(r, PublishReader) for r in readers)
    assert readers[0].buffer is not readers[1].buffer
