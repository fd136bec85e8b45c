"""The wrong-token limit of the REST API and the dashboard login (highmark/api/auth.py)."""

from __future__ import annotations

import pytest

from highmark.api.auth import FailureLimiter, TooManyFailures


def test_the_wrong_token_window_slides_and_is_per_address() -> None:
    now = [0.0]
    limiter = FailureLimiter(limit=3, window=60, clock=lambda: now[0])
    for _ in range(3):
        limiter.check("10.0.0.1")
        limiter.failed("10.0.0.1")
    with pytest.raises(TooManyFailures) as refused:
        limiter.check("10.0.0.1")
    assert refused.value.retry_after == 61
    limiter.check("10.0.0.2")  # another address is not held back
    now[0] = 30.0
    with pytest.raises(TooManyFailures):
        limiter.check("10.0.0.1")
    now[0] = 60.5  # the first failures have left the window
    limiter.check("10.0.0.1")
    assert list(limiter._failures) == []  # addresses that stopped are forgotten
