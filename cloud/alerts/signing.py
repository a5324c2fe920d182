"""Webhook signatures: HMAC-SHA256 over a timestamp and the raw request body.

Every webhook request carries

    X-LeaseWatch-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + raw body)>
    X-LeaseWatch-Delivery:  <idempotency key>   (also sent as Idempotency-Key)
    X-LeaseWatch-Event:     alert.<opened|escalated|acknowledged|resolved>

To verify, a receiver takes the raw body bytes (before any JSON parsing), recomputes the HMAC
with the shared secret (LEASEWATCH_ALERT_WEBHOOK_SECRET) over `f"{t}.".encode() + body`,
compares it with v1 in constant time, and refuses timestamps more than 5 minutes from its own
clock (replays). Each attempt is signed afresh: the body and idempotency key stay the same
across retries, the timestamp does not. Receivers de-duplicate on the idempotency key.
`verify_signature` below is a complete receiver-side check.
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-LeaseWatch-Signature"
DELIVERY_HEADER = "X-LeaseWatch-Delivery"
EVENT_HEADER = "X-LeaseWatch-Event"
TOLERANCE_S = 300


class SignatureError(ValueError):
    """A signature header that is malformed, stale or does not match the body."""


def _mac(secret: bytes, timestamp: int, body: bytes) -> str:
    return hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The signature header value for a body sent at `timestamp` (unix seconds)."""
    return f"t={timestamp},v1={_mac(secret, timestamp, body)}"


def _parse(header: str) -> tuple[int, list[str]]:
    timestamp: int | None = None
    macs: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isdigit():
            timestamp = int(value)
        elif name == "v1" and value:
            macs.append(value)
    if timestamp is None or not macs:
        raise SignatureError("signature header needs t=<unix seconds> and v1=<hex digest>")
    return timestamp, macs


def verify_signature(
    secret: bytes, header: str, body: bytes, now: float, tolerance_s: float = TOLERANCE_S
) -> int:
    """Check a signature header against the raw body; returns its timestamp or raises."""
    timestamp, macs = _parse(header)
    if abs(now - timestamp) > tolerance_s:
        raise SignatureError(f"signature timestamp {timestamp} is outside the tolerance")
    expected = _mac(secret, timestamp, body)
    if not any(hmac.compare_digest(expected, mac) for mac in macs):
        raise SignatureError("signature does not match the body")
    return timestamp
