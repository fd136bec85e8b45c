"""Credentials for API clients: headers, refresh, caching of fetched tokens, and secrets kept
out of every repr and masked by highmark's scrubber."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import timedelta

import pytest

from highmark import clock
from highmark.connectors.auth import BasicAuth, BearerAuth, NoAuth, Token, TokenAuth
from highmark.redact import scrub
from tests.fakes.base import FakeClock


@pytest.fixture
def fake_clock() -> Iterator[FakeClock]:
    fake = FakeClock()
    clock.set_clock(fake.now)
    try:
        yield fake
    finally:
        clock.set_clock(None)


def test_bearer_auth() -> None:
    auth = BearerAuth("bearer-secret-0001")
    assert auth.headers() == {"Authorization": "Bearer bearer-secret-0001"}
    assert auth.refresh() is False
    assert "bearer-secret-0001" not in repr(auth)
    assert scrub("oops bearer-secret-0001") == "oops ***"


def test_basic_auth_masks_the_token_and_the_encoded_pair() -> None:
    auth = BasicAuth("me@example.com", "basic-secret-0002")
    encoded = base64.b64encode(b"me@example.com:basic-secret-0002").decode()
    assert auth.headers() == {"Authorization": f"Basic {encoded}"}
    assert auth.refresh() is False
    assert "basic-secret-0002" not in repr(auth) and "me@example.com" in repr(auth)
    assert scrub(f"Basic {encoded}") == "Basic ***"


def test_no_auth() -> None:
    assert NoAuth().headers() == {} and NoAuth().refresh() is False


def test_token_auth_caches_until_shortly_before_expiry(fake_clock: FakeClock) -> None:
    issued: list[str] = []

    def fetch() -> Token:
        issued.append(f"fetched-token-{len(issued)}")
        return Token(issued[-1], expires_in=3600)

    auth = TokenAuth(fetch, margin=timedelta(minutes=5))
    assert repr(auth) == "TokenAuth()"
    assert auth.headers() == {"Authorization": "Bearer fetched-token-0"}
    fake_clock.advance(3600 - 301)
    assert auth.headers() == {"Authorization": "Bearer fetched-token-0"}
    fake_clock.advance(2)
    assert auth.headers() == {"Authorization": "Bearer fetched-token-1"}
    assert auth.refresh() is True
    assert auth.headers() == {"Authorization": "Bearer fetched-token-2"}
    assert "fetched-token" not in repr(auth) and "fetched-token" not in repr(Token("x" * 9, 1))
    assert scrub("fetched-token-2") == "***"


def test_token_auth_short_lived_tokens_are_kept_half_their_life(fake_clock: FakeClock) -> None:
    tokens = iter(["short-token-a", "short-token-b"])
    auth = TokenAuth(lambda: Token(next(tokens), expires_in=120))
    auth.headers()
    fake_clock.advance(59)
    assert auth.headers() == {"Authorization": "Bearer short-token-a"}
    fake_clock.advance(2)
    assert auth.headers() == {"Authorization": "Bearer short-token-b"}
