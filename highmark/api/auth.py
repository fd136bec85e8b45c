"""Who is calling: bearer tokens with a scope, dashboard sessions, CSRF tokens.

Tokens are compared in constant time (every configured token is compared, whatever matches) and
never logged or stored: the audit log names a token by its ``name``. A dashboard session is a
cookie that holds no token either, only the token's name, an expiry and a nonce, signed with an
HMAC keyed by the token itself — so removing or rotating a token ends its sessions — and a
form's CSRF token is an HMAC of the session's nonce under the same key.

A client address that sent ``MAX_FAILURES`` wrong tokens within ``FAILURE_WINDOW_SECONDS`` (to
the API or the login form) is refused without a comparison until the window has passed: tokens
are at least 16 characters, so this only keeps a script from trying weak or leaked ones at speed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from highmark.config import ApiToken

Scope = Literal["read", "admin"]
SESSION_COOKIE = "highmark_session"
SESSION_SECONDS = 12 * 3600
NO_AUTH_NAME = "(no auth)"
MAX_FAILURES = 10
FAILURE_WINDOW_SECONDS = 60.0


class TooManyFailures(Exception):
    """A client sent too many wrong tokens: it may try again in ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many wrong tokens from this address: try again in {retry_after} s")
        self.retry_after = retry_after


class FailureLimiter:
    """Wrong tokens per client address, over a sliding window (in this server's memory)."""

    def __init__(
        self,
        limit: int = MAX_FAILURES,
        window: float = FAILURE_WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit, self.window, self.clock = limit, window, clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, client: str) -> None:
        """Raise TooManyFailures if ``client`` must wait before its next try."""
        with self._lock:
            self._forget_old()
            recent = self._failures.get(client)
            if recent is not None and len(recent) >= self.limit:
                wait = recent[0] + self.window - self.clock()
                raise TooManyFailures(max(int(wait) + 1, 1))

    def failed(self, client: str) -> None:
        with self._lock:
            self._forget_old()
            self._failures.setdefault(client, deque()).append(self.clock())

    def _forget_old(self) -> None:
        """Drop failures older than the window, and addresses left with none (bounded memory)."""
        since = self.clock() - self.window
        for client, recent in list(self._failures.items()):
            while recent and recent[0] < since:
                recent.popleft()
            if not recent:
                del self._failures[client]


@dataclass(frozen=True)
class Principal:
    """A caller the server knows: its token's name and scope."""

    name: str
    scope: Scope

    @property
    def is_admin(self) -> bool:
        return self.scope == "admin"


@dataclass(frozen=True)
class Session:
    """A logged-in dashboard user: who, and the nonce its CSRF token is derived from."""

    principal: Principal
    nonce: str
    key: bytes

    def csrf_token(self) -> str:
        return _sign(self.key, f"csrf:{self.nonce}".encode())


class Authenticator:
    """The project's tokens (none with ``--no-auth``: everyone is admin, on 127.0.0.1)."""

    def __init__(self, tokens: list[ApiToken], *, no_auth: bool = False) -> None:
        self.tokens = [(t, t.token.encode()) for t in tokens]
        self.no_auth = no_auth
        # Signs sessions and CSRF tokens when there are no tokens to key them with.
        self._process_key = secrets.token_bytes(32)
        self.failures = FailureLimiter()

    def bearer(self, header: str | None, client: str | None = None) -> Principal | None:
        """The principal of an ``Authorization: Bearer …`` header, or None; a wrong token
        counts against ``client`` (TooManyFailures once it has sent too many)."""
        if self.no_auth:
            return Principal(NO_AUTH_NAME, "admin")
        if not header:
            return None
        kind, _, value = header.partition(" ")
        if kind.lower() != "bearer" or not value.strip():
            return None
        return self.token(value.strip(), client)

    def token(self, value: str, client: str | None = None) -> Principal | None:
        """The principal whose token is ``value``: every token is compared, in constant time.
        A wrong one counts against ``client``; one that sent too many raises TooManyFailures."""
        if client is not None:
            self.failures.check(client)
        given = value.encode()
        found: ApiToken | None = None
        for token, secret in self.tokens:
            if hmac.compare_digest(given, secret):
                found = token
        if found is None:
            if client is not None:
                self.failures.failed(client)
            return None
        return Principal(found.name, found.scope)

    # ------------------------------------------------------------------ sessions

    def new_session(self, principal: Principal) -> tuple[str, Session]:
        """A signed session cookie value for ``principal``, and the session it stands for."""
        payload = {
            "n": principal.name,
            "e": int(time.time()) + SESSION_SECONDS,
            "r": secrets.token_urlsafe(16),
        }
        body = _b64(json.dumps(payload, separators=(",", ":")).encode())
        key = self._key(principal.name)
        assert key is not None
        cookie = f"{body}.{_sign(key, body.encode())}"
        return cookie, Session(principal, str(payload["r"]), key)

    def session(self, cookie: str | None) -> Session | None:
        """The session of a cookie, if it is genuine, current, and its token still exists."""
        if self.no_auth:
            return Session(Principal(NO_AUTH_NAME, "admin"), "no-auth", self._process_key)
        if not cookie or "." not in cookie:
            return None
        body, _, signature = cookie.rpartition(".")
        try:
            payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
            name, expires, nonce = str(payload["n"]), int(payload["e"]), str(payload["r"])
        except (ValueError, KeyError, TypeError):
            return None
        key = self._key(name)
        if key is None or not hmac.compare_digest(_sign(key, body.encode()), signature):
            return None
        if expires < time.time():
            return None
        token = next(t for t, _ in self.tokens if t.name == name)
        return Session(Principal(token.name, token.scope), nonce, key)

    def _key(self, name: str) -> bytes | None:
        for token, secret in self.tokens:
            if token.name == name:
                return secret
        return self._process_key if self.no_auth else None


def check_csrf(session: Session, submitted: str | None) -> bool:
    return submitted is not None and hmac.compare_digest(session.csrf_token(), submitted)


def _sign(key: bytes, message: bytes) -> str:
    return _b64(hmac.new(key, message, hashlib.sha256).digest())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")
