"""How the schema's fields read the model: one default resolver (a dict key, or a record's
snake_case attribute) and the few fields that compute something (lookups, connections, actors).

A field the fake does not model answers an error naming it, rather than a silent null.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from graphql import GraphQLAbstractType, GraphQLError, GraphQLResolveInfo

from tests.fakes.github.cursors import Connection, CursorError, Key, paginate
from tests.fakes.github.model import GitHubModel, RepoState
from tests.fakes.github.records import Comment, Commit, PullRequest, Review

if TYPE_CHECKING:
    Info = GraphQLResolveInfo[Any]  # generic in graphql-core 3.3 only


@dataclass
class Context:
    """What one request's resolvers see."""

    model: GitHubModel
    viewer: str
    can_see: Callable[[str], bool]  # nameWithOwner -> visible to the caller's token
    rate_limit: dict[str, Any]
    page_cap: int | None = None


def github_error(kind: str, message: str) -> GraphQLError:
    """An error GitHub reports with a ``type`` (NOT_FOUND, INVALID_CURSOR_ARGUMENTS…)."""
    return GraphQLError(message, extensions={"type": kind})


def resolve_type(value: Any, info: Info, abstract_type: GraphQLAbstractType) -> str:
    return str(value["__typename"]) if isinstance(value, dict) else str(type(value).typename)


def resolve_field(source: Any, info: Info, **args: Any) -> Any:
    special = _SPECIAL.get((info.parent_type.name, info.field_name))
    if special is not None:
        return special(source, info, **args)
    name = info.field_name
    if isinstance(source, dict):
        if name in source:
            return source[name]
    else:
        attr = _snake(name)
        if hasattr(source, attr):
            value = getattr(source, attr)
            return _actor(value) if name == "author" else value
    raise GraphQLError(f"The fake GitHub does not model {info.parent_type.name}.{name}.")


def _snake(name: str, _cache: dict[str, str] = {}) -> str:  # noqa: B006 (a memo)
    if name not in _cache:
        _cache[name] = re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
    return _cache[name]


def _ctx(info: Info) -> Context:
    ctx = info.context
    assert isinstance(ctx, Context)
    return ctx


def _actor(login: str | None) -> dict[str, Any] | None:
    if login is None:
        return None
    return {"__typename": "User", "login": login, "url": f"https://github.com/{login}"}


def _epoch(when: datetime) -> int:
    return int(when.timestamp())


def _page(
    info: Info,
    items: list[Any],
    key: Callable[[Any], Key],
    desc: bool,
    args: dict[str, Any],
) -> Connection[Any]:
    try:
        return paginate(
            items,
            key,
            desc=desc,
            first=args.get("first"),
            last=args.get("last"),
            after=args.get("after"),
            before=args.get("before"),
            cap=_ctx(info).page_cap,
        )
    except CursorError as exc:
        raise github_error("INVALID_CURSOR_ARGUMENTS", str(exc)) from None


def _unsupported(info: Info, args: dict[str, Any], *names: str) -> None:
    for name in names:
        if args.get(name) is not None:
            raise GraphQLError(
                f"The fake GitHub does not model the `{name}` argument of {info.field_name}."
            )


# ---------------------------------------------------------------------- Query


def _repository(_: Any, info: Info, owner: str, name: str, **__: Any) -> Any:
    ctx = _ctx(info)
    rs = ctx.model.find_repo(f"{owner}/{name}")
    if rs is None or not ctx.can_see(rs.repo.name_with_owner):
        raise github_error(
            "NOT_FOUND", f"Could not resolve to a Repository with the name '{owner}/{name}'."
        )
    return rs.repo


def _node(_: Any, info: Info, id: str) -> Any:
    ctx = _ctx(info)
    found = ctx.model.find_node(id)
    if found is None or not ctx.can_see(found[0].repo.name_with_owner):
        raise github_error(
            "NOT_FOUND", f"Could not resolve to a node with the global id of '{id}'."
        )
    return found[1]


