"""What the Jira connector's tests share: a fake Jira whose clock is highmark's, a project file
with one Jira job, and the target table read back in the shape of the fake's ``rows()``.

The fixtures ``jira`` and ``jira_project`` are imported by the test modules that use them (``from
tests.connectors.jira_support import jira_fixture, jira_project_fixture``):
tests/connectors/conftest.py belongs to every connector's tests, and these are Jira's alone.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from sqlalchemy import MetaData, Table, create_engine, select

from highmark import Project, clock
from highmark.cli import cli as highmark_cli
from highmark.models import RunRecord, RunStatus
from tests.conftest import sa_url
from tests.fakes.jira import FakeJira, SearchCall

EMAIL = "etl-bot@acme.example"
# Shaped like an Atlassian API token; it must never show anywhere.
TOKEN = "ATATT3xFfGF0Zq8sJiraS3cr3tT0ken-9f8e7d6c5b4a=F00DCAFE"
BASIC = base64.b64encode(f"{EMAIL}:{TOKEN}".encode()).decode()
SECRETS = (TOKEN, BASIC)
ENV = {"JIRA_EMAIL": EMAIL, "JIRA_API_TOKEN": TOKEN}
JOB = "issues"
# A day before the fake clock's start (2026-01-15 12:00 UTC): issues seeded from here are well
# behind the job's lag, so their marks are their own `updated`.
DAY_AGO = datetime(2026, 1, 14, 12, 0, tzinfo=UTC)
OLD_SEARCH = ("/rest/api/2/search", "/rest/api/3/search", "/rest/api/latest/search")
COLUMNS = ("id", "key", "project", "summary", "issue_type", "status", "created", "updated")


def at(text: str) -> datetime:
    """A UTC instant from ``"2026-01-15 10:15:42"``."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture(name="jira")
def jira_fixture() -> Iterator[FakeJira]:
    """A fake Jira site (projects PROJ and TEST) logged into as EMAIL/TOKEN. Its clock is
    highmark's clock, and highmark's waits (backoff, ``Retry-After``) pass fake time: no test
    really waits. Whatever a test does, the removed ``/rest/api/3/search`` is never called."""
    with FakeJira(email=EMAIL, token=TOKEN) as fake:
        fake.add_project("PROJ", name="Project")
        fake.add_project("TEST", name="Testing")
        clock.set_clock(fake.clock.now)
        clock.set_sleep(fake.clock.sleep)
        try:
            yield fake
        finally:
            clock.set_clock(None)
            clock.set_sleep(None)
        called = {r.path.rstrip("/") for r in fake.requests}
        assert not called & set(OLD_SEARCH), "the removed search endpoint was called"


@pytest.fixture(name="jira_sleeps")
def jira_sleeps_fixture(jira: FakeJira) -> list[float]:
    """Every wait highmark makes (seconds, in order); each passes on the fake's clock."""
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        jira.clock.sleep(seconds)

    clock.set_sleep(sleep)
    return sleeps


