"""The fake GitHub GraphQL API behaves like GitHub (api-contracts §1): validation, pagination
rules and cost, keyset cursors, nested connections, rate limits, errors and faults."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from graphql import FragmentDefinitionNode, OperationDefinitionNode, parse

from tests.fakes.github import FakeGitHub, iso
from tests.fakes.github.cost import analyse
from tests.fakes.github.schema import github_schema

REPO = "acme/api"
T0 = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)

PAGE_QUERY = """
query PullRequestPage($owner: String!, $name: String!, $pageSize: Int!, $after: String,
                      $nested: Int!) {
  rateLimit { cost limit remaining used resetAt nodeCount }
  repository(owner: $owner, name: $name) {
    pullRequests(first: $pageSize, after: $after,
                 orderBy: {field: UPDATED_AT, direction: DESC}) {
      totalCount
      pageInfo { hasNextPage endCursor }
      nodes {
        id fullDatabaseId number title state isDraft
        createdAt updatedAt closedAt mergedAt url
        author { login }
        commits(first: $nested) {
          totalCount
          pageInfo { hasNextPage endCursor }
          nodes { id commit { oid message committedDate authoredDate } }
        }
        reviews(first: $nested) {
          totalCount
          pageInfo { hasNextPage endCursor }
          nodes { id fullDatabaseId state submittedAt createdAt updatedAt author { login } }
        }
        comments(first: $nested, orderBy: {field: UPDATED_AT, direction: ASC}) {
          totalCount
          pageInfo { hasNextPage endCursor }
          nodes { id fullDatabaseId createdAt updatedAt author { login } body }
        }
      }
    }
  }
}
"""

LIST_QUERY = """
query($after: String, $direction: OrderDirection!, $field: IssueOrderField!) {
  repository(owner: "acme", name: "api") {
    pullRequests(first: 2, after: $after, orderBy: {field: $field, direction: $direction}) {
      pageInfo { hasNextPage endCursor }
      nodes { number updatedAt }
    }
  }
}
"""


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub() as fake:
        yield fake


def repo_query(selection: str) -> str:
    return f'{{ repository(owner: "acme", name: "api") {{ {selection} }} }}'


def post(
    github: FakeGitHub,
    query: str,
    variables: dict[str, Any] | None = None,
    *,
    token: str | None = None,
    path: str = "/graphql",
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token or github.token}", "User-Agent": "highmark-test"}
    body = {"query": query, "variables": variables or {}}
    return httpx.post(github.url + path, json=body, headers=headers)


def page(github: FakeGitHub, page_size: int = 50, nested: int = 100, **more: Any) -> Any:
    variables = {"owner": "acme", "name": "api", "pageSize": page_size, "nested": nested, **more}
    return post(github, PAGE_QUERY, variables).json()


def scan(
    github: FakeGitHub, direction: str, field: str = "UPDATED_AT", between: Any = None
) -> list[int]:
    """Page the PR list two at a time to the end; ``between(n)`` runs after page ``n``."""
    seen: list[int] = []
    after, n = None, 0
    while True:
        body = post(github, LIST_QUERY, {"after": after, "direction": direction, "field": field})
        conn = body.json()["data"]["repository"]["pullRequests"]
        seen += [node["number"] for node in conn["nodes"]]
        n += 1
        if between:
            between(n)
        if not conn["pageInfo"]["hasNextPage"]:
            return seen
        after = conn["pageInfo"]["endCursor"]


# ---------------------------------------------------------------------- the page query


def test_the_recommended_page_query_answers_like_github(github: FakeGitHub) -> None:
    github.add_pr(REPO, title="Add thing", author=None, created_at=T0 - timedelta(hours=2))
    github.add_commits(REPO, 1, 2, at=T0 - timedelta(hours=1))
    github.add_review(REPO, 1, state="CHANGES_REQUESTED", at=T0 - timedelta(minutes=30))
    github.add_comment(REPO, 1, body="Why?", at=T0 - timedelta(minutes=10))

    response = post(
        github, PAGE_QUERY, {"owner": "acme", "name": "api", "pageSize": 50, "nested": 100}
    )

    assert response.status_code == 200
    assert response.headers["x-ratelimit-resource"] == "graphql"
    assert response.headers["x-ratelimit-used"] == "2"
    assert response.headers["x-ratelimit-remaining"] == "4998"
    assert response.headers["x-ratelimit-reset"] == str(int((T0 + timedelta(hours=1)).timestamp()))
    assert response.headers["x-oauth-scopes"] == "repo, read:org"
    body = response.json()
    assert "errors" not in body
    assert body["data"]["rateLimit"] == {
        "cost": 2,
        "limit": 5000,
        "remaining": 4998,
        "used": 2,
        "resetAt": "2026-01-15T13:00:00Z",
        "nodeCount": 15050,
    }
    pr = body["data"]["repository"]["pullRequests"]["nodes"][0]
    stored = github.pr(REPO, 1)
    assert pr["id"] == stored.id and pr["id"].startswith("PR_kwDO")
    assert pr["fullDatabaseId"] == str(stored.full_database_id)
    assert int(pr["fullDatabaseId"]) > 2**31
    assert pr["author"] is None  # a deleted user
    assert pr["createdAt"] == "2026-01-15T10:00:00Z"
    assert pr["updatedAt"] == "2026-01-15T11:50:00Z" == iso(stored.updated_at)  # the comment
    assert (pr["state"], pr["isDraft"], pr["closedAt"], pr["mergedAt"]) == (
        "OPEN",
        False,
        None,
        None,
    )
    assert pr["url"] == "https://github.com/acme/api/pull/1"
    assert [c["commit"]["oid"] for c in pr["commits"]["nodes"]] == [
        c.oid for c in github.commits(REPO, 1)
    ]
    assert pr["reviews"]["nodes"][0]["state"] == "CHANGES_REQUESTED"
    assert pr["reviews"]["nodes"][0]["author"] == {"login": "bob"}
    assert pr["comments"]["nodes"][0]["body"] == "Why?"
    call = github.calls[-1]
    assert call.fields == ("rateLimit", "repository")
    assert call.variables["pageSize"] == 50
    assert (call.cost, call.node_count, call.status) == (2, 15050, 200)


def test_timestamps_come_from_the_fake_clock_at_second_precision(github: FakeGitHub) -> None:
    github.clock.set(T0 + timedelta(microseconds=700_000))
    pr = github.add_pr(REPO)
    assert pr.created_at == pr.updated_at == T0
    assert iso(pr.created_at) == "2026-01-15T12:00:00Z"


# ---------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ('{ repository(owner: "acme", name: "api") { foo } }', "foo"),
        ('{ repository(owner: "acme") { id } }', "name"),
        ("{ repository(owner: ", "Syntax Error"),
        ("query($n: Int!) { viewer { login } }", "$n"),
    ],
)
def test_a_query_github_would_reject_is_rejected_without_data(
    github: FakeGitHub, query: str, fragment: str
) -> None:
    github.add_repo(REPO)
    response = post(github, query)
    assert response.status_code == 200
    body = response.json()
    assert "data" not in body
    assert fragment in body["errors"][0]["message"]
    assert body["errors"][0]["locations"]
    assert github.budget().used == 0


def test_variables_and_operation_names_work(github: FakeGitHub) -> None:
    github.add_pr(REPO, title="Hello")
    query = """
      query A($n: Int!) {
        repository(owner: "acme", name: "api") { pullRequest(number: $n) { title } }
      }
      query B { viewer { login } }
    """
    headers = {"Authorization": f"Bearer {github.token}"}
    body = {"query": query, "variables": {"n": 1}, "operationName": "A"}
    answer = httpx.post(github.graphql_url, json=body, headers=headers).json()
    assert answer == {"data": {"repository": {"pullRequest": {"title": "Hello"}}}}
    body = {"query": query, "operationName": "B"}
    assert httpx.post(github.graphql_url, json=body, headers=headers).json() == {
        "data": {"viewer": {"login": "highmark-bot"}}
    }
    assert github.calls[-1].operation_name == "B"
    assert "operation name" in post(github, query).json()["errors"][0]["message"]


def test_unmodelled_fields_and_mutations_say_so(github: FakeGitHub) -> None:
    github.add_pr(REPO)
    body = post(
        github,
        '{ repository(owner: "acme", name: "api") { pullRequest(number: 1) { baseRefName } } }',
    ).json()
    assert "does not model PullRequest.baseRefName" in body["errors"][0]["message"]
    body = post(
        github, 'mutation { addStar(input: {starrableId: "x"}) { clientMutationId } }'
    ).json()
    assert "queries only" in body["errors"][0]["message"]


def test_bad_request_bodies(github: FakeGitHub) -> None:
    headers = {"Authorization": f"Bearer {github.token}"}
    response = httpx.post(github.graphql_url, content=b"{nope", headers=headers)
    assert (response.status_code, response.json()["message"]) == (400, "Problems parsing JSON")
    response = httpx.post(github.graphql_url, json={"variables": {}}, headers=headers)
    assert response.json()["errors"][0]["message"].startswith("A query attribute must be specified")


# ---------------------------------------------------------------------- pagination rules and cost


def connection_errors(github: FakeGitHub, args: str, selection: str = "nodes { id }") -> Any:
    github.add_repo(REPO)
    query = (
        f'{{ repository(owner: "acme", name: "api") {{ pullRequests{args} {{ {selection} }} }} }}'
    )
    body = post(github, query).json()
    assert "data" not in body
    return body["errors"]


def test_a_connection_without_first_or_last_is_refused(github: FakeGitHub) -> None:
    [error] = connection_errors(github, "")
    assert error["type"] == "MISSING_PAGINATION_BOUNDARIES"
    assert error["path"] == ["repository", "pullRequests"]
    assert error["message"] == (
        "You must provide a `first` or `last` value to properly paginate the `pullRequests` "
        "connection."
    )
    assert error["locations"] == [{"line": 1, "column": 44}]


def test_counting_a_connection_needs_no_boundary(github: FakeGitHub) -> None:
    github.seed(REPO, 3)
    query = (
        '{ repository(owner: "acme", name: "api") { pullRequests(states: OPEN) { totalCount } } }'
    )
    assert post(github, query).json() == {
        "data": {"repository": {"pullRequests": {"totalCount": 3}}}
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            "(first: 101)",
            "Requesting 101 records on the `pullRequests` connection exceeds the `first` limit of "
            "100 records.",
        ),
        (
            "(last: 200)",
            "Requesting 200 records on the `pullRequests` connection exceeds the `last` limit of "
            "100 records.",
        ),
        (
            "(first: 0)",
            "Requesting 0 records on the `pullRequests` connection is below the `first` minimum "
            "of 1 record.",
        ),
    ],
)
def test_page_sizes_outside_1_to_100_are_refused(
    github: FakeGitHub, args: str, message: str
) -> None:
    [error] = connection_errors(github, args)
    assert (error["type"], error["message"]) == ("EXCESSIVE_PAGINATION", message)


def test_more_than_500000_nodes_is_refused(github: FakeGitHub) -> None:
    nested = "commits(first: 100) { nodes { id } } comments(first: 100) { nodes { id } }"
    query = repo_query(f"pullRequests(first: 100) {{ nodes {{ {nested} }} }}")
    github.add_repo(REPO)
    assert "errors" not in post(github, query).json()  # 100 + 2 * 10,000 nodes
    history = "history(first: 100) { nodes { oid } }"
    deep = f"nodes {{ commits(first: 100) {{ nodes {{ commit {{ {history} }} }} }} }}"
    [error] = connection_errors(github, "(first: 100)", deep)
    assert error["type"] == "MAX_NODE_LIMIT_EXCEEDED"
    assert error["message"] == (
        "By the time this query traverses to the history connection, it is requesting up to "
        "1,000,000 possible nodes which exceeds the maximum limit of 500,000."
    )
    wide = " ".join(f"c{i}: commits(first: 100) {{ nodes {{ id }} }}" for i in range(51))
    [error] = connection_errors(github, "(first: 100)", f"nodes {{ {wide} }}")
    assert error["message"] == (
        "This query requests up to 510,100 possible nodes which exceeds the maximum limit of "
        "500,000."
    )


@pytest.mark.parametrize(
    ("page_size", "nested", "cost", "nodes"),
    [(50, 100, 2, 15_050), (100, 100, 3, 30_100), (10, 10, 1, 310)],
)
def test_cost_and_node_count_follow_the_documented_formula(
    github: FakeGitHub, page_size: int, nested: int, cost: int, nodes: int
) -> None:
    github.add_repo(REPO)
    rate = page(github, page_size, nested)["data"]["rateLimit"]
    assert (rate["cost"], rate["nodeCount"]) == (cost, nodes)
    assert github.budget().used == cost


DOCS_COST_EXAMPLE = """
query { viewer { login repositories(first: 100) { edges { node { id
  issues(first: 50) { edges { node { id labels(first: 60) { edges { node { id name } } } } } }
} } } } }
"""
DOCS_NODE_EXAMPLE = """
query { viewer {
  repositories(first: 50) { edges { repository: node { name
    pullRequests(first: 20) { edges { pullRequest: node { title
      comments(first: 10) { edges { comment: node { bodyHTML } } } } } }
    issues(first: 20) { totalCount edges { issue: node { title bodyHTML
      comments(first: 10) { edges { comment: node { bodyHTML } } } } } }
  } } }
  followers(first: 10) { edges { follower: node { login } } }
} }
"""


@pytest.mark.parametrize(
    ("query", "requests", "cost", "nodes"),
    [(DOCS_COST_EXAMPLE, 5101, 51, 305_100), (DOCS_NODE_EXAMPLE, 2102, 21, 22_060)],
)
def test_the_docs_examples_cost_what_the_docs_say(
    query: str, requests: int, cost: int, nodes: int
) -> None:
    document = parse(query)
    [operation] = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    shape = analyse(github_schema(), operation, fragments, {})
    assert (shape.requests, shape.cost, shape.node_count, shape.errors) == (
        requests,
        cost,
        nodes,
        [],
    )


# ---------------------------------------------------------------------- keyset cursors


def seed_six(github: FakeGitHub) -> None:
    for n in range(1, 7):
        github.add_pr(REPO, created_at=T0 - timedelta(hours=10 - n))


def test_desc_scan_misses_a_pr_touched_behind_its_cursor(github: FakeGitHub) -> None:
    seed_six(github)
    github.clock.advance(60)

    def touch_after_first_page(n: int) -> None:
        if n == 1:
            github.touch_pr(REPO, 2)

    assert scan(github, "DESC", between=touch_after_first_page) == [6, 5, 4, 3, 1]
    assert scan(github, "DESC") == [2, 6, 5, 4, 3, 1]  # the next run's window finds it first


def test_asc_scan_sees_a_pr_touched_behind_its_cursor_twice(github: FakeGitHub) -> None:
    seed_six(github)
    github.before(2, lambda: github.touch_pr(REPO, 1))
    assert scan(github, "ASC") == [1, 2, 3, 4, 5, 6, 1]


def test_created_at_order_ignores_updates(github: FakeGitHub) -> None:
    seed_six(github)
    github.before(2, lambda: github.touch_pr(REPO, 5))
    assert scan(github, "DESC", field="CREATED_AT") == [6, 5, 4, 3, 2, 1]


def test_prs_sharing_one_second_page_exactly_once(github: FakeGitHub) -> None:
    github.seed(REPO, 7, step=0)
    assert sorted(scan(github, "DESC")) == list(range(1, 8))
    assert scan(github, "ASC") == list(range(1, 8))


def test_cursors_are_opaque_and_checked(github: FakeGitHub) -> None:
    github.seed(REPO, 3)
    body = post(github, LIST_QUERY, {"direction": "DESC", "field": "UPDATED_AT"}).json()
    cursor = body["data"]["repository"]["pullRequests"]["pageInfo"]["endCursor"]
    decoded = base64.b64decode(cursor)
    assert decoded.startswith(b"cursor:v2:")
    assert not decoded[10:].decode("latin-1").isprintable()  # no readable key inside
    for bad in ("bm9wZQ==", "not base64!", base64.b64encode(b"cursor:v2:junk").decode()):
        body = post(
            github, LIST_QUERY, {"after": bad, "direction": "DESC", "field": "UPDATED_AT"}
        ).json()
        [error] = body["errors"]
        assert error["type"] == "INVALID_CURSOR_ARGUMENTS"
        assert error["message"] == f"`{bad}` does not appear to be a valid cursor."
        assert error["path"] == ["repository", "pullRequests"]


def test_last_and_before_page_backwards(github: FakeGitHub) -> None:
    github.seed(REPO, 5)
    query = """query($before: String) { repository(owner: "acme", name: "api") {
      pullRequests(last: 2, before: $before) {
        pageInfo { hasPreviousPage hasNextPage startCursor }
        edges { cursor node { number } } } } }"""
    conn = post(github, query).json()["data"]["repository"]["pullRequests"]
    assert [e["node"]["number"] for e in conn["edges"]] == [4, 5]
    assert conn["pageInfo"]["hasPreviousPage"] and not conn["pageInfo"]["hasNextPage"]
    conn = post(github, query, {"before": conn["pageInfo"]["startCursor"]}).json()["data"][
        "repository"
    ]["pullRequests"]
    assert [e["node"]["number"] for e in conn["edges"]] == [2, 3]
    assert conn["pageInfo"]["hasNextPage"]


def test_the_server_may_return_fewer_rows_than_asked(github: FakeGitHub) -> None:
    github.seed(REPO, 25)
    github.max_page_size = 10
    conn = page(github, page_size=50)["data"]["repository"]["pullRequests"]
    assert len(conn["nodes"]) == 10 and conn["pageInfo"]["hasNextPage"]


def test_states_filter(github: FakeGitHub) -> None:
    github.add_pr(REPO)
    github.add_pr(REPO, state="MERGED")
    github.update_pr(REPO, 1, state="CLOSED")
    query = repo_query(
        "pullRequests(first: 5, states: [MERGED, CLOSED]) "
        "{ nodes { number state closed merged closedAt mergedAt } }"
    )
    nodes = post(github, query).json()["data"]["repository"]["pullRequests"]["nodes"]
    assert [(n["number"], n["state"], n["closed"], n["merged"]) for n in nodes] == [
        (1, "CLOSED", True, False),
        (2, "MERGED", True, True),
    ]
    assert nodes[0]["mergedAt"] is None and nodes[1]["mergedAt"] == nodes[1]["closedAt"]


# ---------------------------------------------------------------------- nested connections

COMMITS_BY_NODE = """query($id: ID!, $after: String) { node(id: $id) { ... on PullRequest {
  commits(first: 100, after: $after) {
    totalCount pageInfo { hasNextPage endCursor } nodes { commit { oid } } } } } }"""
COMMENTS_BY_NUMBER = """query($after: String, $direction: OrderDirection!) {
  repository(owner: "acme", name: "api") { pullRequest(number: 1) {
  comments(first: 100, after: $after, orderBy: {field: UPDATED_AT, direction: $direction}) {
    totalCount pageInfo { hasNextPage endCursor } nodes { id updatedAt } } } } }"""


def drain(github: FakeGitHub, query: str, variables: dict[str, Any], at: list[str]) -> list[Any]:
    items, after = [], None
    while True:
        data = post(github, query, {**variables, "after": after}).json()["data"]
        for key in at:
            data = data[key]
        items += data["nodes"]
        if not data["pageInfo"]["hasNextPage"]:
            return items
        after = data["pageInfo"]["endCursor"]


def test_a_big_pr_is_drained_per_connection_and_shrinks_after_a_force_push(
    github: FakeGitHub,
) -> None:
    pr = github.add_pr(REPO, created_at=T0 - timedelta(days=1))
    github.add_commits(REPO, 1, 250, at=T0 - timedelta(hours=5))
    for i in range(130):
        github.add_comment(REPO, 1, body=f"c{i}", at=T0 - timedelta(hours=4, seconds=-i))

    first = page(github)["data"]["repository"]["pullRequests"]["nodes"][0]
    assert (first["commits"]["totalCount"], len(first["commits"]["nodes"])) == (250, 100)
    assert first["commits"]["pageInfo"]["hasNextPage"]
    assert (first["comments"]["totalCount"], first["comments"]["pageInfo"]["hasNextPage"]) == (
        130,
        True,
    )

    oids = [
        n["commit"]["oid"]
        for n in drain(github, COMMITS_BY_NODE, {"id": pr.id}, ["node", "commits"])
    ]
    assert oids == [c.oid for c in github.commits(REPO, 1)] and len(set(oids)) == 250
    comments = drain(
        github, COMMENTS_BY_NUMBER, {"direction": "ASC"}, ["repository", "pullRequest", "comments"]
    )
    assert [c["id"] for c in comments] == [c.id for c in github.comments(REPO, 1)]
    newest_first = drain(
        github, COMMENTS_BY_NUMBER, {"direction": "DESC"}, ["repository", "pullRequest", "comments"]
    )
    assert newest_first == comments[::-1]
    assert [c.variables.get("after") is None for c in github.calls[1:]].count(True) == 3

    before = github.pr(REPO, 1).updated_at
    github.clock.advance(3600)
    kept = github.force_push(REPO, 1, keep=240)
    assert len(kept) == 240 and github.pr(REPO, 1).updated_at > before
    oids = [
        n["commit"]["oid"]
        for n in drain(github, COMMITS_BY_NODE, {"id": pr.id}, ["node", "commits"])
    ]
    assert oids == [c.oid for c in kept]


def test_reviews_in_creation_order_and_comment_edits(github: FakeGitHub) -> None:
    github.add_pr(REPO, created_at=T0 - timedelta(hours=3))
    first = github.add_review(REPO, 1, state="COMMENTED", author="x", at=T0 - timedelta(hours=2))
    github.add_review(REPO, 1, state="PENDING", author="y", at=T0 - timedelta(hours=1))
    comment = github.add_comment(REPO, 1, at=T0 - timedelta(minutes=30))
    bumped = github.pr(REPO, 1).updated_at
    assert bumped == T0 - timedelta(minutes=30)

    github.edit_comment(REPO, 1, comment.id, body="edited")
    assert github.pr(REPO, 1).updated_at == bumped  # an edit does not bump the PR by default
    assert github.comments(REPO, 1)[0].updated_at == T0
    github.edit_comment(
        REPO, 1, comment.id, body="again", at=T0 + timedelta(seconds=5), bump_pr=True
    )
    assert github.pr(REPO, 1).updated_at == T0 + timedelta(seconds=5)

    query = repo_query(
        "pullRequest(number: 1) { reviews(first: 10) "
        "{ nodes { id state submittedAt author { login } } } "
        "comments(first: 10) { nodes { body } } }"
    )
    pr = post(github, query).json()["data"]["repository"]["pullRequest"]
    assert [(r["state"], r["author"]["login"]) for r in pr["reviews"]["nodes"]] == [
        ("COMMENTED", "x"),
        ("PENDING", "y"),
    ]
    assert (
        pr["reviews"]["nodes"][0]["id"] == first.id
        and pr["reviews"]["nodes"][1]["submittedAt"] is None
    )
    assert pr["comments"]["nodes"] == [{"body": "again"}]

    cursor_query = COMMENTS_BY_NUMBER.replace("nodes {", "edges { cursor } nodes {")
    variables = {"direction": "ASC"}
    comments = post(github, cursor_query, variables).json()["data"]["repository"]["pullRequest"]
    cursor = comments["comments"]["edges"][0]["cursor"]
    assert cursor == comments["comments"]["pageInfo"]["endCursor"]

    github.delete_comment(REPO, 1, comment.id)
    github.delete_review(REPO, 1, first.id)
    pr = post(github, query).json()["data"]["repository"]["pullRequest"]
    assert pr["comments"]["nodes"] == [] and len(pr["reviews"]["nodes"]) == 1
    after = post(github, COMMENTS_BY_NUMBER, {**variables, "after": cursor}).json()
    assert after["data"]["repository"]["pullRequest"]["comments"]["nodes"] == []


def test_seed_builds_thousands_of_prs(github: FakeGitHub) -> None:
    prs = github.seed(REPO, 3000, commits=2, reviews=lambda i: i % 2, comments=1)
    assert len(prs) == len(github.prs(REPO)) == 3000
    assert len({pr.id for pr in prs}) == 3000
    assert prs[-1].updated_at == T0 - timedelta(minutes=1)
    assert len(github.reviews(REPO, 2)) == 1 and len(github.reviews(REPO, 1)) == 0
    assert page(github, page_size=100)["data"]["repository"]["pullRequests"]["totalCount"] == 3000


# ---------------------------------------------------------------------- rate limits


def test_the_budget_runs_out_and_resets_on_the_fake_clock() -> None:
    with FakeGitHub(rate_limit=5) as github:
        github.add_repo(REPO)
        assert page(github)["data"]["rateLimit"]["remaining"] == 3
        assert page(github)["data"]["rateLimit"]["remaining"] == 1
        response = post(
            github, PAGE_QUERY, {"owner": "acme", "name": "api", "pageSize": 50, "nested": 100}
        )
        assert response.status_code == 200
        assert response.json() == {
            "errors": [
                {"type": "RATE_LIMITED", "message": "API rate limit exceeded for user ID 123."}
            ]
        }
        assert response.headers["x-ratelimit-remaining"] == "0"
        reset = int(response.headers["x-ratelimit-reset"])
        assert reset == int((T0 + timedelta(hours=1)).timestamp())
        github.clock.set(datetime.fromtimestamp(reset - 1, UTC))
        assert page(github).get("errors")
        github.clock.set(datetime.fromtimestamp(reset, UTC))
        rate = page(github)["data"]["rateLimit"]
        assert (rate["remaining"], rate["resetAt"]) == (3, "2026-01-15T14:00:00Z")


def test_rate_limited_on_page_3_then_resumed_from_the_same_cursor(github: FakeGitHub) -> None:
    github.seed(REPO, 6)
    github.before(3, github.exhaust_rate_limit)
    variables: dict[str, Any] = {"direction": "DESC", "field": "UPDATED_AT", "after": None}
    for _ in range(2):
        conn = post(github, LIST_QUERY, variables).json()["data"]["repository"]["pullRequests"]
        variables["after"] = conn["pageInfo"]["endCursor"]
    limited = post(github, LIST_QUERY, variables)
    assert limited.json()["errors"][0]["type"] == "RATE_LIMITED"
    assert limited.headers["x-ratelimit-remaining"] == "0"
    github.clock.set(datetime.fromtimestamp(int(limited.headers["x-ratelimit-reset"]), UTC))
    conn = post(github, LIST_QUERY, variables).json()["data"]["repository"]["pullRequests"]
    assert [n["number"] for n in conn["nodes"]] == [2, 1]
    assert [c.cost for c in github.calls] == [1, 1, None, 1]
    assert github.calls[2].variables == github.calls[3].variables


def test_the_rate_limit_spelling_is_configurable(github: FakeGitHub) -> None:
    github.add_repo(REPO)
    github.rate_limit_error_type = "RATE_LIMIT"
    github.exhaust_rate_limit()
    assert page(github) == {
        "errors": [
            {
                "type": "RATE_LIMIT",
                "code": "graphql_rate_limit",
                "message": "API rate limit already exceeded for user ID 123.",
            }
        ]
    }


def test_a_forced_rate_limit_may_report_remaining_points(github: FakeGitHub) -> None:
    github.add_repo(REPO)
    github.rate_limit_next()
    response = post(
        github, PAGE_QUERY, {"owner": "acme", "name": "api", "pageSize": 50, "nested": 100}
    )
    assert response.json()["errors"][0]["type"] == "RATE_LIMITED"
    assert response.headers["x-ratelimit-remaining"] == "5000"
    assert "data" in page(github)


@pytest.mark.parametrize(("status", "retry_after"), [(403, 60), (429, None), (200, 60)])
def test_secondary_limit(github: FakeGitHub, status: int, retry_after: int | None) -> None:
    github.add_repo(REPO)
    github.secondary_limit(2, status=status, retry_after=retry_after)
    for _ in range(2):
        response = post(
            github, PAGE_QUERY, {"owner": "acme", "name": "api", "pageSize": 5, "nested": 5}
        )
        assert response.status_code == status
        body = response.json()
        message = body["errors"][0]["message"] if status == 200 else body["message"]
        assert message.startswith(
            "You have exceeded a secondary rate limit. Please wait a few minutes before you try "
            "again."
        )
        assert "secondary-rate-limits" in body["documentation_url"]
        assert response.headers.get("retry-after") == (str(retry_after) if retry_after else None)
        assert "x-ratelimit-remaining" in response.headers
    assert "data" in page(github)
    assert github.budget().used == 2  # only the answered query
    assert [(c.status, c.variables["pageSize"]) for c in github.calls] == [
        (status, 5),
        (status, 5),
        (200, 50),
    ]


def test_secondary_points_per_minute_on_the_fake_clock(github: FakeGitHub) -> None:
    github.add_repo(REPO)
    github.secondary_points_per_minute = 2
    github.secondary_retry_after = 30
    assert [post(github, "{ viewer { login } }").status_code for _ in range(3)] == [200, 200, 403]
    github.clock.advance(60)
    assert post(github, "{ viewer { login } }").status_code == 200


def test_secondary_concurrency_ceiling(github: FakeGitHub) -> None:
    github.max_concurrency = 1
    statuses: list[int] = []
    with github.lock:  # hold every request in flight until all three have arrived
        threads = [
            threading.Thread(
                target=lambda: statuses.append(post(github, "{ viewer { login } }").status_code)
            )
            for _ in range(3)
        ]
        for thread in threads:
            thread.start()
        deadline = datetime.now() + timedelta(seconds=10)
        while github.in_flight < 3 and datetime.now() < deadline:
            threading.Event().wait(0.01)
    for thread in threads:
        thread.join()
    assert 403 in statuses and github.peak_in_flight == 3


# ---------------------------------------------------------------------- errors


def test_unknown_repository_is_not_found(github: FakeGitHub) -> None:
    body = page(github)
    assert body["data"]["repository"] is None
    assert body["errors"] == [
        {
            "type": "NOT_FOUND",
            "path": ["repository"],
            "locations": [{"line": 5, "column": 3}],
            "message": "Could not resolve to a Repository with the name 'acme/api'.",
        }
    ]
    assert body["data"]["rateLimit"]["cost"] == 2


def test_a_token_limited_to_some_repositories(github: FakeGitHub) -> None:
    github.add_pr(REPO)
    secret = github.add_pr("acme/secret")
    github.add_token("narrow", repos=["ACME/API"], scopes=None)
    query = (
        '{ a: repository(owner: "acme", name: "api") { id } '
        'b: repository(owner: "acme", name: "secret") { id } }'
    )
    response = post(github, query, token="narrow")
    body = response.json()
    assert body["data"]["a"] and body["data"]["b"] is None
    assert [(e["type"], e["path"]) for e in body["errors"]] == [("NOT_FOUND", ["b"])]
    assert "x-oauth-scopes" not in response.headers
    body = post(github, f'{{ node(id: "{secret.id}") {{ id }} }}', token="narrow").json()
    assert (
        body["errors"][0]["message"]
        == f"Could not resolve to a node with the global id of '{secret.id}'."
    )
    assert post(
        github, f'{{ node(id: "{secret.id}") {{ ... on PullRequest {{ number }} }} }}'
    ).json() == {"data": {"node": {"number": 1}}}


def test_unknown_pull_request_number(github: FakeGitHub) -> None:
    github.add_repo(REPO)
    body = post(
        github, '{ repository(owner: "acme", name: "api") { pullRequest(number: 9) { id } } }'
    ).json()
    assert body["data"] == {"repository": {"pullRequest": None}}
    assert (
        body["errors"][0]["message"] == "Could not resolve to a PullRequest with the number of 9."
    )


def test_bad_missing_and_revoked_tokens_are_401(github: FakeGitHub) -> None:
    response = post(github, "{ viewer { login } }", token="wrong")
    assert response.status_code == 401
    assert response.json() == {
        "message": "Bad credentials",
        "documentation_url": "https://docs.github.com/graphql",
    }
    assert "x-ratelimit-remaining" not in response.headers
    response = httpx.post(github.graphql_url, json={"query": "{ viewer { login } }"})
    assert response.status_code == 401
    github.revoke_token()
    assert post(github, "{ viewer { login } }").json()["message"] == "Bad credentials"
    assert github.calls == []


def test_timeouts_are_502_or_504_then_recover(github: FakeGitHub) -> None:
    github.add_repo(REPO)
    github.timeout(502)
    github.timeout(504, on_request=2)
    for status in (502, 504):
        response = post(github, "{ viewer { login } }")
        assert response.status_code == status
        assert response.json()["message"].startswith("We couldn't respond to your request in time")
    assert post(github, "{ viewer { login } }").status_code == 200


def test_partial_data_on_demand(github: FakeGitHub) -> None:
    github.seed(REPO, 4)
    github.partial_next()
    body = page(github)
    nodes = body["data"]["repository"]["pullRequests"]["nodes"]
    assert nodes[2] is None and all(nodes[i] for i in (0, 1, 3))
    assert body["errors"] == [
        {
            "type": "RESOURCE_LIMITS_EXCEEDED",
            "path": ["repository", "pullRequests", "nodes", 2],
            "message": "Resource limits for this query exceeded.",
        }
    ]
    assert "errors" not in page(github)


def test_enterprise_path_and_other_methods(github: FakeGitHub) -> None:
    assert post(github, "{ viewer { login } }", path="/api/graphql").json() == {
        "data": {"viewer": {"login": "highmark-bot"}}
    }
    headers = {"Authorization": f"Bearer {github.token}"}
    assert httpx.get(github.graphql_url, headers=headers).status_code == 404
    assert post(github, "{ viewer { login } }", path="/v3/graphql").status_code == 404
    assert [c.request.path for c in github.calls] == ["/api/graphql"]
