"""The enhanced search: ``GET``/``POST /rest/api/3/search/jql`` and
``POST /rest/api/3/search/approximate-count``.

A search reads the *index*: each issue as it was ``index_lag`` seconds ago (see
:mod:`.model`). Listings (matching issues in ORDER BY order) are cached by query, user and index
epoch, so paging through tens of thousands of issues filters and sorts once, not per page.
Every search is recorded as a :class:`SearchCall` for assertions.
"""

from __future__ import annotations

import bisect
import json
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tests.fakes.base import LoggedRequest, Response

from .criteria import Context, Criteria, predicate, resolve, sort_key
from .jql import JqlError, Query, parse
from .model import Issue, IssueState, User, to_ms
from .paging import PageCursor, TokenBook, TokenError
from .render import FieldSelection, Renderer, select_fields

if TYPE_CHECKING:
    from .server import FakeJira

DEFAULT_MAX_RESULTS = 50
MAX_RECONCILE = 50
UNBOUNDED = (
    "Unbounded JQL queries are not allowed here. Please add a search restriction to your query."
)
_CACHE_SIZE = 16


@dataclass
class SearchCall:
    """One search request as the fake understood it, and what it answered."""

    request: LoggedRequest
    jql: str
    token: str | None  # the nextPageToken sent
    fields: tuple[str, ...]  # as sent, split on commas
    max_results: int | None  # as sent
    query: Query | None = None  # the parsed JQL
    criteria: Criteria | None = None  # its meaning: date bounds as UTC instants, order
    cursor: PageCursor | None = None  # what the sent token stood for
    page_size: int | None = None  # what the server allowed for this page
    keys: list[str] = field(default_factory=list)  # the issues returned, in order
    next_token: str | None = None
    is_last: bool | None = None
    status: int = 200
    error: str | None = None


@dataclass
class _Listing:
    entries: list[tuple[tuple[Any, ...], Issue, IssueState]]
    keys: list[tuple[Any, ...]]


@dataclass
class _Params:
    jql: str
    token: str | None
    max_results: int | None
    fields: list[str]
    reconcile: tuple[str, ...]


class BadRequest(Exception):
    """A 400 with ``errorMessages``."""


