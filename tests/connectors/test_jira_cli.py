"""A Jira job through the command line and the worker: `highmark check` (credentials, each
project, the JQL, each failure with its fix), `checkpoint show/set/reset` validated by the Jira
checkpoint model, `run --full-refresh`, and `worker --once` running the job on schedule.

The short commands run in this process (click's runner, on the fake clock); the worker is a real
process, as in production.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from tests.conftest import sa_url
from tests.connectors.jira_support import (  # noqa: F401  (fixtures)
    DAY_AGO,
    ENV,
    JOB,
    JiraProject,
    expected,
    greatest_updated,
    jira_fixture,
    jira_project_fixture,
    jira_sleeps_fixture,
    searches_of,
    served,
)
from tests.fakes.jira import SEARCH, FakeJira
from tests.faults.harness import highmark_env
from tests.worker.support import YEARLY, Workers, make_due

Make = Callable[..., JiraProject]


def _findings(hm: JiraProject, code: int) -> dict[str, dict[str, Any]]:
    result = hm.cli("check", JOB, "--json")
    assert result.exit_code == code, result.output
    return {f["check"]: f for f in json.loads(result.stdout)}


# ---------------------------------------------------------------------- check


def test_check_passes_a_working_job(jira: FakeJira, jira_project: Make) -> None:
    hm = jira_project(jql="issuetype != Epic")
    found = _findings(hm, 0)
    assert {name: f["level"] for name, f in found.items()} == {
        "credentials": "pass",
        "project PROJ": "pass",
        "project TEST": "pass",
        "jql": "pass",
    }
    assert "etl-bot@acme.example" in found["credentials"]["detail"]
    assert "Europe/Berlin" in found["credentials"]["detail"]
    assert "(issuetype != Epic)" in found["jql"]["detail"]
    table = hm.cli("check", JOB)
    assert table.exit_code == 0 and "project TEST" in table.stdout


def test_check_names_each_failure_and_its_fix(jira: FakeJira, jira_project: Make) -> None:
    jira.add_project("HIDDEN")
    jira.restrict(["PROJ", "TEST"])  # the user cannot browse HIDDEN
    hm = jira_project(projects=["PROJ", "NOPE", "HIDDEN"], jql="colour = red")

    found = _findings(hm, 1)

    assert found["credentials"]["level"] == "pass"
    assert found["project PROJ"]["level"] == "pass"
    for key in ("NOPE", "HIDDEN"):
        finding = found[f"project {key}"]
        assert finding["level"] == "fail"
        assert f"No project could be found with key '{key}'" in finding["detail"]
        assert "Browse Projects permission" in finding["fix"]
    assert found["jql"]["level"] == "fail"
    assert "Field 'colour' does not exist" in found["jql"]["detail"]
    assert "source.jql" in found["jql"]["fix"]


def test_check_with_a_revoked_token_stops_at_the_credentials(
    jira: FakeJira, jira_project: Make
) -> None:
    jira.revoke_token()
    hm = jira_project()
    found = _findings(hm, 1)
    assert list(found) == ["credentials"]
    assert found["credentials"]["level"] == "fail"
    assert "connection 'jira' was refused" in found["credentials"]["detail"]
    assert "valid API token" in found["credentials"]["fix"]
    table = hm.cli("check", JOB)
    assert table.exit_code == 1 and "valid API token" in table.stdout


# ---------------------------------------------------------------------- checkpoint


def test_checkpoint_show_set_and_reset(
    jira: FakeJira, jira_project: Make, jira_sleeps: list[float]
) -> None:
    jira.seed("PROJ", 6, start=DAY_AGO)
    hm = jira_project(projects=["PROJ"], max_results=2)
    jira.fail(status=503, on_request=2, path=SEARCH, times=100)
    assert hm.run().run_status.value == "failed"

    shown = hm.cli("checkpoint", "show", JOB)
    assert shown.exit_code == 0, shown.output
    checkpoint = json.loads(shown.stdout)
    # The reference's keys, the page token instead of start_at.
    assert checkpoint["current_project"] == "PROJ"
    assert checkpoint["projects_processed"] == []
    assert checkpoint["last_issue_key"] == "PROJ-5"
    assert checkpoint["total_issues_processed"] == 2
    assert checkpoint["max_results"] == 2
    assert checkpoint["last_jql"] == 'project = "PROJ" ORDER BY updated DESC, key DESC'
    assert checkpoint["next_page_token"] == jira.searches[0].next_token
    assert "start_at" not in checkpoint

    # Edits are validated by the Jira checkpoint model: one line, nothing changed.
    for key, value in [
        ("batch_number", '"many"'),
        ("project_marks", '{"PROJ": "not a time"}'),
        ("projects_processed", '"PROJ"'),
    ]:
        refused = hm.cli("checkpoint", "set", JOB, key, value)
        assert refused.exit_code == 2, refused.output
        assert key in refused.stderr and len(refused.stderr.splitlines()) == 1
    assert hm.checkpoint() == checkpoint
    assert hm.cli("checkpoint", "set", JOB, "max_results", "50").exit_code == 0
    assert hm.checkpoint() == {**checkpoint, "max_results": 50}

    cleared = hm.cli("checkpoint", "reset", JOB)
    assert cleared.exit_code == 0 and hm.cli("checkpoint", "show", JOB).stdout == "null\n"
    # With no checkpoint, the next run starts the search afresh (no token) and loads it all.
    jira.clear_log()
    run = hm.ok()
    assert jira.searches[0].token is None
    assert run.rows_read == 6 and hm.target() == expected(jira)


# ---------------------------------------------------------------------- --full-refresh


def test_run_full_refresh_reads_every_issue_again(jira: FakeJira, jira_project: Make) -> None:
    jira.seed("PROJ", 4, start=DAY_AGO)
    jira.seed("TEST", 3, start=DAY_AGO)
    hm = jira_project()
    hm.ok()
    marks = hm.marks()
    engine = create_engine(sa_url(hm.target_url))
    with engine.begin() as conn:  # the target drifted: a row lost, a row edited by hand
        conn.execute(text("DELETE FROM jira_issues WHERE key = 'PROJ-1'"))
        conn.execute(text("UPDATE jira_issues SET summary = 'edited' WHERE key = 'TEST-3'"))
    engine.dispose()
    before = len(jira.searches)

    result = hm.cli("run", JOB, "--full-refresh")

    assert result.exit_code == 0, result.output
    assert hm.target() == expected(jira)
    for project in ("PROJ", "TEST"):
        listing, call = searches_of(jira, project, before)
        assert listing.fields == ("id",)  # the ids first: what Jira no longer has goes
        assert "updated >=" not in call.jql  # everything, not from the mark
    (run,) = hm.load().runs(JOB, limit=1)
    assert (run.rows_read, run.rows_written, run.rows_updated) == (7, 1, 1)
    assert hm.marks() == marks  # no mark moves backward


# ---------------------------------------------------------------------- worker


def test_worker_once_runs_a_due_jira_job(
    jira: FakeJira, jira_project: Make, tmp_path: Path
) -> None:
    jira.seed("PROJ", 3, start=DAY_AGO)
    jira.seed("TEST", 2, start=DAY_AGO)
    hm = jira_project(schedule=YEARLY)
    hm.load()  # registers the job
    control = create_engine(sa_url(hm.control_url))
    make_due(control, JOB)
    control.dispose()
    workers = Workers(tmp_path)
    try:
        worker = workers.start(hm.path, "--once", "--worker-id", "w", env=highmark_env(**ENV))
        assert worker.wait() == 0, worker.log()
    finally:
        workers.close()

    (run,) = hm.load().runs(JOB, limit=None)
    assert (run.run_status.value, run.triggered_by) == ("success", "scheduler")
    assert hm.target() == expected(jira)
    rows = expected(jira)
    assert hm.marks() == {p: greatest_updated(rows, p) for p in ("PROJ", "TEST")}


def test_a_scoped_token_works_through_the_gateway_url_only(
    jira: FakeJira, jira_project: Make
) -> None:
    """Scoped API tokens are refused at the site URL (401) and work at
    api.atlassian.com/ex/jira/{cloudId} (§2.1): check says so, and a run there loads."""
    jira.user.scoped = True
    jira.seed("PROJ", 3, start=DAY_AGO)
    hm = jira_project(projects=["PROJ"])
    found = _findings(hm, 1)
    assert found["credentials"]["level"] == "fail"
    assert "gateway URL" in found["credentials"]["fix"]

    hm.url = jira.gateway_url
    hm.write()
    assert [f["level"] for f in _findings(hm, 0).values()] == ["pass"] * 3
    hm.ok()
    assert hm.target() == expected(jira)
    assert all(r.path.startswith(f"/ex/jira/{jira.cloud_id}/") for r in jira.requests[-3:])
    assert hm.raw("PROJ-1")["self"].startswith(jira.gateway_url)


# ---------------------------------------------------------------------- marks by hand


def test_watermark_show_and_set_per_project_backfills_one_project(
    jira: FakeJira, jira_project: Make
) -> None:
    """`watermark set --source-table PROJ` moves one project's mark (a backfill): the next run
    reads PROJ from there and TEST from its own mark. `metrics` and `status` know the job."""
    jira.seed("PROJ", 4, start=DAY_AGO)
    jira.seed("TEST", 4, start=DAY_AGO)
    hm = jira_project()
    hm.ok()
    marks = hm.marks()

    shown = hm.cli("watermark", "show", JOB, "--json")
    assert shown.exit_code == 0, shown.output
    assert {m["source_table"] for m in json.loads(shown.stdout)} == {"PROJ", "TEST"}
    backfill = hm.cli("watermark", "set", JOB, "2026-01-14T12:01:30Z", "--source-table", "PROJ")
    assert backfill.exit_code == 0, backfill.output
    assert hm.marks() == {**marks, "PROJ": datetime(2026, 1, 14, 12, 1, 30, tzinfo=UTC)}
    before = len(jira.searches)

    run = hm.ok()

    assert sorted(served(searches_of(jira, "PROJ", before))) == ["PROJ-2", "PROJ-3", "PROJ-4"]
    assert served(searches_of(jira, "TEST", before)) == ["TEST-4"]
    assert (run.rows_read, run.rows_written, run.rows_updated) == (4, 0, 0)
    assert hm.marks() == marks
    metrics = hm.cli("metrics")
    assert metrics.exit_code == 0 and 'job_id="issues"' in metrics.stdout
    assert hm.cli("status").exit_code == 0
