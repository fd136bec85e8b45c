"""``FakeJira``: a local Jira Cloud REST API v3 for the Jira connector's tests (contract:
shared/api-contracts.md §2.6).

It answers on the site path (``/rest/api/3/…``) and on the scoped-token gateway path
(``/ex/jira/{cloud_id}/rest/api/3/…``), checks Basic auth (email and API token) on every call,
answers 410 on the removed ``/rest/api/{2,3,latest}/search``, and can throttle (429/503 with
Jira's headers) on request, or by a token-bucket burst limit on the fake clock.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from tests.fakes.base import FakeClock, FakeServer, Fault, LoggedRequest, Response

from . import endpoints
from .controls import SiteControls
from .endpoints import error
from .limits import BURST, BurstLimiter, throttled_headers
from .model import Issue, Site, User
from .paging import TOKEN_TTL
from .render import Renderer
from .search import SearchCall, SearchEngine

SEARCH = "/rest/api/3/search/jql"
COUNT = "/rest/api/3/search/approximate-count"
BULKFETCH = "/rest/api/3/issue/bulkfetch"
CLOUD_ID = "5b3c4d2e-8f1a-4b6c-9d7e-0a1b2c3d4e5f"
GONE = (
    "The requested API has been removed. Please migrate to the /rest/api/3/search/jql API. "
    "A full migration guideline is available at "
    "https://developer.atlassian.com/changelog/#CHANGE-2046"
)
UNAUTHORIZED = "Client must be authenticated to access this resource."
_GONE_PATH = re.compile(r"/rest/api/(2|3|latest)/search/?")
_GATEWAY = re.compile(r"/ex/jira/(?P<cloud>[^/]+)(?P<rest>/.*)")

Handler = Callable[..., Response]
_ROUTES: list[tuple[str, re.Pattern[str], frozenset[str]]] = [
    ("search", re.compile(r"/rest/api/3/search/jql"), frozenset({"GET", "POST"})),
    ("count", re.compile(r"/rest/api/3/search/approximate-count"), frozenset({"POST"})),
    ("myself", re.compile(r"/rest/api/3/myself"), frozenset({"GET"})),
    ("project", re.compile(r"/rest/api/3/project/(?P<ref>[^/]+)"), frozenset({"GET"})),
    ("mypermissions", re.compile(r"/rest/api/3/mypermissions"), frozenset({"GET"})),
    ("bulkfetch", re.compile(r"/rest/api/3/issue/bulkfetch"), frozenset({"POST"})),
    ("comments", re.compile(r"/rest/api/3/issue/(?P<ref>[^/]+)/comment"), frozenset({"GET"})),
    ("issue", re.compile(r"/rest/api/3/issue/(?P<ref>[^/]+)"), frozenset({"GET"})),
]


def _find_route(path: str) -> tuple[str, frozenset[str], re.Match[str]] | None:
    for name, pattern, methods in _ROUTES:
        if found := pattern.fullmatch(path):
            return name, methods, found
    return None


@dataclass
class _Hold:
    """A 429 that keeps answering until ``until`` (retrying early fails again)."""

    path: str | None
    until: datetime
    limit: int
    reason: str


class FakeJira(SiteControls, FakeServer):
    """A fake Jira Cloud site. Settings are plain attributes a test may change at any time:

    - ``user_zone`` / ``site_zone``: the default user's profile zone (JQL literals are read in
      it) and the zone response timestamps are rendered in. They differ by default.
    - ``pagination``: ``"keyset"`` or ``"offset"`` (what ``nextPageToken`` pins, §2.4).
    - ``index_lag``: seconds before a write is visible to search (other endpoints are current).
    - ``precision``: ``"minute"`` (JQL compares at the minute) or ``"instant"``.
    - ``page_cap``: the most issues a page holds; ``heavy_page_cap`` when more than
      ``heavy_fields`` fields are rendered (``*all`` and ``*navigable`` count as all theirs).
    - ``trailing_empty_page``: a page that reaches the end still has a token, and the next page
      is empty with ``isLast: true``.
    - ``token_ttl``: ``nextPageToken`` lifetime (7 days); ``comment_page_cap``: comments per page.
    - ``near_limit``: send ``X-RateLimit-NearLimit: true`` on every answer.
    - ``auth_failure_body``: ``"json"`` (``errorMessages``) or ``"empty"`` on a 401.
    """

    def __init__(
        self,
        *,
        clock: FakeClock | None = None,
        latency: float = 0.0,
        email: str = "etl@example.com",
        token: str = "jira-api-token",
        user_zone: str = "Europe/Berlin",
        site_zone: str = "America/Los_Angeles",
        pagination: str = "keyset",
        index_lag: float = 0.0,
        precision: str = "minute",
        page_cap: int = 100,
        heavy_page_cap: int = 50,
        heavy_fields: int = 10,
        trailing_empty_page: bool = False,
        token_ttl: timedelta = TOKEN_TTL,
        comment_page_cap: int = 100,
        scoped: bool = False,
    ) -> None:
        super().__init__(clock=clock, latency=latency)
        if pagination not in ("keyset", "offset") or precision not in ("minute", "instant"):
            raise ValueError("pagination: keyset|offset, precision: minute|instant")
        self.site = Site()
        self.site_zone = site_zone
        self.pagination = pagination
        self.index_lag = index_lag
        self.precision = precision
        self.page_cap = page_cap
        self.heavy_page_cap = heavy_page_cap
        self.heavy_fields = heavy_fields
        self.trailing_empty_page = trailing_empty_page
        self.comment_page_cap = comment_page_cap
        self.near_limit = False
        self.auth_failure_body = "json"
        self.cloud_id = CLOUD_ID
        self.searches: list[SearchCall] = []
        self.burst: BurstLimiter | None = None
        self._engine = SearchEngine(self)
        self._engine.tokens.ttl = token_ttl
        self._holds: list[_Hold] = []
        self._bulk_errors: dict[str, list[str]] = {}
        self.default_user = self.site.add_user(
            email, token=token, time_zone=user_zone, display_name="ETL Bot", scoped=scoped
        )

    # ------------------------------------------------------------------ settings

    @property
    def user(self) -> User:
        """The default user (the one ``email``/``token`` log in as)."""
        return self.default_user

    @property
    def user_zone(self) -> str:
        return self.default_user.time_zone or self.site_zone

    @user_zone.setter
    def user_zone(self, name: str) -> None:
        self.default_user.time_zone = name

    @property
    def token_ttl(self) -> timedelta:
        return self._engine.tokens.ttl

    @token_ttl.setter
    def token_ttl(self, ttl: timedelta) -> None:
        self._engine.tokens.ttl = ttl

    @property
    def gateway_url(self) -> str:
        """The base URL scoped tokens must use: ``{url}/ex/jira/{cloud_id}``."""
        return f"{self.url}/ex/jira/{self.cloud_id}"

    def _base_url(self) -> str:
        return self.url if self._server is not None else "https://fake.atlassian.net"

    # ------------------------------------------------------------------ faults and limits

    def plan_pages(self, *sizes: int | None) -> None:
        """Cap the next searches' page sizes, one per search, in order (``None``: no cap; ``0``:
        an empty page, which still has a token when issues remain)."""
        with self.lock:
            self._engine.page_plan.extend(sizes)

    def throttle(
        self,
        on_request: int | None = None,
        *,
        path: str | None = None,
        retry_after: float = 7.0,
        hold: bool = True,
        limit: int = 100,
        reason: str = BURST,
    ) -> Fault:
        """Answer the ``on_request``-th matching request (default: the next) with a 429 and
        Jira's headers. With ``hold``, matching requests keep getting 429 (with the remaining
        ``Retry-After``) until ``retry_after`` seconds of fake time have passed."""

        def respond(request: LoggedRequest) -> Response:
            now = self.clock.now()
            if hold:
                self._holds.append(_Hold(path, now + timedelta(seconds=retry_after), limit, reason))
            return self._throttled(now, retry_after, limit, reason)

        return self.fail(status=429, on_request=on_request, path=path, respond=respond)

    def unavailable(
        self,
        on_request: int | None = None,
        *,
        path: str | None = None,
        retry_after: float | None = 5.0,
        times: int = 1,
    ) -> Fault:
        """Answer with 503 (with ``Retry-After`` unless ``None``), ``times`` times."""

        def respond(request: LoggedRequest) -> Response:
            headers = {} if retry_after is None else {"Retry-After": str(int(retry_after))}
            return error(503, "Service Unavailable", headers=headers)

        return self.fail(status=503, on_request=on_request, path=path, times=times, respond=respond)

    def burst_limit(self, capacity: int, per_second: float) -> None:
        """A real token bucket per (endpoint, method), refilled on the fake clock; ``capacity
        <= 0`` turns it off."""
        with self.lock:
            self.burst = BurstLimiter(capacity, per_second) if capacity > 0 else None

    def bulkfetch_error(self, key: str, message: str = "Retry later.", times: int = 1) -> None:
        """The next ``times`` bulk fetches that include ``key`` list it in ``issueErrors``."""
        with self.lock:
            self._bulk_errors[self.issue(key).id] = [message] * times

    def take_bulkfetch_error(self, issue: Issue) -> str | None:
        queued = self._bulk_errors.get(issue.id)
        return queued.pop(0) if queued else None

    def clear_log(self) -> None:
        with self.lock:
            super().clear_log()
            self.searches.clear()
            self._holds.clear()

    def _throttled(self, now: datetime, retry_after: float, limit: int, reason: str) -> Response:
        headers = throttled_headers(now, retry_after, limit=limit, reason=reason)
        return error(429, "Rate limit exceeded.", headers=headers)

    # ------------------------------------------------------------------ dispatch

    def handle(self, request: LoggedRequest) -> Response:
        path, gateway = request.path, False
        if match := _GATEWAY.fullmatch(path):
            if match["cloud"] != self.cloud_id:
                return error(404, "Site not found.")
            path, gateway = match["rest"], True
        base = self.gateway_url if gateway else self.url
        if _GONE_PATH.fullmatch(path):
            return error(410, GONE)
        now = self.clock.now()
        self._holds = [held for held in self._holds if now < held.until]
        for held in self._holds:
            if held.path is None or request.path.startswith(held.path):
                wait = (held.until - now).total_seconds()
                return self._throttled(now, wait, held.limit, held.reason)
        user = self._authenticate(request, gateway)
        if isinstance(user, Response):
            return user
        route = _find_route(path)
        if route is None:
            return error(404, f"No REST resource at {path}.")
        name, methods, found = route
        if request.method not in methods:
            return Response(405, b"", {"Allow": ", ".join(sorted(methods))})
        remaining: int | None = None
        if self.burst is not None:
            allowed, remaining, wait = self.burst.take((name, request.method), now)
            if not allowed:
                return self._throttled(now, wait, self.burst.capacity, BURST)
        if request.method == "POST" and not request.headers.get("content-type", "").startswith(
            "application/json"
        ):
            return Response(415, b"", {})
        response = self._route(
            name, request, user, Renderer(self.site, base, self.site_zone), found
        )
        if self.burst is not None and remaining is not None:
            response.headers["X-RateLimit-Limit"] = str(self.burst.capacity)
            response.headers["X-RateLimit-Remaining"] = str(remaining)
            if self.burst.near(remaining):
                response.headers["X-RateLimit-NearLimit"] = "true"
        if self.near_limit:
            response.headers["X-RateLimit-NearLimit"] = "true"
        return response

    def _route(
        self,
        name: str,
        request: LoggedRequest,
        user: User,
        renderer: Renderer,
        match: re.Match[str],
    ) -> Response:
        if name == "search":
            return self._engine.search(request, user, renderer)
        if name == "count":
            return self._engine.count(request, user)
        handlers: dict[str, Handler] = {
            "myself": endpoints.myself,
            "project": endpoints.project,
            "mypermissions": endpoints.my_permissions,
            "bulkfetch": endpoints.bulkfetch,
            "comments": endpoints.comments,
            "issue": endpoints.issue,
        }
        return handlers[name](self, request, user, renderer, **match.groupdict())

    def _authenticate(self, request: LoggedRequest, gateway: bool) -> User | Response:
        header = request.headers.get("authorization", "")
        scheme, _, credentials = header.partition(" ")
        user = None
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(credentials.strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                decoded = ""
            email, sep, token = decoded.partition(":")
            user = self.site.users.get(email.lower()) if sep else None
            if user is not None and (
                user.token is None
                or user.revoked
                or not hmac.compare_digest(user.token.encode(), token.encode())
                or (user.scoped and not gateway)
            ):
                user = None
        if user is not None:
            return user
        body = {"errorMessages": [UNAUTHORIZED], "errors": {}}
        headers = {"WWW-Authenticate": 'Basic realm="Atlassian"'}
        if self.auth_failure_body == "empty":
            return Response(401, b"", headers)
        return Response.json(body, 401, headers)
