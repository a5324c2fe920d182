"""TLS for the broker's gateway listener: a private CA and a server certificate, made once.

Gateways connect over the internet, so the broker's gateway listener (8883) speaks TLS; the
gateways trust the private CA (`ca.crt`, copied to each gateway as `ca_file`) and log in with
their own username and password as before. `leasewatch cloud broker-certs` writes:

    ca.crt      the CA certificate: give it to every gateway (edge config [mqtt] ca_file)
    ca.key      the CA's private key: keep it offline; needed only to issue a new server cert
    server.crt  the broker's certificate, for the host names and addresses gateways dial
    server.key  the broker's private key (mode 0600), read by Mosquitto only

Keys are ECDSA P-256; the server certificate names every host in its subjectAltName and is
valid for serverAuth only. An existing CA in the directory is reused, so re-issuing a server
certificate (new host name, expiry) does not require touching the gateways.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650


class BrokerTlsError(Exception):
    """The certificates could not be made or read."""


@dataclass(frozen=True, slots=True)
class BrokerCertificates:
    """Where the files of one broker's TLS setup are (the CA's may live apart, off the broker)."""

    directory: Path
    ca_directory: Path | None = None

    @property
    def ca_cert(self) -> Path:
        """The CA certificate gateways trust."""
        return (self.ca_directory or self.directory) / "ca.crt"

    @property
    def ca_key(self) -> Path:
        """The CA's private key (keep offline)."""
        return (self.ca_directory or self.directory) / "ca.key"

    @property
    def server_cert(self) -> Path:
        """The broker's certificate."""
        return self.directory / "server.crt"

    @property
    def server_key(self) -> Path:
        """The broker's private key."""
        return self.directory / "server.key"


def make_broker_certificates(
    directory: Path,
    hostnames: Sequence[str],
    *,
    days: int = 825,
    now: datetime | None = None,
    ca_directory: Path | None = None,
) -> BrokerCertificates:
    """Write (or reuse) the CA and issue a server certificate for `hostnames`.

    The server's files go to `directory`, the CA's to `ca_directory` (default: the same), so a
    deployment can mount the server's files into the broker without the CA's key.
    """
    if not hostnames:
        raise BrokerTlsError("name at least one host name or IP address gateways will dial")
    now = now or datetime.now(UTC)
    files = BrokerCertificates(directory, ca_directory)
    for folder in {directory, ca_directory or directory}:
        folder.mkdir(parents=True, exist_ok=True)
    if files.ca_cert.exists() and files.ca_key.exists():
        ca_cert, ca_key = _load_ca(files)
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = _ca_certificate(ca_key, now)
        _write_key(files.ca_key, ca_key)
        files.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = _server_certificate(server_key, ca_cert, ca_key, hostnames, now=now, days=days)
    _write_key(files.server_key, server_key)
    files.server_cert.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    return files


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "LeaseWatch"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


_CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


def _ca_certificate(key: ec.EllipticCurvePrivateKey, now: datetime) -> x509.Certificate:
    name = _name("LeaseWatch broker CA")
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_CA_KEY_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def _server_certificate(
    key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    hostnames: Sequence[str],
    *,
    now: datetime,
    days: int,
) -> x509.Certificate:
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (
        x509.CertificateBuilder()
        .subject_name(_name(hostnames[0]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(min(now + timedelta(days=days), ca_cert.not_valid_after_utc))
        .add_extension(x509.SubjectAlternativeName(_alt_names(hostnames)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )


def _alt_names(hostnames: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hostnames:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def _load_ca(files: BrokerCertificates) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    try:
        cert = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
        key = serialization.load_pem_private_key(files.ca_key.read_bytes(), password=None)
    except (OSError, ValueError) as err:
        raise BrokerTlsError(f"cannot read the CA in {files.directory}: {err}") from err
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise BrokerTlsError(f"{files.ca_key} is not an EC private key")
    return cert, key


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    """Write a private key readable by its owner only (created 0600, never world-readable)."""
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)


@dataclass(frozen=True, slots=True)
class TlsListener:
    """The TLS listener of a rendered mosquitto.conf: its port and the server's files."""

    port: int
    certfile: Path
    keyfile: Path


def split_tls_listener(lines: list[str]) -> tuple[list[str], list[str], list[str]]:
    """The config lines before the TLS listener block, the block, and the lines after it.

    The block is the `listener` line followed by its non-blank lines, one of them `certfile`;
    exactly one such block must exist in the template.
    """
    blocks = [i for i, line in enumerate(lines) if _key(line) == "listener"]
    tls = [i for i in blocks if "certfile" in {_key(line) for line in _block(lines, i)}]
    if len(tls) != 1:
        raise BrokerTlsError("template must have exactly one listener block with a certfile")
    start = tls[0]
    end = start + len(_block(lines, start))
    return lines[:start], lines[start:end], lines[end:]


def render_tls_listener(block: list[str], listener: TlsListener | None, host: str) -> list[str]:
    """The TLS listener block with `listener`'s port and files (empty when None: left out)."""
    if listener is None:
        return []
    values = {
        "listener": f"{listener.port} {host}",
        "certfile": str(listener.certfile),
        "keyfile": str(listener.keyfile),
    }
    return [f"{_key(line)} {values[_key(line)]}" if _key(line) in values else line
            for line in block]  # fmt: skip


def _key(line: str) -> str:
    return line.split(maxsplit=1)[0] if line.strip() else ""


def _block(lines: list[str], start: int) -> list[str]:
    block = [lines[start]]
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        block.append(line)
    return block
