"""The fake GitHub GraphQL endpoint: ``POST /graphql`` (and ``/api/graphql``, as on Enterprise
Server) answered by a real GraphQL executor over :class:`GitHubModel`, with GitHub's pagination
rules, point cost, rate limits, errors and faults (see /work/shared/api-contracts.md §1).

One request, in GitHub's order: authenticate (401) → secondary limit (403/429/200) → parse and
validate against the public schema (200 with ``errors``, no ``data``) → pagination rules and cost
→ primary budget (200 ``RATE_LIMITED``) → execute (``data`` plus any field ``errors``, such as
``NOT_FOUND``). Every answer after authentication carries the ``x-ratelimit-*`` headers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from graphql import (
    FragmentDefinitionNode,
    GraphQLError,
    OperationType,
    execute,
    get_operation_ast,
    parse,
    validate,
)

from tests.fakes.base import FakeClock, FakeServer, Fault, LoggedRequest, Response
from tests.fakes.github.cost import analyse
from tests.fakes.github.limits import (
    AUTH_DOCS_URL,
    DOCS_URL,
    TIMEOUT_MESSAGE,
    Pending,
    Token,
    rate_limited_body,
    secondary_body,
)
from tests.fakes.github.model import GitHubModel
from tests.fakes.github.resolvers import Context, resolve_field, resolve_type
from tests.fakes.github.schema import github_schema

GRAPHQL_PATHS = ("/graphql", "/api/graphql")
DEFAULT_TOKEN = "ghp_fake_token_for_tests"


@dataclass
class GraphQLCall:
    """One authenticated GraphQL request as the fake understood it."""

    request: LoggedRequest = field(repr=False)
    query: str | None = field(default=None, repr=False)
    operation_name: str | None = None
    variables: dict[str, Any] = field(default_factory=dict)
    fields: tuple[
        str, ...
    ] = ()  # top-level field names asked for, e.g. ("rateLimit", "repository")
    cost: int | None = None  # points charged (None: not charged)
    node_count: int | None = None
    status: int = 200
    errors: list[dict[str, Any]] = field(default_factory=list)  # as answered
    login: str = ""


class FakeGitHub(FakeServer, GitHubModel):
    """A fake ``api.github.com/graphql`` on 127.0.0.1; see the package docstring for use."""

    def __init__(
        self,
        *,
        clock: FakeClock | None = None,
        latency: float = 0.0,
        token: str = DEFAULT_TOKEN,
        login: str = "highmark-bot",
        rate_limit: int = 5000,
        scopes: str | None = "repo, read:org",
        repos: list[str] | None = None,
    ) -> None:
        FakeServer.__init__(self, clock=clock, latency=latency)
        GitHubModel.__init__(self, self.clock, self.lock)
        self.schema = github_schema()
        self.token = token
        self.tokens: dict[str, Token] = {}
        self.add_token(token, login=login, limit=rate_limit, scopes=scopes, repos=repos)
        self.calls: list[GraphQLCall] = []
        # knobs a test may set directly
        self.rate_limit_error_type = "RATE_LIMITED"  # or "RATE_LIMIT"
        self.rate_limit_status = 200  # GitHub's documented status; 403/429 for a REST-ish answer
        self.rate_limit_window = 3600.0  # seconds
        self.max_page_size: int | None = None  # server-side page ceiling (fewer than `first`)
        self.max_concurrency: int | None = None  # secondary limit: requests in flight at once
        self.secondary_points_per_minute: int | None = None  # secondary limit: queries a minute
        self.secondary_status = 403  # for the two ceilings above
        self.secondary_retry_after: int | None = None
        self._secondary: list[Pending] = []
        self._rate_limited: list[Pending] = []
        self._partial: list[Pending] = []

    def __enter__(self) -> FakeGitHub:
        self.start()
        return self

    @property
    def graphql_url(self) -> str:
        return f"{self.url}/graphql"

    # ------------------------------------------------------------------ tokens

    def add_token(
        self,
        value: str,
        *,
        login: str = "highmark-bot",
        user_id: int = 123,
        scopes: str | None = "repo, read:org",
        repos: list[str] | None = None,
        limit: int | None = None,
    ) -> Token:
        """Accept another token (``repos``: the only repositories it can see)."""
        with self.lock:
            allowed = frozenset(r.lower() for r in repos) if repos is not None else None
            token = Token(value, login, user_id, scopes, allowed, limit or 5000)
            self.tokens[value] = token
            return token

    def revoke_token(self, value: str | None = None) -> None:
        """From now on the token answers 401 Bad credentials."""
        with self.lock:
            self.tokens[value or self.token].revoked = True

    def budget(self, value: str | None = None) -> Token:
        """A token and its budget (``used``, ``remaining``, ``reset_at``, ``reset_epoch``)."""
        with self.lock:
            token = self.tokens[value or self.token]
            token.roll(self.clock.now(), self.rate_limit_window)
            return token

    # ------------------------------------------------------------------ faults

    def exhaust_rate_limit(self, value: str | None = None) -> None:
        """Spend the token's whole budget: requests answer ``RATE_LIMITED`` until the reset."""
        with self.lock:
            token = self.budget(value)
            token.used = token.limit

    def rate_limit_next(self, times: int = 1) -> None:
        """The next ``times`` queries answer ``RATE_LIMITED`` whatever the budget, with the real
        (non-zero) ``x-ratelimit-remaining``, as has been observed."""
        with self.lock:
            self._rate_limited.append(Pending(times))

    def secondary_limit(
        self, times: int = 1, *, status: int = 403, retry_after: int | None = None
    ) -> None:
        """The next ``times`` requests hit a secondary limit (403, 429 or 200), with a
        ``retry-after`` header when given."""
        with self.lock:
            self._secondary.append(Pending(times, status, retry_after))

    def partial_next(
        self,
        times: int = 1,
        *,
        kind: str = "RESOURCE_LIMITS_EXCEEDED",
        message: str = "Resource limits for this query exceeded.",
        path: list[str | int] | None = None,
    ) -> None:
        """The next ``times`` queries answer partial data: the value at ``path`` (default: the
        middle node of the first ``nodes`` list) is null, with an ``errors`` entry for it."""
        with self.lock:
            self._partial.append(Pending(times, kind=kind, message=message, path=path))

    def timeout(self, status: int = 502, *, on_request: int | None = None, times: int = 1) -> Fault:
        """A 502 or 504 "We couldn't respond to your request in time" (the base's ``fail``)."""
        body = {"message": TIMEOUT_MESSAGE, "documentation_url": DOCS_URL}
        return self.fail(status=status, on_request=on_request, times=times, body=body)

    def clear_log(self) -> None:
        with self.lock:
            super().clear_log()
            self.calls.clear()
            self._secondary.clear()
            self._rate_limited.clear()
            self._partial.clear()

    # ------------------------------------------------------------------ serving

    def handle(self, request: LoggedRequest) -> Response:
        if request.method != "POST" or request.path not in GRAPHQL_PATHS:
            return _json({"message": "Not Found", "documentation_url": DOCS_URL}, 404)
        token = self._authenticate(request)
        if isinstance(token, Response):
            return token
        call = GraphQLCall(request, login=token.login)
        self.calls.append(call)
        try:
            payload = json.loads(request.body)
        except ValueError:
            payload = None
        if isinstance(payload, dict):
            call.query, call.operation_name = payload.get("query"), payload.get("operationName")
            variables = payload.get("variables")
            call.variables = variables if isinstance(variables, dict) else {}
        token.roll(self.clock.now(), self.rate_limit_window)
        response = self._secondary_hit(token)
        if response is None:
            body, status = self._answer(payload, token, call)
            call.errors = body.get("errors", [])
            response = _json(body, status)
        response.headers.update(token.headers())
        response.headers["x-github-request-id"] = self._request_id()
        call.status = response.status
        return response

    def _authenticate(self, request: LoggedRequest) -> Token | Response:
        header = request.headers.get("authorization", "").strip()
        if not header:
            message = "This endpoint requires you to be authenticated."
            return _json({"message": message, "documentation_url": AUTH_DOCS_URL}, 401)
        scheme, _, value = header.partition(" ")
        token = self.tokens.get(value.strip()) if scheme.lower() in ("bearer", "token") else None
        if token is None or token.revoked:
            return _json({"message": "Bad credentials", "documentation_url": DOCS_URL}, 401)
        return token

    def _secondary_hit(self, token: Token) -> Response | None:
        status, retry_after = self.secondary_status, self.secondary_retry_after
        points = token.secondary_point(self.clock.now())
        pending = _take(self._secondary)
        if pending is not None:
            status, retry_after = pending.status, pending.retry_after
        elif not (
            (self.max_concurrency is not None and self.in_flight > self.max_concurrency)
            or (
                self.secondary_points_per_minute is not None
                and points > self.secondary_points_per_minute
            )
        ):
            return None
        response = _json(secondary_body(status, self._request_id()), status)
        if retry_after is not None:
            response.headers["retry-after"] = str(retry_after)
        return response

    def _answer(self, payload: Any, token: Token, call: GraphQLCall) -> tuple[dict[str, Any], int]:
        """The body and status of an answer that passed authentication and secondary limits."""
        if not isinstance(payload, dict):
            return {"message": "Problems parsing JSON", "documentation_url": DOCS_URL}, 400
        query, variables = payload.get("query"), payload.get("variables") or {}
        if not isinstance(query, str):
            return _errors(
                [{"message": "A query attribute must be specified and must be a string."}]
            )
        if not isinstance(variables, dict):
            return _errors([{"message": "Variables must be a JSON object."}])
        try:
            document = parse(query)
        except GraphQLError as exc:
            return _errors([_format(exc)])
        invalid = validate(self.schema, document)
        if invalid:
            return _errors([_format(e) for e in invalid])
        operation = get_operation_ast(document, call.operation_name)
        if operation is None:
            name = call.operation_name
            message = (
                f"Unknown operation named '{name}'."
                if name
                else "Must provide operation name if query contains multiple operations."
            )
            return _errors([{"message": message}])
        if operation.operation != OperationType.QUERY:
            kind = operation.operation.value
            return _errors([{"message": f"The fake GitHub answers queries only, not a {kind}."}])
        fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        shape = analyse(self.schema, operation, fragments, variables)
        call.fields, call.node_count = shape.fields, shape.node_count
        if shape.errors:
            return _errors(shape.errors)
        if _take(self._rate_limited) is not None:
            return self._over_budget(token)
        if shape.cost > token.remaining:
            token.used = token.limit
            return self._over_budget(token)
        rate = {
            "cost": shape.cost,
            "limit": token.limit,
            "remaining": token.remaining - shape.cost,
            "used": token.used + shape.cost,
            "resetAt": token.reset_at,
            "nodeCount": shape.node_count,
        }
        context = Context(self, token.login, token.can_see, rate, self.max_page_size)
        result = execute(
            self.schema,
            document,
            context_value=context,
            variable_values=variables,
            operation_name=call.operation_name,
            field_resolver=resolve_field,
            type_resolver=resolve_type,
        )
        assert not hasattr(result, "__await__")
        errors = [_format(e) for e in result.errors or []]
        data = result.data
        if data is None:
            return _errors(errors)
        token.used += shape.cost
        call.cost = shape.cost
        partial = _take(self._partial)
        if partial is not None:
            errors.append(_cut(data, partial))
        return ({"data": data, "errors": errors} if errors else {"data": data}), 200

    def _over_budget(self, token: Token) -> tuple[dict[str, Any], int]:
        status = self.rate_limit_status
        return rate_limited_body(self.rate_limit_error_type, token.user_id, status), status

    def _request_id(self) -> str:
        return f"FA6E:{len(self.requests):05X}:{len(self.calls):06X}"


