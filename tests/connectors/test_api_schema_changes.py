"""Schema changes of an API job (Jira, against the fake Jira), on every target database: a field
the job starts asking for stays in ``raw``; a column the entity has and its table lacks (a table
of an older highmark) is added and recorded, or refused under ``schema_changes: freeze``."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import create_engine, inspect, text

from highmark.connectors.jira.config import DEFAULT_FIELDS
from highmark.models import RunStatus
from tests.conftest import sa_url
from tests.connectors.jira_support import (  # noqa: F401  (fixtures)
    DAY_AGO,
    JOB,
    JiraProject,
    jira_fixture,
    jira_project_fixture,
)
from tests.fakes.jira import FakeJira

Make = Callable[..., JiraProject]


def test_new_fields_stay_in_raw_and_missing_columns_are_added(
    db_url: str, jira: FakeJira, jira_project: Make
) -> None:
    jira.seed("PROJ", 3, start=DAY_AGO, assignees=("alice@acme.example",))
    hm = jira_project(db_url, projects=["PROJ"])
    hm.ok()
    engine = create_engine(sa_url(hm.target_url))
    try:
        # The table as an older highmark made it, without assignee_account_id.
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE jira_issues DROP COLUMN assignee_account_id"))
        jira.update_issue("PROJ-1", summary="changed")
        hm.write(fields=[*DEFAULT_FIELDS, "priority", "labels"])
        hm.job["schema_changes"] = "freeze"
        hm.write()

        refused = hm.run()

        assert refused.run_status is RunStatus.FAILED
        assert (
            "target table jira_issues: column assignee_account_id is missing (schema_changes is "
            "freeze); nothing was written"
        ) in (refused.error_message or "")
        hm.job.pop("schema_changes")
        hm.write()

        run = hm.ok()

        columns = {c["name"] for c in inspect(engine).get_columns("jira_issues")}
    finally:
        engine.dispose()
    assert "assignee_account_id" in columns
    assert not {"priority", "labels"} & columns  # new fields are data in raw, not columns
    assert set(hm.raw("PROJ-1")["fields"]) >= {"priority", "labels"}
    history = hm.load().schema_history(JOB)
    assert [(c.target_table, c.column_name, c.change_kind, c.run_id) for c in history] == [
        ("jira_issues", "assignee_account_id", "add", run.run_id)
    ]
    assert any("column jira_issues.assignee_account_id added" in n for n in run.notes or [])
    changed = next(r for r in hm.target() if r["key"] == "PROJ-1")
    assert changed["summary"] == "changed" and changed["assignee"]  # its account id, reloaded
