"""The REST API against the real application on SQLite and PostgreSQL control stores: the auth
matrix over every route, every route's answer, idempotent triggering, 409 on a live run, runs that
really run (in child processes) and end ``success`` with ``triggered_by = 'api'``, the audit log."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy.engine import Engine

from highmark.api.auth import MAX_FAILURES, FailureLimiter
from highmark.models import Counts, RunStatus
from tests.api.support import ADMIN, ADMIN_TOKEN, READ, READ_TOKEN, served, wait_for_run

pytestmark = [
    pytest.mark.usefixtures("api_env"),
    pytest.mark.parametrize("backend", ["sqlite", "postgresql"]),
]

# Every /api/v1 route: (method, path, needs admin).
ROUTES = [
    ("GET", "/api/v1/jobs", False),
    ("GET", "/api/v1/jobs/sync", False),
    ("POST", "/api/v1/jobs/sync/enable", True),
    ("POST", "/api/v1/jobs/sync/disable", True),
    ("POST", "/api/v1/jobs/sync/runs", True),
    ("POST", "/api/v1/jobs/sync/backfills", True),
    ("GET", "/api/v1/runs", False),
    ("GET", "/api/v1/runs/1", False),
    ("POST", "/api/v1/runs/1/cancel", True),
    ("GET", "/api/v1/jobs/sync/watermark", False),
    ("PUT", "/api/v1/jobs/sync/watermark", True),
    ("DELETE", "/api/v1/jobs/sync/watermark", True),
    ("POST", "/api/v1/jobs/sync/watermark/rollback", True),
    ("GET", "/api/v1/jobs/sync/watermark/history", False),
    ("GET", "/api/v1/jobs/sync/schema-changes", False),
    ("GET", "/api/v1/jobs/sync/rejected", False),
    ("POST", "/api/v1/jobs/sync/rejected/retry", True),
    ("GET", "/api/v1/jobs/sync/checkpoint", False),
    ("DELETE", "/api/v1/jobs/sync/checkpoint", True),
    ("GET", "/api/v1/status", False),
    ("GET", "/api/v1/failures", False),
    ("GET", "/api/v1/metrics", False),
    ("GET", "/api/v1/health", False),
]


def _templates(app: FastAPI) -> set[tuple[str, str]]:
    """Every (method, path) of the application under /api/v1, from its OpenAPI document."""
    return {
        (method.upper(), path)
        for path, item in app.openapi()["paths"].items()
        if path.startswith("/api/v1")
        for method in item
    }


def test_auth_matrix(db_url: str, tmp_path: Path, engine_for: Callable[[str], Engine]) -> None:
    with served(db_url, tmp_path, engine_for) as (client, project, app):
        # The matrix sends ~70 wrong tokens from one address: no limit here (it has its test).
        app.state.auth.failures = FailureLimiter(limit=10_000)
        # The matrix covers every route the application has.
        covered = {
            (m, p.replace("/sync", "/{job_id}").replace("/1", "/{run_id}")) for m, p, _ in ROUTES
        }
        assert covered == _templates(app)
        for method, path, admin in ROUTES:
            nobody = client.request(method, path)
            assert nobody.status_code == 401, (method, path, nobody.text)
            assert nobody.headers["www-authenticate"] == "Bearer"
            for wrong in (
                "Bearer not-a-token-at-all-xx",
                f"Basic {ADMIN_TOKEN}",
                f"Bearer {READ_TOKEN}x",
            ):
                refused = client.request(method, path, headers={"Authorization": wrong})
                assert refused.status_code == 401, (method, path, wrong)
            as_reader = client.request(method, path, headers=READ)
            if admin:
                assert as_reader.status_code == 403, (method, path, as_reader.text)
                assert "read-only" in as_reader.json()["detail"]
            else:
                expected = 404 if path == "/api/v1/runs/1" else 200  # no run 1 yet: past auth
                assert as_reader.status_code == expected, (method, path, as_reader.text)
        # A read token may call every read route; an admin token too.
        assert client.get("/api/v1/status", headers=ADMIN).status_code == 200

        # Every refused admin call is in the audit log, naming who (never the token).
        audit = project.audit(limit=None)
        admin_routes = [r for r in ROUTES if r[2]]
        assert len(audit) == len(admin_routes) * 5
        assert {a.actor for a in audit} == {"(no token)", "(invalid token)", "grafana"}
        assert {a.status_code for a in audit} == {401, 403}
        assert {a.action for a in audit} >= {"POST /api/v1/jobs/{job_id}/runs"}
        texts = " ".join(str(a.to_json()) for a in audit)
        assert READ_TOKEN not in texts and ADMIN_TOKEN not in texts


def test_an_address_that_sends_too_many_wrong_tokens_must_wait(
    db_url: str, tmp_path: Path, engine_for: Callable[[str], Engine]
) -> None:
    with served(db_url, tmp_path, engine_for) as (client, project, _app):
        wrong = {"Authorization": f"Bearer {ADMIN_TOKEN}-guess"}
        for _ in range(MAX_FAILURES):
            assert client.get("/api/v1/jobs", headers=wrong).status_code == 401
        # Even the right token waits now: no token is compared for this address.
        for method, path, headers in [
            ("GET", "/api/v1/jobs", ADMIN),
            ("POST", "/api/v1/jobs/sync/disable", ADMIN),
        ]:
            refused = client.request(method, path, headers=headers)
            assert refused.status_code == 429, refused.text
            assert "too many wrong tokens" in refused.json()["detail"]
            assert 1 <= int(refused.headers["retry-after"]) <= 60
        login = client.post("/login", data={"token": ADMIN_TOKEN, "next": "/"})
        assert login.status_code == 429 and "Too many wrong tokens" in login.text
        audit = project.audit(limit=None)
        assert [(a.actor, a.status_code) for a in audit if a.status_code == 429] == [
            ("(too many wrong tokens)", 429), ("(too many wrong tokens)", 429),
        ]  # fmt: skip


def test_a_triggered_run_reaches_success_with_triggered_by_api(
    db_url: str, tmp_path: Path, engine_for: Callable[[str], Engine]
) -> None:
    with served(db_url, tmp_path, engine_for) as (client, project, _app):
        started = client.post("/api/v1/jobs/sync/runs", headers=ADMIN)
        assert started.status_code == 202, started.text
        run = started.json()
        assert run["run_status"] == "running" and run["triggered_by"] == "api"
        assert started.headers["location"] == f"/api/v1/runs/{run['run_id']}"
        finished = wait_for_run(client, run["run_id"])
        assert finished["run_status"] == "success", finished
        assert (finished["rows_read"], finished["rows_written"]) == (12, 12)
        assert finished["triggered_by"] == "api" and finished["pid"] != run.get("host")
        # As `highmark runs` sees it.
        [record] = project.runs("sync")
        assert record.triggered_by == "api" and record.run_status is RunStatus.SUCCESS

        # A failing job fails in its run, and shows in /failures.
        broken = client.post("/api/v1/jobs/broken/runs", headers=ADMIN).json()
        failed = wait_for_run(client, broken["run_id"])
        assert failed["run_status"] == "failed" and "no_such_table" in failed["error_message"]
        failures = client.get("/api/v1/failures", params={"since": "1h"}, headers=READ).json()
        assert [f["run_id"] for f in failures] == [broken["run_id"]]
        assert client.get("/api/v1/failures", params={"job_id": "sync"}, headers=READ).json() == []

        audit = project.audit()
        assert [(a.actor, a.status_code, a.outcome) for a in audit] == [
            ("ops", 202, f"run {broken['run_id']} started"),
            ("ops", 202, f"run {run['run_id']} started"),
        ]


def test_idempotent_triggering_and_409_on_a_live_run(
    db_url: str, tmp_path: Path, engine_for: Callable[[str], Engine]
) -> None:
    with served(db_url, tmp_path, engine_for) as (client, project, _app):
        key = {"Idempotency-Key": "deploy-2024-01-01-a"}
        first = client.post("/api/v1/jobs/sync/runs", headers={**ADMIN, **key})
        again = client.post("/api/v1/jobs/sync/runs", headers={**ADMIN, **key})
        assert first.status_code == again.status_code == 202
        assert again.json()["run_id"] == first.json()["run_id"]
        assert again.headers["idempotent-replayed"] == "true"
        wait_for_run(client, first.json()["run_id"])
        later = client.post("/api/v1/jobs/sync/runs", headers={**ADMIN, **key})
        assert later.json()["run_id"] == first.json()["run_id"]  # still the same run
        assert len(project.runs("sync")) == 1
        other = client.post("/api/v1/jobs/broken/runs", headers={**ADMIN, **key})
        assert other.status_code == 422 and "already started run" in other.json()["detail"]

        # A job with a live run (held here, by this process) answers 409 naming it.
        live = project.store.start_run(
            "sync", triggered_by="manual", host="elsewhere", pid=1, watermark_start=None
        )
        assert live is not None
        busy = client.post("/api/v1/jobs/sync/runs", headers=ADMIN)
        assert busy.status_code == 409, busy.text
        assert busy.json()["run_id"] == live.run_id and "already running" in busy.json()["detail"]
        fresh_key = client.post(
            "/api/v1/jobs/sync/runs", headers={**ADMIN, "Idempotency-Key": "k2"}
        )
        assert fresh_key.status_code == 409  # a refused request is not remembered...
        project.store.finish_failed(
            live, status=RunStatus.FAILED, error_message="gone", error_details=None, counts=Counts()
        )
        retried = client.post("/api/v1/jobs/sync/runs", headers={**ADMIN, "Idempotency-Key": "k2"})
        assert retried.status_code == 202  # ...so its retry starts the run
        wait_for_run(client, retried.json()["run_id"])

        # A live backfill does not block a regular run, but blocks a second backfill.
        backfill = project.store.start_run(
            "sync", triggered_by="manual", host="elsewhere", pid=1, watermark_start=None,
            backfill_window={"from": "1", "to": "2"},
        )  # fmt: skip
        assert backfill is not None
        window = {"from": "2024-01-01T12:00:00Z", "to": "2024-01-01T12:00:02Z"}
        blocked = client.post("/api/v1/jobs/sync/backfills", headers=ADMIN, json=window)
        assert blocked.status_code == 409 and "a backfill of job sync" in blocked.json()["detail"]
        regular = client.post("/api/v1/jobs/sync/runs", headers=ADMIN)
        assert regular.status_code == 202
        assert wait_for_run(client, regular.json()["run_id"])["run_status"] == "success"
        project.store.finish_failed(
            backfill, status=RunStatus.FAILED, error_message="gone", error_details=None,
            counts=Counts(),
        )  # fmt: skip


def test_every_route(db_url: str, tmp_path: Path, engine_for: Callable[[str], Engine]) -> None:
    with served(db_url, tmp_path, engine_for) as (client, project, _app):

        def get(path: str, **params: Any) -> Any:
            response = client.get(path, headers=READ, params=params)
            assert response.status_code == 200, (path, response.text)
            return response.json()

        jobs = get("/api/v1/jobs")
        assert [j["job_id"] for j in jobs] == ["broken", "sync"]
        assert {
            "job_id",
            "job_name",
            "load_type",
            "is_active",
            "checkpoint_data",
            "last_run_status",
        } <= set(jobs[1])
        assert client.get("/api/v1/jobs/nope", headers=READ).status_code == 404
        assert client.get("/api/v1/runs/999", headers=READ).status_code == 404

        run = wait_for_run(
            client, client.post("/api/v1/jobs/sync/runs", headers=ADMIN).json()["run_id"]
        )
        job = get("/api/v1/jobs/sync")
        assert job["last_run_id"] == run["run_id"] and job["definition"]["batch_size"] == 5
        assert job["watermarks"][0]["last_value_integer"] == 12 and job["live_run_id"] is None
        assert (
            get("/api/v1/runs", job_id="sync", status="success", since="1h", limit=5)[0]["run_id"]
            == run["run_id"]
        )
        assert get("/api/v1/runs", status="failed") == []
        assert client.get("/api/v1/runs", headers=READ, params={"since": "soon"}).status_code == 422
        assert get(f"/api/v1/runs/{run['run_id']}")["rows_read"] == 12
        [status] = [s for s in get("/api/v1/status") if s["job_id"] == "sync"]
        assert status["run_status"] == "success" and status["rows_written"] == 12

        # enable / disable
        assert client.post("/api/v1/jobs/sync/disable", headers=ADMIN).json()["is_active"] is False
        assert client.post("/api/v1/jobs/sync/enable", headers=ADMIN).json()["is_active"] is True

        # watermark: show, set, history, rollback, reset
        [mark] = get("/api/v1/jobs/sync/watermark")
        assert (
            mark["last_value_timestamp"] == "2024-01-01T12:00:04Z"
            and mark["last_value_integer"] == 12
        )
        put = client.put(
            "/api/v1/jobs/sync/watermark", headers=ADMIN, json={"value": "2024-01-01T12:00:01Z/3"}
        )
        assert put.status_code == 200 and put.json()[0]["last_value_integer"] == 3
        bad = client.put("/api/v1/jobs/sync/watermark", headers=ADMIN, json={"value": "soon"})
        assert bad.status_code == 422 and "is not an ISO 8601" in bad.json()["detail"]
        history = get("/api/v1/jobs/sync/watermark/history")
        assert [(h["change"], h["changed_by"]) for h in history] == [
            ("set", "api:ops"),
            ("run", f"run {run['run_id']}"),
        ]
        back = client.post(
            "/api/v1/jobs/sync/watermark/rollback", headers=ADMIN, json={"run_id": run["run_id"]}
        )
        assert back.status_code == 200 and back.json()[0]["last_value_integer"] == 12
        assert client.delete("/api/v1/jobs/sync/watermark", headers=ADMIN).status_code == 204
        assert get("/api/v1/jobs/sync/watermark") == []
        assert [h["change"] for h in get("/api/v1/jobs/sync/watermark/history", limit=2)] == [
            "reset",
            "rollback",
        ]
        project.set_watermark("sync", "2024-01-01T12:00:04Z/12")

        # checkpoint: show and clear
        project.set_checkpoint("sync", "batch_number", 3)
        assert get("/api/v1/jobs/sync/checkpoint") == {
            "job_id": "sync", "checkpoint_data": {"batch_number": 3}, "backfill_checkpoint": None,
        }  # fmt: skip
        assert client.delete("/api/v1/jobs/sync/checkpoint", headers=ADMIN).status_code == 204
        assert get("/api/v1/jobs/sync/checkpoint")["checkpoint_data"] is None

        # backfill: (12:00:01, 12:00:03] holds rows 3..11 (stamps i // 3 seconds after 12:00)
        window = {"from": "2024-01-01T12:00:01Z", "to": "2024-01-01T12:00:03Z"}
        started = client.post("/api/v1/jobs/sync/backfills", headers=ADMIN, json=window)
        assert started.status_code == 202, started.text
        done = wait_for_run(client, started.json()["run_id"])
        assert done["run_status"] == "success" and done["backfill_window"] == window
        assert done["rows_read"] == 6 and done["triggered_by"] == "api"
        assert get("/api/v1/jobs/sync/watermark")[0]["last_value_integer"] == 12  # not moved
        empty = client.post(
            "/api/v1/jobs/sync/backfills",
            headers=ADMIN,
            json={"from": window["to"], "to": window["from"]},
        )
        assert empty.status_code == 422 and "is empty" in empty.json()["detail"]
        assert client.post("/api/v1/jobs/sync/backfills", headers=ADMIN, json={}).status_code == 422

        # cancel: a live run is asked to stop; a finished one is not live
        live = project.store.start_run(
            "sync", triggered_by="manual", host="elsewhere", pid=1, watermark_start=None
        )
        assert live is not None
        cancelled = client.post(f"/api/v1/runs/{live.run_id}/cancel", headers=ADMIN)
        assert cancelled.status_code == 202 and cancelled.json()["cancel_requested"] is True
        assert client.post(f"/api/v1/runs/{run['run_id']}/cancel", headers=ADMIN).status_code == 404
        project.store.finish_failed(
            live, status=RunStatus.CANCELLED, error_message="x", error_details=None, counts=Counts()
        )

        # operations
        metrics = client.get("/api/v1/metrics", headers=READ)
        assert metrics.status_code == 200 and metrics.headers["content-type"].startswith(
            "text/plain"
        )
        assert 'highmark_runs_total{job_id="sync",status="success"}' in metrics.text
        health = get("/api/v1/health")
        assert health["status"] == "ok" and health["control_store"] == "up"
        assert client.get("/healthz").json() == {"status": "ok"}  # no token: says ok, nothing more
        spec = client.get("/openapi.json").json()
        assert "/api/v1/jobs/{job_id}/runs" in spec["paths"]
        docs = client.get("/docs")
        assert docs.status_code == 200 and "/api/v1/jobs/{job_id}/backfills" in docs.text
        assert "cdn" not in docs.text.lower() and '<script src="/static/app.js"' in docs.text

        # every admin call above is in the audit log, with its outcome
        actions = [(a.action, a.status_code) for a in project.audit(limit=None)]
        assert ("PUT /api/v1/jobs/{job_id}/watermark", 422) in actions
        assert ("POST /api/v1/jobs/{job_id}/backfills", 202) in actions
        assert ("DELETE /api/v1/jobs/{job_id}/checkpoint", 204) in actions
        assert all(a.actor == "ops" for a in project.audit(limit=None))


def test_public_metrics_and_security_headers(
    db_url: str, tmp_path: Path, engine_for: Callable[[str], Engine]
) -> None:
    with served(db_url, tmp_path, engine_for, metrics_public=True) as (client, _, _app):
        public = client.get("/api/v1/metrics")
        assert public.status_code == 200 and "highmark_control_store_up 1.0" in public.text
        assert client.get("/api/v1/status").status_code == 401  # only metrics are public
        headers = public.headers
        assert headers["x-content-type-options"] == "nosniff"
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        # A browser's cross-site POST is refused before anything else.
        forged = client.post(
            "/api/v1/jobs/sync/runs", headers={**ADMIN, "Origin": "https://evil.example"}
        )
        assert forged.status_code == 403
