"""The fake Jira's other behaviours over HTTP (httpx as the client): the removed search
endpoint, auth, rate limits, bulk fetch, comments, counts, and the test-facing API."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest

from tests.fakes.jira import GONE, SEARCH, FakeJira
from tests.fakes.jira_http import EMAIL, NOW, Make, connect, fakes, keys, search


@pytest.fixture
def make() -> Iterator[Make]:
    with fakes() as factory:
        yield factory


@pytest.fixture
def jira(make: Make) -> FakeJira:
    return make()


@pytest.fixture
def client(jira: FakeJira) -> Iterator[httpx.Client]:
    with connect(jira) as http:
        yield http


# ---------------------------------------------------------------------- the removed endpoint


@pytest.mark.parametrize("path", ["/rest/api/2/search", "/rest/api/3/search"])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_old_search_is_gone(client: httpx.Client, path: str, method: str) -> None:
    answer = client.request(method, path, params={"jql": "project = FOO"})
    assert answer.status_code == 410
    assert answer.json() == {"errorMessages": [GONE], "errors": {}}
    assert "CHANGE-2046" in GONE


# ---------------------------------------------------------------------- auth


def test_basic_auth_is_required(jira: FakeJira) -> None:
    with httpx.Client(base_url=jira.url) as anonymous:
        answer = anonymous.get("/rest/api/3/myself")
    assert answer.status_code == 401 and answer.headers["WWW-Authenticate"]
    assert answer.json()["errorMessages"]
    with connect(jira, token="wrong-token") as wrong:
        denied = wrong.get("/rest/api/3/myself")
        assert denied.status_code == 401 and "wrong-token" not in denied.text
        jira.auth_failure_body = "empty"
        assert wrong.get("/rest/api/3/myself").content == b""


def test_revoked_token_fails_mid_run(jira: FakeJira, client: httpx.Client) -> None:
    jira.seed("FOO", 4)
    first = search(client, "project = FOO", maxResults=2).json()
    jira.revoke_token()
    assert search(client, "project = FOO", nextPageToken=first["nextPageToken"]).status_code == 401


def test_a_project_the_user_cannot_browse_is_invisible(
    jira: FakeJira, client: httpx.Client
) -> None:
    jira.add_project("SEC")
    jira.add_issue("SEC", summary="secret")
    jira.add_issue("FOO", summary="open")
    jira.restrict(["FOO"])
    assert keys(search(client, "project in (FOO) OR issuetype = Task")) == ["FOO-1"]
    assert search(client, "project = SEC").status_code == 400
    missing = client.get("/rest/api/3/project/SEC")
    assert missing.status_code == 404
    assert missing.json() == {
        "errorMessages": ["No project could be found with key 'SEC'."],
        "errors": {},
    }
    assert client.get("/rest/api/3/issue/SEC-1").status_code == 404
    allowed = client.get("/rest/api/3/mypermissions", params={"permissions": "BROWSE_PROJECTS"})
    assert allowed.json()["permissions"]["BROWSE_PROJECTS"]["havePermission"] is True
    jira.restrict([])
    denied = client.get("/rest/api/3/mypermissions", params={"permissions": "BROWSE_PROJECTS"})
    assert denied.json()["permissions"]["BROWSE_PROJECTS"]["havePermission"] is False


def test_scoped_token_works_only_through_the_gateway(make: Make) -> None:
    jira = make(scoped=True)
    with connect(jira) as site:
        assert site.get("/rest/api/3/myself").status_code == 401
    with connect(jira, base=jira.gateway_url) as gateway:
        assert gateway.get("/rest/api/3/myself").status_code == 200
        jira.add_issue("FOO", summary="x")
        issue = gateway.get(SEARCH, params={"jql": "project = FOO", "fields": "key"}).json()
        assert issue["issues"][0]["self"].startswith(jira.gateway_url)
    with connect(jira, base=f"{jira.url}/ex/jira/not-our-cloud") as lost:
        assert lost.get("/rest/api/3/myself").status_code == 404


# ---------------------------------------------------------------------- rate limits


def test_429_with_jira_headers_holds_until_retry_after(
    jira: FakeJira, client: httpx.Client
) -> None:
    jira.seed("FOO", 4)
    jira.throttle(on_request=2, path=SEARCH, retry_after=7)
    jira.unavailable(on_request=4, path=SEARCH, retry_after=3)
    first = search(client, "project = FOO", maxResults=2).json()
    token = first["nextPageToken"]
    limited = search(client, "project = FOO", nextPageToken=token)
    assert limited.status_code == 429
    headers = limited.headers
    assert headers["Retry-After"] == "7"
    assert headers["X-RateLimit-Reset"] == "2026-01-15T12:01Z"
    assert headers["RateLimit-Reason"] == "jira-burst-based"
    assert headers["X-RateLimit-NearLimit"] == "true"
    assert (headers["X-RateLimit-Limit"], headers["X-RateLimit-Remaining"]) == ("100", "0")
    jira.clock.advance(3)
    again = search(client, "project = FOO", nextPageToken=token)
    assert again.status_code == 429 and again.headers["Retry-After"] == "4"
    jira.clock.advance(4)
    busy = search(client, "project = FOO", nextPageToken=token)
    assert busy.status_code == 503 and busy.headers["Retry-After"] == "3"
    assert keys(search(client, "project = FOO", nextPageToken=token)) == ["FOO-2", "FOO-1"]
    assert [r.status for r in jira.requests] == [200, 429, 429, 503, 200]


def test_burst_limit_token_bucket_on_the_fake_clock(jira: FakeJira, client: httpx.Client) -> None:
    jira.burst_limit(capacity=5, per_second=1.0)
    statuses = [client.get("/rest/api/3/myself") for _ in range(6)]
    assert [r.status_code for r in statuses] == [200] * 5 + [429]
    assert "X-RateLimit-NearLimit" not in statuses[0].headers
    assert statuses[4].headers["X-RateLimit-NearLimit"] == "true"
    assert statuses[5].headers["Retry-After"] == "1"
    assert client.get("/rest/api/3/project/FOO").status_code == 200  # another endpoint
    jira.clock.advance(1)
    assert client.get("/rest/api/3/myself").status_code == 200


# ---------------------------------------------------------------------- other endpoints


def test_bulkfetch(make: Make) -> None:
    jira = make(index_lag=300)
    issues = jira.seed("FOO", 4)
    jira.update_issue("FOO-2", summary="fresh")  # not indexed yet: bulkfetch is current
    jira.bulkfetch_error("FOO-3", "Retry later.")
    with connect(jira) as http:
        body = {"issueIdsOrKeys": ["FOO-4", issues[0].id, "FOO-2", "FOO-3", "FOO-99"]}
        answer = http.post("/rest/api/3/issue/bulkfetch", json=body).json()
        assert [i["key"] for i in answer["issues"]] == ["FOO-1", "FOO-2", "FOO-4"]
        assert answer["issues"][1]["fields"]["summary"] == "fresh"
        assert "description" in answer["issues"][0]["fields"]  # default *navigable
        assert answer["issueErrors"] == [{"id": issues[2].id, "errorMessage": "Retry later."}]
        again = http.post("/rest/api/3/issue/bulkfetch", json=body | {"fields": ["updated"]})
        assert [set(i["fields"]) for i in again.json()["issues"]] == [{"updated"}] * 4
        too_many = {"issueIdsOrKeys": [str(10000 + n) for n in range(101)]}
        assert http.post("/rest/api/3/issue/bulkfetch", json=too_many).status_code == 400


def test_comments_page_with_start_at(make: Make) -> None:
    jira = make(comment_page_cap=3)
    issue = jira.add_issue("FOO", summary="chatty")
    for n in range(25):
        jira.clock.advance(60)
        jira.add_comment("FOO-1", f"comment {n}")
    assert jira.issue("FOO-1").updated == jira.clock.now()  # a comment bumps updated
    with connect(jira) as http:
        url = f"/rest/api/3/issue/{issue.id}/comment"
        first = http.get(url).json()
        assert (first["startAt"], first["maxResults"], first["total"]) == (0, 3, 25)
        assert first["comments"][0]["body"]["content"][0]["content"][0]["text"] == "comment 0"
        assert first["comments"][0]["author"]["emailAddress"] == EMAIL
        last = http.get(url, params={"startAt": 24, "maxResults": 10}).json()
        assert [c["id"] for c in last["comments"]] == [jira.issue("FOO-1").comments[-1].id]
        newest = http.get(url, params={"orderBy": "-created", "maxResults": 1}).json()
        assert newest["comments"][0]["id"] == last["comments"][0]["id"]
        embedded = search(http, "key = FOO-1", fields="comment").json()["issues"][0]["fields"]
        assert len(embedded["comment"]["comments"]) == 20 and embedded["comment"]["total"] == 25
        assert http.get("/rest/api/3/issue/FOO-9/comment").status_code == 404


def test_approximate_count(jira: FakeJira, client: httpx.Client) -> None:
    jira.seed("FOO", 12, issue_types=("Task", "Bug"))
    url = "/rest/api/3/search/approximate-count"
    assert client.post(url, json={"jql": "project = FOO"}).json() == {"count": 12}
    assert client.post(url, json={"jql": "issuetype = Bug"}).json() == {"count": 6}
    assert client.post(url, json={"jql": "order by key"}).status_code == 400


def test_myself_and_project(jira: FakeJira, client: httpx.Client) -> None:
    me = client.get("/rest/api/3/myself").json()
    assert {k: me[k] for k in ("accountId", "emailAddress", "timeZone")} == {
        "accountId": jira.user.account_id,
        "emailAddress": EMAIL,
        "timeZone": "Europe/Berlin",
    }
    assert client.get("/rest/api/3/project/FOO").json()["id"] == "10000"
    assert client.get("/rest/api/3/project/10000").json()["key"] == "FOO"
    assert client.get("/rest/api/3/project/10009").json()["errorMessages"] == [
        "No project could be found with id '10009'."
    ]
    assert client.delete("/rest/api/3/myself").status_code == 405


# ---------------------------------------------------------------------- the test API


def test_mutation_api_and_read_back(jira: FakeJira, client: httpx.Client) -> None:
    issue = jira.add_issue("FOO", summary="a", created=NOW - timedelta(hours=1))
    assert issue.updated == issue.created == NOW - timedelta(hours=1)
    jira.clock.advance(30)
    jira.update_issue("FOO-1", status="Done", assignee="bob@example.com")
    assert (issue.status, issue.updated) == ("Done", NOW + timedelta(seconds=30))
    jira.update_issue("FOO-1", at=NOW + timedelta(seconds=5, microseconds=123456))
    assert issue.updated == NOW + timedelta(seconds=5, microseconds=123000)  # millis, as Jira
    with pytest.raises(TypeError):
        jira.update_issue("FOO-1", created=NOW)
    row = jira.rows("FOO")[0]
    assert row["status"] == "Done" and row["key"] == "FOO-1"
    assert row["assignee"] == jira.site.user("bob@example.com").account_id  # type: ignore[union-attr]
    rendered = jira.issue_json("FOO-1", fields="summary,updated")
    searched = search(client, "key = FOO-1", fields="summary,updated").json()["issues"][0]
    assert rendered == searched
    jira.delete_issue("FOO-1")
    assert jira.issues() == [] and jira.issues(include_deleted=True) == [issue]


def test_seed_is_fast_and_spaced_in_time(jira: FakeJira, client: httpx.Client) -> None:
    issues = jira.seed("FOO", 20_000, step=1.0)
    assert issues[0].key == "FOO-1" and issues[-1].key == "FOO-20000"
    assert issues[-1].updated == NOW - timedelta(seconds=1)
    assert issues[1].updated - issues[0].updated == timedelta(seconds=1)
    page = client.post(SEARCH, json={"jql": "project = FOO", "maxResults": 5000})
    assert len(page.json()["issues"]) == 100
