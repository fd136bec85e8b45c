"""highmark's one HTTP client, shared by every API connector.

An :class:`ApiClient` holds one connection pool (httpx, HTTP/1.1, connections reused) to one API
and sends every request through the same loop: authenticate, send, judge the answer (the
connector's classifier, then highmark's rules: :mod:`highmark.connectors.retry`), and either hand
it back, wait and try again, refresh the credentials once, or raise an
:class:`~highmark.errors.ApiError` whose message is one secret-free line::

    client = ApiClient(
        "github",
        "https://api.github.com",
        auth=BearerAuth(token),
        credential="the token of connection 'github'",
        classify=classifiers.github,
        sleep=cancel.wait,  # the connector's cancellable sleep
    )
    page = client.post_json("/graphql", json={"query": QUERY, "variables": variables})
    more = client.get_json(page["@odata.nextLink"])  # an absolute URL is sent verbatim

Waits go through ``sleep`` (default :func:`highmark.clock.sleep`); "now" is
:func:`highmark.clock.now`. The client logs to ``highmark.http``: a DEBUG line per request
(method, path, status, time) and a WARNING line per retry (why, how long it waits); never
headers, bodies, query strings or credentials. :attr:`ApiClient.stats` counts requests, retries,
seconds waited and seconds spent in HTTP round trips, for benchmarks.
"""

from __future__ import annotations

import json as jsonlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx

from highmark import __version__, clock
from highmark.connectors.auth import Auth
from highmark.connectors.retry import (
    Action,
    Classifier,
    Reply,
    RetryPolicy,
    Verdict,
    default_verdict,
    retry_after,
)
from highmark.errors import ApiError, one_line
from highmark.redact import scrub

__all__ = ["DEFAULT_USER_AGENT", "ApiClient", "HttpStats"]

log = logging.getLogger("highmark.http")
# httpx logs every request, URL and query string included, at INFO.
for _name in ("httpx", "httpcore"):
    if logging.getLogger(_name).level == logging.NOTSET:
        logging.getLogger(_name).setLevel(logging.WARNING)

DEFAULT_USER_AGENT = f"highmark/{__version__}"
# A limit whose reset has already passed (clocks differ) is still given this long.
MIN_RESET_WAIT = 1.0

_RETRYABLE_TRANSPORT_ERRORS = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
    httpx.ProxyError,
    httpx.DecodingError,
)

Params = Mapping[str, Any]


@dataclass
class HttpStats:
    """What a client has done so far: requests sent (retries included), retries, seconds slept
    before retries, and seconds inside HTTP round trips (sending, waiting, reading the body)."""

    requests: int = 0
    retries: int = 0
    waited_seconds: float = 0.0
    http_seconds: float = 0.0


