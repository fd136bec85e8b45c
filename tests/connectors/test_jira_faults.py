"""The Jira connector under harm (shared/api-contracts.md §2.5, §2.6 scenarios 4 and 5): rate
limits and server errors mid-search, page tokens that expired or were never valid, a revoked
token, and `highmark run` killed with SIGKILL between pages, then resumed.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from highmark.models import RunStatus
from tests.connectors.jira_support import (  # noqa: F401  (fixtures)
    DAY_AGO,
    ENV,
    JOB,
    JiraProject,
    expected,
    floor_minute,
    jira_fixture,
    jira_project_fixture,
    jira_sleeps_fixture,
    searches_of,
    served,
)
from tests.fakes.base import LoggedRequest, Response
from tests.fakes.jira import SEARCH, FakeJira
from tests.fakes.jira.paging import EXPIRED_TOKEN, INVALID_TOKEN
from tests.faults.harness import highmark_env, kill_env
from tests.faults.harness import run as highmark_run

Make = Callable[..., JiraProject]


def _search_requests(jira: FakeJira, since: int = 0) -> list[tuple[int | None, str | None]]:
    """(status, nextPageToken sent) of every search request, faulted ones included."""
    found = []
    for request in jira.requests[since:]:
        if request.path == SEARCH:
            found.append((request.status, (request.json or {}).get("nextPageToken")))
    return found


# ---------------------------------------------------------------------- throttled and failing


def test_429_then_503_wait_on_the_clock_and_resume_the_same_page(
    jira: FakeJira, jira_project: Make, jira_sleeps: list[float]
) -> None:
    """Scenario 4: 429 with Retry-After: 7 on page 2, then 503 with Retry-After: 5 on page 3.
    The run waits what Jira asked (on the fake clock), sends the same token again, and reads
    every issue once."""
    jira.seed("PROJ", 6, start=DAY_AGO)
    hm = jira_project(projects=["PROJ"], max_results=2)
    jira.throttle(on_request=2, path=SEARCH, retry_after=7)
    jira.unavailable(on_request=4, path=SEARCH, retry_after=5)

    run = hm.ok()

    requests = _search_requests(jira)
    assert [status for status, _ in requests] == [200, 429, 200, 503, 200]
    tokens = [token for _, token in requests]
    assert tokens[0] is None and tokens[1] == tokens[2] and tokens[3] == tokens[4]
    assert jira_sleeps == [7.0, 5.0]
    times = [r.at for r in jira.requests if r.path == SEARCH]
    assert times[2] - times[1] == timedelta(seconds=7)
    assert times[4] - times[3] == timedelta(seconds=5)
    assert sorted(served(jira.searches)) == sorted(r["key"] for r in jira.rows())  # each once
    assert (run.rows_read, run.rows_written) == (6, 6)
    assert hm.target() == expected(jira)


def test_a_burst_limit_paces_a_long_search(
    jira: FakeJira, jira_project: Make, jira_sleeps: list[float]
) -> None:
    """Jira's real limiter for API tokens: a token bucket per endpoint. The run spends its
    burst, then waits each Retry-After out and finishes, every issue read once."""
    jira.seed("PROJ", 20, start=DAY_AGO)
    jira.burst_limit(capacity=3, per_second=0.5)
    hm = jira_project(projects=["PROJ"], max_results=2)

    run = hm.ok()

    statuses = [status for status, _ in _search_requests(jira)]
    assert statuses.count(200) == 10 and statuses.count(429) == len(jira_sleeps) > 0
    assert all(wait == 2.0 for wait in jira_sleeps)  # Retry-After: one token at 0.5/s
    assert run.rows_read == 20 and sorted(served(jira.searches)) == sorted(
        r["key"] for r in jira.rows()
    )
    assert hm.target() == expected(jira)


@pytest.mark.parametrize("fault", ["500", "reset", "truncated", "invalid"])
def test_a_broken_answer_mid_search_is_retried(
    jira: FakeJira, jira_project: Make, jira_sleeps: list[float], fault: str
) -> None:
    """A 500 without Retry-After, a dropped connection, a body cut short, HTML instead of JSON:
    page 2 is asked for again with its token after a backoff; nothing is read twice."""
    jira.seed("PROJ", 6, start=DAY_AGO)
    hm = jira_project(projects=["PROJ"], max_results=2)
    if fault == "500":
        jira.fail(status=500, on_request=2, path=SEARCH)
    else:
        jira.fail(fault, on_request=2, path=SEARCH)

    run = hm.ok()

    tokens = [token for _, token in _search_requests(jira)]
    assert len(tokens) == 4 and tokens[1] == tokens[2] is not None
    assert len(jira_sleeps) == 1 and 0 < jira_sleeps[0] <= 1.0  # the first backoff step
    assert run.rows_read == 6
    assert hm.target() == expected(jira)


def test_errors_that_outlast_the_retries_fail_the_run_retryable_with_the_checkpoint_kept(
    jira: FakeJira, jira_project: Make, jira_sleeps: list[float]
) -> None:
    jira.seed("PROJ", 6, start=DAY_AGO)
    hm = jira_project(projects=["PROJ"], max_results=2)
    jira.fail(status=502, on_request=2, path=SEARCH, times=100)

    run = hm.run()

    assert run.run_status is RunStatus.FAILED
    assert run.error_details is not None and run.error_details["retryable"] is True
    assert run.error_message is not None and "\n" not in run.error_message
    assert "failed 6 times" in run.error_message and "502" in run.error_message
    assert len(jira_sleeps) == 5
    checkpoint = hm.checkpoint()
    assert checkpoint is not None
    assert checkpoint["current_project"] == "PROJ"
    assert checkpoint["next_page_token"] == jira.searches[0].next_token
    assert run.rows_written == 2  # page 1 is loaded and counted
    assert hm.marks() == {}  # a failed run moves no mark


# ---------------------------------------------------------------------- page tokens


def _interrupted_on_page_2(jira: FakeJira, hm: JiraProject) -> str:
    """A first sync, changes, then a run that fails on page 2 of PROJ; its saved token."""
    jira.seed("PROJ", 3, start=DAY_AGO)
    jira.seed("TEST", 2, start=DAY_AGO)
    hm.ok()
    jira.clock.advance(600)
    for n in range(1, 4):
        jira.update_issue(f"PROJ-{n}", summary=f"change {n}")
    jira.add_issue("PROJ", summary="new")
    jira.clock.advance(600)
    jira.fail(status=500, on_request=len(_search_requests(jira)) + 2, path=SEARCH, times=6)
    failed = hm.run()
    assert failed.run_status is RunStatus.FAILED
    checkpoint = hm.checkpoint()
    assert checkpoint is not None and checkpoint["current_project"] == "PROJ"
    token = checkpoint["next_page_token"]
    assert isinstance(token, str)
    return token


def test_an_expired_page_token_restarts_the_projects_search_from_its_mark(
    jira: FakeJira, jira_project: Make, jira_sleeps: list[float]
) -> None:
    """Scenario 5: resumed more than 7 days later, the saved token is refused (400). The
    project's search starts over from its committed mark — not from scratch, and losing
    nothing, an issue changed meanwhile included."""
    hm = jira_project(max_results=2)
    token = _interrupted_on_page_2(jira, hm)
    mark = hm.marks()["PROJ"]
    assert mark is not None
    jira.clock.advance(timedelta(days=8).total_seconds())
    jira.update_issue("PROJ-4", summary="changed while nobody ran")
    before = len(jira.searches)

    run = hm.ok()

    assert hm.target() == expected(jira)
    refused, *again = searches_of(jira, "PROJ", before)
    assert (refused.token, refused.status, refused.error) == (token, 400, EXPIRED_TOKEN)
    assert again[0].token is None and again[0].jql == refused.jql  # from the mark again
    assert again[0].criteria is not None
    assert again[0].criteria.date("updated", ">=") == floor_minute(mark)
    assert run.notes is not None
    assert any("PROJ: the page token was refused" in note for note in run.notes)


def test_a_garbled_page_token_set_by_hand_restarts_the_search(
    jira: FakeJira, jira_project: Make, jira_sleeps: list[float]
) -> None:
    hm = jira_project(max_results=2)
    _interrupted_on_page_2(jira, hm)
    edited = hm.cli("checkpoint", "set", JOB, "next_page_token", '"bm90IGEgdG9rZW4="')
    assert edited.exit_code == 0, edited.output
    before = len(jira.searches)

    run = hm.ok()

    refused = searches_of(jira, "PROJ", before)[0]
    assert (refused.token, refused.error) == ("bm90IGEgdG9rZW4=", INVALID_TOKEN)
    assert hm.target() == expected(jira)
    assert run.notes is not None and any("page token was refused" in n for n in run.notes)


def test_highmark_cancel_stops_between_pages_and_the_next_run_resumes(
    jira: FakeJira, jira_project: Make
) -> None:
    """`highmark cancel` while page 2 is being fetched (the connector fetches it while page 1 is
    written): the run stops at the next page boundary with its checkpoint saved and ends
    `cancelled`; the next run asks for the page after the last committed one, nothing before."""
    jira.seed("PROJ", 6, start=DAY_AGO)
    hm = jira_project(projects=["PROJ"], max_results=2)
    jira.before(2, lambda: hm.load().cancel(JOB), path=SEARCH)

    run = hm.run()

    assert run.run_status is RunStatus.CANCELLED
    assert run.rows_read in (2, 4)
    assert run.rows_written == run.rows_read
    committed = run.rows_read // 2  # pages written
    checkpoint = hm.checkpoint()
    assert checkpoint is not None
    assert checkpoint["next_page_token"] == jira.searches[committed - 1].next_token
    assert hm.marks() == {}
    before = len(jira.searches)
    resumed = hm.ok()
    assert jira.searches[before].token == jira.searches[committed - 1].next_token
    assert resumed.rows_read == 6 - run.rows_read
    assert hm.target() == expected(jira)


def test_a_search_changed_since_the_checkpoint_is_read_from_the_mark(
    jira: FakeJira, jira_project: Make, jira_sleeps: list[float]
) -> None:
    """The job's JQL was edited between the interrupted run and the next: the saved token
    belongs to the old search, so the new one starts from the mark (and says so)."""
    hm = jira_project(max_results=2)
    _interrupted_on_page_2(jira, hm)
    hm.write(jql="issuetype != Epic")
    before = len(jira.searches)

    run = hm.ok()

    assert searches_of(jira, "PROJ", before)[0].token is None
    assert run.notes is not None
    assert any("PROJ: the search changed since the checkpoint" in n for n in run.notes)
    assert hm.target() == expected(jira)


def test_a_full_refresh_discards_an_incremental_checkpoint_and_says_so(
    jira: FakeJira, jira_project: Make, jira_sleeps: list[float]
) -> None:
    hm = jira_project(max_results=2)
    _interrupted_on_page_2(jira, hm)
    before = len(jira.searches)

    run = hm.ok(full_refresh=True)

    assert jira.searches[before].token is None
    assert run.notes is not None and any("was discarded" in n for n in run.notes)
    assert run.rows_read == len(jira.rows())
    assert hm.target() == expected(jira)


# ---------------------------------------------------------------------- credentials


def test_a_revoked_token_fails_at_once_permanently_in_one_line(
    jira: FakeJira, jira_project: Make, jira_sleeps: list[float]
) -> None:
    jira.seed("PROJ", 2, start=DAY_AGO)
    hm = jira_project(projects=["PROJ"])
    hm.ok()
    jira.revoke_token()
    before = len(jira.requests)

    run = hm.run()

    assert run.run_status is RunStatus.FAILED
    assert [(r.path, r.status) for r in jira.requests[before:]] == [("/rest/api/3/myself", 401)]
    assert jira_sleeps == []  # no retry, no wait
    assert run.error_details is not None
    assert (run.error_details["retryable"], run.error_details["error_class"]) == (
        False,
        "permanent",
    )
    assert run.error_details["status"] == 401
    assert run.error_message == (
        "jira: 401 Client must be authenticated to access this resource.: the email and API "
        "token of connection 'jira' was refused (expired, revoked or mistyped)"
    )


# ---------------------------------------------------------------------- kill -9


@pytest.mark.parametrize(
    ("nth", "processed", "current"),
    [
        (2, [], "PROJ"),  # killed after PROJ's page 2 was committed
        (5, ["PROJ"], "TEST"),  # after PROJ's three pages and TEST's page 2
    ],
)
def test_kill_9_between_pages_then_resume_fetches_only_the_page_in_flight(
    jira: FakeJira, jira_project: Make, nth: int, processed: list[str], current: str
) -> None:
    """`highmark run` (a child process) dies by SIGKILL right after a page was committed in the
    target, before its checkpoint. The next run resumes with the saved nextPageToken: pages
    committed before that one are not asked for again, only the one in flight."""
    jira.seed("PROJ", 6, start=DAY_AGO)
    jira.seed("TEST", 6, start=DAY_AGO + timedelta(hours=1))
    hm = jira_project(max_results=2)

    killed = highmark_run(hm.path, "run", JOB, env={**kill_env("after_target_commit", nth), **ENV})

    assert killed.returncode == -signal.SIGKILL, killed.stderr
    checkpoint = hm.checkpoint()
    assert checkpoint is not None
    assert (checkpoint["projects_processed"], checkpoint["current_project"]) == (
        processed,
        current,
    )
    pages = searches_of(jira, current)
    # The page committed in the target, not in the checkpoint: the last asked for, or the one
    # before it when the next was already being fetched (pages are fetched while one is written).
    in_flight = next(p for p in pages if p.token == checkpoint["next_page_token"])
    assert in_flight.token is not None
    assert pages.index(in_flight) >= len(pages) - 2
    pages = pages[: pages.index(in_flight) + 1]
    before = len(jira.searches)

    resumed = highmark_run(hm.path, "run", JOB, env=highmark_env(**ENV))

    assert resumed.returncode == 0, resumed.stderr
    again = jira.searches[before:]
    assert again[0].token == in_flight.token  # the page in flight, asked for again
    assert again[0].keys == in_flight.keys
    for project in processed:
        assert searches_of(jira, project, before) == []
    assert set(served(again)).isdisjoint(served(pages[:-1]))  # no committed page read again
    assert hm.target() == expected(jira)
    runs = _runs(hm)
    assert [r["run_status"] for r in runs] == ["failed", "success"]
    assert "abandoned" in runs[0]["error_message"]
    assert runs[1]["rows_read"] == 12 - 2 * (nth - 1)
    assert sum(r["rows_written"] for r in runs) <= 12
    assert hm.checkpoint() is None
    assert hm.marks() == {p: max(r["updated"] for r in jira.rows(p)) for p in ("PROJ", "TEST")}


def _runs(hm: JiraProject) -> list[dict[str, Any]]:
    result = highmark_run(hm.path, "runs", JOB, "--json", env=highmark_env(**ENV))
    assert result.returncode == 0, result.stderr
    return list(reversed(json.loads(result.stdout)))


def test_a_user_zone_this_machine_does_not_know_is_refused_not_guessed(
    jira: FakeJira, jira_project: Make
) -> None:
    """Every JQL literal is written in the user's zone: a zone the tz database lacks would
    misplace each of them by hours, so the run stops and says why."""
    jira.seed("PROJ", 2, start=DAY_AGO)
    hm = jira_project(projects=["PROJ"])
    jira.user.time_zone = "Mars/Olympus_Mons"

    run = hm.run()

    assert run.run_status is RunStatus.FAILED
    assert run.error_details is not None and run.error_details["retryable"] is False
    assert run.error_message == (
        "Jira reads etl-bot@acme.example's JQL dates in time zone 'Mars/Olympus_Mons', which "
        "this machine does not know (install or update tzdata)"
    )
    assert jira.searches == []
    check = hm.cli("check", JOB, "--json")
    assert check.exit_code == 1
    assert [(f["check"], f["level"]) for f in json.loads(check.stdout)][-1] == ("time zone", "fail")


def test_a_page_token_that_comes_back_stops_the_search_instead_of_looping(
    jira: FakeJira, jira_project: Make
) -> None:
    """A server that answers a page with the token it was sent would page forever."""
    jira.seed("PROJ", 6, start=DAY_AGO)
    hm = jira_project(projects=["PROJ"], max_results=2)

    def same_token(request: LoggedRequest) -> Response:
        sent = (request.json or {}).get("nextPageToken")
        return Response.json({"issues": [], "nextPageToken": sent, "isLast": False})

    jira.fail(status=200, on_request=2, path=SEARCH, times=100, respond=same_token)

    run = hm.run()

    assert run.run_status is RunStatus.FAILED
    assert run.error_message is not None and "came back to a page" in run.error_message
    assert run.error_details is not None and run.error_details["retryable"] is True
    assert jira.count(SEARCH) == 2  # page 1, then page 2 answered with its own token: stop
