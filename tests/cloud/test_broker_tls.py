"""The broker's gateway listener speaks TLS with the project's config and generated certificates.

A real Mosquitto runs deploy/mosquitto/mosquitto.conf with both listeners: gateways connect to
the TLS one exactly as the edge agent does (`edge.mqtt_client.make_client` from an edge
MqttConfig), the ingestor reads on the plain one; clients that do not trust the CA, or do not
speak TLS, are turned away, and passwords and ACLs apply over TLS unchanged.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import aiomqtt
import pytest
from aiomqtt.exceptions import MqttError
from cryptography import x509

from cloud.broker_access import BrokerAccessError, mosquitto_conf
from cloud.broker_tls import BrokerTlsError, TlsListener, make_broker_certificates
from edge.config import MqttConfig
from edge.mqtt_client import make_client
from leasewatch.wire import GatewayStatus, decode_status, encode, status_topic
from tests.services.mosquitto import DEPLOYED_CONF, INGESTOR, MosquittoBroker, default_principals
from tests.services.ports import wait_for_port

DEVICE = "gw-0001"


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    broker = MosquittoBroker(tmp_path, default_principals(), tls=True)
    broker.start()
    wait_for_port(broker.tls_port)
    yield broker
    broker.stop()


def _gateway_config(broker: MosquittoBroker, **changes: object) -> MqttConfig:
    assert broker.certificates is not None
    fields: dict[str, object] = {
        "host": "127.0.0.1",
        "port": broker.tls_port,
        "username": DEVICE,
        "password": broker.password(DEVICE),
        "ca_file": broker.certificates.ca_cert,
        "reconnect_max": 1.0,
    }
    return MqttConfig.model_validate(fields | changes)


def _status(state: str) -> bytes:
    return encode(GatewayStatus(device=DEVICE, boot="b1", state=state, ts=datetime.now(UTC)))


@pytest.mark.integration
async def test_a_gateway_publishes_over_tls_and_the_ingestor_reads_on_the_private_listener(
    tls_broker: MosquittoBroker,
) -> None:
    username, password = tls_broker.credentials(INGESTOR)
    async with aiomqtt.Client(
        "127.0.0.1", tls_broker.port, username=username, password=password
    ) as ingestor:
        await ingestor.subscribe(status_topic(DEVICE), qos=1)
        async with make_client(_gateway_config(tls_broker), DEVICE, "b1") as gateway:
            await gateway.publish(status_topic(DEVICE), _status("online"), qos=1, retain=True)
        async with asyncio.timeout(10):
            message = await anext(ingestor.messages)
    assert isinstance(message.payload, bytes)
    assert decode_status(str(message.topic), message.payload).state == "online"
    log = tls_broker.log_tail(200)
    assert f"Opening ipv4 listen socket on port {tls_broker.tls_port}" in log


@pytest.mark.integration
async def test_a_client_that_does_not_trust_the_ca_is_refused(tls_broker: MosquittoBroker) -> None:
    untrusting = ssl.create_default_context()  # the system's CAs, not the broker's private one
    with pytest.raises(MqttError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        async with aiomqtt.Client(
            "127.0.0.1",
            tls_broker.tls_port,
            username=DEVICE,
            password=tls_broker.password(DEVICE),
            tls_context=untrusting,
            timeout=5,
        ):
            pass


@pytest.mark.integration
async def test_plain_mqtt_on_the_tls_port_gets_nowhere(tls_broker: MosquittoBroker) -> None:
    with pytest.raises(MqttError):
        async with aiomqtt.Client(
            "127.0.0.1",
            tls_broker.tls_port,
            username=DEVICE,
            password=tls_broker.password(DEVICE),
            timeout=3,
        ):
            pass


@pytest.mark.integration
async def test_passwords_and_topic_rules_hold_over_tls(tls_broker: MosquittoBroker) -> None:
    with pytest.raises(MqttError, match=r"[Nn]ot authorized|[Bb]ad user name or password"):
        async with make_client(
            _gateway_config(tls_broker, password="not-the-password"), DEVICE, "b1"
        ):
            pass
    other = status_topic("gw-0002")
    username, password = tls_broker.credentials(INGESTOR)
    async with aiomqtt.Client(
        "127.0.0.1", tls_broker.port, username=username, password=password
    ) as ingestor:
        await ingestor.subscribe(other, qos=1)
        async with make_client(_gateway_config(tls_broker), DEVICE, "b1") as gateway:
            await gateway.publish(other, _status("online"), qos=1)  # another gateway's topic
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(2):
                await anext(ingestor.messages)


def test_the_server_certificate_names_the_hosts_and_chains_to_the_ca(tmp_path: Path) -> None:
    files = make_broker_certificates(tmp_path, ["mqtt.example.com", "10.0.0.5"])
    cert = x509.load_pem_x509_certificate(files.server_cert.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["mqtt.example.com"]
    assert [str(a) for a in names.get_values_for_type(x509.IPAddress)] == ["10.0.0.5"]
    ca = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    cert.verify_directly_issued_by(ca)
    assert files.server_key.stat().st_mode & 0o077 == 0, "private keys are owner-only"
    assert files.ca_key.stat().st_mode & 0o077 == 0

    again = make_broker_certificates(tmp_path, ["mqtt2.example.com"])
    assert again.ca_cert.read_bytes() == files.ca_cert.read_bytes(), "the CA is reused"
    x509.load_pem_x509_certificate(again.server_cert.read_bytes()).verify_directly_issued_by(ca)
    with pytest.raises(BrokerTlsError, match="at least one host"):
        make_broker_certificates(tmp_path / "none", [])


def test_the_rendered_config_sets_or_leaves_out_the_tls_listener(tmp_path: Path) -> None:
    paths = {
        "host": "127.0.0.1",
        "port": 1884,
        "password_file": tmp_path / "passwd",
        "acl_file": tmp_path / "acl",
        "persistence_dir": tmp_path / "data",
        "user": "someone",
    }
    template = DEPLOYED_CONF.read_text()
    plain = mosquitto_conf(template, **paths)  # type: ignore[arg-type]
    assert "\ncertfile" not in plain and plain.count("\nlistener ") == 1
    listener = TlsListener(8884, tmp_path / "s.crt", tmp_path / "s.key")
    both = mosquitto_conf(template, **paths, tls=listener)  # type: ignore[arg-type]
    assert "listener 1884 127.0.0.1" in both and "listener 8884 127.0.0.1" in both
    assert f"certfile {tmp_path / 's.crt'}" in both and f"keyfile {tmp_path / 's.key'}" in both
    assert "tls_version tlsv1.2" in both
    without_tls = template.replace("certfile", "#certfile")
    with pytest.raises(BrokerAccessError, match="exactly one listener block with a certfile"):
        mosquitto_conf(without_tls, **paths)  # type: ignore[arg-type]
