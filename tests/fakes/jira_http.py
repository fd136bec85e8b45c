"""Helpers shared by the fake Jira's HTTP tests: a factory of started fakes, an httpx client
logged in as the default user, and small search shortcuts."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import httpx

from tests.fakes.jira import SEARCH, FakeJira

EMAIL, TOKEN = "etl@example.com", "jira-api-token"
NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)  # the fake clock's start
Make = Callable[..., FakeJira]


@contextmanager
def fakes() -> Iterator[Make]:
    """A factory of started fakes (each with a project FOO), all stopped on exit."""
    started: list[FakeJira] = []

    def factory(**settings: Any) -> FakeJira:
        fake = FakeJira(**settings).start()
        started.append(fake)
        fake.add_project("FOO", name="Foo project")
        return fake

    try:
        yield factory
    finally:
        for fake in started:
            fake.stop()


def connect(fake: FakeJira, base: str | None = None, token: str = TOKEN) -> httpx.Client:
    return httpx.Client(base_url=base or fake.url, auth=(EMAIL, token), timeout=10)


def search(http: httpx.Client, jql: str, **params: Any) -> httpx.Response:
    """A GET search (``fields=key`` unless given)."""
    return http.get(SEARCH, params={"jql": jql, "fields": "key", **params})


def keys(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [issue["key"] for issue in response.json()["issues"]]


def page_all(http: httpx.Client, jql: str, max_results: int = 2) -> list[str]:
    """Every key of a search, page by page (POST), as a connector would."""
    found: list[str] = []
    body: dict[str, Any] = {"jql": jql, "maxResults": max_results, "fields": ["key"]}
    while True:
        answer = http.post(SEARCH, json=body)
        found += keys(answer)
        if answer.json()["isLast"]:
            return found
        body["nextPageToken"] = answer.json()["nextPageToken"]


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)
