"""Jira Cloud's REST API v3 as the connector uses it: who the user is (and their time zone), a
project, and ``/rest/api/3/search/jql`` pages; Jira's clock from the ``Date`` header."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

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

    def _get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return self.http.exchange("GET", path, params=params).body

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
        page: dict[str, Any] = self.http.exchange("POST", SEARCH, json=body).body
        return page

    def now(self) -> datetime:
        """Jira's clock as of the last answer (this machine's clock before any)."""
        return self.http.now()

    def close(self) -> None:
        self.http.close()
