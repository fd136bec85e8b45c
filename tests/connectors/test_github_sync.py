"""The GitHub connector's sync against the fake GitHub, into SQLite, PostgreSQL and MariaDB.

* a first sync of two repositories loads every pull request with its commits, reviews and
  comments (a PR with 250 commits and one with 130 comments drain their nested pages): every
  table equals the fake's model, the counts are exact, one mark per repository;
* an incremental sync after changes stops its newest-first scan at the mark (the request log
  shows it) and loads only the changes, counting only what really changed;
* a PR updated while the scan pages (it jumps over the cursor) is missed by that run and found by
  the next;
* the mark stays `lag` behind GitHub's clock (its Date header), whatever this machine's says;
* a force-push removes commits and a deleted comment disappears once the PR is synced again,
  also when its children come over several pages.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from sqlalchemy import inspect
from sqlalchemy.engine import Engine

import highmark
from highmark import clock
from highmark.models import RunStatus
from tests.connectors.github_support import (
    JOB,
    assert_target_equals_model,
    child_calls,
    connection_of,
    github_job,
    model_rows,
    page_calls,
    raw_objects,
    record_count,
    seed_two_repositories,
    target_rows,
    target_rows_of,
    write_github_project,
)
from tests.fakes.github import FakeGitHub

REPOS = ["acme/api", "acme/web"]


def _project(tmp_path: Path, github: FakeGitHub, url: str, **source: object) -> highmark.Project:
    job = github_job(REPOS, page_size=2, **source)
    return highmark.Project.load(write_github_project(tmp_path, github, url, job))


def _marks(project: highmark.Project) -> dict[str, object]:
    return {w.source_table: w.last_value_timestamp for w in project.watermarks(JOB)}


def test_first_then_incremental_sync(
    github: FakeGitHub,
    db_url: str,
    tmp_path: Path,
    engine_for: Callable[[str], Engine],
) -> None:
    now = github.clock.now()
    github.clock.set(now - timedelta(hours=3))
    seed_two_repositories(github)
    github.clock.set(now)
    project = _project(tmp_path, github, db_url)
    engine = engine_for(db_url)

    first = project.run(JOB)

    assert first.run_status is RunStatus.SUCCESS, first.error_message
    model = model_rows(github, REPOS)
    assert_target_equals_model(engine, github, REPOS)
    assert len(model["commits"]) == 250 + 6 * 3 + 6 and len(model["comments"]) == 130 + 12 + 16
    total = record_count(model)
    assert len(page_calls(github, "acme/api")) == 4 and len(page_calls(github, "acme/web")) == 3
    assert (first.rows_read, first.rows_written, first.rows_updated, first.rows_deleted) == (
        total, total, 0, 0,
    )  # fmt: skip
    # The long connections were drained page by page: 250 commits in three pages of 100.
    drained = [(c.variables["id"], connection_of(c)) for c in child_calls(github)]
    big = github.pr("acme/api", 3).id
    assert drained.count((big, "commits")) == 2
    assert drained.count((github.pr("acme/api", 4).id, "comments")) == 1
    # One mark per repository: the greatest updatedAt loaded.
    newest = {r: max(pr.updated_at for pr in github.prs(r)) for r in REPOS}
    assert _marks(project) == newest
    assert first.watermark_start is None
    assert first.watermark_end == max(newest.values())
    # raw: the whole object, without the nested connections (they have tables of their own).
    raw = raw_objects(engine, "pull_requests")[big]
    assert raw["number"] == 3 and raw["updatedAt"].endswith("Z")
    assert not {"commits", "reviews", "comments"} & set(raw)
    assert project.checkpoint(JOB) is None

    # Changes: an edited PR, a comment and a review on older PRs, a new PR.
    github.clock.advance(600)
    github.update_pr("acme/api", 2, title="Renamed")
    github.add_comment("acme/api", 1, body="One more thing")
    github.add_review("acme/web", 2, state="CHANGES_REQUESTED")
    github.add_pr("acme/web", title="Brand new")
    github.add_commits("acme/web", 7, 2)
    github.clock.advance(600)
    github.clear_log()

    second = project.run(JOB)

    assert second.run_status is RunStatus.SUCCESS, second.error_message
    assert_target_equals_model(engine, github, REPOS)
    # The scan stopped at the mark: two pages of two per repository (a full scan takes four
    # and three), the changed PRs and the one at the mark (re-read: >=), then one below it.
    assert len(page_calls(github, "acme/api")) == 2 and len(page_calls(github, "acme/web")) == 2
    assert child_calls(github) == []
    changed = {
        "acme/api": [github.pr("acme/api", n) for n in (1, 2)],
        "acme/web": [github.pr("acme/web", n) for n in (2, 7)],
    }
    at_mark = [github.pr("acme/api", 7), github.pr("acme/web", 6)]
    read = sum(
        1
        + len(github.commits(pr.repo, pr.number))
        + len(github.reviews(pr.repo, pr.number))
        + len(github.comments(pr.repo, pr.number))
        for pr in [*changed["acme/api"], *changed["acme/web"], *at_mark]
    )
    # Read: the four changed PRs and the two at the marks, with their children. Written: the
    # new PR, its two commits, the comment and the review. Updated: the three PRs that changed
    # (the rest is equal).
    assert (second.rows_read, second.rows_written, second.rows_updated, second.rows_deleted) == (
        read, 5, 3, 0,
    )  # fmt: skip
    assert _marks(project) == {r: max(p.updated_at for p in prs) for r, prs in changed.items()}
    assert second.watermark_start == first.watermark_end
    assert second.watermark_end == max(_marks(project).values())


def test_a_pr_updated_while_the_scan_pages_is_found_by_the_next_run(
    github: FakeGitHub, tmp_path: Path, engine_for: Callable[[str], Engine]
) -> None:
    url = f"sqlite:///{tmp_path / 'dw.db'}"
    now = github.clock.now()
    github.clock.set(now - timedelta(hours=3))
    seed_two_repositories(github)
    github.clock.set(now)
    project = _project(tmp_path, github, url)
    engine = engine_for(url)

    # Between pages 1 and 2 of acme/api, its oldest PR (not read yet) and its newest (read on
    # page 1) change: both jump over the cursor to the head of the list.
    def change() -> None:
        github.update_pr("acme/api", 1, title="Touched while paging")
        github.update_pr("acme/api", 7, title="Touched after it was read")

    github.before(2, change)

    first = project.run(JOB)

    assert first.run_status is RunStatus.SUCCESS, first.error_message
    ids = {r["id"]: r for r in target_rows_of(engine, "pull_requests")}
    assert github.pr("acme/api", 1).id not in ids  # missed: it jumped behind the cursor
    assert ids[github.pr("acme/api", 7).id]["title"] == "Change #7"  # the version read
    assert len(ids) == 7 + 6 - 1
    # The mark is what was loaded, not "now": both changes lie after it.
    assert _marks(project)["acme/api"] < github.pr("acme/api", 1).updated_at

    second = project.run(JOB)

    assert second.run_status is RunStatus.SUCCESS, second.error_message
    assert_target_equals_model(engine, github, REPOS)
    # Both changes happened at the fake's now: the mark stays `lag` (a minute) behind GitHub's
    # clock, so the next run reads them again (harmlessly: nothing changes).
    assert _marks(project)["acme/api"] == now - timedelta(minutes=1)
    third = project.run(JOB)
    assert (third.rows_written, third.rows_updated, third.rows_deleted) == (0, 0, 0)
    assert third.rows_read > 0


def test_force_push_and_deleted_children_are_removed_when_the_pr_is_synced_again(
    github: FakeGitHub,
    db_url: str,
    tmp_path: Path,
    engine_for: Callable[[str], Engine],
) -> None:
    now = github.clock.now()
    github.clock.set(now - timedelta(hours=3))
    seed_two_repositories(github)
    github.clock.set(now - timedelta(hours=1))
    project = _project(tmp_path, github, db_url)
    engine = engine_for(db_url)
    assert project.run(JOB).run_status is RunStatus.SUCCESS

    # 250 commits become 240 (still three nested pages); a comment of the PR with 130 goes, as
    # does one of a small PR, and a review.
    github.force_push("acme/api", 3, keep=240)
    big_comments = github.comments("acme/api", 4)
    github.delete_comment("acme/api", 4, big_comments[70].id, bump_pr=True)
    github.delete_comment("acme/api", 1, github.comments("acme/api", 1)[0].id, bump_pr=True)
    github.delete_review("acme/api", 5, github.reviews("acme/api", 5)[0].id)
    github.touch_pr("acme/api", 5)
    github.clock.set(now)

    second = project.run(JOB)

    assert second.run_status is RunStatus.SUCCESS, second.error_message
    assert_target_equals_model(engine, github, REPOS)
    assert (second.rows_written, second.rows_updated, second.rows_deleted) == (0, 4, 10 + 2 + 1)
    assert len(target_rows_of(engine, "commits")) == 240 + 6 * 3 + 6

    # A force-push that leaves few enough commits for one page: the rest go at once.
    github.clock.advance(600)
    github.force_push("acme/api", 3, keep=40, add=2)
    github.clock.advance(600)

    third = project.run(JOB)

    assert third.run_status is RunStatus.SUCCESS, third.error_message
    assert_target_equals_model(engine, github, REPOS)
    assert (third.rows_written, third.rows_updated, third.rows_deleted) == (2, 1, 200)


def test_some_entities_under_another_prefix_from_an_enterprise_server(
    github: FakeGitHub, tmp_path: Path, engine_for: Callable[[str], Engine]
) -> None:
    github.seed("acme/api", 5, commits=lambda i: 120 if i == 1 else 2, reviews=1, comments=1)
    url = f"sqlite:///{tmp_path / 'dw.db'}"
    job = github_job(["acme/api"], entities=["commits", "comments"], page_size=2)
    job["target"]["prefix"] = "gh_"
    enterprise = f"{github.url}/api/graphql"  # GitHub Enterprise Server's endpoint
    project = highmark.Project.load(
        write_github_project(tmp_path, github, url, job, url=enterprise)
    )

    run = project.run(JOB)

    assert run.run_status is RunStatus.SUCCESS, run.error_message
    engine = engine_for(url)
    with engine.connect() as conn:
        tables = set(inspect(conn).get_table_names())
    assert tables == {"gh_commits", "gh_comments"}
    model = model_rows(github, ["acme/api"])
    for entity in ("commits", "comments"):
        assert target_rows(engine, "gh_", [entity])[entity] == model[entity]
    assert run.rows_read == len(model["commits"]) + len(model["comments"])
    assert {w.source_table for w in project.watermarks(JOB)} == {"acme/api"}
    assert {r.path for r in github.requests} == {"/api/graphql"}


def test_the_mark_keeps_its_lag_behind_githubs_clock_not_this_machines(
    github: FakeGitHub, tmp_path: Path, engine_for: Callable[[str], Engine]
) -> None:
    github.seed("acme/api", 3, commits=1)
    github.touch_pr("acme/api", 1)  # updated at GitHub's now
    url = f"sqlite:///{tmp_path / 'dw.db'}"
    project = highmark.Project.load(
        write_github_project(tmp_path, github, url, github_job(["acme/api"]))
    )
    # This machine's clock runs an hour ahead of GitHub's.
    clock.set_clock(lambda: github.clock.now() + timedelta(hours=1))

    assert project.run(JOB).run_status is RunStatus.SUCCESS

    github_now = github.clock.now()
    assert _marks(project) == {"acme/api": github_now - timedelta(minutes=1)}
    # A PR GitHub stamps a few seconds "earlier" than the last (index lag, another server's
    # clock) is still found by the next run.
    github.touch_pr("acme/api", 2, at=github_now - timedelta(seconds=20))
    github.clock.advance(120)
    assert project.run(JOB).run_status is RunStatus.SUCCESS
    assert_target_equals_model(engine_for(url), github, ["acme/api"])
