"""Continuation tokens of the fake Fabric (shared/api-contracts.md §4.3).

A token is opaque base64 with ``+``, ``/`` and ``=`` in it, and it is sent in the body already
percent-encoded (``…%2B…%3D``), inside ``continuationUri`` as well. A client must send it back as
it came: a ``%25`` (a ``%`` encoded again) is a double encoding, and a raw ``+``, ``/`` or ``=``
an unencoded one; both are refused (400 ``InvalidContinuationToken``).
"""

from __future__ import annotations

import base64
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import quote, unquote

_PARAM = re.compile(r"(?:^|&)continuationToken=([^&]*)")


class TokenError(Exception):
    """Why a continuation token is refused (the message of a 400)."""


@dataclass(frozen=True)
class Listing:
    """Where a token points: a listing (its path and filters) and the next record's offset."""

    path: str
    query: str  # the listing's own parameters, without the token
    offset: int
    issued_at: datetime


class ContinuationBook:
    def __init__(self, ttl: timedelta | None = None) -> None:
        self.ttl = ttl
        self._listings: dict[str, Listing] = {}

    def issue(self, listing: Listing) -> str:
        """A new token for ``listing``, percent-encoded as the API sends it."""
        while True:
            raw = base64.b64encode(secrets.token_bytes(18)).decode()
            if "+" in raw or "/" in raw:
                break
        raw += "=="  # always some padding: an '=' to encode
        self._listings[raw] = listing
        return quote(raw, safe="")

    def redeem(self, raw_query: str, path: str, now: datetime) -> Listing | None:
        """The listing a request's ``continuationToken`` continues (None: it has none)."""
        found = _PARAM.search(raw_query)
        if found is None:
            return None
        sent = found.group(1)
        if "%25" in sent.upper():
            raise TokenError("The continuation token is encoded twice.")
        if any(c in sent for c in "+/="):
            raise TokenError("The continuation token is not URL-encoded.")
        listing = self._listings.get(unquote(sent))
        if listing is None or listing.path != path:
            raise TokenError("The continuation token is not valid.")
        if self.ttl is not None and now - listing.issued_at > self.ttl:
            raise TokenError("The continuation token has expired.")
        return listing

    def forget(self) -> None:
        self._listings.clear()
