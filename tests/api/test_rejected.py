"""The quarantine and the schema history through the REST API, on SQLite and PostgreSQL control
stores: a job quarantines bad rows (a target that refuses negative amounts), ``GET …/rejected``
lists them a page at a time, newest first, by run; ``POST …/rejected/retry`` does what ``highmark
rejected retry`` does (admin only, audited); ``GET …/schema-changes`` lists what ``highmark
schema history`` lists. Nothing secret (a connection's password, a mask key, a masked value)
appears in any answer."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, text

from highmark.api.app import create_app
from highmark.project import Project
from tests.api.quarantine import (
    JOB,
    LATE_BAD,
    MASK_KEY,
    assert_secret_free,
    quarantine_project,
)
from tests.api.support import ADMIN, READ, WAIT_SECONDS, uvicorn_server
from tests.helpers import snapshot

pytestmark = [
    pytest.mark.usefixtures("api_env"),
    pytest.mark.parametrize("backend", ["sqlite", "postgresql"]),
]


@contextmanager
def quarantined(
    url: str, tmp_path: Path, engine_for: Callable[[str], Engine]
) -> Iterator[tuple[httpx.Client, Project, list[int]]]:
    """The quarantine project (tests/api/quarantine.py) served; yields its runs' ids too."""
    project, runs = quarantine_project(url, tmp_path, engine_for(url))
    app = create_app(project)
    with uvicorn_server(app) as base, httpx.Client(base_url=base, timeout=WAIT_SECONDS) as client:
        yield client, project, runs


@pytest.fixture(autouse=True)
def mask_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HM_MASK_KEY", MASK_KEY)


def test_list_page_and_filter_the_quarantine(
    db_url: str, tmp_path: Path, engine_for: Callable[[str], Engine]
) -> None:
    with quarantined(db_url, tmp_path, engine_for) as (client, project, (first, second)):
        path = f"/api/v1/jobs/{JOB}/rejected"
        listed = client.get(path, headers=READ)
        assert listed.status_code == 200, listed.text
        rows = listed.json()
        assert [r["source_record_id"] for r in rows] == [LATE_BAD, 11, 7, 3]  # newest first
        assert [r["run_id"] for r in rows] == [second, first, first, first]
        assert listed.headers["x-total-count"] == "4" and "link" not in listed.headers
        row = rows[-1]
        assert {
            "rejected_id", "run_id", "source_table", "source_record_id", "source_data",
            "error_message", "error_column", "error_constraint", "rejected_at", "retry_count",
        } <= set(row)  # fmt: skip
        assert row["source_table"] == "orders" and row["source_data"]["id"] == 3
        assert row["source_data"]["amount"] in ("-1.00", "-1")
        assert len(row["source_data"]["customer"]) == 64  # the keyed hash of "customer 3"
        assert row["error_message"] and row["rejected_at"].endswith("Z")
        # The same records as `highmark rejected --json` (oldest first there).
        assert rows[::-1] == [r.to_json() for r in project.rejected(JOB)]

        # Paged: two at a time, following the Link header to the end.
        seen: list[int] = []
        url: str | None = f"{path}?limit=2"
        pages = 0
        while url is not None:
            page = client.get(url, headers=READ)
            assert page.status_code == 200 and page.headers["x-total-count"] == "4"
            assert len(page.json()) <= 2
            seen += [r["source_record_id"] for r in page.json()]
            url = page.links.get("next", {}).get("url")
            pages += 1
        assert (seen, pages) == ([LATE_BAD, 11, 7, 3], 2)
        older = client.get(path, headers=READ, params={"before": rows[1]["rejected_id"]}).json()
        assert [r["source_record_id"] for r in older] == [7, 3]

        # By run.
        by_run = client.get(path, headers=READ, params={"run_id": first, "limit": 2})
        assert [r["source_record_id"] for r in by_run.json()] == [11, 7]
        assert by_run.headers["x-total-count"] == "3"
        assert f"run_id={first}" in by_run.links["next"]["url"]
        assert client.get(path, headers=READ, params={"run_id": 999}).json() == []

        # Bad input, unknown job, no token: the API's usual answers.
        for bad in ({"limit": 0}, {"limit": 1001}, {"before": "x"}, {"run_id": "last"}):
            assert client.get(path, headers=READ, params=bad).status_code == 422, bad
        unknown = client.get("/api/v1/jobs/nope/rejected", headers=READ)
        assert unknown.status_code == 404 and unknown.json() == {"detail": "unknown job 'nope'"}
        assert client.get(path).status_code == 401
        assert_secret_free(listed.text, *(client.get(path, headers=ADMIN).text,))


