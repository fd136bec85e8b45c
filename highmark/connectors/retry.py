"""Judging an API's answer: try again (and when), ask for new credentials, or give up.

Every answer is judged in two steps. First the connector's :data:`Classifier`, if it has one (see
:mod:`highmark.connectors.classifiers` for GitHub, Jira, Microsoft Graph and Fabric), may return a
:class:`Verdict`; when it returns None the default rules of :func:`default_verdict` apply:

- 2xx is fine, unless its JSON body does not parse (cut short): retry;
- 401: ask the credentials for a refresh once, then give up;
- 408, 429, 500, 502, 503, 504: retry;
- 403 and every other status: give up (permanent).

A retry waits, in this order: the verdict's ``after`` seconds, its ``until`` instant, the
answer's ``Retry-After`` header (seconds or an HTTP date), else an exponential backoff with
jitter (:meth:`RetryPolicy.backoff`, at least the verdict's ``at_least``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any

import httpx

from highmark import scheduler
from highmark.errors import one_line

__all__ = [
    "RETRYABLE_STATUSES",
    "Action",
    "Classifier",
    "Reply",
    "RetryPolicy",
    "Verdict",
    "chain",
    "default_verdict",
    "epoch_header",
    "error_code",
    "error_message",
    "iso_header",
    "retry_after",
]

RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# Headers that name a request for the service's support, most specific first.
REQUEST_ID_HEADERS = (
    "x-github-request-id",
    "requestid",
    "request-id",
    "client-request-id",
    "x-ms-request-id",
    "x-arequestid",
    "atl-traceid",
    "x-request-id",
)
_MAX_MESSAGE = 200


@dataclass(frozen=True)
class RetryPolicy:
    """How hard a client tries: attempts per request, backoff, timeouts, the longest wait.

    A wait the server asks for (``Retry-After``, a rate limit's reset) longer than ``max_wait``
    is not waited out: the request fails with a retryable error saying when the limit resets,
    and the scheduler retries the run later.
    """

    max_attempts: int = 6
    base: float = 1.0
    cap: float = 60.0
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    max_wait: float = 900.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if min(self.base, self.cap, self.connect_timeout, self.read_timeout) <= 0:
            raise ValueError("base, cap and timeouts must be positive")
        if self.max_wait < 0:
            raise ValueError("max_wait must not be negative")

    def backoff(self, retry: int, at_least: float = 0.0) -> float:
        """Seconds before retry number ``retry`` (1 = the first): ``base``, twice that, four
        times… up to ``cap``, each drawn within [50 %, 100 %] of its step (as the scheduler's
        run retries, :func:`highmark.scheduler.backoff`). With ``at_least``
        the steps start there instead, never go below it, and may grow up to ``max_wait``."""
        if at_least > 0:
            step = scheduler.backoff(
                retry,
                timedelta(seconds=at_least),
                timedelta(seconds=max(at_least, self.max_wait)),
            )
            return max(at_least, step.total_seconds())
        step = scheduler.backoff(retry, timedelta(seconds=self.base), timedelta(seconds=self.cap))
        return step.total_seconds()


class Action(StrEnum):
    OK = "ok"  # hand the answer to the caller
    RETRY = "retry"  # try again after a wait
    REFRESH = "refresh"  # get new credentials once and try again, else give up
    PERMANENT = "permanent"  # give up: a human has to act


@dataclass(frozen=True)
class Verdict:
    """What to do with one answer. Build it with :meth:`ok`, :meth:`retry`, :meth:`refresh` or
    :meth:`permanent`.

    ``reason`` says why (logged with a retry), or, for a permanent verdict, is the error message
    after the ``"<service>: "`` prefix the client adds.
    """

    action: Action
    reason: str = ""
    after: float | None = None
    until: datetime | None = None
    at_least: float = 0.0

    @classmethod
    def ok(cls) -> Verdict:
        return cls(Action.OK)

    @classmethod
    def retry(
        cls,
        reason: str,
        *,
        after: float | None = None,
        until: datetime | None = None,
        at_least: float = 0.0,
    ) -> Verdict:
        """Try again after ``after`` seconds, or at ``until`` (a limit's reset), or else after
        ``Retry-After`` or a backoff of at least ``at_least`` seconds."""
        return cls(Action.RETRY, reason, after, until, at_least)

    @classmethod
    def refresh(cls) -> Verdict:
        return cls(Action.REFRESH)

    @classmethod
    def permanent(cls, message: str) -> Verdict:
        return cls(Action.PERMANENT, message)


@dataclass(frozen=True)
class Reply:
    """One answer as a classifier sees it: the response, its parsed JSON body, and the names the
    client uses in messages (``service``, and ``credential``: which credential a 401/403 is
    about, e.g. "the token of connection 'github'")."""

    response: httpx.Response
    body: Any  # the parsed JSON body; None when there is none or it does not parse
    json_error: bool  # a body that should be JSON and does not parse
    service: str
    credential: str

    @property
    def status(self) -> int:
        return self.response.status_code

    @property
    def headers(self) -> httpx.Headers:
        return self.response.headers

    @property
    def method(self) -> str:
        return self.response.request.method

    @property
    def path(self) -> str:
        """The request's path, without its query string (which may carry tokens and cursors)."""
        return self.response.request.url.path

    @property
    def code(self) -> str | None:
        return error_code(self.body)

    @property
    def message(self) -> str:
        """The service's error code and message, as one short line; else the reason phrase."""
        code, text = self.code, error_message(self.body)
        if text and code and not text.startswith(code):
            text = f"{code}: {text}"
        text = text or code or self.response.reason_phrase or "HTTP error"
        text = one_line(text)
        return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"

    @property
    def request_id(self) -> str | None:
        for name in REQUEST_ID_HEADERS:
            if value := self.headers.get(name):
                return str(value)
        return None

    def refused(self) -> str:
        """The message for credentials the service refused (401)."""
        return (
            f"{self.status} {self.message}: {self.credential} was refused "
            "(expired, revoked or mistyped)"
        )

    def forbidden(self, hint: str = "") -> str:
        """The message for credentials that lack a permission (403), with an optional hint."""
        text = (
            f"{self.status} {self.message}: {self.credential} is not allowed to "
            f"{self.method} {self.path}"
        )
        return f"{text} ({hint})" if hint else text


Classifier = Callable[[Reply], Verdict | None]


def chain(*classifiers: Classifier) -> Classifier:
    """One classifier from several: the first verdict that is not None wins."""

    def classify(reply: Reply) -> Verdict | None:
        for classifier in classifiers:
            verdict = classifier(reply)
            if verdict is not None:
                return verdict
        return None

    return classify


def default_verdict(reply: Reply) -> Verdict:
    """highmark's rules for an answer no classifier judged (see the module docstring)."""
    status = reply.status
    if 200 <= status < 300:
        if reply.json_error:
            return Verdict.retry(f"{status} with a body that is not valid JSON (cut short?)")
        return Verdict.ok()
    if status == 401:
        return Verdict.refresh()
    if status in RETRYABLE_STATUSES:
        return Verdict.retry(f"{status} {reply.message}")
    if status == 403:
        return Verdict.permanent(reply.forbidden())
    return Verdict.permanent(f"{status} {reply.message} ({reply.method} {reply.path})")


def retry_after(headers: httpx.Headers, now: datetime) -> float | None:
    """Seconds the ``Retry-After`` header asks for (a number or an HTTP date), None without a
    usable one."""
    value = (headers.get("retry-after") or "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(seconds, 0.0) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - now).total_seconds(), 0.0)


def epoch_header(headers: httpx.Headers, name: str) -> datetime | None:
    """A header holding UTC epoch seconds (``x-ratelimit-reset``) as a datetime."""
    try:
        return datetime.fromtimestamp(float(headers.get(name) or ""), UTC)
    except (ValueError, OverflowError, OSError):
        return None


def iso_header(headers: httpx.Headers, name: str) -> datetime | None:
    """A header holding an ISO 8601 instant (Jira's ``X-RateLimit-Reset``) as a UTC datetime."""
    try:
        when = datetime.fromisoformat((headers.get(name) or "").strip())
    except ValueError:
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def error_message(body: Any) -> str | None:
    """The human message of an API error body: Graph ``error.message``, OAuth
    ``error_description``, Jira ``errorMessages``/``errors``, GraphQL ``errors[].message``,
    GitHub/Fabric ``message``."""
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    if isinstance(error, str):
        description = body.get("error_description")
        return description if isinstance(description, str) else error
    messages = body.get("errorMessages")
    if isinstance(messages, list) and messages:
        return "; ".join(str(m) for m in messages[:3])
    errors = body.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        message = errors[0].get("message")
        if isinstance(message, str):
            return message
    if isinstance(errors, dict) and errors:
        return "; ".join(f"{key}: {value}" for key, value in list(errors.items())[:3])
    message = body.get("message")
    return message if isinstance(message, str) else None


def error_code(body: Any) -> str | None:
    """The service's error code: Graph ``error.code``, Fabric ``errorCode``, GraphQL
    ``errors[0].type``, OAuth ``error``, else ``code``."""
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    if isinstance(error, dict) and isinstance(error.get("code"), str):
        return str(error["code"])
    if isinstance(body.get("errorCode"), str):
        return str(body["errorCode"])
    errors = body.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        kind = errors[0].get("type")
        if isinstance(kind, str):
            return kind
    if isinstance(error, str):
        return error
    code = body.get("code")
    return code if isinstance(code, str) else None
