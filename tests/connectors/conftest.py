"""Fixtures of the connector tests. GitHub's are named ``github…``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from highmark import clock
from tests.fakes.github import FakeGitHub


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    """A fake GitHub whose clock is highmark's clock, and whose clock passes when highmark
    sleeps (a backoff, a rate limit): no test really waits."""
    with FakeGitHub() as fake:
        clock.set_clock(fake.clock.now)
        clock.set_sleep(fake.clock.sleep)
        try:
            yield fake
        finally:
            clock.set_clock(None)
            clock.set_sleep(None)
