"""How an API client proves who it is: a small protocol and its implementations.

The client asks :meth:`Auth.headers` before every attempt (so a refreshed credential is used at
once) and :meth:`Auth.refresh` once when the server answers 401. Every secret an implementation
holds is registered with :func:`highmark.redact.register_secret` the moment it is known, and no
``repr`` shows it.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from highmark import clock
from highmark.redact import MASK, register_secret

__all__ = ["Auth", "BasicAuth", "BearerAuth", "NoAuth", "Token", "TokenAuth"]

# A fetched token is renewed this long before it expires, so that no request carries a token that
# expires on its way.
DEFAULT_EXPIRY_MARGIN = timedelta(minutes=5)


class Auth(Protocol):
    """Credentials for one API connection."""

    def headers(self) -> dict[str, str]:
        """The headers that authenticate the next request (e.g. ``Authorization``)."""
        ...

    def refresh(self) -> bool:
        """Get a new credential after a 401; True if there is one worth a retry."""
        ...


class NoAuth:
    """No credentials (a token endpoint, a public API)."""

    def headers(self) -> dict[str, str]:
        return {}

    def refresh(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "NoAuth()"


class BearerAuth:
    """A fixed token sent as ``Authorization: Bearer <token>`` (a GitHub PAT, a static token).

    A fixed token cannot be refreshed: a 401 is final.
    """

    def __init__(self, token: str) -> None:
        register_secret(token)
        self._token = token

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"}

    def refresh(self) -> bool:
        return False

    def __repr__(self) -> str:
        return f"BearerAuth(token={MASK!r})"


class BasicAuth:
    """HTTP Basic with a user and a token as password (Jira Cloud: the account's email and an API
    token). The encoded header value is registered as a secret too."""

    def __init__(self, user: str, token: str) -> None:
        register_secret(token)
        encoded = base64.b64encode(f"{user}:{token}".encode()).decode("ascii")
        register_secret(encoded)
        self.user = user
        self._header = f"Basic {encoded}"

    def headers(self) -> dict[str, str]:
        return {"Authorization": self._header}

    def refresh(self) -> bool:
        return False

    def __repr__(self) -> str:
        return f"BasicAuth(user={self.user!r}, token={MASK!r})"


@dataclass(frozen=True, repr=False)
class Token:
    """An access token and how long it lasts from when it was issued (``expires_in``)."""

    access_token: str
    expires_in: float

    def __repr__(self) -> str:
        return f"Token(access_token={MASK!r}, expires_in={self.expires_in!r})"


class TokenAuth:
    """A bearer token fetched by ``fetch`` (an OAuth client-credentials grant, say), cached until
    ``margin`` before it expires, and fetched anew when the server refuses it (401).

    ``fetch`` raises a highmark error when it cannot get a token (e.g. an ``ApiError`` for
    ``invalid_client``); that error reaches the caller of the request.
    """

    def __init__(
        self, fetch: Callable[[], Token], *, margin: timedelta = DEFAULT_EXPIRY_MARGIN
    ) -> None:
        self._fetch = fetch
        self._margin = margin
        self._token: str | None = None
        self._renew_at: datetime | None = None
        self._lock = threading.Lock()

    def headers(self) -> dict[str, str]:
        with self._lock:
            if self._token is None or self._renew_at is None or clock.now() >= self._renew_at:
                self._get()
            return {"Authorization": f"Bearer {self._token}"}

    def refresh(self) -> bool:
        with self._lock:
            self._get()
            return True

    def _get(self) -> None:
        token = self._fetch()
        register_secret(token.access_token)
        self._token = token.access_token
        lifetime = timedelta(seconds=max(token.expires_in, 0.0))
        self._renew_at = clock.now() + max(lifetime - self._margin, lifetime / 2)

    def __repr__(self) -> str:
        return f"TokenAuth(token={MASK!r})" if self._token else "TokenAuth()"
