"""A fake GitHub GraphQL API for connector tests: a real GraphQL executor (graphql-core, GitHub's
public schema) over an in-memory model of repositories, pull requests, commits, reviews and
conversation comments, with GitHub's pagination rules, keyset cursors, point cost, rate limits
and errors (/work/shared/api-contracts.md §1.6)::

    with FakeGitHub() as github:
        github.seed("acme/api", prs=120, commits=3, reviews=1, comments=2)
        github.before(2, lambda: github.touch_pr("acme/api", 7))   # between pages 1 and 2
        github.secondary_limit(status=403, retry_after=60)
        client = httpx.Client(headers={"Authorization": f"Bearer {github.token}"})
        client.post(github.graphql_url, json={"query": ..., "variables": {...}})
        assert [c.variables.get("after") for c in github.calls] == [...]

Modules: ``schema`` (the schema, built once per process), ``cost`` (pagination rules, cost and
node count), ``cursors`` (keyset pages), ``model`` (data and mutations), ``resolvers``,
``limits`` (tokens, budgets, canned error bodies) and ``server`` (:class:`FakeGitHub`).
"""

from tests.fakes.github.cost import QueryShape
from tests.fakes.github.cursors import paginate
from tests.fakes.github.limits import SECONDARY_MESSAGE, TIMEOUT_MESSAGE, Token
from tests.fakes.github.records import Comment, Commit, PullRequest, Repository, Review
from tests.fakes.github.schema import github_schema, iso
from tests.fakes.github.server import DEFAULT_TOKEN, FakeGitHub, GraphQLCall

__all__ = [
    "DEFAULT_TOKEN",
    "SECONDARY_MESSAGE",
    "TIMEOUT_MESSAGE",
    "Comment",
    "Commit",
    "FakeGitHub",
    "GraphQLCall",
    "PullRequest",
    "QueryShape",
    "Repository",
    "Review",
    "Token",
    "github_schema",
    "iso",
    "paginate",
]