# ---------------------------------------------------------------------- Repository


def _repo_state(info: Info, repo: Any) -> RepoState:
    rs = _ctx(info).model.find_repo(repo.name_with_owner)
    assert rs is not None
    return rs


_PR_KEYS: dict[str, Callable[[GitHubModel, PullRequest], Key]] = {
    "UPDATED_AT": lambda m, pr: (_epoch(pr.updated_at), pr.full_database_id),
    "CREATED_AT": lambda m, pr: (_epoch(pr.created_at), pr.full_database_id),
    "COMMENTS": lambda m, pr: (len(m.children(pr).comments), pr.full_database_id),
}


def _pull_requests(repo: Any, info: Info, **args: Any) -> Connection[Any]:
    _unsupported(info, args, "labels", "headRefName", "baseRefName")
    model = _ctx(info).model
    states = args.get("states")
    prs = [
        ps.pr
        for ps in _repo_state(info, repo).prs.values()
        if states is None or ps.pr.state in states
    ]
    order = args.get("orderBy") or {"field": "CREATED_AT", "direction": "ASC"}
    key = _PR_KEYS[order["field"]]
    return _page(info, prs, lambda pr: key(model, pr), order["direction"] == "DESC", args)


def _pull_request(repo: Any, info: Info, number: int) -> PullRequest:
    ps = _repo_state(info, repo).prs.get(number)
    if ps is None:
        raise github_error(
            "NOT_FOUND", f"Could not resolve to a PullRequest with the number of {number}."
        )
    return ps.pr


# ---------------------------------------------------------------------- PullRequest


def _commits(pr: PullRequest, info: Info, **args: Any) -> Connection[Any]:
    commits = _ctx(info).model.children(pr).commits

    def key(c: Commit) -> Key:
        return (c.seq,)

    return _page(info, commits, key, False, args)


def _reviews(pr: PullRequest, info: Info, **args: Any) -> Connection[Any]:
    states, author = args.get("states"), args.get("author")
    reviews = [
        r
        for r in _ctx(info).model.children(pr).reviews
        if (states is None or r.state in states) and (author is None or r.author == author)
    ]

    def key(r: Review) -> Key:
        return (r.full_database_id,)

    return _page(info, reviews, key, False, args)


def _comments(pr: PullRequest, info: Info, **args: Any) -> Connection[Any]:
    comments = _ctx(info).model.children(pr).comments
    order = args.get("orderBy")

    def by_update(c: Comment) -> Key:
        return (_epoch(c.updated_at), c.full_database_id)

    def by_creation(c: Comment) -> Key:
        return (c.full_database_id,)

    if order is None:
        return _page(info, comments, by_creation, False, args)
    return _page(info, comments, by_update, order["direction"] == "DESC", args)


def _pr_repository(pr: PullRequest, info: Info) -> Any:
    rs = _ctx(info).model.find_repo(pr.repo)
    assert rs is not None
    return rs.repo


_SPECIAL: dict[tuple[str, str], Callable[..., Any]] = {
    ("Query", "rateLimit"): lambda _, info, **__: _ctx(info).rate_limit,
    ("Query", "viewer"): lambda _, info: _actor(_ctx(info).viewer),
    ("Query", "repository"): _repository,
    ("Query", "node"): _node,
    ("Repository", "owner"): lambda repo, info: {
        "__typename": "Organization",
        "login": repo.owner,
    },
    ("Repository", "pullRequests"): _pull_requests,
    ("Repository", "pullRequest"): _pull_request,
    ("PullRequest", "commits"): _commits,
    ("PullRequest", "reviews"): _reviews,
    ("PullRequest", "comments"): _comments,
    ("PullRequest", "repository"): _pr_repository,
    ("PullRequestCommit", "commit"): lambda commit, info: commit,
    ("Commit", "id"): lambda commit, info: commit.commit_id,
}
