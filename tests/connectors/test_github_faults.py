"""The GitHub connector under GitHub's limits and errors (api-contracts §1.5, §1.6), on the fake's
clock (waits pass instantly), into SQLite.

* a secondary rate limit with ``retry-after`` waits that long once; without it, at least 60 s and
  then longer, never hammering;
* a budget GitHub says is spent is waited for before the next query (never a refused query);
* RATE_LIMITED on page 3 (both spellings) waits until the reset and asks again for the same
  cursor; a reset further off than the client waits fails the run (retryable), and the next run
  resumes from the checkpoint's cursor: no duplicates, no gaps;
* a 502/504, a dropped connection or a body cut short in the middle of the scan is retried at
  the same cursor;
* a partial answer (RESOURCE_LIMITS_EXCEEDED) makes the connector ask for smaller pages, nested
  ones included;
* a cursor GitHub refuses makes the connector start that list over (the scan stops at the mark;
  the upsert makes re-reading harmless);
* a revoked or invalid token is permanent: one request, a one-line error naming the connection's
  token; an unknown repository is permanent and named.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

import highmark
from highmark.models import RunRecord, RunStatus
from tests.connectors.github_support import (
    JOB,
    assert_target_equals_model,
    child_calls,
    connection_of,
    github_job,
    model_rows,
    page_calls,
    record_count,
    target_rows_of,
    write_github_project,
)
from tests.fakes.github import FakeGitHub, GraphQLCall

REPOS = ["acme/api"]


def _setup(
    github: FakeGitHub, tmp_path: Path, repos: list[str] | None = None, **source: Any
) -> tuple[highmark.Project, str]:
    """acme/api: 9 small PRs, two hours old; pages of 2."""
    now = github.clock.now()
    github.clock.set(now - timedelta(hours=2))
    github.seed("acme/api", 9, commits=2, reviews=1, comments=1)
    github.clock.set(now)
    url = f"sqlite:///{tmp_path / 'dw.db'}"
    source.setdefault("page_size", 2)
    job = github_job(repos or REPOS, **source)
    return highmark.Project.load(write_github_project(tmp_path, github, url, job)), url


def _ok(run: RunRecord) -> RunRecord:
    assert run.run_status is RunStatus.SUCCESS, run.error_message
    return run


def _gaps(calls: list[GraphQLCall]) -> list[float]:
    """Fake-clock seconds between consecutive requests (the client's waits)."""
    return [(b.request.at - a.request.at).total_seconds() for a, b in itertools.pairwise(calls)]


def _assert_loaded_once(
    run: RunRecord | list[RunRecord], github: FakeGitHub, engine: Engine
) -> None:
    """The target equals the model and every record was written once (no duplicates, no gaps)."""
    runs = run if isinstance(run, list) else [run]
    assert_target_equals_model(engine, github, REPOS)
    assert sum(r.rows_written for r in runs) == record_count(model_rows(github, REPOS))
    assert sum(r.rows_updated for r in runs) == 0


# ------------------------------------------------------------------ secondary rate limits


@pytest.mark.parametrize("status", [403, 429, 200])
def test_secondary_limit_with_retry_after_waits_that_long_once(
    status: int, github: FakeGitHub, tmp_path: Path, engine_for: Callable[[str], Engine]
) -> None:
    project, url = _setup(github, tmp_path)
    github.before(3, lambda: github.secondary_limit(status=status, retry_after=90))

    run = _ok(project.run(JOB))

    calls = page_calls(github)
    assert [c.status for c in calls[:4]] == [200, 200, status, 200]
    assert _gaps(calls)[2] == 90  # the wait asked for, and one try after it
    assert calls[3].variables == calls[2].variables
    _assert_loaded_once(run, github, engine_for(url))


def test_secondary_limit_without_retry_after_waits_60s_then_longer(
    github: FakeGitHub, tmp_path: Path, engine_for: Callable[[str], Engine]
) -> None:
    project, url = _setup(github, tmp_path)
    github.secondary_limit(times=4, status=403)

    run = _ok(project.run(JOB))

    calls = page_calls(github)
    assert [c.status for c in calls[:5]] == [403, 403, 403, 403, 200]
    waits = _gaps(calls)[:4]
    assert waits[0] >= 60
    assert waits == sorted(waits) and waits[3] > waits[0]  # backing off, not hammering
    assert len({str(c.variables) for c in calls[:5]}) == 1
    _assert_loaded_once(run, github, engine_for(url))


def test_a_plain_429_with_retry_after_is_waited_out(
    github: FakeGitHub, tmp_path: Path, engine_for: Callable[[str], Engine]
) -> None:
    """A 429 from something in front of GitHub (a proxy): no GitHub headers, a Retry-After."""
    project, url = _setup(github, tmp_path)
    github.fail(status=429, on_request=2, headers={"Retry-After": "30"}, body="Too Many Requests")

    run = _ok(project.run(JOB))

    assert [r.status for r in github.requests[:3]] == [200, 429, 200]
    assert (github.requests[2].at - github.requests[1].at).total_seconds() == 30
    assert github.requests[1].json == github.requests[2].json
    _assert_loaded_once(run, github, engine_for(url))


# ------------------------------------------------------------------ the primary limit


@pytest.mark.parametrize("kind", ["RATE_LIMITED", "RATE_LIMIT"])
@pytest.mark.parametrize("how", ["forced", "spent"])
def test_rate_limited_on_page_3_waits_for_the_reset_and_asks_for_the_same_cursor(
    kind: str, how: str, github: FakeGitHub, tmp_path: Path, engine_for: Callable[[str], Engine]
) -> None:
    project, url = _setup(github, tmp_path)
    github.rate_limit_error_type = kind
    github.rate_limit_window = 600.0  # a reset within what the client waits (15 min)
    arm = github.rate_limit_next if how == "forced" else github.exhaust_rate_limit
    github.before(3, arm)

    run = _ok(project.run(JOB))

    calls = page_calls(github)
    assert calls[2].errors[0]["type"] == kind
    # The window began with the first request; the retry waited for its end.
    reset = calls[0].request.at.replace(microsecond=0) + timedelta(seconds=600)
    assert calls[2].request.at < reset <= calls[3].request.at
    assert calls[3].status == 200 and [c for c in calls if c.errors] == [calls[2]]
    assert calls[3].variables["after"] == calls[2].variables["after"] is not None
    _assert_loaded_once(run, github, engine_for(url))


@pytest.mark.parametrize("window", [600, 3600])
def test_a_spent_budget_is_waited_for_before_the_next_query_not_after_a_refusal(
    window: int, github: FakeGitHub, tmp_path: Path, engine_for: Callable[[str], Engine]
) -> None:
    project, url = _setup(github, tmp_path)
    github.rate_limit_window = float(window)
    github.tokens[github.token].limit = 3  # three pages' worth of points an hour... or less

    run = project.run(JOB)

    calls = page_calls(github)
    assert all(not c.errors for c in calls)  # never refused: the budget was watched
    if window == 3600:  # the reset is further off than the client waits: a later run goes on
        assert run.run_status is RunStatus.FAILED and len(calls) == 3
        assert run.error_details is not None and run.error_details["retryable"] is True
        assert "rate limit of the token of connection 'github' is spent" in (
            run.error_message or ""
        )
        github.clock.advance(window)
        runs = [run, _ok(project.run(JOB))]
    else:
        runs = [_ok(run)]
        assert len(calls) == 5
        reset = calls[0].request.at.replace(microsecond=0) + timedelta(seconds=window)
        assert calls[3].request.at >= reset  # the fourth page waited for the new window
    assert all(not c.errors for c in page_calls(github))
    _assert_loaded_once(runs, github, engine_for(url))


def test_a_reset_further_off_than_the_client_waits_fails_the_run_and_the_next_resumes(
    github: FakeGitHub, tmp_path: Path, engine_for: Callable[[str], Engine]
) -> None:
    project, url = _setup(github, tmp_path)
    github.before(3, github.exhaust_rate_limit)  # the hourly budget, spent on page 3

    failed = project.run(JOB)

    assert failed.run_status is RunStatus.FAILED
    assert failed.error_details is not None and failed.error_details["retryable"] is True
    assert "rate limit" in (failed.error_message or "")
    assert "\n" not in (failed.error_message or "")
    assert len(page_calls(github)) == 3  # no hammering while limited
    checkpoint = project.checkpoint(JOB)
    assert checkpoint is not None and checkpoint["current_repository"] == "acme/api"
    cursor = checkpoint["last_pr_cursor"]
    assert cursor == page_calls(github)[2].variables["after"]
    github.clock.advance(3600)

    resumed = _ok(project.run(JOB))

    again = page_calls(github)[3:]
    assert again[0].variables["after"] == cursor  # from the checkpoint, not from the top
    assert "after" in again[0].variables and all(c.status == 200 for c in again)
    _assert_loaded_once([failed, resumed], github, engine_for(url))
    assert project.checkpoint(JOB) is None


# ------------------------------------------------------------------ timeouts and partial answers


@pytest.mark.parametrize("fault", ["502", "504", "reset", "truncated"])
def test_a_timeout_or_broken_answer_mid_scan_is_retried_at_the_same_cursor(
    fault: str, github: FakeGitHub, tmp_path: Path, engine_for: Callable[[str], Engine]
) -> None:
    project, url = _setup(github, tmp_path)
    if fault.isdigit():
        github.timeout(int(fault), on_request=3)
    else:
        github.fail(fault, on_request=3)  # the connection dropped; a body cut short

    run = _ok(project.run(JOB))

    assert [r.status for r in github.requests[:4]] == [200, 200, github.requests[2].status, 200]
    assert github.requests[2].json == github.requests[3].json  # the same cursor again
    assert len(page_calls(github)) == 5  # 9 PRs in pages of 2, each answered once
    _assert_loaded_once(run, github, engine_for(url))


def test_a_partial_answer_makes_the_connector_ask_for_smaller_pages(
    github: FakeGitHub, tmp_path: Path, engine_for: Callable[[str], Engine]
) -> None:
    project, url = _setup(github, tmp_path, page_size=4)
    github.before(2, github.partial_next)

    run = _ok(project.run(JOB))

    calls = page_calls(github)
    assert calls[1].errors[0]["type"] == "RESOURCE_LIMITS_EXCEEDED"
    assert calls[2].variables["after"] == calls[1].variables["after"]
    assert [c.variables["pageSize"] for c in calls[:3]] == [4, 4, 2]
    _assert_loaded_once(run, github, engine_for(url))


def test_a_partial_answer_to_a_nested_page_asks_for_smaller_nested_pages(
    github: FakeGitHub, tmp_path: Path, engine_for: Callable[[str], Engine]
) -> None:
    project, url = _setup(github, tmp_path, nested_page_size=10)
    github.add_commits("acme/api", 9, 45, at=github.clock.now() - timedelta(minutes=30))
    github.before(2, github.partial_next)  # the first nested page of #9's commits

    run = _ok(project.run(JOB))

    nested = child_calls(github)
    assert nested[0].errors[0]["type"] == "RESOURCE_LIMITS_EXCEEDED"
    assert nested[1].variables["after"] == nested[0].variables["after"]
    assert nested[1].variables["nested"] < 10
    assert {connection_of(c) for c in nested} == {"commits"}
    _assert_loaded_once(run, github, engine_for(url))


# ------------------------------------------------------------------ refused cursors


def test_a_cursor_github_refuses_starts_the_list_over(
    github: FakeGitHub, tmp_path: Path, engine_for: Callable[[str], Engine]
) -> None:
    project, url = _setup(github, tmp_path)
    # A checkpoint whose cursor GitHub does not take (hand-edited, or an older cursor format).
    project.set_checkpoint(JOB, "current_repository", "acme/api")
    project.set_checkpoint(JOB, "last_pr_cursor", "Y3Vyc29yOnYyOpK5MjAyNi0wMS0xNVQxMjowMDowMFo")

    run = _ok(project.run(JOB))

    calls = page_calls(github)
    assert calls[0].errors and calls[0].errors[0]["type"] == "INVALID_CURSOR_ARGUMENTS"
    assert calls[1].variables["after"] is None  # the list again, from the top
    assert any("cursor" in note for note in run.notes or [])
    assert_target_equals_model(engine_for(url), github, REPOS)


# ------------------------------------------------------------------ permanent errors


@pytest.mark.parametrize("how", ["revoked", "unknown"])
def test_a_revoked_or_invalid_token_fails_at_once_naming_the_token(
    how: str, github: FakeGitHub, tmp_path: Path
) -> None:
    project, _ = _setup(github, tmp_path)
    if how == "revoked":
        github.revoke_token()
    else:
        github.tokens.clear()

    run = project.run(JOB)

    assert run.run_status is RunStatus.FAILED
    assert len(github.requests) == 1  # permanent: no retry
    message = run.error_message or ""
    assert "\n" not in message
    assert "401" in message and "the token of connection 'github'" in message
    assert run.error_details is not None and run.error_details["retryable"] is False
    assert github.token not in message


def test_a_token_revoked_mid_sync_fails_without_retrying(
    github: FakeGitHub, tmp_path: Path
) -> None:
    project, _ = _setup(github, tmp_path)
    github.before(3, github.revoke_token)

    run = project.run(JOB)

    assert run.run_status is RunStatus.FAILED
    assert [r.status for r in github.requests] == [200, 200, 401]
    assert run.error_details is not None and run.error_details["error_class"] == "permanent"


def test_an_unknown_repository_is_permanent_and_named(github: FakeGitHub, tmp_path: Path) -> None:
    project, _ = _setup(github, tmp_path, repos=["acme/api", "acme/gone"])

    run = project.run(JOB)

    assert run.run_status is RunStatus.FAILED
    message = run.error_message or ""
    assert "acme/gone" in message and "not found" in message and "\n" not in message
    assert len(page_calls(github, "acme/gone")) == 1
    assert run.error_details is not None and run.error_details["retryable"] is False
    # acme/api was loaded and stays loaded; its mark waits for a successful run.
    assert run.rows_written > 0 and project.watermarks(JOB) == []


def test_a_refused_nested_cursor_reads_that_connection_again(
    github: FakeGitHub, tmp_path: Path, engine_for: Callable[[str], Engine]
) -> None:
    project, url = _setup(github, tmp_path, nested_page_size=10)
    github.add_commits("acme/api", 5, 25, at=github.clock.now() - timedelta(minutes=30))
    pr = github.pr("acme/api", 5).id
    pending = {"node_id": pr, "sync_run_id": 7, "last_commit_cursor": "bm90IGEgY3Vyc29y"}
    project.set_checkpoint(JOB, "current_repository", "acme/api")
    project.set_checkpoint(JOB, "pending_prs", [{**pending, "commits_done": False}])

    run = _ok(project.run(JOB))

    nested = child_calls(github)
    assert nested[0].variables["after"] == "bm90IGEgY3Vyc29y" and nested[0].errors
    assert nested[1].variables == {**nested[0].variables, "after": None}
    assert any("cursor" in note for note in run.notes or [])
    assert_target_equals_model(engine_for(url), github, REPOS)


def test_a_pr_deleted_while_its_children_drain_ends_the_drain_and_leaves_none_of_it(
    github: FakeGitHub, tmp_path: Path, engine_for: Callable[[str], Engine]
) -> None:
    project, url = _setup(github, tmp_path, nested_page_size=10)
    github.add_commits("acme/api", 9, 25, at=github.clock.now() - timedelta(minutes=30))
    gone = github.pr("acme/api", 9).id
    github.before(3, lambda: github.delete_pr("acme/api", 9))  # before #9's third commit page

    run = _ok(project.run(JOB))

    assert [connection_of(c) for c in child_calls(github)] == ["commits", "commits"]
    assert child_calls(github)[1].errors[0]["type"] == "NOT_FOUND"
    engine = engine_for(url)
    # Neither the pull request nor the commits read before it went are kept.
    for table in ("pull_requests", "commits", "reviews", "comments"):
        rows = target_rows_of(engine, table)
        assert gone not in {r.get("pull_request_id", r["id"]) for r in rows}, table
    assert_target_equals_model(engine, github, REPOS)
    assert run.rows_deleted > 0
    assert any(f"pull request {gone}" in n and "deleted" in n for n in run.notes or [])
