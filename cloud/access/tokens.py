"""Short-lived signed bearer tokens and dashboard sessions (JWT, HS256, via PyJWT)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import jwt

from cloud.access.roles import Role

ISSUER = "leasewatch"
BOOTSTRAP_SUBJECT = "bootstrap"
TokenKind = Literal["access", "session"]


class InvalidTokenError(Exception):
    """A token is malformed, forged, expired or of the wrong kind."""


@dataclass(frozen=True)
class TokenClaims:
    """Who a token speaks for: a user id (or the bootstrap admin), role, tenant, key id."""

    subject: str
    role: Role
    tenant: str | None
    key_id: str | None
    kind: TokenKind
    expires_at: datetime


@dataclass(frozen=True)
class TokenSigner:
    """Issues and verifies tokens with one signing key."""

    key: bytes

    def issue(self, claims: TokenClaims, now: datetime) -> str:
        """A signed token carrying the claims, valid until claims.expires_at."""
        payload = {
            "iss": ISSUER,
            "sub": claims.subject,
            "role": claims.role.value,
            "tenant": claims.tenant,
            "kid": claims.key_id,
            "typ": claims.kind,
            "iat": int(now.timestamp()),
            "exp": int(claims.expires_at.timestamp()),
        }
        return jwt.encode(payload, self.key, algorithm="HS256")

    def verify(self, token: str, kind: TokenKind) -> TokenClaims:
        """The claims of a valid token of this kind; InvalidTokenError otherwise."""
        try:
            payload = jwt.decode(
                token,
                self.key,
                algorithms=["HS256"],
                issuer=ISSUER,
                options={"require": ["exp", "iat", "sub", "iss"]},
            )
            role = Role(payload["role"])
        except (jwt.PyJWTError, KeyError, ValueError) as err:
            raise InvalidTokenError(f"invalid token: {err}") from err
        if payload.get("typ") != kind:
            raise InvalidTokenError(f"a {payload.get('typ')!r} token is not a {kind} token")
        return TokenClaims(
            subject=str(payload["sub"]),
            role=role,
            tenant=payload.get("tenant"),
            key_id=payload.get("kid"),
            kind=kind,
            expires_at=datetime.fromtimestamp(payload["exp"]).astimezone(),
        )


def expiry(now: datetime, seconds: float) -> datetime:
    """`now` plus a lifetime in seconds."""
    return now + timedelta(seconds=seconds)
