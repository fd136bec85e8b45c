"""The job page's Rejected rows and Schema changes sections in a real headless Chromium: a reader
sees the quarantine (count, newest rows, a page through all of them) and the schema history but
no retry button; an admin retries from the page and sees what happened. Nothing secret on any
page. SQLite, a server for each test (tests/dashboard/test_dashboard.py drives the browser)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from highmark.api import dashboard
from highmark.api.app import create_app
from highmark.project import Project
from tests.api.quarantine import JOB, MASK_KEY, assert_secret_free, quarantine_project
from tests.api.support import ADMIN_TOKEN, READ_TOKEN, uvicorn_server
from tests.dashboard.test_dashboard import CHROMIUM, Page, browser

__all__ = ["browser"]  # the module's browser fixture, shared

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium")
sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture
def data_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'data.db'}"


@pytest.fixture
def served(
    data_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, Project]]:
    """A quarantine of its own for each test (the admin's retry empties it)."""
    names = ("HM_READ_TOKEN", "HM_ADMIN_TOKEN", "HM_MASK_KEY")
    for name, value in zip(names, (READ_TOKEN, ADMIN_TOKEN, MASK_KEY), strict=True):
        monkeypatch.setenv(name, value)
    engine = create_engine(data_url)
    try:
        project, _runs = quarantine_project(data_url, tmp_path, engine)
        with uvicorn_server(create_app(project)) as base:
            yield base, project
    finally:
        engine.dispose()


def _record_ids(page: Any) -> list[str]:
    cells = page.locator("table.rejected tbody tr td:nth-child(4)")
    return [c.strip() for c in cells.all_inner_texts()]


def test_a_reader_sees_the_quarantine_and_the_schema_history(
    browser: Any, served: tuple[str, Project], monkeypatch: pytest.MonkeyPatch
) -> None:
    expect = sync_api.expect
    server, _project = served
    monkeypatch.setattr(dashboard, "JOB_REJECTED", 3)
    monkeypatch.setattr(dashboard, "REJECTED_PAGE", 3)
    page = Page(browser, server)
    try:
        page.login(READ_TOKEN)
        job = page.go(f"/jobs/{JOB}")
        section = job.locator("#rejected-rows")
        expect(section.locator("#rejected-count")).to_have_text("4")
        assert _record_ids(section) == ["13", "11", "7"]  # the 3 newest
        expect(section.locator("td.error-cell").first).not_to_be_empty()
        expect(section.get_by_role("button", name="Retry rejected rows")).to_have_count(0)
        changes = job.locator("#schema-changes table tbody tr")
        expect(changes).to_have_count(1)
        expect(changes.first).to_contain_text("note")
        expect(changes.first.locator(".badge")).to_have_text("add")
        assert_secret_free(job.content())

        # Every row, a page at a time.
        section.get_by_role("link", name="all 4").click()
        job.wait_for_url(re.compile(rf"/jobs/{JOB}/rejected$"))
        assert _record_ids(job) == ["13", "11", "7"]
        job.get_by_role("link", name="Older").click()
        assert _record_ids(job) == ["3"]
        expect(job.get_by_role("link", name="Older")).to_have_count(0)
        first_run = job.locator("table.rejected tbody tr td:nth-child(2) a").first.inner_text()
        page.go(f"/jobs/{JOB}/rejected?run_id={first_run}")
        assert _record_ids(job) == ["11", "7", "3"]
        assert_secret_free(job.content())
        other = page.go("/jobs/prs")  # an API job: bad records too, by its on_bad_rows
        expect(other.locator("#rejected-rows")).to_contain_text(
            "No rows in quarantine (on_bad_rows: fail: a bad row fails the run)."
        )
        expect(other.locator("#schema-changes")).to_contain_text("No schema change recorded")
        expect(page.go("/jobs/broken").locator("#rejected-rows")).to_contain_text(
            "(on_bad_rows: fail: a bad row fails the run)"
        )
        missing = page.page.goto(server + "/jobs/nope/rejected")
        assert missing is not None and missing.status == 404
        assert [e for e in page.errors if "404" not in e] == []
    finally:
        page.close()


def test_an_admin_retries_from_the_job_page(
    browser: Any, served: tuple[str, Project], data_url: str
) -> None:
    expect = sync_api.expect
    server, project = served
    page = Page(browser, server)
    try:
        page.login(ADMIN_TOKEN)
        job = page.go(f"/jobs/{JOB}")
        job.locator("#rejected-rows").scroll_into_view_if_needed()
        page.shot("job-rejected")
        job.get_by_role("button", name="Retry rejected rows").click()
        job.wait_for_url(re.compile(rf"/jobs/{JOB}\?error="))
        expect(job.locator(".flash.bad")).to_contain_text("0 rejected row(s) loaded, 4 refused")
        expect(job.locator("#rejected-count")).to_have_text("4")

        engine = create_engine(data_url)
        with engine.begin() as conn:
            conn.execute(text("UPDATE orders SET amount = 1 WHERE amount < 0"))
        engine.dispose()
        job.get_by_role("button", name="Retry rejected rows").click()
        job.wait_for_url(re.compile(rf"/jobs/{JOB}\?notice="))
        expect(job.locator(".flash.ok")).to_contain_text("4 rejected row(s) loaded, 0 refused")
        expect(job.locator("#rejected-count")).to_have_text("0")
        expect(job.locator("#rejected-rows")).to_contain_text("No rows in quarantine")
        expect(job.get_by_role("button", name="Retry rejected rows")).to_have_count(0)
        assert page.errors == []
        # Both retries are in the audit log, with what they did.
        retries = [
            (a.actor, a.target, a.status_code, a.outcome)
            for a in project.audit(limit=None)
            if a.action == "POST /jobs/{job_id}/rejected/retry"
        ]
        assert [r[:3] for r in retries] == [("ops", JOB, 303)] * 2
        assert "4 rejected row(s) loaded" in retries[0][3]
    finally:
        page.close()


def test_the_quarantine_is_readable_on_a_phone(browser: Any, served: tuple[str, Project]) -> None:
    server, _project = served
    page = Page(browser, server, phone=True)
    try:
        page.login(ADMIN_TOKEN)
        for path in (f"/jobs/{JOB}", f"/jobs/{JOB}/rejected"):
            view = page.go(path)
            # Nothing wider than the screen but the tables, which scroll inside their box.
            overflow = view.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 1, (path, overflow)
        assert page.errors == []
    finally:
        page.close()
