"""The dashboard: server-rendered pages over the Python API (Jobs, Job, Run, Failures), a login
with a token, admin actions as forms protected against CSRF.

A page whose data shows a live run marks itself live (``data-live``): static/app.js then refreshes
its content every few seconds until nothing is live. Everything a page needs ships in this package
(templates/, static/, charts as inline SVG).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Annotated, Any
from urllib.parse import parse_qs, quote

import yaml
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from highmark import __version__
from highmark.api import charts
from highmark.api.app import HERE, audit, note_outcome
from highmark.api.auth import (
    SESSION_COOKIE,
    SESSION_SECONDS,
    Session,
    TooManyFailures,
    check_csrf,
)
from highmark.config import parse_duration
from highmark.errors import HighmarkError, JobAlreadyRunningError
from highmark.models import RunRecord, RunStatus
from highmark.project import Project
from highmark.redact import scrub

RECENT_RUNS = 20
JOB_RUNS = 50
JOB_REJECTED = 10  # the most recent quarantined rows on a job's page
REJECTED_PAGE = 50
FAILURE_WINDOWS = ("1h", "24h", "7d", "30d")

templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(include_in_schema=False)


class LoginRequired(Exception):
    """The page needs a session: go to the login page, and come back."""

    def __init__(self, back: str) -> None:
        super().__init__(back)
        self.back = back


def install(app: FastAPI) -> None:
    @app.exception_handler(LoginRequired)
    async def to_login(_request: Request, exc: LoginRequired) -> Response:
        return RedirectResponse(f"/login?next={quote(exc.back)}", status_code=303)


# ---------------------------------------------------------------------------- dependencies


def _project(request: Request) -> Project:
    project: Project = request.app.state.project
    return project


def session(request: Request) -> Session:
    found = request.app.state.auth.session(request.cookies.get(SESSION_COOKIE))
    if found is None:
        back = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(back)
    assert isinstance(found, Session)
    return found


async def form(request: Request) -> dict[str, str]:
    """A posted form (application/x-www-form-urlencoded), one value per field."""
    body = (await request.body()).decode("utf-8", "replace")
    return {k: v[-1] for k, v in parse_qs(body, keep_blank_values=True).items()}


def admin_action(
    request: Request,
    user: Annotated[Session, Depends(session)],
    fields: Annotated[dict[str, str], Depends(form)],
) -> dict[str, str]:
    """An admin's form: recorded in the audit log; its CSRF token must be the session's."""
    params = request.path_params
    target = params.get("job_id") or (f"run {params['run_id']}" if "run_id" in params else None)
    audit(request, actor=user.principal.name, scope=user.principal.scope, target=target)
    if not check_csrf(user, fields.get("csrf")):
        raise HTTPException(403, "the form has expired or did not come from this page: reload it")
    if not user.principal.is_admin:
        raise HTTPException(403, f"token {user.principal.name!r} is read-only")
    return fields


ProjectDep = Annotated[Project, Depends(_project)]
User = Annotated[Session, Depends(session)]
Action = Annotated[dict[str, str], Depends(admin_action)]


# ---------------------------------------------------------------------------- login


@router.get("/login")
def login_page(request: Request, next: str = "/") -> Response:
    if request.app.state.auth.session(request.cookies.get(SESSION_COOKIE)) is not None:
        return RedirectResponse(_safe_next(next), status_code=303)
    return _render(request, "login.html", None, {"next": _safe_next(next), "login_error": None})


@router.post("/login")
def login(request: Request, fields: Annotated[dict[str, str], Depends(form)]) -> Response:
    back = _safe_next(fields.get("next", "/"))
    client = request.client.host if request.client else None
    try:
        principal = request.app.state.auth.token(fields.get("token", "").strip(), client)
    except TooManyFailures as exc:
        audit(request, actor="(too many wrong tokens)", scope=None, target=None)
        note_outcome(request, "login refused: too many wrong tokens")
        context = {"next": back, "login_error": f"Too many wrong tokens: try again in "
                   f"{exc.retry_after} seconds."}  # fmt: skip
        headers = {"Retry-After": str(exc.retry_after)}
        return _render(request, "login.html", None, context, status_code=429, headers=headers)
    audit(
        request,
        actor=principal.name if principal else "(invalid token)",
        scope=principal.scope if principal else None,
        target=None,
    )
    if principal is None:
        note_outcome(request, "login refused")
        context = {"next": back, "login_error": "That token is not valid."}
        return _render(request, "login.html", None, context, status_code=401)
    cookie, _ = request.app.state.auth.new_session(principal)
    note_outcome(request, "logged in")
    response = RedirectResponse(back, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        max_age=SESSION_SECONDS,
        httponly=True,
        secure=True,
        samesite="strict",
        path="/",
    )
    return response


@router.post("/logout")
def logout(user: User, fields: Annotated[dict[str, str], Depends(form)]) -> Response:
    if not check_csrf(user, fields.get("csrf")):
        raise HTTPException(403, "the form has expired: reload the page")
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="strict")
    return response


# ---------------------------------------------------------------------------- pages


@router.get("/", response_class=HTMLResponse)
def jobs_page(request: Request, project: ProjectDep, user: User) -> Response:
    store = project.store
    status = store.latest_status(active_only=False)
    ids = [job.job_id for job, _ in status]
    recent = store.recent_runs(ids, RECENT_RUNS)
    successes = store.last_successes(ids)
    now = store.now()
    rows = []
    for job, last in status:
        spec = project.config.jobs.get(job.job_id)
        freshness = spec.freshness if spec is not None else None
        success = successes.get(job.job_id)
        success_at = (success.finished_at or success.started_at) if success else None
        stale = bool(
            job.is_active
            and freshness is not None
            and (success_at is None or now - success_at > freshness)
        )
        rows.append(
            {
                "job": job,
                "last": last,
                "success_at": success_at,
                "freshness": freshness,
                "stale": stale,
                "chart": charts.duration_bars(recent.get(job.job_id, [])),
                "live": any(r.run_status is RunStatus.RUNNING for r in recent.get(job.job_id, [])),
            }
        )
    live = any(row["live"] for row in rows)
    return _render(request, "jobs.html", user, {"rows": rows, "now": now, "live": live})


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(job_id: str, request: Request, project: ProjectDep, user: User) -> Response:
    store = project.store
    job = store.get_job(job_id)
    spec = project.config.jobs.get(job_id)
    runs = store.list_runs(job_id=job_id, limit=JOB_RUNS)
    definition = (
        spec.model_dump(mode="json", exclude={"job_id"}, exclude_none=True) if spec else None
    )
    context = {
        "job": job,
        "spec": spec,
        "definition": scrub(yaml.safe_dump(definition, sort_keys=False)) if definition else None,
        "runs": runs,
        "chart": charts.history_chart(runs),
        "marks": store.get_watermarks(job_id),
        "history": store.watermark_history(job_id, limit=JOB_RUNS),
        "checkpoint": _pretty(job.checkpoint_data),
        "backfill_checkpoint": _pretty(job.backfill_checkpoint),
        "can_backfill": spec is not None and project.can_backfill(job_id),
        "rejected_count": store.count_rejected(job_id),
        "rejected": store.rejected_rows(job_id, limit=JOB_REJECTED, newest_first=True),
        "schema_changes": project.schema_history(job_id, limit=JOB_RUNS)[::-1],
        "live": any(r.run_status is RunStatus.RUNNING for r in runs),
        "now": store.now(),
    }
    return _render(request, "job.html", user, context)


@router.get("/jobs/{job_id}/rejected", response_class=HTMLResponse)
def rejected_page(
    job_id: str,
    request: Request,
    project: ProjectDep,
    user: User,
    before: int | None = None,
    run_id: int | None = None,
) -> Response:
    job = project.store.get_job(job_id)
    rows = project.rejected(
        job_id, limit=REJECTED_PAGE + 1, run_id=run_id, before=before, newest_first=True
    )
    page = rows[:REJECTED_PAGE]
    context = {
        "job": job,
        "rows": page,
        "total": project.store.count_rejected(job_id, run_id=run_id),
        "before": before,
        "run_id": run_id,
        "next_before": page[-1].rejected_id if len(rows) > REJECTED_PAGE else None,
    }
    return _render(request, "rejected.html", user, context)


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run_page(run_id: int, request: Request, project: ProjectDep, user: User) -> Response:
    run = project.run_record(run_id)
    context = {
        "run": run,
        "details": _details(run),
        "stack": (run.error_details or {}).get("stack"),
        "live": run.run_status is RunStatus.RUNNING,
        "now": project.store.now(),
    }
    return _render(request, "run.html", user, context)


@router.get("/failures", response_class=HTMLResponse)
def failures_page(
    request: Request, project: ProjectDep, user: User, since: str = "24h", job_id: str = ""
) -> Response:
    if since not in FAILURE_WINDOWS:
        try:
            parse_duration(since)
        except ValueError:
            since = "24h"
    runs = project.runs(job_id or None, status=RunStatus.FAILED, since=since, limit=500)
    context = {
        "runs": runs,
        "since": since,
        "windows": FAILURE_WINDOWS,
        "job_id": job_id,
        "job_ids": [job.job_id for job in project.jobs()],
        "now": project.store.now(),
    }
    return _render(request, "failures.html", user, context)


# ---------------------------------------------------------------------------- actions


@router.post("/jobs/{job_id}/run")
def run_now(job_id: str, request: Request, project: ProjectDep, fields: Action) -> Response:
    project.job(job_id)
    try:
        run_id = request.app.state.launcher.launch(
            {"kind": "run", "job_id": job_id, "full_refresh": fields.get("full_refresh") == "1"}
        )
    except JobAlreadyRunningError as exc:
        note_outcome(request, str(exc))
        return _back(f"/jobs/{job_id}", error=str(exc))
    note_outcome(request, f"run {run_id} started")
    return _back(f"/jobs/{job_id}", notice=f"Run {run_id} started.")


@router.post("/jobs/{job_id}/backfill")
def backfill(job_id: str, request: Request, project: ProjectDep, fields: Action) -> Response:
    start, end = fields.get("from", "").strip(), fields.get("to", "").strip()
    try:
        project.backfill_window(job_id, start, end)
        run_id = request.app.state.launcher.launch(
            {"kind": "backfill", "job_id": job_id, "from": start, "to": end}
        )
    except HighmarkError as exc:
        note_outcome(request, str(exc))
        return _back(f"/jobs/{job_id}", error=str(exc))
    note_outcome(request, f"backfill run {run_id} started")
    return _back(f"/runs/{run_id}", notice=f"Backfill of ({start}, {end}] started.")


@router.post("/jobs/{job_id}/enable")
def enable(job_id: str, request: Request, project: ProjectDep, _: Action) -> Response:
    project.enable(job_id)
    note_outcome(request, "enabled")
    return _back(f"/jobs/{job_id}", notice="Enabled.")


@router.post("/jobs/{job_id}/disable")
def disable(job_id: str, request: Request, project: ProjectDep, _: Action) -> Response:
    project.disable(job_id)
    note_outcome(request, "disabled")
    return _back(f"/jobs/{job_id}", notice="Disabled: workers will not start it.")


@router.post("/runs/{run_id}/cancel")
def cancel(run_id: int, request: Request, project: ProjectDep, _: Action) -> Response:
    project.run_record(run_id)
    try:
        project.cancel(str(run_id))
    except HighmarkError as exc:
        note_outcome(request, str(exc))
        return _back(f"/runs/{run_id}", error=str(exc))
    note_outcome(request, f"run {run_id} asked to stop")
    return _back(f"/runs/{run_id}", notice="Asked to stop: it ends after its current batch.")


@router.post("/jobs/{job_id}/rejected/retry")
def retry_rejected(job_id: str, request: Request, project: ProjectDep, _: Action) -> Response:
    project.store.get_job(job_id)
    try:
        outcome = project.retry_rejected(job_id)
    except HighmarkError as exc:
        note_outcome(request, str(exc))
        return _back(f"/jobs/{job_id}", error=str(exc))
    summary = outcome.summary(job_id)
    note_outcome(request, summary)
    # Rows refused again are a problem still to fix: shown as one.
    flash = {"error": summary} if outcome.refused else {"notice": summary}
    return _back(f"/jobs/{job_id}", **flash)


# ---------------------------------------------------------------------------- rendering


def error_page(
    request: Request, status: int, message: str, headers: Mapping[str, str] | None = None
) -> Response:
    user = request.app.state.auth.session(request.cookies.get(SESSION_COOKIE))
    context = {"status": status, "message": message}
    return _render(request, "error.html", user, context, status_code=status, headers=headers)


def _render(
    request: Request,
    name: str,
    user: Session | None,
    context: dict[str, Any],
    *,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> Response:
    base = {
        "user": user,
        "csrf": user.csrf_token() if user else "",
        "no_auth": request.app.state.no_auth,
        "version": __version__,
        "notice": request.query_params.get("notice"),
        "error": request.query_params.get("error"),
        "live": False,
        "path": request.url.path,
        "insecure": request.url.scheme != "https"
        and request.url.hostname not in ("127.0.0.1", "localhost", "::1"),
    }
    return templates.TemplateResponse(
        request, name, {**base, **context}, status_code=status_code, headers=headers
    )


def _back(path: str, *, notice: str | None = None, error: str | None = None) -> Response:
    query = f"?notice={quote(notice)}" if notice else f"?error={quote(error)}" if error else ""
    return RedirectResponse(path + query, status_code=303)


def _safe_next(value: str) -> str:
    """Only a path on this server (no open redirect)."""
    if not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


def _pretty(value: Any) -> str | None:
    return None if value is None else json.dumps(value, indent=2, sort_keys=True, default=str)


def _details(run: RunRecord) -> str | None:
    details = {k: v for k, v in (run.error_details or {}).items() if k != "stack"}
    return _pretty(details) if details else None


# ---------------------------------------------------------------------------- template filters


def _ts(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def _duration(seconds: int | float | timedelta | None) -> str:
    if seconds is None:
        return ""
    total = int(seconds.total_seconds() if isinstance(seconds, timedelta) else seconds)
    if total < 60:
        return f"{total}s"
    if total < 3600:
        return f"{total // 60}m {total % 60:02d}s"
    if total < 86400:
        return f"{total // 3600}h {total % 3600 // 60:02d}m"
    return f"{total // 86400}d {total % 86400 // 3600}h"


def _ago(value: datetime | None, now: datetime) -> str:
    if value is None:
        return ""
    delta = now - value
    if delta.total_seconds() < 0:
        return "in " + _duration(-delta)
    return _duration(delta) + " ago"


templates.env.filters["ts"] = _ts
templates.env.filters["dur"] = _duration
templates.env.filters["compact"] = lambda v: json.dumps(v, default=str, ensure_ascii=False)
templates.env.filters["num"] = lambda n: "" if n is None else f"{n:,}"
templates.env.globals["ago"] = _ago
