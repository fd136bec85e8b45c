"""Access tokens of the fake Microsoft identity platform: who may have one (apps and their
secrets), the tokens issued (with their expiry on the fake clock), and how an API checks one.

Tokens look like Entra's (a JWT: base64url header, claims with ``tid``, ``appid``, ``aud``,
``exp``, and a signature) but are only keys into :attr:`TokenIssuer.tokens`; an API fake asks
:meth:`TokenIssuer.check` whether a bearer token is good for it.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from tests.fakes.base import FakeClock

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT_ID = "0d9b7a3e-1c2f-4e5a-8b6c-7d8e9f0a1b2c"
CLIENT_SECRET = "Qx8~fakeEntraSecret.0123456789abcdefGHIJ"
LIFETIME = 3599  # seconds, as Entra issues them


@dataclass
class IssuedToken:
    value: str
    client_id: str
    tenant: str
    audience: str  # the scope's resource: "https://graph.microsoft.com"
    expires_at: datetime
    revoked: bool = False


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenIssuer:
    """The tenant's apps and the tokens they were given."""

    def __init__(self, clock: FakeClock, *, tenant: str = TENANT, lifetime: int = LIFETIME) -> None:
        self.clock = clock
        self.tenant = tenant
        self.lifetime = lifetime
        self.clients: dict[str, str] = {CLIENT_ID: CLIENT_SECRET}
        self.tokens: dict[str, IssuedToken] = {}
        self.lock = threading.RLock()

    def add_client(self, client_id: str, secret: str) -> None:
        with self.lock:
            self.clients[client_id] = secret

    def issue(self, client_id: str, audience: str, *, lifetime: int | None = None) -> IssuedToken:
        """A new token for ``client_id`` on ``audience`` (also for tests that need a ready one)."""
        with self.lock:
            seconds = self.lifetime if lifetime is None else lifetime
            expires = self.clock.now() + timedelta(seconds=seconds)
            claims = {
                "aud": audience,
                "tid": self.tenant,
                "appid": client_id,
                "exp": int(expires.timestamp()),
                "jti": secrets.token_hex(8),
            }
            header = _b64(json.dumps({"typ": "JWT", "alg": "RS256"}).encode())
            body = _b64(json.dumps(claims).encode())
            value = f"{header}.{body}.{_b64(secrets.token_bytes(32))}"
            token = IssuedToken(value, client_id, self.tenant, audience, expires)
            self.tokens[value] = token
            return token

    def check(self, authorization: str | None, audience: str) -> IssuedToken | str:
        """The token of an ``Authorization`` header if it is good for ``audience``, else why
        not (a short reason for a 401)."""
        scheme, _, value = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not value:
            return "no bearer token"
        with self.lock:
            token = self.tokens.get(value.strip())
            if token is None:
                return "unknown token"
            if token.revoked:
                return "revoked token"
            if self.clock.now() >= token.expires_at:
                return "expired token"
            if token.audience.rstrip("/") != audience.rstrip("/"):
                return f"token for another audience ({token.audience})"
            return token

    def revoke_all(self) -> None:
        """Every token issued so far stops working (a 401 on its next use)."""
        with self.lock:
            for token in self.tokens.values():
                token.revoked = True

    @property
    def issued(self) -> list[IssuedToken]:
        with self.lock:
            return list(self.tokens.values())