def _take(pending: list[Pending]) -> Pending | None:
    """Use one shot of the first armed answer."""
    if not pending:
        return None
    first = pending[0]
    first.times -= 1
    if first.times <= 0:
        pending.pop(0)
    return first


def _json(value: Any, status: int = 200) -> Response:
    return Response.json(value, status, {"Content-Type": "application/json; charset=utf-8"})


def _errors(errors: list[dict[str, Any]]) -> tuple[dict[str, Any], int]:
    return {"errors": errors}, 200


def _format(error: GraphQLError) -> dict[str, Any]:
    """A graphql-core error as GitHub lays one out (``type`` at the top, not in extensions)."""
    out: dict[str, Any] = {}
    kind = (error.extensions or {}).get("type")
    if kind:
        out["type"] = kind
    if error.path:
        out["path"] = list(error.path)
    if error.locations:
        out["locations"] = [{"line": loc.line, "column": loc.column} for loc in error.locations]
    out["message"] = error.message
    return out


def _cut(data: dict[str, Any], partial: Pending) -> dict[str, Any]:
    """Null one value of ``data`` for a partial answer; the error that reports it."""
    path = partial.path or _middle_node(data) or [next(reversed(data))]
    parent: Any = data
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = None
    return {"type": partial.kind, "path": list(path), "message": partial.message}


def _middle_node(value: Any, path: list[str | int] | None = None) -> list[str | int] | None:
    path = path or []
    if isinstance(value, dict):
        for key, child in value.items():
            if key == "nodes" and isinstance(child, list) and child:
                return [*path, key, len(child) // 2]
            found = _middle_node(child, [*path, key]) if key != "rateLimit" else None
            if found:
                return found
    return None
