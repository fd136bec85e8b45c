"""The GraphQL GitHub is asked, and how its nodes become rows.

One query lists a repository's pull requests, newest update first, each with the first page of
its commits, reviews and conversation comments (shared/api-contracts.md §1.2); one query per
connection drains a pull request whose children did not fit in that first page.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

RATE_LIMIT = "rateLimit { cost remaining resetAt }"
PAGE_INFO = "pageInfo { hasNextPage endCursor }"

PULL_REQUEST_FIELDS = (
    "id fullDatabaseId number title state isDraft url createdAt updatedAt closedAt mergedAt "
    "author { login }"
)
# connection name -> (its arguments after `first`, the fields of its nodes)
CHILDREN: dict[str, tuple[str, str]] = {
    "commits": ("", "id commit { oid message committedDate authoredDate }"),
    "reviews": ("", "id fullDatabaseId state submittedAt createdAt updatedAt author { login }"),
    "comments": (
        ", orderBy: {field: UPDATED_AT, direction: ASC}",
        "id fullDatabaseId createdAt updatedAt author { login } body",
    ),
}


def page_query(children: Sequence[str], *, with_pull_requests: bool) -> str:
    """A page of a repository's pull requests, newest update first, with first child pages."""
    fields = PULL_REQUEST_FIELDS if with_pull_requests else "id number updatedAt"
    nested = " ".join(
        f"{name}(first: $nested{args}) {{ totalCount {PAGE_INFO} nodes {{ {node} }} }}"
        for name, (args, node) in CHILDREN.items()
        if name in children
    )
    return (
        "query PullRequestPage($owner: String!, $name: String!, $pageSize: Int!, "
        "$after: String, $nested: Int!) { "
        f"{RATE_LIMIT} "
        "repository(owner: $owner, name: $name) { "
        "pullRequests(first: $pageSize, after: $after, "
        "orderBy: {field: UPDATED_AT, direction: DESC}) { "
        f"{PAGE_INFO} nodes {{ {fields} {nested} }} }} }} }}"
    )


def children_query(connection: str) -> str:
    """The next page of one connection of one pull request."""
    args, node = CHILDREN[connection]
    return (
        "query PullRequestChildren($id: ID!, $nested: Int!, $after: String) { "
        f"{RATE_LIMIT} "
        "node(id: $id) { ... on PullRequest { "
        f"{connection}(first: $nested, after: $after{args}) {{ {PAGE_INFO} nodes {{ {node} }} }}"
        " } } }"
    )


def viewer_query() -> str:
    return f"query {{ {RATE_LIMIT} viewer {{ login }} }}"


def repository_query() -> str:
    return (
        "query Repository($owner: String!, $name: String!) { "
        "repository(owner: $owner, name: $name) { nameWithOwner } }"
    )


def _login(node: dict[str, Any]) -> str | None:
    author = node.get("author")
    return author.get("login") if isinstance(author, dict) else None


def pull_request_row(node: dict[str, Any], repository: str) -> dict[str, Any]:
    raw = {k: v for k, v in node.items() if k not in CHILDREN}
    return {
        "id": node["id"],
        "repository": repository,
        "number": node.get("number"),
        "title": node.get("title"),
        "state": node.get("state"),
        "is_draft": node.get("isDraft"),
        "author_login": _login(node),
        "url": node.get("url"),
        "created_at": node.get("createdAt"),
        "updated_at": node.get("updatedAt"),
        "closed_at": node.get("closedAt"),
        "merged_at": node.get("mergedAt"),
        "raw": raw,
    }


def child_row(connection: str, node: dict[str, Any], pr_id: str, repository: str) -> dict[str, Any]:
    base = {"id": node["id"], "pull_request_id": pr_id, "repository": repository, "raw": node}
    if connection == "commits":
        commit = node.get("commit") or {}
        return {
            **base,
            "oid": commit.get("oid"),
            "message": commit.get("message"),
            "committed_date": commit.get("committedDate"),
            "authored_date": commit.get("authoredDate"),
        }
    if connection == "reviews":
        return {
            **base,
            "state": node.get("state"),
            "author_login": _login(node),
            "submitted_at": node.get("submittedAt"),
            "created_at": node.get("createdAt"),
            "updated_at": node.get("updatedAt"),
        }
    return {
        **base,
        "author_login": _login(node),
        "body": node.get("body"),
        "created_at": node.get("createdAt"),
        "updated_at": node.get("updatedAt"),
    }
