"""GitHub's GraphQL endpoint as the connector sees it: a query in, ``data`` out, GitHub's clock
from the ``Date`` header; errors in the body turned into highmark's; a spent point budget waited
for before the next query (:mod:`highmark.connectors.github.budget`)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

from highmark import clock
from highmark.connectors import classifiers
from highmark.connectors.auth import BearerAuth
from highmark.connectors.github.budget import PointBudget
from highmark.connectors.http import ApiClient
from highmark.errors import ApiError

log = logging.getLogger(__name__)

# Errors that mean "this query asked for too much at once": ask again for less.
TOO_BIG = frozenset({"RESOURCE_LIMITS_EXCEEDED", "MAX_NODE_LIMIT_EXCEEDED"})
BAD_CURSOR = "INVALID_CURSOR_ARGUMENTS"


class QueryTooBig(ApiError):
    """GitHub cut the answer short (partial data): the caller asks for a smaller page. Retryable
    if it reaches the run (a smaller page could not be asked for)."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(
            f"github: the answer was cut short even for the smallest pages: {message}",
            retryable=True,
            service="github",
            status=200,
            code=code,
        )


class CursorRefused(ApiError):
    """GitHub does not take a cursor (a checkpoint's, edited or from another cursor format): the
    caller starts that list over."""

    def __init__(self, message: str) -> None:
        super().__init__(
            f"github: a cursor was refused: {message}",
            retryable=False,
            service="github",
            status=200,
            code=BAD_CURSOR,
        )


class GitHubApi:
    """One connection's GraphQL endpoint."""

    def __init__(
        self, name: str, url: str, token: str, *, sleep: Callable[[float], None] | None = None
    ) -> None:
        self.name = name
        self.url = url  # the endpoint itself: posted to as is
        self.credential = f"the token of connection '{name}'"
        self.http = ApiClient(
            "github",
            url,
            auth=BearerAuth(token),
            credential=self.credential,
            classify=classifiers.github,
            sleep=sleep,
        )
        self.sleep = sleep or clock.sleep
        self.budget = PointBudget()
        self.server_now: datetime | None = None

    def query(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run ``query``; return its ``data``. NOT_FOUND for a repository and other GraphQL errors
        are permanent ApiErrors; a partial answer raises :class:`QueryTooBig`, a refused cursor
        :class:`CursorRefused`. A ``node`` that is not found (a pull request deleted since it
        was listed) is ``None`` in the data."""
        self._pace()
        reply = self.http.exchange(
            "POST", self.url, json={"query": query, "variables": variables or {}}
        )
        date = reply.headers.get("date")
        if date:
            with contextlib.suppress(TypeError, ValueError):
                self.server_now = clock.ensure_utc(parsedate_to_datetime(date))
        body = reply.body if isinstance(reply.body, dict) else {}
        self.budget.heard(reply.headers, body.get("data"))
        errors = [e for e in body.get("errors") or [] if isinstance(e, dict)]
        if errors:
            self._raise_for(errors, variables or {})  # returns for a node that is gone
        data = body.get("data")
        if not isinstance(data, dict):
            raise ApiError(
                "github: the answer has no data", retryable=True, service="github", status=200
            )
        return data

    def now(self) -> datetime:
        """GitHub's clock as of the last answer (this machine's clock before any)."""
        return self.server_now or clock.now()

    def close(self) -> None:
        self.http.close()

    def _pace(self) -> None:
        """Wait for the budget's reset if the last answer left too few points for a query."""
        now = clock.now()
        wait = self.budget.wait(now)
        if wait <= 0:
            return
        until = now + timedelta(seconds=wait)
        if wait > self.http.policy.max_wait:
            raise ApiError(
                f"github: the rate limit of {self.credential} is spent until "
                f"{until:%Y-%m-%dT%H:%M:%SZ}, in {wait:.0f}s, longer than this client waits "
                f"({self.http.policy.max_wait:.0f}s): a later run will retry",
                retryable=True,
                service="github",
                code="RATE_LIMITED",
                resets_at=until.isoformat(),
                retry_after=round(wait, 3),
            )
        log.warning(
            "github: %s points left, a query costs %s: waiting %.0fs for the reset at %s",
            self.budget.remaining, self.budget.cost, wait, f"{until:%Y-%m-%dT%H:%M:%SZ}",
        )  # fmt: skip
        self.sleep(wait)
        self.budget.waited()

    def _raise_for(self, errors: list[dict[str, Any]], variables: dict[str, Any]) -> None:
        types = {str(e.get("type")) for e in errors}
        if too_big := types & TOO_BIG:
            raise QueryTooBig(str(errors[0].get("message")), min(too_big))
        if BAD_CURSOR in types:
            refused = next(e for e in errors if e.get("type") == BAD_CURSOR)
            raise CursorRefused(str(refused.get("message")))
        if all(e.get("type") == "NOT_FOUND" and (e.get("path") or [None])[0] == "node"
               for e in errors):  # fmt: skip
            return
        first = errors[0]
        if first.get("type") == "NOT_FOUND":
            what = first.get("path") or ["node"]
            if what and what[0] == "repository":
                repository = f"{variables.get('owner')}/{variables.get('name')}"
                raise ApiError(
                    f"github: repository {repository} was not found, or the token of connection "
                    f"'{self.name}' cannot see it (check the name, or grant the token access)",
                    retryable=False,
                    service="github",
                    status=200,
                    code="NOT_FOUND",
                )
        message = str(first.get("message") or "unknown error")
        raise ApiError(
            f"github: the query was refused: {message}",
            retryable=False,
            service="github",
            status=200,
            code=str(first.get("type") or "") or None,
        )