@dataclass
class JiraProject:
    """A project file with one Jira job, ``issues``, reading ``fake`` into ``target_url``."""

    fake: FakeJira
    path: Path
    target_url: str
    control_url: str
    source: dict[str, Any] = field(default_factory=dict)
    job: dict[str, Any] = field(default_factory=dict)
    url: str | None = None  # the connection's URL (default: the fake's site URL)

    def write(self, **source: Any) -> JiraProject:
        """(Re)write the file; ``source`` keys (``projects``, ``jql``, ``max_results``…) and the
        job's own keys (``lag``, ``schedule``, ``target``…) are told apart by name."""
        for key, value in source.items():
            if key in ("lag", "schedule", "target", "load_type", "retry_count"):
                self.job[key] = value
            else:
                self.source[key] = value
        job: dict[str, Any] = {
            "load_type": "incremental",
            "source": {"connection": "jira", "projects": ["PROJ", "TEST"], **self.source},
            "target": {"connection": "dw"},
            **self.job,
        }
        document = {
            "control": self.control_url,
            "connections": {
                "jira": {
                    "type": "jira",
                    "url": self.url or self.fake.url,
                    "email": "${JIRA_EMAIL}",
                    "token": "${JIRA_API_TOKEN}",
                },
                "dw": self.target_url,
            },
            "jobs": {JOB: job},
        }
        self.path.write_text(yaml.safe_dump(document, sort_keys=False))
        return self

    def load(self) -> Project:
        return Project.load(self.path)

    def run(self, **options: Any) -> RunRecord:
        """Run the job once in this process (on the fake clock)."""
        return self.load().run(JOB, **options)

    def ok(self, **options: Any) -> RunRecord:
        """Run the job once; it must succeed."""
        record = self.run(**options)
        assert record.run_status is RunStatus.SUCCESS, (record.error_message, record.error_details)
        return record

    def target(self, prefix: str = "jira_") -> list[dict[str, Any]]:
        """The issues table as the fake's ``rows()`` shape (``assignee`` is the account id)."""
        return read_issues(self.target_url, prefix)

    def raw(self, key: str) -> dict[str, Any]:
        """The ``raw`` JSON stored for one issue."""
        engine = create_engine(sa_url(self.target_url))
        try:
            table = Table("jira_issues", MetaData(), autoload_with=engine)
            with engine.connect() as conn:
                value = conn.execute(select(table.c.raw).where(table.c.key == key)).scalar_one()
        finally:
            engine.dispose()
        return value if isinstance(value, dict) else json.loads(value)

    def marks(self) -> dict[str, datetime | None]:
        """The job's marks by project (``source_table``), each checked to be on ``updated``."""
        marks = {}
        for mark in self.load().watermarks(JOB):
            assert (mark.watermark_column, mark.watermark_type) == ("updated", "timestamp")
            marks[mark.source_table] = mark.last_value_timestamp
        return marks

    def checkpoint(self) -> dict[str, Any] | None:
        return self.load().checkpoint(JOB)

    def cli(self, *args: str) -> Result:
        """``highmark --project FILE ARGS…`` in this process (on the fake clock)."""
        return invoke(self.path, *args)


@pytest.fixture(name="jira_project")
def jira_project_fixture(
    jira: FakeJira, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., JiraProject]:
    """A factory of :class:`JiraProject` (target and control on SQLite unless given); the email
    and token reach the file through ``${JIRA_EMAIL}`` and ``${JIRA_API_TOKEN}``."""
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)

    def make(target_url: str | None = None, **source: Any) -> JiraProject:
        url = target_url or f"sqlite:///{tmp_path / 'dw.db'}"
        control = url if target_url else f"sqlite:///{tmp_path / 'control.db'}"
        project = JiraProject(jira, tmp_path / "highmark.yml", url, control)
        return project.write(**source)

    return make


def invoke(path: Path, *args: str) -> Result:
    """``highmark --project PATH ARGS…`` through click's runner, stdout and stderr apart."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        return CliRunner().invoke(highmark_cli, ["--project", str(path), *args])
    finally:  # the command points the root logger at its captured stderr: undo that
        root.handlers[:] = handlers
        root.setLevel(level)


def read_issues(url: str, prefix: str = "jira_") -> list[dict[str, Any]]:
    engine = create_engine(sa_url(url))
    try:
        table = Table(f"{prefix}issues", MetaData(), autoload_with=engine)
        columns = [table.c[name] for name in COLUMNS]
        with engine.connect() as conn:
            rows = conn.execute(select(*columns, table.c.assignee_account_id)).mappings().all()
    finally:
        engine.dispose()
    found = []
    for row in rows:
        values = {name: row[name] for name in COLUMNS}
        values["assignee"] = row["assignee_account_id"]
        values["created"] = utc(row["created"])
        values["updated"] = utc(row["updated"])
        found.append(values)
    return sorted(found, key=lambda r: int(r["id"]))


def utc(value: Any) -> datetime | None:
    """A timestamp as every backend returns it (aware, naive UTC, or SQLite's text), in UTC."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return clock.ensure_utc(value)


def expected(
    fake: FakeJira, *projects: str, skip_types: tuple[str, ...] = ()
) -> list[dict[str, Any]]:
    """What a complete load of ``projects`` holds, issues of ``skip_types`` left out."""
    return [r for r in fake.rows(*projects) if r["issue_type"] not in skip_types]


def greatest_updated(rows: list[dict[str, Any]], project: str) -> datetime:
    return max(r["updated"] for r in rows if r["project"] == project)


def searches_of(fake: FakeJira, project: str, since: int = 0) -> list[SearchCall]:
    """The searches (from the ``since``-th on) of one project's issues."""
    return [s for s in fake.searches[since:] if s.jql.startswith(f'project = "{project}"')]


def served(calls: list[SearchCall]) -> list[str]:
    """Every key the searches returned, in order (a key twice: served twice)."""
    return [key for call in calls for key in call.keys]


def floor_minute(when: datetime) -> datetime:
    return when.replace(second=0, microsecond=0)


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)
