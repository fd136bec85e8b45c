"""The fake Jira's search over HTTP (httpx as the client): JQL, zones and minute precision,
fields and page sizes, nextPageToken in both pagination modes, index lag (contract §2.6)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest

from tests.fakes.jira import SEARCH, FakeJira, parse_timestamp
from tests.fakes.jira_http import NOW, Make, at, connect, fakes, keys, page_all, search

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d{4}$")


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


# ---------------------------------------------------------------------- search basics


def test_search_returns_ids_only_by_default_and_no_total(
    jira: FakeJira, client: httpx.Client
) -> None:
    first = jira.add_issue("FOO", summary="one")
    answer = client.get(SEARCH, params={"jql": "project = FOO"})
    assert answer.json() == {"issues": [{"id": first.id}], "isLast": True}
    assert first.key == "FOO-1" and first.id == "10000"
    assert jira.add_issue("FOO", summary="two").id == "10001"


@pytest.mark.parametrize("jql", ["", "ORDER BY key", "order by updated DESC"])
def test_unbounded_jql_is_refused(client: httpx.Client, jql: str) -> None:
    answer = search(client, jql)
    assert answer.status_code == 400
    assert answer.json()["errorMessages"][0].startswith("Unbounded JQL queries are not allowed")
    assert answer.json()["errors"] == {}


@pytest.mark.parametrize(
    ("jql", "message"),
    [
        ("project = FOO AND", "Error in the JQL Query: Expecting a field name"),
        ("project = NOPE", "The value 'NOPE' does not exist for the field 'project'."),
        ("colour = red", "Field 'colour' does not exist or you do not have permission"),
        ("project > FOO", "The operator '>' is not supported by the 'project' field."),
        ('updated >= "yesterday"', "Date value 'yesterday' for field 'updated' is invalid."),
        ("updated >= 2025-03-01", "Date value '2025-03-01' for field 'updated' is invalid."),
        ("key = FOO-99", "An issue with key 'FOO-99' does not exist for field 'key'."),
        ("status = Frozen", "The value 'Frozen' does not exist for the field 'status'."),
    ],
)
def test_bad_jql_is_a_400_with_jira_wording(client: httpx.Client, jql: str, message: str) -> None:
    answer = client.post(SEARCH, json={"jql": jql})
    assert answer.status_code == 400
    assert answer.json()["errorMessages"][0].startswith(message)
    assert answer.json()["errors"] == {}


def test_jql_filters(jira: FakeJira, client: httpx.Client) -> None:
    jira.add_project("BAR")
    jira.add_issue("FOO", summary="a", issue_type="Bug", status="In Progress")
    jira.add_issue("FOO", summary="b", issue_type="Epic", assignee="alice@example.com")
    jira.add_issue("BAR", summary="c", issue_type="Story", status="Done")
    jira.add_issue("FOO", summary="d")
    order = " ORDER BY key ASC"
    assert keys(search(client, "project in (FOO, BAR)" + order)) == [
        "BAR-1",
        "FOO-1",
        "FOO-2",
        "FOO-3",
    ]
    assert keys(search(client, "project = BAR")) == ["BAR-1"]
    assert keys(search(client, "project = 10000" + order)) == ["FOO-1", "FOO-2", "FOO-3"]
    assert keys(search(client, "project = FOO AND issuetype != Epic" + order)) == ["FOO-1", "FOO-3"]
    assert keys(search(client, "issuetype = Bug")) == ["FOO-1"]
    assert keys(search(client, "issuetype in (Bug, Story)" + order)) == ["BAR-1", "FOO-1"]
    assert keys(search(client, 'status = "In Progress"')) == ["FOO-1"]
    assert keys(search(client, "status = done OR issuetype = epic" + order)) == ["BAR-1", "FOO-2"]
    assert keys(search(client, "project = FOO AND NOT (status = 'In Progress')" + order)) == [
        "FOO-2",
        "FOO-3",
    ]
    assert keys(search(client, "assignee is EMPTY and project = FOO" + order)) == ["FOO-1", "FOO-3"]
    assert keys(search(client, 'assignee = "alice@example.com"')) == ["FOO-2"]
    assert keys(search(client, "key in (FOO-3, BAR-1)" + order)) == ["BAR-1", "FOO-3"]


def test_order_by_updated_then_key_sorts_keys_by_number(
    jira: FakeJira, client: httpx.Client
) -> None:
    for n in range(11):
        jira.add_issue("FOO", summary=f"s{n}", updated=NOW + timedelta(minutes=n % 2))
    jql = "project = FOO ORDER BY updated DESC, key ASC"
    assert keys(search(client, jql, maxResults=3)) == ["FOO-2", "FOO-4", "FOO-6"]
    by_key = keys(search(client, "project = FOO ORDER BY key ASC", maxResults=11))
    assert by_key[8:] == ["FOO-9", "FOO-10", "FOO-11"]  # numeric, not "FOO-10" < "FOO-9"
    by_id = keys(search(client, "project = FOO ORDER BY id DESC", maxResults=1))
    assert by_id == ["FOO-11"]


# ---------------------------------------------------------------------- time zones and minutes


def test_literals_in_user_zone_timestamps_in_site_zone(
    jira: FakeJira, client: httpx.Client
) -> None:
    assert (jira.user_zone, jira.site_zone) == ("Europe/Berlin", "America/Los_Angeles")
    when = at("2025-03-01T09:15:42.117")  # 10:15:42 in Berlin, 01:15:42 in Los Angeles
    jira.add_issue("FOO", summary="tz", created=when)
    hit = search(client, 'updated >= "2025-03-01 10:15"', fields="updated,created")
    fields = hit.json()["issues"][0]["fields"]
    assert fields["updated"] == "2025-03-01T01:15:42.117-0800"
    assert parse_timestamp(fields["updated"]) == when
    assert TIMESTAMP.match(fields["created"])
    assert keys(search(client, 'updated >= "2025-03-01 10:16"')) == []
    assert keys(search(client, 'updated >= "2025-03-01 09:15"')) == ["FOO-1"]  # a UTC mistake
    call = jira.searches[0]
    assert call.criteria is not None
    assert call.criteria.date("updated", ">=") == at("2025-03-01T09:15")
    me = client.get("/rest/api/3/myself").json()
    assert me["timeZone"] == "Europe/Berlin"


def test_same_minute_trap_minute_precision(jira: FakeJira, client: httpx.Client) -> None:
    for second in ("42.117", "50.000"):  # 10:15:42 and 10:15:50 in Berlin
        when = at(f"2025-03-01T09:15:{second}")
        jira.add_issue("FOO", summary=second, created=when)
    both = ["FOO-1", "FOO-2"]
    ordered = " ORDER BY updated ASC"
    assert keys(search(client, 'updated >= "2025-03-01 10:15"' + ordered)) == both
    assert keys(search(client, 'updated > "2025-03-01 10:15"')) == []  # the trap
    assert keys(search(client, 'updated > "2025-03-01 10:14"' + ordered)) == both
    assert keys(search(client, 'updated <= "2025-03-01 10:15"' + ordered)) == both
    assert keys(search(client, 'updated < "2025-03-01 10:15"')) == []
    assert keys(search(client, 'updated = "2025-03-01 10:15"' + ordered)) == both
    assert keys(search(client, 'created != "2025-03-01 10:15"')) == []
    jira.precision = "instant"
    assert keys(search(client, 'updated > "2025-03-01 10:15"' + ordered)) == both
    assert keys(search(client, 'updated <= "2025-03-01 10:15"')) == []


def test_relative_literals_and_epoch_millis_use_the_fake_clock(
    jira: FakeJira, client: httpx.Client
) -> None:
    jira.add_issue("FOO", summary="old", created=NOW - timedelta(minutes=30))
    jira.add_issue("FOO", summary="new", created=NOW - timedelta(minutes=10))
    assert keys(search(client, 'updated >= "-15m"')) == ["FOO-2"]
    assert keys(search(client, 'updated >= "-1h" ORDER BY key')) == ["FOO-1", "FOO-2"]
    jira.clock.advance(600)
    assert keys(search(client, 'updated >= "-15m"')) == []
    assert keys(search(client, 'updated >= "-1d" AND created >= "-1w" ORDER BY key')) == [
        "FOO-1",
        "FOO-2",
    ]
    millis = int((NOW - timedelta(minutes=20)).timestamp() * 1000)
    assert keys(search(client, f"updated >= {millis}")) == ["FOO-2"]


# ---------------------------------------------------------------------- fields and page sizes


def test_field_selection_and_shapes(jira: FakeJira, client: httpx.Client) -> None:
    jira.add_issue("FOO", summary="plain", description="line one\nline two", status="Done")
    jira.add_issue("FOO", summary="assigned", assignee="alice@example.com", issue_type="Bug")
    asked = "key,summary,status,issuetype,assignee,created,updated,project"
    got = search(client, "project = FOO ORDER BY key", fields=asked).json()["issues"]
    plain, assigned = got
    assert plain["id"] == "10000" and plain["key"] == "FOO-1"
    assert plain["self"] == f"{jira.url}/rest/api/3/issue/10000"
    assert set(plain["fields"]) == set(asked.split(",")) - {"key"}
    assert plain["fields"]["summary"] == "plain"
    status = plain["fields"]["status"]
    assert (status["name"], status["id"], status["statusCategory"]["key"]) == (
        "Done",
        "10001",
        "done",
    )
    assert plain["fields"]["assignee"] is None
    assert {k: assigned["fields"]["issuetype"][k] for k in ("name", "id")} == {
        "name": "Bug",
        "id": "10004",
    }
    alice = assigned["fields"]["assignee"]
    assert alice["emailAddress"] == "alice@example.com" and alice["displayName"] == "Alice"
    assert alice["accountId"] == jira.issue("FOO-2").assignee
    project = plain["fields"]["project"]
    assert {k: project[k] for k in ("id", "key", "name")} == {
        "id": "10000",
        "key": "FOO",
        "name": "Foo project",
    }
    navigable = client.post(
        SEARCH, json={"jql": "key = FOO-1", "fields": ["*navigable", "-labels"]}
    ).json()["issues"][0]["fields"]
    assert "comment" not in navigable and "labels" not in navigable
    assert navigable["description"]["type"] == "doc"
    assert navigable["description"]["content"][1]["content"][0]["text"] == "line two"
    everything = search(client, "key = FOO-1", fields="*all").json()["issues"][0]["fields"]
    assert everything["comment"]["total"] == 0


def test_post_body_types_are_checked(jira: FakeJira, client: httpx.Client) -> None:
    wrong_fields = client.post(SEARCH, json={"jql": "project = FOO", "fields": "key,summary"})
    assert wrong_fields.status_code == 400
    wrong_expand = client.post(SEARCH, json={"jql": "project = FOO", "expand": ["names"]})
    assert wrong_expand.status_code == 400
    not_json = client.post(SEARCH, content=b"jql=x", headers={"Content-Type": "text/plain"})
    assert not_json.status_code == 415
    assert [c.status for c in jira.searches] == [400, 400]
    assert jira.searches[0].error == "'fields' must be an array of strings in a POST body."


def test_max_results_default_cap_and_heavy_cap(jira: FakeJira, client: httpx.Client) -> None:
    jira.seed("FOO", 250)
    assert len(keys(search(client, "project = FOO", fields="key"))) == 50
    assert len(keys(search(client, "project = FOO", fields="key", maxResults=1000))) == 100
    heavy = search(client, "project = FOO", fields="*all", maxResults=1000)
    assert len(heavy.json()["issues"]) == 50
    assert [c.page_size for c in jira.searches] == [50, 100, 50]
    assert [c.max_results for c in jira.searches] == [None, 1000, 1000]
    assert jira.searches[2].fields == ("*all",)
    jira.page_cap = 30
    assert len(search(client, "project = FOO", maxResults=1000).json()["issues"]) == 30


def test_planned_short_and_empty_pages_lose_nothing(jira: FakeJira, client: httpx.Client) -> None:
    jira.seed("FOO", 7)
    jira.plan_pages(1, 0, None, 0)
    found = page_all(client, "project = FOO ORDER BY key", max_results=3)
    assert found == [f"FOO-{n}" for n in range(1, 8)]
    assert [len(c.keys) for c in jira.searches] == [1, 0, 3, 0, 3]
    assert jira.searches[1].next_token is not None  # empty, yet not the last


def test_trailing_empty_page(make: Make) -> None:
    jira = make(trailing_empty_page=True)
    jira.seed("FOO", 2)
    with connect(jira) as http:
        assert page_all(http, "project = FOO", max_results=2) == ["FOO-2", "FOO-1"]
    assert [(len(c.keys), c.is_last) for c in jira.searches] == [(2, False), (0, True)]


# ---------------------------------------------------------------------- tokens and paging


def test_token_is_opaque_and_expires_after_seven_days(jira: FakeJira, client: httpx.Client) -> None:
    jira.seed("FOO", 5)
    jql = "project = FOO ORDER BY key"
    first = search(client, jql, maxResults=2).json()
    token = first["nextPageToken"]
    assert first["isLast"] is False and re.search(r"[+/=]", token)  # must be URL-encoded
    assert keys(search(client, jql, maxResults=2, nextPageToken=token)) == ["FOO-3", "FOO-4"]
    assert jira.searches[1].cursor is not None and jira.searches[1].cursor.page == 2
    unencoded = client.get(f"{SEARCH}?jql=project%20%3D%20FOO&nextPageToken={token}")
    assert unencoded.status_code == 400  # "+" read as a space: the client must encode it
    jira.clock.advance(timedelta(days=7).total_seconds())
    assert search(client, jql, nextPageToken=token).status_code == 200  # 7 days exactly
    jira.clock.advance(1)
    expired = search(client, jql, nextPageToken=token)
    assert expired.status_code == 400 and "expired" in expired.json()["errorMessages"][0]
    garbled = search(client, jql, nextPageToken=token[:-4] + "AAA=")
    assert garbled.status_code == 400 and garbled.json()["errorMessages"]
    fresh = search(client, jql, maxResults=2).json()["nextPageToken"]
    other = search(client, "project = FOO ORDER BY id", nextPageToken=fresh)
    assert other.status_code == 400


def test_last_page_has_no_token(jira: FakeJira, client: httpx.Client) -> None:
    jira.seed("FOO", 4)
    page = search(client, "project = FOO", maxResults=4).json()
    assert page["isLast"] is True and "nextPageToken" not in page


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        # keyset: FOO-1, updated after being served, comes back at the end (a duplicate)
        ("keyset", ["FOO-1", "FOO-2", "FOO-3", "FOO-4", "FOO-5", "FOO-6", "FOO-1"]),
        # offset: everything shifts left by one, and FOO-3 is never served
        ("offset", ["FOO-1", "FOO-2", "FOO-4", "FOO-5", "FOO-6", "FOO-1"]),
    ],
)
def test_issue_updated_while_paging(make: Make, mode: str, expected: list[str]) -> None:
    jira = make(pagination=mode)
    jira.seed("FOO", 6)
    jira.before(2, lambda: jira.update_issue("FOO-1", summary="moved"), path=SEARCH)
    with connect(jira) as http:
        assert page_all(http, "project = FOO ORDER BY updated ASC, key ASC") == expected


def test_a_moved_issue_not_yet_served_is_served_once_in_keyset_mode(make: Make) -> None:
    jira = make(pagination="keyset")
    jira.seed("FOO", 6)
    jira.before(2, lambda: jira.update_issue("FOO-5", status="Done"), path=SEARCH)
    with connect(jira) as http:
        found = page_all(http, "project = FOO ORDER BY updated ASC, key ASC")
    assert found == ["FOO-1", "FOO-2", "FOO-3", "FOO-4", "FOO-6", "FOO-5"]


# ---------------------------------------------------------------------- index lag


def test_index_lag_hides_writes_from_search_only(make: Make) -> None:
    jira = make(index_lag=180)
    old = jira.seed("FOO", 1)[0]  # seeded history is indexed already
    with connect(jira) as http:
        jira.update_issue(old.key, summary="renamed")
        new = jira.add_issue("FOO", summary="brand new")
        jql = 'project = FOO AND updated >= "-1m" ORDER BY key'
        jira.clock.advance(60)
        assert keys(search(http, "project = FOO", fields="summary")) == [old.key]
        assert search(http, "project = FOO", fields="summary").json()["issues"][0]["fields"] == {
            "summary": "Issue 0"
        }
        assert keys(search(http, jql)) == []
        assert http.get(f"/rest/api/3/issue/{new.key}").json()["fields"]["summary"] == "brand new"
        count = http.post("/rest/api/3/search/approximate-count", json={"jql": "project = FOO"})
        assert count.json() == {"count": 1}
        reconciled = http.post(
            SEARCH, json={"jql": jql, "reconcileIssues": [int(new.id)], "fields": ["key"]}
        )
        assert keys(reconciled) == [new.key]
        assert not jira.searchable(new.key)
        jira.clock.advance(120)
        assert jira.searchable(new.key)
        assert keys(search(http, 'project = FOO AND updated >= "-3m" ORDER BY key')) == [
            old.key,
            new.key,
        ]
        jira.delete_issue(old.key)
        assert http.get(f"/rest/api/3/issue/{old.key}").status_code == 404
        assert keys(search(http, "project = FOO ORDER BY key")) == [old.key, new.key]
        jira.clock.advance(180)
        assert keys(search(http, "project = FOO")) == [new.key]
