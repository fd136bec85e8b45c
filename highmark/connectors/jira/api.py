"""Jira Cloud's REST API v3 as the connector uses it: who the user is (and their time zone), a
project, and ``/rest/api/3/search/jql`` pages; Jira's clock from the ``Date`` header."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

from highmark import clock
from highmark.connectors import classifiers
from highmark.connectors.auth import BasicAuth
from highmark.connectors.http import ApiClient

SEARCH = "/rest/api/3/search/jql"


class JiraApi:
    def __init__(
        self,
        name: str,
        url: str,
        email: str,
        token: str,
        *,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.name = name
        self.http = ApiClient(
            "jira",
            url,
            auth=BasicAuth(email, token),
            credential=f"the email and API token of connection '{name}'",
            classify=classifiers.jira,
            sleep=sleep,
        )
        self.server_now: datetime | None = None

    def _get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return self._note_clock(self.http.exchange("GET", path, params=params))

    def _note_clock(self, reply: Any) -> Any:
        date = reply.headers.get("date")
        if date:
            with contextlib.suppress(TypeError, ValueError):
                self.server_now = clock.ensure_utc(parsedate_to_datetime(date))
        return reply.body

    def myself(self) -> dict[str, Any]:
        """The user the token belongs to: ``accountId``, ``emailAddress``, ``timeZone``."""
        body: dict[str, Any] = self._get("/rest/api/3/myself")
        return body

    def project(self, key: str) -> dict[str, Any]:
        body: dict[str, Any] = self._get(f"/rest/api/3/project/{key}")
        return body

    def search(
        self, jql: str, fields: list[str], max_results: int, token: str | None
    ) -> dict[str, Any]:
        """One page of a JQL search: ``issues``, ``nextPageToken``, ``isLast``."""
        body: dict[str, Any] = {"jql": jql, "fields": fields, "maxResults": max_results}
        if token:
            body["nextPageToken"] = token
        page: dict[str, Any] = self._note_clock(self.http.exchange("POST", SEARCH, json=body))
        return page

    def now(self) -> datetime:
        """Jira's clock as of the last answer (this machine's clock before any)."""
        return self.server_now or clock.now()

    def close(self) -> None:
        self.http.close()
