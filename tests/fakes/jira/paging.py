"""``nextPageToken``: opaque strings standing for a position in a search, kept server-side.

Jira does not say what its token pins (§2.4 "Issue updated while paging" is unconfirmed), so a
cursor is one of two kinds, chosen by the server's ``pagination`` setting:

- ``keyset``: the sort key of the last issue served; the next page starts after it. An issue
  that moves past the cursor (updated while paging, ``ORDER BY updated``) is served again later.
- ``offset``: a position in the listing; when an already-served issue moves to the end, every
  later issue shifts one place left and the neighbour at the boundary is never served.

Tokens look like Jira's (standard base64 with ``+``, ``/`` and ``=``, so a client must encode
them in a query string) but carry nothing: they are keys of :class:`TokenBook`. They expire
after seven days of fake time.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

TOKEN_TTL = timedelta(days=7)
INVALID_TOKEN = "The provided nextPageToken is invalid."  # [unconfirmed] Jira's wording
EXPIRED_TOKEN = "The provided nextPageToken has expired. Start the search again."  # [unconfirmed]
OTHER_QUERY = "The provided nextPageToken does not belong to this query."  # [unconfirmed]


class TokenError(Exception):
    """A token that cannot be used; ``str(exc)`` goes into ``errorMessages`` (400)."""


@dataclass(frozen=True)
class PageCursor:
    """What a token stands for."""

    mode: str  # "keyset" or "offset"
    jql: str
    issued_at: datetime
    position: int  # offset: the listing index of the next issue
    after: tuple[Any, ...] | None  # keyset: sort key of the last issue served (None: start)
    page: int  # the page number this token fetches (2 for the token of the first response)
    served: int  # issues served before it


class TokenBook:
    """Issues and redeems tokens (deterministic per fake, unique per issue)."""

    def __init__(self, salt: str, ttl: timedelta = TOKEN_TTL) -> None:
        self.ttl = ttl
        self._salt = salt
        self._cursors: dict[str, PageCursor] = {}

    def issue(self, cursor: PageCursor) -> str:
        digest = hashlib.sha256(f"{self._salt}:{len(self._cursors)}".encode()).digest()
        raw = b"\n\x1d#" + digest[:24] + b"\xfb\xff\xbf" + digest[24:26]
        token = base64.b64encode(raw).decode()
        self._cursors[token] = cursor
        return token

    def redeem(self, token: str, jql: str, now: datetime) -> PageCursor:
        cursor = self._cursors.get(token)
        if cursor is None:
            raise TokenError(INVALID_TOKEN)
        if now - cursor.issued_at > self.ttl:
            raise TokenError(EXPIRED_TOKEN)
        if " ".join(jql.split()) != " ".join(cursor.jql.split()):
            raise TokenError(OTHER_QUERY)
        return cursor

    def peek(self, token: str) -> PageCursor | None:
        """What a token stands for, for assertions (``None``: not issued by this fake)."""
        return self._cursors.get(token)
