"""The token's hourly point budget, as GitHub reports it with every answer.

When the points left would not pay for another query like the last one, the next query waits for
the window's reset instead of being sent and refused with ``RATE_LIMITED``: a refused query is
wasted, and GitHub warns that integrations that keep calling while limited may be banned
(shared/api-contracts.md §1.5). The reactive path (a ``RATE_LIMITED`` answer waited out by the
HTTP client) still covers what this cannot see: another process spending the same token.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from highmark.connectors.retry import epoch_header

# A reset that has just passed by this machine's clock is still given this long (clock skew).
MIN_WAIT = 1.0


@dataclass
class PointBudget:
    """What the last answer said: points left, the last query's cost, and the reset."""

    remaining: int | None = None
    cost: int = 1
    resets_at: datetime | None = None

    def heard(self, headers: httpx.Headers, data: Any) -> None:
        """Note an answer's ``x-ratelimit-*`` headers and its ``rateLimit { cost }``."""
        try:
            self.remaining = int(headers.get("x-ratelimit-remaining") or "")
        except ValueError:
            self.remaining = None
        self.resets_at = epoch_header(headers, "x-ratelimit-reset")
        rate = data.get("rateLimit") if isinstance(data, dict) else None
        if isinstance(rate, dict) and isinstance(rate.get("cost"), int):
            self.cost = max(1, rate["cost"])

    def wait(self, now: datetime) -> float:
        """Seconds to wait before the next query (0: it can be paid for, or nothing is known)."""
        if self.remaining is None or self.resets_at is None or self.remaining >= self.cost:
            return 0.0
        return max((self.resets_at - now).total_seconds(), MIN_WAIT)

    def waited(self) -> None:
        """The reset has been waited for: nothing is known until the next answer."""
        self.remaining = None
