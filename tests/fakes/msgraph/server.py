"""``FakeGraph``: Microsoft Graph's user and group delta queries on 127.0.0.1 (contract:
shared/api-contracts.md §3.7), over a :class:`~.model.Directory` a test changes between pages.

Served: ``GET /v1.0/{users|groups}/delta`` (and ``/microsoft.graph.delta``) with ``$select``,
``$filter=id eq '…'`` (up to 50, OR-ed), ``$deltatoken=latest``, ``$top`` (ignored),
``$expand``/``$orderby`` refused; ``@odata.nextLink`` / ``@odata.deltaLink`` whose query must come
back verbatim; ``Prefer: return=minimal``. Bearer tokens are checked with the shared
:class:`~tests.fakes.entra.TokenIssuer` (a 401 ``InvalidAuthenticationToken`` when expired or
revoked). Test controls: :meth:`throttle` (429 with or without ``Retry-After`` and the
``x-ms-throttle-*`` headers), :meth:`deny` (403 ``Authorization_RequestDenied``),
:meth:`force_reset` (410 with ``Location``), :meth:`require_resync` (``resyncRequired``), delta
tokens that expire after 7 days of fake time (``syncStateNotFound``), :meth:`forget_links`
(every link unknown: 400), :meth:`plan_pages`, :meth:`replay`.
"""

from __future__ import annotations

import re
import secrets
from datetime import timedelta
from typing import Any

from tests.fakes.base import FakeClock, FakeServer, Fault, LoggedRequest, Response
from tests.fakes.entra import TokenIssuer

from .model import Directory
from .rounds import (
    DeltaState,
    Entry,
    Round,
    SkipState,
    TokenBook,
    delta_round,
    initial_round,
    render,
)

VERSION = "/v1.0"
TOKEN_TTL = timedelta(days=7)
DEFAULT_SELECT = {"users": ("id", "displayName"), "groups": ("id", "displayName")}
EXPIRED = (
    "The sync state generation is not found. The delta token is expired and data must be "
    "synchronized again."
)
_PATH = re.compile(r"/v1\.0/(?P<kind>users|groups)/(?:delta|microsoft\.graph\.delta)(?:\(\))?")
_FILTER = re.compile(r"\s*id\s+eq\s+'([^']+)'\s*")


