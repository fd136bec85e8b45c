"""kill -9 of a GitHub sync, then a new run: it resumes from the checkpoint.

`highmark run` runs in a child process that SIGKILLs itself at the nth ``after_target_commit``
(a page of pull requests, or a nested page of one pull request's children, committed in the
target and not yet checkpointed); the fake GitHub runs in this process and logs every request.
The next run must fetch again only the page that was in flight, resume a pull request
interrupted half-way through its commits at ``current_pr_node_id`` with its nested cursor, and
leave the target equal to the fake's model with one mark per repository.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

import highmark
from highmark.models import RunStatus
from tests.connectors.github_support import (
    JOB,
    assert_target_equals_model,
    child_calls,
    github_job,
    model_rows,
    page_calls,
    record_count,
    seed_two_repositories,
    write_github_project,
)
from tests.fakes.github import FakeGitHub, GraphQLCall
from tests.faults.harness import kill_env, run

REPOS = ["acme/api", "acme/web"]


def _key(call: GraphQLCall) -> str:
    """What a request asked for: its query's name and its variables."""
    name = (call.query or "").split("(", 1)[0]
    return f"{name} {json.dumps(call.variables, sort_keys=True)}"


def _records_in(github: FakeGitHub, in_flight: str) -> int:
    """The records of the page in flight: #3's second 100 commits, or the page [#3 #2] with
    their first nested pages."""
    if in_flight == "PullRequestChildren":
        return 100
    return sum(
        1
        + min(len(github.commits("acme/api", n)), 100)
        + len(github.reviews("acme/api", n))
        + len(github.comments("acme/api", n))
        for n in (3, 2)
    )


# acme/api, newest first in pages of two: [#7 #6] [#5 #4] (#4's 130 comments: one more nested
# page) [#3 #2] (#3's 250 commits: two more) [#1]. after_target_commit is reached after each.
@pytest.mark.parametrize(
    ("nth", "in_flight"),
    [
        (5, "PullRequestChildren"),  # #3's second commit page committed, its checkpoint not
        (4, "PullRequestPage"),  # the page [#3 #2] committed, its checkpoint not
    ],
)
def test_kill_mid_sync_then_resume(
    nth: int,
    in_flight: str,
    github: FakeGitHub,
    tmp_path: Path,
    engine_for: Callable[[str], Engine],
) -> None:
    now = github.clock.now()
    github.clock.set(now - timedelta(hours=3))
    seed_two_repositories(github)
    github.clock.set(now)
    url = f"sqlite:///{tmp_path / 'dw.db'}"
    path = write_github_project(tmp_path, github, url, github_job(REPOS, page_size=2))

    killed = run(path, "run", JOB, env=kill_env("after_target_commit", nth))

    assert killed.returncode == -signal.SIGKILL, killed.stderr
    before = list(github.calls)
    project = highmark.Project.load(path)
    checkpoint: dict[str, Any] = project.checkpoint(JOB) or {}
    assert checkpoint["current_repository"] == "acme/api"
    big = github.pr("acme/api", 3).id
    last = before[-1]
    assert _key(last).startswith(f"query {in_flight}")
    if in_flight == "PullRequestChildren":
        # Interrupted half-way through #3's commits: the checkpoint names it and the cursor of
        # the page in flight (the first 100 commits are checkpointed).
        assert checkpoint["current_pr_node_id"] == big
        assert checkpoint["last_commit_cursor"] == last.variables["after"] is not None
    else:
        assert checkpoint["last_pr_cursor"] == last.variables["after"] is not None
        assert "current_pr_node_id" not in checkpoint

    resumed = run(path, "run", JOB)

    assert resumed.returncode == 0, resumed.stderr
    after = github.calls[len(before) :]
    # Only the request in flight is asked again; nothing committed and checkpointed is.
    assert _key(after[0]) == _key(last)
    assert {_key(c) for c in after[1:]}.isdisjoint({_key(c) for c in before})
    assert all(c.variables["after"] is not None for c in page_calls(github, "acme/api")[1:])
    if in_flight == "PullRequestChildren":
        assert after[1].variables["id"] == big  # its third commit page, then the list goes on
        # Two nested pages after the first, one of them asked twice (the one in flight).
        assert [c.variables["id"] for c in child_calls(github)].count(big) == 3
    runs = project.runs(JOB)
    assert [r.run_status for r in reversed(runs)] == [RunStatus.FAILED, RunStatus.SUCCESS]
    assert "abandoned" in (runs[-1].error_message or "")
    engine = engine_for(url)
    assert_target_equals_model(engine, github, REPOS)
    # Nothing was counted twice: the page in flight was written by the killed run (its counts
    # died with it) and is found equal by the next.
    written = sum(r.rows_written for r in runs)
    assert written == record_count(model_rows(github, REPOS)) - _records_in(github, in_flight)
    assert sum(r.rows_updated for r in runs) == 0
    marks = {w.source_table: w.last_value_timestamp for w in project.watermarks(JOB)}
    assert marks == {r: max(p.updated_at for p in github.prs(r)) for r in REPOS}
    assert project.checkpoint(JOB) is None


def test_killed_again_and_again_each_run_goes_on_from_the_last(
    github: FakeGitHub, tmp_path: Path, engine_for: Callable[[str], Engine]
) -> None:
    now = github.clock.now()
    github.clock.set(now - timedelta(hours=3))
    seed_two_repositories(github)
    github.clock.set(now)
    url = f"sqlite:///{tmp_path / 'dw.db'}"
    path = write_github_project(tmp_path, github, url, github_job(REPOS, page_size=2))
    project = highmark.Project.load(path)
    asked: list[str] = []
    progress: list[int] = []

    # Killed in #4's comments, then in #3's commits (the resumed run's second page), then in
    # acme/web: each time from where the last left off.
    for nth in (3, 3, 4):
        killed = run(path, "run", JOB, env=kill_env("after_target_commit", nth))
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        checkpoint = project.checkpoint(JOB) or {}
        progress.append(checkpoint["total_prs_processed"])
        asked += [_key(c) for c in github.calls[len(asked) :]]
    assert run(path, "run", JOB).returncode == 0
    asked += [_key(c) for c in github.calls[len(asked) :]]

    assert progress == sorted(progress) and progress[0] < progress[-1]
    assert checkpoint["current_repository"] == "acme/web"
    # Each request was made once, but for the one in flight at each kill.
    assert len(asked) - len(set(asked)) == 3
    runs = project.runs(JOB)
    assert [r.run_status for r in reversed(runs)] == [RunStatus.FAILED] * 3 + [RunStatus.SUCCESS]
    assert_target_equals_model(engine_for(url), github, REPOS)
    assert sum(r.rows_updated for r in runs) == 0
    assert sum(r.rows_written for r in runs) <= record_count(model_rows(github, REPOS))
    marks = {w.source_table: w.last_value_timestamp for w in project.watermarks(JOB)}
    assert marks == {r: max(p.updated_at for p in github.prs(r)) for r in REPOS}
