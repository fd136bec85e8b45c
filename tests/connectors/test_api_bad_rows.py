"""Bad records of API jobs, against the fake Jira: a page the target refuses for one record's
values is bisected down to it, the page's other records are written; the run fails naming the
record (``on_bad_rows: fail``) or quarantines it, succeeds and moves its checkpoint and marks on
(``quarantine``); ``rejected retry`` writes it again once the target is fixed.

The realistic bad record: an issue whose summary holds a NUL character, which PostgreSQL refuses
in text (and in jsonb: ``raw``) and SQLite and MariaDB take. MariaDB is tested with a CHECK
constraint a DBA added to the target instead.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text

import highmark
from highmark.destinations.refusal import is_data_error
from highmark.models import RunStatus
from highmark.project import Project
from tests.conftest import sa_url
from tests.connectors.github_support import JOB as GITHUB_JOB
from tests.connectors.github_support import (
    github_job,
    model_rows,
    target_rows,
    write_github_project,
)
from tests.connectors.jira_support import (  # noqa: F401  (fixtures)
    DAY_AGO,
    JiraProject,
    expected,
    greatest_updated,
    jira_fixture,
    jira_project_fixture,
)
from tests.connectors.microsoft_support import (
    fabric_project,
    fabric_services,
    graph_project,
    graph_services,
    table,
)
from tests.fakes.github import FakeGitHub
from tests.fakes.jira import FakeJira

Make = Callable[..., JiraProject]
ISSUES = 23  # PROJ-1 … PROJ-23, five to a page: five pages
PAGE = 5
BAD = "PROJ-12"  # on the third page (newest first)


def _seed_with_nul(jira: FakeJira) -> str:
    """PROJ's issues, one a minute from a day ago; BAD's summary holds a NUL. Its id."""
    issues = jira.seed("PROJ", ISSUES, start=DAY_AGO)
    bad = jira.issue(BAD)
    jira.update_issue(BAD, bad.state.updated, summary="broken\x00summary")
    assert any(i.key == BAD for i in issues)
    return str(bad.id)


def _ids(rows: list[dict[str, Any]]) -> list[str]:
    return sorted((str(r["id"]) for r in rows), key=int)


def test_fail_names_the_record_and_a_rerun_after_the_fix_loads_it_once(
    pg_url: str, jira: FakeJira, jira_project: Make
) -> None:
    bad_id = _seed_with_nul(jira)
    hm = jira_project(pg_url, projects=["PROJ"], max_results=PAGE)

    run = hm.run()

    assert run.run_status is RunStatus.FAILED
    assert run.error_message is not None and "\n" not in run.error_message
    assert run.error_message.startswith(
        f"1 bad row(s) of issues not loaded into jira_issues: id {bad_id}: PostgreSQL text fields "
        "cannot contain NUL (0x00) bytes"
    ), run.error_message
    assert "on_bad_rows: quarantine" in run.error_message
    details = run.error_details
    assert details is not None
    assert details["exception_type"] == "BadRowsError" and details["retryable"] is False
    assert details["source_record_id"] == bad_id
    assert details["source_data"]["key"] == BAD
    assert details["source_data"]["summary"] == "broken\x00summary"
    assert details["source_data"]["raw"]["key"] == BAD  # the whole API object
    assert details["bad_rows_count"] == 1 and len(details["bad_rows"]) == 1
    # The pages before and the bad page's other records went in; the pages after were not read.
    loaded = _ids(hm.target())
    newest_first = sorted(expected(jira), key=lambda r: r["updated"], reverse=True)
    through_bad_page = [r for r in newest_first[: 3 * PAGE] if r["key"] != BAD]
    assert loaded == _ids(through_bad_page)
    assert hm.marks() == {}  # nothing committed: the run failed

    # The issue is fixed in Jira (a later update). The rerun resumes the failed run's search at
    # the bad page, which the fix moved ahead of (newest first): the run after finds it from the
    # mark. Every issue lands, once.
    jira.update_issue(BAD, summary="fixed summary")
    resumed = hm.ok()
    assert resumed.rows_rejected == 0
    assert BAD not in {r["key"] for r in hm.target()}
    hm.ok()
    assert hm.target() == expected(jira)
    assert len(hm.target()) == ISSUES


def test_quarantine_loads_the_others_and_moves_the_checkpoint_on(
    pg_url: str, jira: FakeJira, jira_project: Make
) -> None:
    bad_id = _seed_with_nul(jira)
    hm = jira_project(pg_url, projects=["PROJ"], max_results=PAGE)
    hm.job["on_bad_rows"] = "quarantine"
    hm.write()
    assert hm.load().config.jobs["issues"].on_bad_rows == "quarantine"  # type: ignore[attr-defined]

    run = hm.ok()

    assert run.rows_rejected == 1
    assert run.rows_read == ISSUES and run.rows_written == ISSUES - 1
    want = [r for r in expected(jira) if r["key"] != BAD]
    assert hm.target() == want
    # The mark passed the bad record: the greatest `updated` of every issue read, bad included.
    assert hm.marks() == {"PROJ": greatest_updated(expected(jira), "PROJ")}
    rejected = hm.load().rejected("issues")
    assert [(r.source_table, r.source_record_id) for r in rejected] == [("issues", bad_id)]
    assert rejected[0].run_id == run.run_id
    assert rejected[0].source_data is not None
    assert rejected[0].source_data["summary"] == "broken\x00summary"
    assert "NUL" in rejected[0].error_message

    # The next run starts from the mark: the bad issue is not read again.
    again = hm.ok()
    assert again.rows_rejected == 0 and again.rows_written == 0
    assert len(hm.load().rejected("issues")) == 1

    # Fixed in Jira: the next run loads it once; a retry of the quarantined copy then finds the
    # newer version stored and leaves it be (Jira issues are versioned by `updated`).
    jira.update_issue(BAD, summary="fixed summary")
    hm.ok()
    assert hm.target() == expected(jira)
    retried = hm.cli("rejected", "retry", "issues")
    assert retried.exit_code == 0, retried.output
    assert "1 rejected row(s) loaded" in retried.output
    assert hm.load().rejected("issues") == []
    assert hm.target() == expected(jira)  # the newer copy stayed


@pytest.mark.parametrize("url_fixture", ["pg_url", "mysql_url"])
def test_retry_after_the_target_is_fixed(
    url_fixture: str, request: pytest.FixtureRequest, jira: FakeJira, jira_project: Make
) -> None:
    url = request.getfixturevalue(url_fixture)
    jira.seed("PROJ", 4, start=DAY_AGO)
    hm = jira_project(url, projects=["PROJ"], max_results=PAGE)
    hm.job["on_bad_rows"] = "quarantine"
    hm.write()
    hm.ok()
    # A DBA caps the summary's length; then a long one and ten short ones come in.
    _execute(url, "ALTER TABLE jira_issues ADD CONSTRAINT summary_short "
                  "CHECK (CHAR_LENGTH(summary) <= 100)")  # fmt: skip
    jira.seed("PROJ", 10, start=DAY_AGO.replace(hour=18))
    long = jira.add_issue("PROJ", summary="x" * 150, created=DAY_AGO.replace(hour=19))

    run = hm.ok()

    assert run.rows_rejected == 1
    assert hm.target() == [r for r in expected(jira) if r["key"] != long.key]
    [kept] = hm.load().rejected("issues")
    assert kept.source_record_id == str(long.id)
    assert kept.error_constraint == "summary_short" or "summary_short" in kept.error_message

    refused = hm.cli("rejected", "retry", "issues")  # the target is not fixed yet
    assert refused.exit_code == 1
    assert "0 rejected row(s) loaded, 1 refused again" in refused.output
    [still] = hm.load().rejected("issues")
    assert still.retry_count == 1

    _execute(url, "ALTER TABLE jira_issues DROP CONSTRAINT summary_short")
    done = hm.cli("rejected", "retry", "issues")
    assert done.exit_code == 0, done.output
    assert "1 rejected row(s) loaded, 0 refused again" in done.output
    assert hm.load().rejected("issues") == []
    assert hm.target() == expected(jira)


def _execute(url: str, statement: str) -> None:
    engine = create_engine(sa_url(url))
    try:
        with engine.begin() as conn:
            conn.execute(text(statement))
    finally:
        engine.dispose()


def test_a_lock_wait_stays_retryable_and_is_not_bisected(
    pg_url: str, jira: FakeJira, jira_project: Make
) -> None:
    _execute(pg_url, f"ALTER DATABASE \"{pg_url.rsplit('/', 1)[1]}\" SET lock_timeout = '1s'")
    jira.seed("PROJ", 4, start=DAY_AGO)
    hm = jira_project(pg_url, projects=["PROJ"], max_results=PAGE)
    hm.job["on_bad_rows"] = "quarantine"
    hm.write()
    hm.ok()
    # PROJ-2 changes and two issues arrive, while another session holds PROJ-2's target row.
    jira.update_issue("PROJ-2", summary="changed")
    jira.seed("PROJ", 2)
    engine = create_engine(sa_url(pg_url))
    try:
        with engine.connect() as holder:
            holder.execute(text("SELECT * FROM jira_issues WHERE key = 'PROJ-2' FOR UPDATE"))
            run = hm.run()
            holder.rollback()
    finally:
        engine.dispose()

    assert run.run_status is RunStatus.FAILED
    assert run.error_details is not None and run.error_details["retryable"] is True
    assert "lock" in (run.error_message or "")
    assert run.rows_rejected == 0 and hm.load().rejected("issues") == []
    assert [r["key"] for r in hm.target()] == ["PROJ-1", "PROJ-2", "PROJ-3", "PROJ-4"]
    hm.ok()  # the lock gone
    assert hm.target() == expected(jira)


def test_psycopg_refusing_a_nul_is_a_data_error_a_lost_connection_is_not() -> None:
    import psycopg

    assert is_data_error(psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00)"))
    assert not is_data_error(psycopg.OperationalError("server closed the connection"))


# ------------------------------------------------------------------------------ GitHub


def _github(tmp_path: Path, github: FakeGitHub, url: str, policy: str) -> highmark.Project:
    job = {**github_job(["acme/api"], page_size=2), "on_bad_rows": policy}
    return highmark.Project.load(write_github_project(tmp_path, github, url, job))


def _seeded(github: FakeGitHub) -> None:
    now = github.clock.now()
    github.clock.set(now - timedelta(hours=3))
    github.seed("acme/api", 7, commits=2, reviews=1, comments=2)
    github.clock.set(now)


def test_github_quarantine_keeps_a_refused_comment_s_stored_version(
    github: FakeGitHub, pg_url: str, tmp_path: Path, engine_for: Callable[[str], Engine]
) -> None:
    _seeded(github)
    project = _github(tmp_path, github, pg_url, "quarantine")
    engine = engine_for(pg_url)
    assert project.run(GITHUB_JOB).run_status is RunStatus.SUCCESS
    before = target_rows(engine)
    # A comment of #3 is edited to hold a NUL (the PR bumped); #5 gets a new title.
    github.clock.advance(600)
    bad = github.comments("acme/api", 3)[0]
    github.edit_comment("acme/api", 3, bad.id, body="see \x00 here", bump_pr=True)
    github.update_pr("acme/api", 5, title="Renamed")
    github.clock.advance(600)

    run = project.run(GITHUB_JOB)

    assert run.run_status is RunStatus.SUCCESS, run.error_message
    assert run.rows_rejected == 1
    [kept] = project.store.rejected_rows(GITHUB_JOB)
    assert (kept.source_table, kept.source_record_id) == ("comments", bad.id)
    assert kept.source_data is not None and kept.source_data["body"] == "see \x00 here"
    # Everything else is the model's; the refused comment keeps its stored version (the PR's
    # child set was replaced around it, not without it).
    model, actual = model_rows(github, ["acme/api"]), target_rows(engine)
    old = next(c for c in before["comments"] if c["id"] == bad.id)
    assert actual["comments"] == [old if c["id"] == bad.id else c for c in model["comments"]]
    for name in ("pull_requests", "commits", "reviews"):
        assert actual[name] == model[name], name
    newest = max(pr.updated_at for pr in github.prs("acme/api"))
    marks = {w.source_table: w.last_value_timestamp for w in project.watermarks(GITHUB_JOB)}
    assert marks == {"acme/api": newest}
    assert project.checkpoint(GITHUB_JOB) is None


def test_github_fail_names_the_comment(
    github: FakeGitHub, pg_url: str, tmp_path: Path, engine_for: Callable[[str], Engine]
) -> None:
    _seeded(github)
    bad = github.comments("acme/api", 3)[1]
    github.edit_comment("acme/api", 3, bad.id, body="\x00", at=bad.updated_at)
    project = _github(tmp_path, github, pg_url, "fail")

    run = project.run(GITHUB_JOB)

    assert run.run_status is RunStatus.FAILED
    assert run.error_details is not None
    assert run.error_details["source_record_id"] == bad.id
    assert run.error_details["source_data"]["pull_request_id"] == github.pr("acme/api", 3).id
    assert run.error_message is not None
    assert run.error_message.startswith("1 bad row(s) of comments not loaded into github_comments")
    written = target_rows(engine_for(pg_url))["comments"]
    assert bad.id not in {c["id"] for c in written}
    assert len([c for c in written if c["pull_request_id"] == github.pr("acme/api", 3).id]) == 1


def test_a_refused_child_on_an_early_nested_page_survives_the_last_page_s_replace(
    github: FakeGitHub, pg_url: str, tmp_path: Path, engine_for: Callable[[str], Engine]
) -> None:
    now = github.clock.now()
    github.clock.set(now - timedelta(hours=3))
    github.seed("acme/api", 4, commits=1, reviews=0, comments=lambda i: 5 if i == 2 else 1)
    github.clock.set(now)
    job = {**github_job(["acme/api"], page_size=2, nested_page_size=2), "on_bad_rows": "quarantine"}
    project = highmark.Project.load(write_github_project(tmp_path, github, pg_url, job))
    engine = engine_for(pg_url)
    assert project.run(GITHUB_JOB).run_status is RunStatus.SUCCESS
    # #3's first comment (of five, two a page) now holds a NUL; it keeps its place (first page).
    first = github.comments("acme/api", 3)[0]
    github.clock.advance(600)
    github.edit_comment("acme/api", 3, first.id, body="\x00", at=first.updated_at)
    github.touch_pr("acme/api", 3)
    before = target_rows(engine)["comments"]

    run = project.run(GITHUB_JOB)

    assert run.run_status is RunStatus.SUCCESS, run.error_message
    assert run.rows_rejected == 1 and run.rows_deleted == 0
    assert target_rows(engine)["comments"] == before  # the stored version of the bad one stays
    [kept] = project.store.rejected_rows(GITHUB_JOB)
    assert kept.source_record_id == first.id


# ------------------------------------------------------------------------------ Microsoft Graph


def test_graph_full_round_keeps_a_refused_user_through_its_sweep(
    pg_url: str, tmp_path: Path
) -> None:
    with graph_services(page_size=3, member_slice=4) as (entra, graph):
        users = [graph.directory.add_user() for _ in range(8)]
        project = graph_project(tmp_path, entra, graph, target=pg_url, on_bad_rows="quarantine")
        assert Project.load(project).run("directory").run_status is RunStatus.SUCCESS
        before = table(project, "msgraph_users")
        # The first user's name now holds a NUL; a full refresh reads every user (three pages)
        # and sweeps, on its last page, every user the round did not stamp.
        graph.directory.update("users", users[0].id, displayName="Bad\x00Name")

        refreshed = Project.load(project).run("directory", full_refresh=True)

        assert refreshed.run_status is RunStatus.SUCCESS, refreshed.error_message
        assert refreshed.rows_rejected == 1 and refreshed.rows_deleted == 0
        after = {u["id"]: u for u in table(project, "msgraph_users")}
        old = next(u for u in before if u["id"] == users[0].id)
        assert after[users[0].id]["display_name"] == old["display_name"]
        assert len(after) == 8
        [kept] = Project.load(project).rejected("directory")
        assert (kept.source_table, kept.source_record_id) == ("users", users[0].id)


# ------------------------------------------------------------------------------ Microsoft Fabric


def test_fabric_item_renamed_with_a_nul_is_quarantined_and_kept_through_the_snapshot_diff(
    pg_url: str, tmp_path: Path
) -> None:
    with fabric_services(page_size=3) as (entra, fabric):
        space = fabric.add_workspace("W0")
        items = [fabric.add_item(space, f"item {j}", type="Report") for j in range(7)]
        project = fabric_project(tmp_path, entra, fabric, target=pg_url, on_bad_rows="quarantine")
        assert Project.load(project).run("catalog").run_status is RunStatus.SUCCESS
        # The first item (first page of three) is renamed with a NUL; the listing's last page
        # removes the workspace's items the listing did not stamp.
        items[0].displayName = "bad\x00name"
        fabric.clock.advance(3600)

        second = Project.load(project).run("catalog")

        assert second.run_status is RunStatus.SUCCESS, second.error_message
        assert second.rows_rejected == 1 and second.rows_deleted == 0
        stored = {r["id"]: r["display_name"] for r in table(project, "fabric_items")}
        assert stored == {i.id: ("item 0" if i is items[0] else i.displayName) for i in items}
        [kept] = Project.load(project).rejected("catalog")
        assert (kept.source_table, kept.source_record_id) == ("items", items[0].id)