class ApiClient:
    """A client for one API connection; see the module docstring.

    ``service`` names the API in messages ("github"); ``credential`` says which credential a
    401/403 is about ("the token of connection 'github'"). ``headers`` are sent with every
    request (besides ``User-Agent`` and ``Accept: application/json``). ``transport`` replaces
    httpx's network transport (tests).

    Requests are retried whatever their method: connectors only read, and their POSTs (GraphQL,
    JQL search) are queries.
    """

    def __init__(
        self,
        service: str,
        base_url: str,
        *,
        auth: Auth,
        credential: str,
        classify: Classifier | None = None,
        policy: RetryPolicy = RetryPolicy(),  # noqa: B008 (frozen: one shared default is fine)
        sleep: Callable[[float], None] | None = None,
        user_agent: str = DEFAULT_USER_AGENT,
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.service = service
        self.base_url = base_url
        self.auth = auth
        self.credential = credential
        self.classify = classify
        self.policy = policy
        self.stats = HttpStats()
        self._sleep = sleep
        self._client = httpx.Client(
            base_url=base_url,
            headers={"User-Agent": user_agent, "Accept": "application/json", **(headers or {})},
            timeout=httpx.Timeout(
                policy.read_timeout, connect=policy.connect_timeout, pool=policy.connect_timeout
            ),
            transport=transport,
            follow_redirects=False,
        )

    # ------------------------------------------------------------------ public

    def request(
        self,
        method: str,
        url: str,
        *,
        params: Params | None = None,
        json: Any = None,
        data: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send a request until it gets an answer its classifier (or highmark's rules) accepts.

        ``url`` is relative to the base URL, or absolute (an ``@odata.nextLink``, a Fabric
        ``continuationUri``): an absolute URL is sent exactly as given, never re-encoded, as
        long as no ``params`` are added to it. Raises :class:`ApiError`.
        """
        return self._exchange(method, url, params, json, data, headers, expect_json=False).response

    def get_json(
        self,
        url: str,
        *,
        params: Params | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """GET and return the parsed JSON body; a body that does not parse is retried."""
        return self._exchange("GET", url, params, None, None, headers, expect_json=True).body

    def post_json(
        self,
        url: str,
        *,
        json: Any = None,
        data: Mapping[str, Any] | None = None,
        params: Params | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """POST (a JSON body, or a form with ``data``) and return the parsed JSON answer."""
        return self._exchange("POST", url, params, json, data, headers, expect_json=True).body

    def exchange(
        self,
        method: str,
        url: str,
        *,
        params: Params | None = None,
        json: Any = None,
        data: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """Like :meth:`get_json`/:meth:`post_json`, but the whole answer: the parsed body and
        the response (its headers: a server's ``Date``, a request id)."""
        return self._exchange(method, url, params, json, data, headers, expect_json=True)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"ApiClient(service={self.service!r}, base_url={self.base_url!r}, auth={self.auth!r})"
        )

    # ------------------------------------------------------------------ the loop

    def _exchange(
        self,
        method: str,
        url: str,
        params: Params | None,
        json: Any,
        data: Mapping[str, Any] | None,
        headers: Mapping[str, str] | None,
        *,
        expect_json: bool,
    ) -> Reply:
        attempt = 0
        refreshed = False
        while True:
            attempt += 1
            request = self._build(method, url, params, json, data, headers)
            reply: Reply | None = None
            failure: httpx.HTTPError | None = None
            try:
                reply = self._send(request, expect_json)
            except httpx.HTTPError as exc:
                failure = exc
                if not isinstance(exc, _RETRYABLE_TRANSPORT_ERRORS):
                    message = f"{method} {request.url.path}: {self._describe(exc)}"
                    raise self._error(
                        message, request, None, False, attempt, error=type(exc).__name__
                    ) from exc
                verdict = Verdict.retry(self._describe(exc))
            else:
                verdict = (self.classify(reply) if self.classify else None) or default_verdict(
                    reply
                )
                if verdict.action is Action.OK:
                    return reply
                if verdict.action is Action.REFRESH and not refreshed and self.auth.refresh():
                    refreshed = True
                    self.stats.retries += 1
                    log.info("%s: %s %s: %d; new credentials, trying again", self.service,
                             method, request.url.path, reply.status)  # fmt: skip
                    continue
                if verdict.action is not Action.RETRY:
                    refused = verdict.action is Action.REFRESH
                    message = reply.refused() if refused else (verdict.reason or reply.message)
                    raise self._error(message, request, reply, False, attempt)

            if attempt >= self.policy.max_attempts:
                message = f"{method} {request.url.path} failed {attempt} times; the last: "
                error = type(failure).__name__ if failure is not None else None
                raise self._error(
                    message + verdict.reason, request, reply, True, attempt, error=error
                ) from failure
            wait, until = self._wait(verdict, reply, attempt - refreshed)
            if wait > self.policy.max_wait:
                when = f"at {until:%Y-%m-%dT%H:%M:%SZ}, " if until is not None else ""
                message = (
                    f"{verdict.reason}; the limit resets {when}in {wait:.0f}s, longer than this "
                    f"client waits ({self.policy.max_wait:.0f}s): a later run will retry"
                )
                raise self._error(
                    message,
                    request,
                    reply,
                    True,
                    attempt,
                    resets_at=until.isoformat() if until is not None else None,
                    retry_after=round(wait, 3),
                ) from failure
            log.warning("%s: %s %s: %s; retry %d of %d in %.1fs", self.service, method,
                        request.url.path, scrub(verdict.reason), attempt + 1,
                        self.policy.max_attempts, wait)  # fmt: skip
            self.stats.retries += 1
            (self._sleep or clock.sleep)(wait)
            self.stats.waited_seconds += wait

    def _build(
        self,
        method: str,
        url: str,
        params: Params | None,
        json: Any,
        data: Mapping[str, Any] | None,
        headers: Mapping[str, str] | None,
    ) -> httpx.Request:
        try:
            return self._client.build_request(
                method,
                url,
                params=params,
                json=json,
                data=data,
                headers={**(headers or {}), **self.auth.headers()},
            )
        except httpx.InvalidURL as exc:
            raise ApiError(
                f"{self.service}: invalid URL ({exc})", retryable=False, service=self.service
            ) from exc

    def _send(self, request: httpx.Request, expect_json: bool) -> Reply:
        self.stats.requests += 1
        started = time.perf_counter()
        try:
            response = self._client.send(request)
        except httpx.HTTPError as exc:
            elapsed = time.perf_counter() - started
            self.stats.http_seconds += elapsed
            log.debug("%s: %s %s -> %s after %.3fs", self.service, request.method,
                      request.url.path, type(exc).__name__, elapsed)  # fmt: skip
            raise
        elapsed = time.perf_counter() - started
        self.stats.http_seconds += elapsed
        log.debug("%s: %s %s -> %d in %.3fs", self.service, request.method, request.url.path,
                  response.status_code, elapsed)  # fmt: skip
        body, json_error = _parse(response, expect_json)
        return Reply(response, body, json_error, self.service, self.credential)

    def _wait(
        self, verdict: Verdict, reply: Reply | None, retries: int
    ) -> tuple[float, datetime | None]:
        """Seconds to wait before the next try, and the instant the server named, if any."""
        now = clock.now()
        if verdict.after is not None:
            wait = max(verdict.after, 0.0)
            return wait, now + timedelta(seconds=wait)
        if verdict.until is not None:
            wait = max((verdict.until - now).total_seconds(), MIN_RESET_WAIT)
            return wait, verdict.until
        if reply is not None and (asked := retry_after(reply.headers, now)) is not None:
            return asked, now + timedelta(seconds=asked)
        return self.policy.backoff(retries, verdict.at_least), None

    # ------------------------------------------------------------------ errors

    def _error(
        self,
        message: str,
        request: httpx.Request,
        reply: Reply | None,
        retryable: bool,
        attempts: int,
        **details: Any,
    ) -> ApiError:
        """An :class:`ApiError` for ``request``: its path (no query string), the answer's status,
        error code and request id, or the transport error when no answer came."""
        return ApiError(
            f"{self.service}: {message}",
            retryable=retryable,
            service=self.service,
            status=reply.status if reply is not None else None,
            code=reply.code if reply is not None else None,
            method=request.method,
            path=request.url.path,
            request_id=reply.request_id if reply is not None else None,
            attempts=attempts,
            **details,
        )

    def _describe(self, exc: httpx.HTTPError) -> str:
        """One line saying what went wrong on the wire, without the URL."""
        if isinstance(exc, httpx.ConnectTimeout):
            return f"no connection within {self.policy.connect_timeout:g}s"
        if isinstance(exc, httpx.ReadTimeout):
            return f"no answer within {self.policy.read_timeout:g}s"
        if isinstance(exc, httpx.TimeoutException):
            return f"timed out ({type(exc).__name__})"
        text = one_line(str(exc)) if str(exc).strip() else ""
        kind = "could not connect" if isinstance(exc, httpx.ConnectError) else type(exc).__name__
        if isinstance(exc, httpx.ReadError | httpx.RemoteProtocolError):
            kind = "connection lost"
        return f"{kind} ({text})" if text else kind


def _parse(response: httpx.Response, expect_json: bool) -> tuple[Any, bool]:
    """The JSON body, if it is meant to be JSON, and whether it failed to parse."""
    if not expect_json and "json" not in response.headers.get("content-type", ""):
        return None, False
    content = response.content
    if not content or content.isspace():
        return None, expect_json and response.status_code != 204
    try:
        return jsonlib.loads(content), False
    except (ValueError, UnicodeDecodeError):
        return None, True