class FakeGraph(FakeServer):
    """A fake Graph. Settings (plain attributes): ``page_size`` (objects per page),
    ``member_slice`` (members per group occurrence), ``repeat_properties`` (later occurrences of
    a group carry its properties too), ``expired_status`` (400, or 410 as observed)."""

    def __init__(
        self,
        issuer: TokenIssuer,
        *,
        clock: FakeClock | None = None,
        latency: float = 0.0,
        page_size: int = 3,
        member_slice: int = 20,
    ) -> None:
        super().__init__(clock=clock or issuer.clock, latency=latency)
        self.issuer = issuer
        self.directory = Directory()
        self.tokens = TokenBook()
        self.page_size = page_size
        self.member_slice = member_slice
        self.repeat_properties = False
        self.expired_status = 400
        self.denied: set[str] = set()
        self._reset = False
        self._resync: set[str] = set()
        self._plan: list[int] = []
        self._replays: list[tuple[str, str]] = []

    # ------------------------------------------------------------------ addresses

    @property
    def graph_url(self) -> str:
        """The connection's ``url``: ``http://127.0.0.1:PORT/v1.0``."""
        return self.url + VERSION

    @property
    def audience(self) -> str:
        return self.url

    # ------------------------------------------------------------------ test controls

    def plan_pages(self, *sizes: int) -> None:
        """The sizes of the next pages served, in order (0: an empty page with a next link)."""
        with self.lock:
            self._plan.extend(sizes)

    def replay(self, kind: str, oid: str) -> None:
        """The next round of ``kind`` serves ``oid`` once more at its end (Graph's replays)."""
        with self.lock:
            self._replays.append((kind, oid))

    def throttle(
        self,
        on_request: int | None = None,
        *,
        path: str | None = None,
        retry_after: float | None = 7,
        times: int = 1,
    ) -> Fault:
        """Answer 429 ``TooManyRequests`` (with ``Retry-After`` unless None)."""
        headers = {
            "x-ms-throttle-scope": "Tenant_Application/ReadWrite/app/tenant",
            "x-ms-throttle-information": "ResourceUnitLimitExceeded",
        }
        if retry_after is not None:
            headers["Retry-After"] = str(int(retry_after))
        body = self._error_body("TooManyRequests", "Too many requests.")
        return self.fail(
            status=429, on_request=on_request, path=path, times=times, headers=headers, body=body
        )

    def deny(self, kind: str) -> None:
        """The app lacks the permission for ``kind``'s delta query (403)."""
        with self.lock:
            self.denied.add(kind)

    def force_reset(self) -> None:
        """A synchronization reset: every delta link issued so far answers 410 with a
        ``Location`` of the initial query."""
        with self.lock:
            self._reset = True
            self.tokens.deltas.clear()

    def require_resync(self, kind: str) -> None:
        """The next use of a delta link of ``kind`` answers ``resyncRequired``."""
        with self.lock:
            self._resync.add(kind)

    def forget_links(self) -> None:
        """Every next link issued so far is unknown (400): a skiptoken Graph no longer has."""
        with self.lock:
            self.tokens.skips.clear()

    @property
    def delta_requests(self) -> list[LoggedRequest]:
        return [r for r in self.requests if _PATH.fullmatch(r.path)]

    # ------------------------------------------------------------------ serving

    def handle(self, request: LoggedRequest) -> Response:
        checked = self.issuer.check(request.headers.get("authorization"), self.audience)
        if isinstance(checked, str):
            return self._error(
                401,
                "InvalidAuthenticationToken",
                f"Access token validation failure ({checked}).",
                {"WWW-Authenticate": 'Bearer realm="", error="invalid_token"'},
            )
        found = _PATH.fullmatch(request.path)
        if request.method != "GET" or found is None:
            return self._error(400, "Request_BadRequest", "Unsupported request.")
        kind = found["kind"]
        if kind in self.denied:
            return self._error(
                403,
                "Authorization_RequestDenied",
                "Insufficient privileges to complete the operation.",
            )
        params = {k: v[0] for k, v in request.query.items()}
        if "$skiptoken" in params:
            return self._continue(request, kind, params)
        if params.get("$deltatoken", "latest") != "latest":
            return self._delta(request, kind, params)
        return self._initial(request, kind, params)

    def _initial(self, request: LoggedRequest, kind: str, params: dict[str, str]) -> Response:
        for bad in ("$expand", "$orderby"):
            if bad in params:
                return self._error(
                    400, "Request_UnsupportedQuery", f"Unsupported query parameter {bad} for delta."
                )
        unknown = set(params) - {"$select", "$filter", "$top", "$deltatoken"}
        if unknown:
            return self._error(400, "Request_BadRequest", f"Unknown parameter {min(unknown)}.")
        select = _select(params.get("$select"), kind)
        ids = None
        if "$filter" in params:
            parts = params["$filter"].split(" or ")
            matched = [_FILTER.fullmatch(p) for p in parts]
            if not all(matched) or len(parts) > 50:
                return self._error(
                    400, "Request_UnsupportedQuery", "Delta supports only up to 50 'id eq' filters."
                )
            ids = tuple(m[1] for m in matched if m)
        if params.get("$deltatoken") == "latest":
            state = DeltaState(kind, select, self.directory.seq, self.clock.now(), ids)
            return self._page(kind, Round(kind, select, self.directory.seq, []), 0, ids, state)
        round_ = initial_round(self.directory, kind, select, self.member_slice, ids)
        return self._page(kind, self._with_replays(round_), 0, ids)

    def _delta(self, request: LoggedRequest, kind: str, params: dict[str, str]) -> Response:
        token = params["$deltatoken"]
        state = self.tokens.deltas.get(token)
        if (state is None or state.kind != kind) and self._reset:
            location = f"{self.graph_url}/{kind}/delta?$deltatoken="
            body = self._error_body("SyncStateReset", "The sync state was reset.")
            return Response.json(body, status=410, headers={"Location": location})
        if state is None or state.kind != kind or len(params) != 1:
            return self._error(400, "Request_BadRequest", "The delta token is not valid.")
        if self.clock.now() - state.issued_at > TOKEN_TTL:
            return self._error(self.expired_status, "syncStateNotFound", EXPIRED)
        if kind in self._resync:
            self._resync.discard(kind)
            return self._error(
                410, "resyncRequired", "The delta token is no longer valid; reset the sync state."
            )
        minimal = "return=minimal" in request.headers.get("prefer", "")
        round_ = delta_round(self.directory, state, self.member_slice, minimal=minimal)
        return self._page(kind, self._with_replays(round_), 0, state.ids)

    def _continue(self, request: LoggedRequest, kind: str, params: dict[str, str]) -> Response:
        state = self.tokens.skips.get(params["$skiptoken"])
        if state is None or state.round.kind != kind:
            return self._error(400, "Request_BadRequest", "The skip token is not valid.")
        if request.raw_query != state.query:
            return self._error(
                400,
                "Request_BadRequest",
                "A next link must be followed as it is: nothing added, nothing re-encoded.",
            )
        return self._page(kind, state.round, state.offset, state.ids)

    def _with_replays(self, round_: Round) -> Round:
        for kind, oid in [r for r in self._replays if r[0] == round_.kind]:
            round_.entries.append(Entry(kind, oid))
            self._replays.remove((kind, oid))
        return round_

    def _page(
        self,
        kind: str,
        round_: Round,
        offset: int,
        ids: tuple[str, ...] | None,
        latest: DeltaState | None = None,
    ) -> Response:
        size = self._plan.pop(0) if self._plan else self.page_size
        chunk = round_.entries[offset : offset + size]
        value = [
            rendered
            for entry in chunk
            if (
                rendered := render(
                    self.directory, entry, round_.select, repeat_properties=self.repeat_properties
                )
            )
            is not None
        ]
        round_.served += 1
        body: dict[str, Any] = {
            "@odata.context": f"{self.graph_url}/$metadata#{kind}({','.join(round_.select)})",
            "value": value,
        }
        end = offset + len(chunk)
        if end < len(round_.entries) or (size == 0 and round_.entries):
            token = self.tokens.new()
            query = f"$skiptoken={token}"
            self.tokens.skips[token] = SkipState(round_, end, query, ids)
            body["@odata.nextLink"] = f"{self.graph_url}/{kind}/delta?{query}"
        else:
            token = self.tokens.new()
            state = latest or DeltaState(kind, round_.select, round_.end_seq, self.clock.now(), ids)
            self.tokens.deltas[token] = state
            body["@odata.deltaLink"] = f"{self.graph_url}/{kind}/delta?$deltatoken={token}"
        return Response.json(body, headers={"x-ms-resource-unit": "1"})

    def _error_body(self, code: str, message: str) -> dict[str, Any]:
        return {
            "error": {
                "code": code,
                "message": message,
                "innerError": {
                    "request-id": secrets.token_hex(8),
                    "date": self.clock.now().strftime("%Y-%m-%dT%H:%M:%S"),
                },
            }
        }

    def _error(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> Response:
        return Response.json(self._error_body(code, message), status=status, headers=headers)


def _select(raw: str | None, kind: str) -> tuple[str, ...]:
    if not raw:
        return DEFAULT_SELECT[kind]
    names = [n.strip() for n in raw.split(",") if n.strip()]
    return tuple(dict.fromkeys(["id", *names]))
