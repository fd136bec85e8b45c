"""The Jira part of the project file: every mistake is one line naming the file and line, before
any work; and the pure pieces the sync is built on (the JQL, Jira's timestamps)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from highmark.config import parse_project_text
from highmark.connectors.jira.config import JiraJobSpec
from highmark.connectors.jira.issues import jql_literal, parse_time, search_jql
from highmark.errors import ConfigError
from tests.connectors.jira_support import invoke

# Line numbers matter: the cases below name them.
PROJECT = """\
connections:
  jira:
    type: jira
    url: https://acme.atlassian.net
    email: ${HM_TEST_JIRA_EMAIL}
    token: ${HM_TEST_JIRA_TOKEN}
  dw: sqlite:///dw.db
jobs:
  issues:
    load_type: incremental
    source:
      connection: jira
      projects: [PROJ, TEST]
      jql: "issuetype != Epic"
    target: {connection: dw}
"""
UNSET = "HM_TEST_SURELY_UNSET_JIRA_VARIABLE"


def edited(old: str, new: str) -> str:
    assert old in PROJECT, old
    return PROJECT.replace(old, new, 1)


ERRORS = [
    (
        "bad-project-key",
        edited("[PROJ, TEST]", "[PROJ, test-1]"),
        (":13:", "job issues", "source.projects", "'test-1' is not a Jira project key"),
    ),
    (
        "project-twice",
        edited("[PROJ, TEST]", "[PROJ, PROJ]"),
        (":13:", "source.projects", "lists a project twice"),
    ),
    (
        "no-projects",
        edited("[PROJ, TEST]", "[]"),
        (":13:", "source.projects", "at least 1 item"),
    ),
    (
        "order-by-in-jql",
        edited('"issuetype != Epic"', '"issuetype != Epic ORDER BY key"'),
        (":14:", "source.jql", "must not have ORDER BY"),
    ),
    (
        "order-by-over-two-lines",
        edited(
            'jql: "issuetype != Epic"', "jql: |\n        issuetype != Epic order\n        by key"
        ),
        (":14:", "source.jql", "must not have ORDER BY"),
    ),
    (
        "missing-email",
        edited("    email: ${HM_TEST_JIRA_EMAIL}\n", ""),
        (":2:", "connections.jira.email", "is required"),
    ),
    (
        "unset-variable",
        edited("${HM_TEST_JIRA_TOKEN}", "${" + UNSET + "}"),
        (":6:", "connections.jira.token", f"environment variable {UNSET} is not set"),
    ),
    (
        "not-a-url",
        edited("https://acme.atlassian.net", "acme.atlassian.net"),
        (":4:", "connections.jira.url", "is not an http:// or https:// URL"),
    ),
    (
        "misspelt-key",
        edited("      jql:", "      jqll:"),
        (":14:", "source.jqll", "did you mean 'jql'"),
    ),
    (
        "bad-max-results",
        edited("      jql:", "      max_results: 9000\n      jql:"),
        (":14:", "source.max_results", "less than or equal to 5000"),
    ),
    (
        "bad-lag",
        edited("    target: {connection: dw}\n", "    target: {connection: dw}\n    lag: soon\n"),
        (":16:", "job issues", "lag", "not a duration"),
    ),
    (
        "bad-on-bad-rows",
        edited(
            "    target: {connection: dw}\n",
            "    target: {connection: dw}\n    on_bad_rows: skip\n",
        ),
        (":16:", "job issues", "on_bad_rows", "'fail' or 'quarantine'"),
    ),
    (
        "target-is-jira",
        edited("target: {connection: dw}", "target: {connection: jira}"),
        (":15:", "target.connection", "'jira' is a jira connection"),
    ),
]


@pytest.fixture(autouse=True)
def _variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HM_TEST_JIRA_EMAIL", "etl@acme.example")
    monkeypatch.setenv("HM_TEST_JIRA_TOKEN", "ATATT3xFfGF0ConfigTestToken")
    monkeypatch.delenv(UNSET, raising=False)


@pytest.mark.parametrize(("text", "fragments"), [c[1:] for c in ERRORS], ids=[c[0] for c in ERRORS])
def test_a_mistake_in_the_jira_part_is_one_line_with_file_and_line(
    text: str, fragments: tuple[str, ...], tmp_path: Path
) -> None:
    file = tmp_path / "highmark.yml"
    with pytest.raises(ConfigError) as caught:
        parse_project_text(text, file)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{file}:"), message
    for fragment in fragments:
        assert fragment in message, message


def test_the_cli_says_it_in_one_line_and_does_nothing(tmp_path: Path) -> None:
    file = tmp_path / "highmark.yml"
    file.write_text(edited("[PROJ, TEST]", "[PROJ, proj]"))
    result = invoke(file, "jobs")
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"highmark: error: {file}:13: job issues: source.projects: 'proj'")
    assert not (tmp_path / ".highmark").exists()  # not even the control store was made


def test_a_valid_jira_job_and_its_defaults(tmp_path: Path) -> None:
    config = parse_project_text(edited('"issuetype != Epic"', '"  "'), tmp_path / "highmark.yml")
    job = config.jobs["issues"]
    assert isinstance(job, JiraJobSpec)
    assert job.source.jql is None  # blank: no extra filter
    assert job.target.prefix == "jira_" and job.lag.total_seconds() == 300
    assert job.source.max_results == 100
    assert {"project", "updated"} <= set(job.source.fields)
    assert [m.source_table for m in job.marks()] == ["PROJ", "TEST"]
    assert job.on_bad_rows == "fail"
    assert "ATATT3xFfGF0ConfigTestToken" not in repr(config)
    # The top of the file sets every job's on_bad_rows, API jobs included.
    top = parse_project_text("on_bad_rows: quarantine\n" + PROJECT, tmp_path / "highmark.yml")
    assert isinstance(top.jobs["issues"], JiraJobSpec)
    assert top.jobs["issues"].on_bad_rows == "quarantine"
    # A quoted ORDER BY is text, not a clause.
    quoted = edited('"issuetype != Epic"', """'summary ~ "order by"'""")
    spec = parse_project_text(quoted, tmp_path / "highmark.yml").jobs["issues"]
    assert isinstance(spec, JiraJobSpec) and spec.source.jql == 'summary ~ "order by"'


# ---------------------------------------------------------------------- pure pieces


def test_search_jql() -> None:
    mark = datetime(2026, 7, 1, 10, 15, 42, 500000, tzinfo=UTC)
    assert search_jql("PROJ", None, "UTC", None) == (
        'project = "PROJ" ORDER BY updated DESC, key DESC'
    )
    assert search_jql("PROJ", mark, "America/New_York", "status = Done OR labels = x") == (
        'project = "PROJ" AND updated >= "2026-07-01 06:15" AND (status = Done OR labels = x) '
        "ORDER BY updated DESC, key DESC"
    )
    assert jql_literal(mark, "Asia/Kolkata") == "2026-07-01 15:45"


@pytest.mark.parametrize(
    ("text", "instant"),
    [
        ("2016-09-28T23:08:32.097+1000", datetime(2016, 9, 28, 13, 8, 32, 97000, tzinfo=UTC)),
        ("2016-09-28T05:08:32.097-0800", datetime(2016, 9, 28, 13, 8, 32, 97000, tzinfo=UTC)),
        ("2016-09-28T18:53:32.000+0545", datetime(2016, 9, 28, 13, 8, 32, tzinfo=UTC)),
        ("2016-09-28T13:08:32+0000", datetime(2016, 9, 28, 13, 8, 32, tzinfo=UTC)),
        (None, None),
    ],
)
def test_jira_timestamps_parse_to_utc(text: str | None, instant: datetime | None) -> None:
    assert parse_time(text) == instant
