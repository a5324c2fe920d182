"""Secrets LeaseWatch hands out and how it keeps them: API keys and gateway MQTT passwords.

Both are 256-bit random strings, so a slow password KDF would buy nothing (nobody guesses 2**256)
and would cost CPU on every request or connect. API keys are kept as HMAC-SHA256 with a pepper
(a key derived from the server's auth secret): a stolen database alone cannot even confirm a
guess. Gateway passwords are kept in Mosquitto's own `$7$` format (PBKDF2-SHA512, 101 rounds,
12-byte salt) so the password file is written from the store without ever seeing a password,
and the embedded broker verifies the very same hashes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

KEY_PREFIX = "lwk"
MOSQUITTO_ROUNDS = 101
_SALT_BYTES = 12


def derive(secret: str, purpose: str) -> bytes:
    """A 32-byte sub-key of `secret` for one purpose (token signing, key pepper)."""
    return hmac.new(secret.encode(), f"leasewatch/{purpose}/v1".encode(), hashlib.sha256).digest()


def new_api_key() -> tuple[str, str]:
    """(key id, key): the id is public and indexes the key; the key is shown once."""
    key_id = secrets.token_hex(8)
    return key_id, f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"


def parse_api_key(text: str) -> tuple[str, str] | None:
    """(key id, secret part) of a LeaseWatch API key, or None if it is not shaped like one."""
    parts = text.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or len(parts[1]) != 16 or len(parts[2]) < 32:
        return None
    return parts[1], parts[2]


def key_digest(pepper: bytes, key: str) -> str:
    """HMAC-SHA256 of a whole API key under the pepper, hex."""
    return hmac.new(pepper, key.encode(), hashlib.sha256).hexdigest()


def same_digest(a: str, b: str) -> bool:
    """Constant-time comparison of two hex digests."""
    return hmac.compare_digest(a.encode(), b.encode())


def new_gateway_password() -> str:
    """A fresh 256-bit gateway MQTT password (URL-safe text, one line)."""
    return secrets.token_urlsafe(32)


def mosquitto_hash(password: str, rounds: int = MOSQUITTO_ROUNDS) -> str:
    """`$7$rounds$salt$hash` as mosquitto_passwd writes it (PBKDF2-SHA512)."""
    salt = secrets.token_bytes(_SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, rounds, 64)
    encoded = (base64.b64encode(part).decode() for part in (salt, digest))
    return f"$7${rounds}${next(encoded)}${next(encoded)}"


def verify_mosquitto_hash(stored: str, password: str) -> bool:
    """Whether `password` matches a `$7$` hash; False for anything malformed."""
    parts = stored.split("$")
    if len(parts) != 5 or parts[1] != "7" or not parts[2].isdigit():
        return False
    try:
        salt, expected = base64.b64decode(parts[3]), base64.b64decode(parts[4])
    except (binascii.Error, ValueError):
        return False
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, int(parts[2]), len(expected))
    return hmac.compare_digest(digest, expected)
