"""A plain fake API for the HTTP client's tests: it echoes what it received as JSON, and records
the client's sleeps on its fake clock."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from highmark import clock
from highmark.connectors.auth import Auth, BearerAuth
from highmark.connectors.http import ApiClient
from highmark.connectors.retry import Classifier, RetryPolicy
from tests.fakes.base import DEFAULT_START, FakeServer, LoggedRequest, Response

TOKEN = "ghp_S3cr3tT0kenForHttpTests0123456789"


class EchoApi(FakeServer):
    """Answers every request with its method, path and raw query string."""

    def __init__(self) -> None:
        super().__init__()
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        """The client's sleep: recorded, and passed on the fake clock."""
        self.sleeps.append(seconds)
        self.clock.sleep(seconds)

    def handle(self, request: LoggedRequest) -> Response:
        return Response.json(
            {"method": request.method, "path": request.path, "query": request.raw_query}
        )

    def epoch_in(self, seconds: int) -> str:
        """An ``x-ratelimit-reset`` value ``seconds`` from the fake's now."""
        return str(int(self.clock.now().timestamp()) + seconds)

    def reset(self) -> None:
        """Forget the last test: requests, faults, hooks, sleeps; the clock back at its start."""
        self.clear_log()
        self.sleeps.clear()
        self.clock.set(DEFAULT_START)


@contextmanager
def fresh(api: EchoApi) -> Iterator[EchoApi]:
    """``api`` reset, its clock highmark's clock until the block ends. One server serves a whole
    module: stopping one takes half a second (``serve_forever`` polls)."""
    api.reset()
    clock.set_clock(api.clock.now)
    try:
        yield api
    finally:
        clock.set_clock(None)


def make_client(
    api: EchoApi,
    *,
    service: str = "test",
    auth: Auth | None = None,
    classify: Classifier | None = None,
    base_path: str = "",
    **policy: Any,
) -> ApiClient:
    return ApiClient(
        service,
        api.url + base_path,
        auth=auth or BearerAuth(TOKEN),
        credential=f"the token of connection '{service}'",
        classify=classify,
        policy=RetryPolicy(**policy),
        sleep=api.sleep,
    )
