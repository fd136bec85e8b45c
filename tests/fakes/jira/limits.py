"""Jira's rate-limit answers: the headers of a 429 (and of a near-limit success), and an optional
token-bucket burst limit per (endpoint, method) that refills on the fake clock.

API-token traffic is governed only by the burst limit (``RateLimit-Reason: jira-burst-based``);
Atlassian publishes no numbers, so capacity and refill rate are the test's choice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

BURST = "jira-burst-based"
NEAR_FRACTION = 0.2  # X-RateLimit-NearLimit when less than this share of a budget remains


def reset_time(now: datetime, seconds: float) -> str:
    """``X-RateLimit-Reset``: ``yyyy-MM-ddTHH:mmZ``, rounded up so it is never before the end
    of ``Retry-After``."""
    at = now.astimezone(UTC) + timedelta(seconds=seconds)
    if at.second or at.microsecond:
        at = at.replace(second=0, microsecond=0) + timedelta(minutes=1)
    return at.strftime("%Y-%m-%dT%H:%MZ")


def throttled_headers(
    now: datetime, retry_after: float, *, limit: int, remaining: int = 0, reason: str = BURST
) -> dict[str, str]:
    """The headers of a 429."""
    return {
        "Retry-After": str(max(1, math.ceil(retry_after))),
        "X-RateLimit-Reset": reset_time(now, retry_after),
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": str(remaining),
        "X-RateLimit-NearLimit": "true",
        "RateLimit-Reason": reason,
    }


@dataclass
class _Bucket:
    tokens: float
    at: datetime


@dataclass
class BurstLimiter:
    """One token bucket per key, ``capacity`` requests, refilled at ``per_second``."""

    capacity: int
    per_second: float
    buckets: dict[tuple[str, str], _Bucket] = field(default_factory=dict)

    def take(self, key: tuple[str, str], now: datetime) -> tuple[bool, int, float]:
        """Spend one request: (allowed, requests left, seconds until one is available)."""
        bucket = self.buckets.setdefault(key, _Bucket(float(self.capacity), now))
        elapsed = max((now - bucket.at).total_seconds(), 0.0)
        bucket.tokens = min(float(self.capacity), bucket.tokens + elapsed * self.per_second)
        bucket.at = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return True, int(bucket.tokens), 0.0
        return False, 0, (1.0 - bucket.tokens) / self.per_second

    def near(self, remaining: int) -> bool:
        return remaining < self.capacity * NEAR_FRACTION
