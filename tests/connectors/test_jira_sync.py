"""The Jira connector's sync against the fake Jira (shared/api-contracts.md §2.6): a first sync
and an incremental one on every target database; then, on SQLite, the traps of JQL dates — the
minute, the user's zone, the repeated hour of a fall-back — index lag, and issues updated while
the search pages through them.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from highmark.connectors.jira.issues import jql_literal
from highmark.models import RunStatus
from tests.connectors.jira_support import (  # noqa: F401  (fixtures)
    DAY_AGO,
    JiraProject,
    at,
    expected,
    floor_minute,
    greatest_updated,
    jira_fixture,
    jira_project_fixture,
    minutes,
    searches_of,
    served,
)
from tests.fakes.jira import FakeJira

Make = Callable[..., JiraProject]
LAG = minutes(5)  # the job's default lag


def _seed_two_projects(jira: FakeJira) -> None:
    """PROJ: 8 issues, TEST: 5, one a minute from a day ago; some are epics, some assigned."""
    jira.seed("PROJ", 8, start=DAY_AGO, issue_types=("Task", "Bug", "Epic"),
              statuses=("To Do", "In Progress", "Done"),
              assignees=(None, "alice@acme.example"))  # fmt: skip
    jira.seed("TEST", 5, start=DAY_AGO + minutes(30), issue_types=("Story", "Epic"))


# ---------------------------------------------------------------------- first and later syncs


def test_first_sync_of_two_projects(db_url: str, jira: FakeJira, jira_project: Make) -> None:
    _seed_two_projects(jira)
    jira.page_cap = 2  # the server returns fewer issues than asked for
    hm = jira_project(db_url, jql="issuetype != Epic", max_results=3)

    run = hm.ok()

    want = expected(jira, skip_types=("Epic",))
    assert hm.target() == want
    assert (run.rows_read, run.rows_written, run.rows_updated, run.rows_deleted) == (
        len(want), len(want), 0, 0,
    )  # fmt: skip
    # One mark per project: the greatest `updated` loaded there (far behind Jira's clock).
    marks = {p: greatest_updated(want, p) for p in ("PROJ", "TEST")}
    assert hm.marks() == marks
    assert run.watermark_start is None
    assert run.watermark_end == max(marks.values())
    # One search per project, the job's JQL ANDed in parentheses, newest first; pages of 2.
    for project in ("PROJ", "TEST"):
        calls = searches_of(jira, project)
        assert {c.jql for c in calls} == {
            f'project = "{project}" AND (issuetype != Epic) ORDER BY updated DESC, key DESC'
        }
        assert calls[0].token is None and all(c.token for c in calls[1:])
        assert all(c.max_results == 3 and c.page_size == 2 for c in calls)
        assert sorted(served(calls)) == sorted(r["key"] for r in want if r["project"] == project)
    # `raw` is the whole issue as the search returned it, timestamps in the site's zone.
    raw = hm.raw("PROJ-2")
    assert raw["key"] == "PROJ-2" and raw["fields"]["status"]["name"] == "In Progress"
    assert raw["fields"]["updated"].endswith("-0800")  # America/Los_Angeles in January
    assert hm.checkpoint() is None  # success clears it
    # Only the current search endpoint (never the removed /rest/api/3/search) and the user.
    assert {r.path for r in jira.requests} == {"/rest/api/3/myself", "/rest/api/3/search/jql"}


def test_incremental_sync_reads_only_what_changed(
    db_url: str, jira: FakeJira, jira_project: Make
) -> None:
    _seed_two_projects(jira)
    hm = jira_project(db_url, max_results=4)
    first = hm.ok()
    marks = hm.marks()
    assert first.rows_written == 13

    jira.clock.advance(600)
    jira.update_issue("PROJ-3", summary="Renamed")
    jira.update_issue("TEST-2", status="Done", assignee="bob@acme.example")
    new = jira.add_issue("TEST", summary="Fresh", issue_type="Bug")
    jira.clock.advance(600)
    before = len(jira.searches)

    second = hm.ok()

    assert hm.target() == expected(jira)
    # Read: what changed, and the issue at each mark (its minute is read again: JQL has no
    # seconds); the one re-read equal is not counted as changed.
    read = served(jira.searches[before:])
    assert sorted(read) == sorted(["PROJ-3", "TEST-2", new.key, "PROJ-8", "TEST-5"])
    assert (second.rows_read, second.rows_written, second.rows_updated) == (5, 1, 2)
    for project in ("PROJ", "TEST"):
        (call,) = searches_of(jira, project, before)
        literal = jql_literal(marks[project], "Europe/Berlin")  # type: ignore[arg-type]
        assert f'updated >= "{literal}"' in call.jql
        assert call.criteria is not None
        assert call.criteria.date("updated", ">=") == floor_minute(marks[project])  # type: ignore[arg-type]
    changed_at = jira.issue(new.key).updated
    assert hm.marks() == {"PROJ": changed_at, "TEST": changed_at}
    assert second.watermark_start == max(marks.values())  # type: ignore[type-var]
    assert second.watermark_end == changed_at

    third = hm.ok()  # nothing changed
    assert (third.rows_read, third.rows_written, third.rows_updated) == (3, 0, 0)
    assert hm.marks() == {"PROJ": changed_at, "TEST": changed_at}


def test_a_full_refresh_removes_what_jira_no_longer_has(
    db_url: str, jira: FakeJira, jira_project: Make
) -> None:
    _seed_two_projects(jira)
    hm = jira_project(db_url, jql="issuetype != Epic", max_results=3)
    hm.ok()
    jira.clock.advance(600)
    jira.delete_issue("PROJ-1", index_lag=0)
    jira.delete_issue("TEST-1", index_lag=0)
    jira.update_issue("PROJ-2", issue_type="Epic", index_lag=0)  # the job's JQL leaves it out
    jira.delete_issue("PROJ-4", index_lag=3600)  # search still serves it for an hour
    jira.clock.advance(600)

    incremental = hm.ok()
    stored = {r["key"] for r in hm.target()}
    assert incremental.rows_deleted == 0  # a search never sees a deleted issue
    assert {"PROJ-1", "TEST-1", "PROJ-2", "PROJ-4"} <= stored

    full = hm.ok(full_refresh=True)
    assert full.rows_deleted == 3
    assert full.notes is not None and any("no longer in Jira's search" in n for n in full.notes)
    want = expected(jira, skip_types=("Epic",))
    assert {r["key"] for r in hm.target()} == {r["key"] for r in want} | {"PROJ-4"}

    jira.clock.advance(3700)  # the index has caught up with the last delete
    assert hm.ok(full_refresh=True).rows_deleted == 1
    assert hm.target() == want


# ---------------------------------------------------------------------- JQL dates


@pytest.mark.parametrize("precision", ["minute", "instant"])
def test_the_same_minute_trap(jira: FakeJira, jira_project: Make, precision: str) -> None:
    """Scenario 1: the mark is 10:15:42; an issue updated at 10:15:50 becomes searchable only
    after the first run. `updated > "10:15"` would never see it; `>= "10:15"` does, whether
    Jira compares at the minute or to the millisecond (the docs do not say)."""
    jira.precision = precision
    jira.clock.set(at("2026-01-15 10:15:42"))
    jira.add_issue("PROJ", summary="seen")
    jira.clock.set(at("2026-01-15 10:15:50"))
    late = jira.add_issue("PROJ", summary="committed late", index_lag=600)
    hm = jira_project(projects=["PROJ"])
    jira.clock.set(at("2026-01-15 10:25:00"))

    hm.ok()
    assert [r["key"] for r in hm.target()] == ["PROJ-1"]
    assert hm.marks() == {"PROJ": at("2026-01-15 10:15:42")}

    jira.clock.set(at("2026-01-15 10:26:00"))
    run = hm.ok()

    assert hm.target() == expected(jira)
    assert run.rows_written == 1 and late.key in served(jira.searches[-1:])
    call = jira.searches[-1]
    assert 'updated >= "2026-01-15 11:15"' in call.jql  # Berlin is UTC+1 in January
    assert call.criteria is not None
    assert call.criteria.date("updated", ">=") == at("2026-01-15 10:15:00")
    assert hm.marks() == {"PROJ": at("2026-01-15 10:15:50")}


@pytest.mark.parametrize(
    ("user_zone", "site_zone", "literal", "offset"),
    [
        ("Europe/Berlin", "America/Los_Angeles", "2026-01-15 12:34", "-0800"),
        ("America/Los_Angeles", "Europe/Berlin", "2026-01-15 03:34", "+0100"),
        ("Asia/Kolkata", "Pacific/Chatham", "2026-01-15 17:04", "+1345"),
        (None, "Asia/Kathmandu", "2026-01-15 17:19", "+0545"),  # no profile zone: the site's
    ],
)
def test_jql_dates_are_in_the_users_zone_and_answers_round_trip(
    jira: FakeJira,
    jira_project: Make,
    user_zone: str | None,
    site_zone: str,
    literal: str,
    offset: str,
) -> None:
    """Scenario 2: the literal is the mark in the searching user's zone (never UTC, never the
    site's zone), and timestamps rendered in the site's zone parse to the same instants."""
    jira.user.time_zone = user_zone
    jira.site_zone = site_zone
    jira.clock.set(at("2026-01-15 11:34:56"))
    jira.add_issue(
        "PROJ",
        summary="one",
        created=at("2026-01-15 11:00:00.123"),
        updated=at("2026-01-15 11:34:56.789"),
    )
    jira.clock.set(at("2026-01-15 11:50:00"))
    hm = jira_project(projects=["PROJ"])

    hm.ok()
    assert hm.marks() == {"PROJ": at("2026-01-15 11:34:56.789")}
    assert hm.target() == expected(jira)  # to the millisecond
    assert hm.raw("PROJ-1")["fields"]["updated"].endswith(offset)

    hm.ok()
    call = jira.searches[-1]
    assert f'updated >= "{literal}"' in call.jql
    assert call.criteria is not None
    assert call.criteria.date("updated", ">=") == at("2026-01-15 11:34:00")
    assert served([call]) == ["PROJ-1"]


@pytest.mark.parametrize(
    ("mark", "literal"),
    [
        # 02:30:42 CEST, the first pass of the hour Berlin repeats on 25 October: moved back an
        # hour, to a wall time that happens once.
        ("2026-10-25 00:30:42", "2026-10-25 01:30"),
        # 02:30:42 CET, the second pass: read from the first one (an hour more, nothing less).
        ("2026-10-25 01:30:42", "2026-10-25 02:30"),
        # Outside the repeated hour nothing moves.
        ("2026-10-24 23:59:30", "2026-10-25 01:59"),
        ("2026-10-25 02:00:00", "2026-10-25 03:00"),
    ],
)
def test_a_mark_in_the_hour_a_fall_back_repeats(
    jira: FakeJira, jira_project: Make, mark: str, literal: str
) -> None:
    jira.clock.set(at(mark) - minutes(90))
    jira.add_issue("PROJ", summary="well before the mark")
    jira.clock.set(at(mark))
    jira.add_issue("PROJ", summary="at the mark")
    jira.clock.advance(90)
    jira.add_issue("PROJ", summary="after the mark")
    jira.clock.advance(600)
    hm = jira_project(projects=["PROJ"])
    hm.load().set_watermark("issues", at(mark).isoformat(), source_table="PROJ")

    hm.ok()

    call = jira.searches[-1]
    assert f'updated >= "{literal}"' in call.jql
    assert call.criteria is not None
    instant = call.criteria.date("updated", ">=")
    assert instant is not None and instant <= floor_minute(at(mark))
    assert [r["key"] for r in hm.target()] == ["PROJ-2", "PROJ-3"]


# ---------------------------------------------------------------------- index lag


def test_index_lag_never_lets_the_mark_pass_jiras_clock_minus_lag(
    jira: FakeJira, jira_project: Make
) -> None:
    """Scenario 3: an issue updated at T becomes searchable at T+3 min; the run at T+1 min does
    not see it and must not move the mark past T+1 min - lag; a later run picks it up."""
    jira.seed("PROJ", 3, start=DAY_AGO)
    hm = jira_project(projects=["PROJ"])
    hm.ok()
    t = jira.clock.now()
    jira.add_issue("PROJ", summary="visible at once", index_lag=0)  # at T
    late = jira.add_issue("PROJ", summary="indexed late", index_lag=180)  # at T, seen at T+3
    jira.clock.advance(60)

    hm.ok()

    assert late.key not in [r["key"] for r in hm.target()]
    (mark,) = hm.marks().values()
    assert mark is not None and mark <= t + minutes(1) - LAG

    jira.clock.advance(150)  # T+3.5 min: indexed
    hm.ok()
    assert hm.target() == expected(jira)
    assert hm.marks() == {"PROJ": min(t, t + minutes(3.5) - LAG)}


def test_an_index_lagging_behind_an_update_never_overwrites_the_newer_copy(
    jira: FakeJira, jira_project: Make
) -> None:
    """A search may serve an issue as it was before its last update (index lag) after a newer
    copy was stored (a full refresh, say): the stored copy stays the newer one."""
    jira.seed("PROJ", 2, start=DAY_AGO)
    hm = jira_project(projects=["PROJ"])
    hm.ok()
    jira.update_issue("PROJ-1", summary="newer", index_lag=0)
    jira.clock.advance(600)
    hm.ok()
    assert hm.target() == expected(jira)
    newer = expected(jira)
    # The index falls behind: a further update is not searchable yet, and the index serves the
    # last version again on a full refresh; nothing goes backward.
    jira.update_issue("PROJ-1", summary="newest", index_lag=3600)
    run = hm.ok(full_refresh=True)
    assert run.rows_updated == 0
    assert hm.target() == newer


# ---------------------------------------------------------------------- updated while paging


@pytest.mark.parametrize("pagination", ["keyset", "offset"])
def test_issues_updated_while_paging_are_never_lost(
    jira: FakeJira, jira_project: Make, pagination: str
) -> None:
    """§2.4: whether the page token pins a sort key or an offset, an issue updated between two
    pages is loaded by this run or the next, and no issue that did not change is skipped."""
    jira.pagination = pagination
    jira.seed("PROJ", 9, start=DAY_AGO)
    hm = jira_project(projects=["PROJ"], max_results=2)
    moved = ["PROJ-8", "PROJ-5", "PROJ-2"]  # read on page 1; on page 2 next; on page 5

    def meanwhile() -> None:
        jira.clock.advance(5)
        for key in moved:
            jira.update_issue(key, summary=f"{key} changed while paging")
        jira.add_issue("PROJ", summary="created while paging")

    jira.before(2, meanwhile, path="/rest/api/3/search/jql")
    first = hm.ok()

    stored = {r["key"]: r for r in hm.target()}
    for row in expected(jira):  # every issue that did not move is there, as it is now
        if row["key"] not in (*moved, "PROJ-10"):
            assert stored[row["key"]] == row
    # The mark cannot have passed the issues that moved: the next run reads them.
    (mark,) = hm.marks().values()
    assert mark is not None and mark < jira.issue("PROJ-2").updated
    assert first.rows_read <= 9 + 4  # at most the moved ones twice

    jira.clock.advance(600)
    hm.ok()
    assert hm.target() == expected(jira)


def test_a_trailing_empty_page_and_empty_pages_mid_search(
    jira: FakeJira, jira_project: Make
) -> None:
    """Pages may hold fewer issues than asked for, none at all with a token still to follow, and
    the last one may be empty (§0.4)."""
    jira.seed("PROJ", 5, start=DAY_AGO)
    jira.trailing_empty_page = True
    jira.plan_pages(2, 0, None, 1)
    hm = jira_project(projects=["PROJ"], max_results=3)
    run = hm.ok()
    assert hm.target() == expected(jira)
    assert run.rows_read == 5
    assert [len(c.keys) for c in jira.searches] == [2, 0, 3, 0]
    assert run.run_status is RunStatus.SUCCESS


def test_a_project_key_that_is_a_jql_word_is_quoted(jira: FakeJira, jira_project: Make) -> None:
    """Keys such as BY, IN or OR are JQL words: unquoted, `project = BY` is a syntax error."""
    for key in ("BY", "OR"):
        jira.add_project(key)
        jira.seed(key, 2, start=DAY_AGO)
    hm = jira_project(projects=["BY", "OR"])
    hm.ok()
    assert hm.target() == expected(jira, "BY", "OR")
