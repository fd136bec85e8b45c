"""The dashboard in a real headless Chromium (Debian's ``chromium``, driven by Playwright):
log in, every page loads without a console error, a run started from the Jobs page appears and
finishes in the Job page's history (the page refreshes itself), a failed run's error shows on its
Run page. Few and quick: one server per test module, SQLite.

``HIGHMARK_SCREENSHOTS=DIR`` saves the pages' screenshots there (docs/ has them).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from highmark.api.app import create_app
from highmark.project import Project
from tests.api.support import (
    ADMIN_TOKEN,
    READ_TOKEN,
    uvicorn_server,
    write_api_project,
)
from tests.helpers import seed_orders

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
WAIT_MS = 60_000

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium")
sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    directory = tmp_path_factory.mktemp("dashboard")
    url = f"sqlite:///{directory / 'data.db'}"
    from sqlalchemy import create_engine

    engine = create_engine(url)
    seed_orders(engine, 30)
    engine.dispose()
    os.environ["HM_READ_TOKEN"], os.environ["HM_ADMIN_TOKEN"] = READ_TOKEN, ADMIN_TOKEN
    try:
        project = Project.load(write_api_project(directory / "highmark.yml", url))
        with uvicorn_server(create_app(project)) as base:
            yield base
    finally:
        del os.environ["HM_READ_TOKEN"], os.environ["HM_ADMIN_TOKEN"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield chromium
        chromium.close()


class Page:
    """A browser page that records every console error and uncaught exception."""

    def __init__(self, browser: Any, base: str, *, phone: bool = False) -> None:
        viewport = {"width": 390, "height": 844} if phone else {"width": 1280, "height": 800}
        self.context = browser.new_context(viewport=viewport, is_mobile=phone)
        self.page = self.context.new_page()
        self.page.set_default_timeout(WAIT_MS)
        self.base = base
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def go(self, path: str) -> Any:
        response = self.page.goto(self.base + path)
        assert response is not None and response.ok, (path, response and response.status)
        return self.page

    def login(self, token: str) -> None:
        self.page.goto(self.base + "/")
        self.page.fill("#token", token)
        self.page.click("button[type=submit]")
        self.page.wait_for_url(self.base + "/")

    def shot(self, name: str) -> None:
        folder = os.environ.get("HIGHMARK_SCREENSHOTS")
        if folder:
            self.page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)

    def close(self) -> None:
        self.context.close()


def test_login_and_every_page_loads_without_console_errors(browser: Any, server: str) -> None:
    expect = sync_api.expect
    page = Page(browser, server)
    try:
        landing = page.page
        landing.goto(server + "/jobs/sync")
        assert "/login" in landing.url  # a page needs a session
        landing.fill("#token", "not-a-valid-token-xx")
        landing.click("button[type=submit]")
        expect(landing.locator(".flash.bad")).to_contain_text("not valid")
        assert [e for e in page.errors if "401" not in e] == []  # the refusal itself is a 401
        page.errors.clear()

        page.login(READ_TOKEN)
        cookie = next(c for c in page.context.cookies() if c["name"] == "highmark_session")
        assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
        assert READ_TOKEN not in cookie["value"]
        jobs = page.go("/")
        expect(jobs.locator("tr[data-job=sync]")).to_be_visible()
        expect(jobs.get_by_role("button", name="Run now")).to_have_count(0)  # read-only
        for path in ("/jobs/sync", "/jobs/broken", "/failures", "/failures?since=7d", "/docs"):
            page.go(path)
        expect(
            page.go("/docs").locator("code", has_text="/api/v1/jobs/{job_id}/runs").first
        ).to_be_visible()
        assert (
            page.page.evaluate(
                "document.querySelectorAll('script[src^=http], link[href^=http]').length"
            )
            == 0
        )
        assert page.errors == []
    finally:
        page.close()


def test_run_from_the_jobs_page_and_read_a_failure(browser: Any, server: str) -> None:
    expect = sync_api.expect
    page = Page(browser, server)
    try:
        page.login(ADMIN_TOKEN)
        jobs = page.go("/")
        page.shot("jobs-before")
        jobs.locator("tr[data-job=sync]").get_by_role("button", name="Run now").click()
        jobs.wait_for_url(re.compile(r"/jobs/sync\?notice="))
        expect(jobs.locator(".flash.ok")).to_contain_text("started")
        first = jobs.locator("#runs tbody tr").first
        expect(first.locator("td").nth(9)).to_have_text("api")  # the By column
        # The page refreshes itself while the run is live, until it shows the end.
        expect(first.locator(".badge").first).to_have_text("success", timeout=WAIT_MS)
        expect(first.locator("td").nth(4)).to_have_text("30")
        page.shot("job")

        page.go("/")
        jobs.locator("tr[data-job=broken]").get_by_role("button", name="Run now").click()
        jobs.wait_for_url(re.compile(r"/jobs/broken"))
        failed = jobs.locator("#runs tbody tr").first
        expect(failed.locator(".badge").first).to_have_text("failed", timeout=WAIT_MS)
        failed.locator("a").first.click()
        expect(jobs.locator("#error .error-message")).to_contain_text("no_such_table")
        expect(jobs.locator("#error pre.json")).to_contain_text('"error_class": "permanent"')
        jobs.locator("#error summary").click()
        expect(jobs.locator("#error pre.stack")).to_contain_text("Traceback")
        page.shot("run-failed")

        failures = page.go("/failures")
        expect(failures.locator("table.failures tbody tr")).to_have_count(1)
        page.shot("failures")
        page.go("/")
        page.shot("jobs")
        assert page.errors == []
    finally:
        page.close()


def test_readable_on_a_phone(browser: Any, server: str) -> None:
    page = Page(browser, server, phone=True)
    try:
        page.login(ADMIN_TOKEN)
        for path in ("/", "/jobs/sync"):
            view = page.go(path)
            # Nothing wider than the screen but the tables, which scroll inside their box.
            overflow = view.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 1, (path, overflow)
        page.shot("phone-job")
        assert page.errors == []
    finally:
        page.close()