def test_retry_as_the_cli_does_admin_only_and_audited(
    db_url: str, tmp_path: Path, engine_for: Callable[[str], Engine]
) -> None:
    with quarantined(db_url, tmp_path, engine_for) as (client, project, _runs):
        engine = engine_for(db_url)
        path = f"/api/v1/jobs/{JOB}/rejected/retry"
        assert client.post(path).status_code == 401
        refused = client.post(path, headers=READ)
        assert refused.status_code == 403 and "read-only" in refused.json()["detail"]
        assert client.post("/api/v1/jobs/nope/rejected/retry", headers=ADMIN).status_code == 404
        # An API job retries too (tests/connectors/test_api_bad_rows.py); with nothing in its
        # quarantine, nothing is done (its server and its tables are never touched).
        other = client.post("/api/v1/jobs/prs/rejected/retry", headers=ADMIN)
        assert other.status_code == 200, other.text
        assert other.json() == {"job_id": "prs", "loaded": 0, "refused": 0, "gone": 0,
                                "remaining": 0}  # fmt: skip
        assert_secret_free(other.text)

        # Nothing fixed yet: every row is refused again, and stays.
        again = client.post(path, headers=ADMIN)
        assert again.status_code == 200, again.text
        assert again.json() == {
            "job_id": JOB, "loaded": 0, "refused": 4, "gone": 0, "remaining": 4,
        }  # fmt: skip
        assert {r.retry_count for r in project.rejected(JOB)} == {1}

        # Two rows fixed at the source, one deleted there, one still bad.
        with engine.begin() as conn:
            conn.execute(text("UPDATE orders SET amount = 5 WHERE id IN (3, 7)"))
            conn.execute(text("DELETE FROM orders WHERE id = 11"))
        done = client.post(path, headers=ADMIN).json()
        assert done == {"job_id": JOB, "loaded": 2, "refused": 1, "gone": 1, "remaining": 1}
        [left] = client.get(f"/api/v1/jobs/{JOB}/rejected", headers=READ).json()
        assert left["source_record_id"] == LATE_BAD and left["retry_count"] == 2
        # The target now holds every source row but the one still refused.
        source_ids = {r["id"] for r in snapshot(engine, "orders")}
        assert {r["id"] for r in snapshot(engine, "orders_copy")} == source_ids - {LATE_BAD}

        audit = [(a.actor, a.action, a.target, a.status_code) for a in project.audit(limit=None)]
        action = "POST /api/v1/jobs/{job_id}/rejected/retry"
        assert audit.count(("ops", action, JOB, 200)) == 2
        assert ("grafana", action, JOB, 403) in audit and ("ops", action, "nope", 404) in audit
        outcomes = [a.outcome for a in project.audit(limit=None) if a.status_code == 200]
        assert (
            outcomes[0]
            == f"{JOB}: 2 rejected row(s) loaded, 1 refused again, 1 no longer in the source"
        )
        assert_secret_free(*(str(a.to_json()) for a in project.audit(limit=None)))


def test_schema_changes_as_schema_history_shows_them(
    db_url: str, tmp_path: Path, engine_for: Callable[[str], Engine]
) -> None:
    with quarantined(db_url, tmp_path, engine_for) as (client, project, (_first, second)):
        path = f"/api/v1/jobs/{JOB}/schema-changes"
        changes = client.get(path, headers=READ)
        assert changes.status_code == 200, changes.text
        [added] = changes.json()
        assert (added["change_kind"], added["column_name"], added["run_id"]) == (
            "add", "note", second,
        )  # fmt: skip
        assert added["target_table"] == "orders_copy" and added["applied_at"].endswith("Z")
        assert changes.json() == [c.to_json() for c in project.schema_history(JOB)]
        assert client.get("/api/v1/jobs/broken/schema-changes", headers=READ).json() == []
        assert client.get(path, headers=READ, params={"limit": 0}).status_code == 422
        unknown = client.get("/api/v1/jobs/nope/schema-changes", headers=READ)
        assert unknown.status_code == 404 and unknown.json() == {"detail": "unknown job 'nope'"}
        assert client.get(path).status_code == 401

        # Documented: in the OpenAPI document and on /docs, the retry marked admin.
        spec = client.get("/openapi.json").json()["paths"]
        assert {path.replace(JOB, "{job_id}"), "/api/v1/jobs/{job_id}/rejected"} <= set(spec)
        retry = spec["/api/v1/jobs/{job_id}/rejected/retry"]["post"]
        assert "(admin)" in retry["summary"]
        docs = client.get("/docs").text
        assert "/api/v1/jobs/{job_id}/rejected/retry" in docs and "X-Total-Count" in docs