class SearchEngine:
    def __init__(self, fake: FakeJira) -> None:
        self.fake = fake
        self.tokens = TokenBook(salt=str(id(self)))
        self.page_plan: list[int | None] = []
        self._cache: OrderedDict[tuple[Any, ...], _Listing] = OrderedDict()

    # ------------------------------------------------------------------ endpoints

    def search(self, request: LoggedRequest, user: User, renderer: Renderer) -> Response:
        fake = self.fake
        try:
            params = self._params(request)
        except BadRequest as exc:
            fake.searches.append(
                SearchCall(request, "", None, (), None, status=400, error=str(exc))
            )
            return _bad(str(exc))
        fields = select_fields(params.fields, default="id")
        call = SearchCall(request, params.jql, params.token, fields.requested, params.max_results)
        fake.searches.append(call)
        try:
            call.query = parse(params.jql)
            call.criteria = criteria = resolve(call.query, self._context(user))
            if not criteria.bounded:
                raise JqlError(UNBOUNDED)
            if params.token is not None:
                call.cursor = self.tokens.redeem(params.token, params.jql, fake.clock.now())
            self._check_reconcile(params.reconcile, user)
        except (JqlError, TokenError, BadRequest) as exc:
            call.status, call.error = 400, str(exc)
            return _bad(str(exc))
        listing = self._listing(criteria, user, params.reconcile)
        call.page_size = size = self._page_size(params.max_results, fields)
        cursor = call.cursor
        mode = cursor.mode if cursor else fake.pagination
        if cursor is None:
            start = 0
        elif mode == "offset":
            start = cursor.position
        else:
            start = 0 if cursor.after is None else bisect.bisect_right(listing.keys, cursor.after)
        page = listing.entries[start : start + size]
        end = start + len(page)
        body: dict[str, Any] = {
            "issues": [renderer.issue(issue, state, fields) for _, issue, state in page]
        }
        call.keys = [issue.key for _, issue, _ in page]
        if end < len(listing.entries) or (fake.trailing_empty_page and page):
            after = page[-1][0] if page else (cursor.after if cursor else None)
            next_cursor = PageCursor(
                mode,
                params.jql,
                fake.clock.now(),
                position=end,
                after=after,
                page=(cursor.page if cursor else 1) + 1,
                served=(cursor.served if cursor else 0) + len(page),
            )
            call.next_token = body["nextPageToken"] = self.tokens.issue(next_cursor)
        call.is_last = body["isLast"] = call.next_token is None
        return Response.json(body)

    def count(self, request: LoggedRequest, user: User) -> Response:
        try:
            payload = _json_object(request)
            jql = payload.get("jql")
            if not isinstance(jql, str):
                raise BadRequest("The 'jql' property is required.")
            criteria = resolve(parse(jql), self._context(user))
            if not criteria.bounded:
                raise JqlError(UNBOUNDED)
        except (JqlError, BadRequest) as exc:
            return _bad(str(exc))
        return Response.json({"count": len(self._listing(criteria, user, ()).entries)})

    # ------------------------------------------------------------------ pieces

    def _context(self, user: User) -> Context:
        fake = self.fake
        return Context(
            fake.site,
            user,
            user.time_zone or fake.site_zone,
            to_ms(fake.clock.now()),
            fake.precision,
        )

    def _params(self, request: LoggedRequest) -> _Params:
        if request.method == "GET":
            max_results = request.param("maxResults")
            reconcile = request.param("reconcileIssues") or ""
            return _Params(
                jql=request.param("jql") or "",
                token=request.param("nextPageToken"),
                max_results=_int("maxResults", max_results) if max_results else None,
                fields=request.query.get("fields", []),
                reconcile=tuple(r.strip() for r in reconcile.split(",") if r.strip()),
            )
        payload = _json_object(request)
        fields = payload.get("fields", [])
        if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
            raise BadRequest("'fields' must be an array of strings in a POST body.")
        if not isinstance(payload.get("expand", ""), str):
            raise BadRequest("'expand' must be a comma-separated string, even in a POST body.")
        reconcile = payload.get("reconcileIssues", [])
        if not isinstance(reconcile, list):
            raise BadRequest("'reconcileIssues' must be an array of issue ids.")
        token, jql = payload.get("nextPageToken"), payload.get("jql") or ""
        if (token is not None and not isinstance(token, str)) or not isinstance(jql, str):
            raise BadRequest("'jql' and 'nextPageToken' must be strings.")
        max_results = payload.get("maxResults")
        return _Params(
            jql=jql,
            token=token,
            max_results=None if max_results is None else _int("maxResults", max_results),
            fields=fields,
            reconcile=tuple(str(r) for r in reconcile),
        )

    def _check_reconcile(self, ids: tuple[str, ...], user: User) -> None:
        if len(ids) > MAX_RECONCILE:
            raise BadRequest(f"reconcileIssues accepts at most {MAX_RECONCILE} issue ids.")
        for ref in ids:
            issue = self.fake.site.issue(ref) if ref.isdigit() else None
            if issue is None or issue.deleted or not user.can_browse(issue.project):
                raise BadRequest(f"The issue with id '{ref}' in reconcileIssues does not exist.")

    def _page_size(self, asked: int | None, fields: FieldSelection) -> int:
        fake = self.fake
        heavy = fields.count > fake.heavy_fields
        size = min(asked or DEFAULT_MAX_RESULTS, fake.heavy_page_cap if heavy else fake.page_cap)
        if self.page_plan:
            planned = self.page_plan.pop(0)
            if planned is not None:
                size = min(size, planned)
        return size

    def _listing(self, criteria: Criteria, user: User, reconcile: tuple[str, ...]) -> _Listing:
        site = self.fake.site
        now_ms = to_ms(self.fake.clock.now())
        key = (criteria.plan, criteria.order, user.projects, reconcile, site.index_epoch(now_ms))
        if (cached := self._cache.get(key)) is not None:
            self._cache.move_to_end(key)
            return cached
        assert criteria.plan is not None
        matches, order = predicate(criteria.plan), sort_key(criteria.order)
        entries = []
        for issue in site.issues.values():
            if issue.id in reconcile and not issue.deleted:
                state: IssueState | None = issue.state
            else:
                state = issue.indexed(now_ms)
            if state is None or not user.can_browse(issue.project):
                continue
            if matches(issue, state):
                entries.append((order(issue, state), issue, state))
        entries.sort(key=lambda entry: entry[0])
        listing = _Listing(entries, [entry[0] for entry in entries])
        self._cache[key] = listing
        if len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)
        return listing


def _bad(message: str) -> Response:
    return Response.json({"errorMessages": [message], "errors": {}}, status=400)


def _int(name: str, value: object) -> int:
    try:
        number = int(str(value))
    except ValueError:
        raise BadRequest(f"The '{name}' parameter must be an integer.") from None
    if number < 1:
        raise BadRequest(f"The '{name}' parameter must be greater than 0.")
    return number


def _json_object(request: LoggedRequest) -> dict[str, Any]:
    try:
        payload = json.loads(request.body or b"{}")
    except ValueError:
        raise BadRequest("Unexpected character in the request body: it is not JSON.") from None
    if not isinstance(payload, dict):
        raise BadRequest("The request body must be a JSON object.")
    return payload
