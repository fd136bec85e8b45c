"""Who may call the fake GitHub and how much: tokens with their repositories, scopes and hourly
point budget (docs: primary limit, 5,000 points an hour for a user), and the canned answers for
rate limits and timeouts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

DOCS_URL = "https://docs.github.com/graphql"
AUTH_DOCS_URL = (
    "https://docs.github.com/graphql/guides/forming-calls-with-graphql#authenticating-with-graphql"
)
SECONDARY_DOCS_URL = (
    "https://docs.github.com/graphql/overview/rate-limits-and-query-limits-for-the-graphql-api"
    "#secondary-rate-limits"
)
TIMEOUT_MESSAGE = (
    "We couldn't respond to your request in time. Sorry about that. Please try resubmitting your "
    "request and contact us if the problem persists."
)
SECONDARY_MESSAGE = (
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. "
    "If you reach out to GitHub Support for help, please include the request ID {request_id}."
)


@dataclass(eq=False)
class Token:
    """A credential the fake accepts, and its budget in the current window.

    ``scopes`` is what a classic token reports in ``X-OAuth-Scopes`` (``None``: a fine-grained
    or installation token, no header). ``repos`` limits it to some repositories (others answer
    ``NOT_FOUND``); ``None`` means every one.
    """

    value: str = field(repr=False)
    login: str = "highmark-bot"
    user_id: int = 123
    scopes: str | None = "repo, read:org"
    repos: frozenset[str] | None = None  # lower-case nameWithOwner
    limit: int = 5000
    revoked: bool = False
    used: int = 0
    reset_at: datetime | None = None  # the current window's end
    minute_start: datetime | None = None  # the secondary points window
    minute_points: int = 0

    @property
    def remaining(self) -> int:
        return max(self.limit - self.used, 0)

    @property
    def reset_epoch(self) -> int:
        assert self.reset_at is not None
        return int(self.reset_at.timestamp())

    def can_see(self, repo: str) -> bool:
        return self.repos is None or repo.lower() in self.repos

    def roll(self, now: datetime, window: float) -> None:
        """Start a new window (full budget) if the current one has ended by ``now``."""
        if self.reset_at is None or now >= self.reset_at:
            self.used = 0
            self.reset_at = now.replace(microsecond=0) + timedelta(seconds=window)

    def secondary_point(self, now: datetime) -> int:
        """Count one secondary point (a query) in the current fake-clock minute; the total."""
        if self.minute_start is None or now >= self.minute_start + timedelta(seconds=60):
            self.minute_start, self.minute_points = now, 0
        self.minute_points += 1
        return self.minute_points

    def headers(self) -> dict[str, str]:
        headers = {
            "x-ratelimit-limit": str(self.limit),
            "x-ratelimit-remaining": str(self.remaining),
            "x-ratelimit-used": str(self.used),
            "x-ratelimit-reset": str(self.reset_epoch),
            "x-ratelimit-resource": "graphql",
        }
        if self.scopes is not None:
            headers["X-OAuth-Scopes"] = self.scopes
        return headers


def rate_limited_body(kind: str, user_id: int, status: int) -> dict[str, Any]:
    """The primary-limit answer: ``RATE_LIMITED`` (long observed) or ``RATE_LIMIT`` with
    ``code: graphql_rate_limit`` (2026 reports); a REST-style body for a 403/429."""
    if status != 200:
        return {
            "message": f"API rate limit exceeded for user ID {user_id}.",
            "documentation_url": DOCS_URL,
        }
    if kind == "RATE_LIMIT":
        error = {
            "type": "RATE_LIMIT",
            "code": "graphql_rate_limit",
            "message": f"API rate limit already exceeded for user ID {user_id}.",
        }
    else:
        error = {"type": kind, "message": f"API rate limit exceeded for user ID {user_id}."}
    return {"errors": [error]}


def secondary_body(status: int, request_id: str) -> dict[str, Any]:
    """The secondary-limit answer: REST-style for 403/429; at 200 (which the GraphQL docs allow,
    body unconfirmed) the same message inside a GraphQL ``errors`` list."""
    message = SECONDARY_MESSAGE.format(request_id=request_id)
    if status == 200:
        return {"errors": [{"message": message}], "documentation_url": SECONDARY_DOCS_URL}
    return {"message": message, "documentation_url": SECONDARY_DOCS_URL}


@dataclass
class Pending:
    """A canned answer armed for the next ``times`` GraphQL requests."""

    times: int
    status: int = 200
    retry_after: int | None = None
    kind: str = ""
    message: str = ""
    path: list[str | int] | None = None
