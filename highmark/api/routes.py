"""The ``/api/v1`` routes: each parses its input, calls one method of the Python API
(highmark/project.py), and answers with the records as JSON."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from highmark import __version__
from highmark.api.app import audit, note_outcome
from highmark.api.auth import Principal, TooManyFailures
from highmark.api.shapes import job_json, run_json, status_json
from highmark.config import parse_duration
from highmark.errors import ConfigError, DuplicateRequestError, HighmarkError
from highmark.models import RunRecord, RunStatus
from highmark.project import Project
from highmark.redact import scrub_json

MAX_LIMIT = 1000
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "No valid bearer token."},
    404: {"description": "Unknown job or run."},
    503: {"description": "The control store cannot be reached."},
}
ADMIN_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    403: {"description": "The token has the `read` scope; this route needs `admin`."},
}


# ---------------------------------------------------------------------------- dependencies


def get_project(request: Request) -> Project:
    project: Project = request.app.state.project
    return project


def caller(request: Request, header: str | None) -> Principal | None:
    """The principal of a bearer ``header``; 429 for an address that sent too many wrong ones."""
    client = request.client.host if request.client else None
    try:
        principal: Principal | None = request.app.state.auth.bearer(header, client)
    except TooManyFailures as exc:
        raise HTTPException(429, str(exc), headers={"Retry-After": str(exc.retry_after)}) from None
    return principal


def reader(request: Request) -> Principal:
    """Any valid token (``read`` or ``admin``)."""
    principal = caller(request, request.headers.get("authorization"))
    if principal is None:
        raise HTTPException(
            401, "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"}
        )
    assert isinstance(principal, Principal)
    return principal


def admin(request: Request) -> Principal:
    """An ``admin`` token; the call is recorded in the audit log, whatever its outcome."""
    header = request.headers.get("authorization")
    params = request.path_params
    target = params.get("job_id") or (f"run {params['run_id']}" if "run_id" in params else None)
    try:
        principal = caller(request, header)
    except HTTPException:
        audit(request, actor="(too many wrong tokens)", scope=None, target=target)
        raise
    actor = principal.name if principal else ("(invalid token)" if header else "(no token)")
    audit(request, actor=actor, scope=principal.scope if principal else None, target=target)
    if principal is None:
        raise HTTPException(
            401, "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"}
        )
    if not principal.is_admin:
        raise HTTPException(403, f"token {principal.name!r} is read-only; this route needs admin")
    assert isinstance(principal, Principal)
    return principal


ProjectDep = Annotated[Project, Depends(get_project)]
Reader = Annotated[Principal, Depends(reader)]
Admin = Annotated[Principal, Depends(admin)]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=255,
        description="A retried request with the same key returns the same run.",
    ),
]

router = APIRouter(prefix="/api/v1")


# ---------------------------------------------------------------------------- bodies


class RunRequest(BaseModel):
    full_refresh: bool = Field(False, description="Reload the whole table.")


class BackfillRequest(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    start: str = Field(alias="from", description="Load rows after this (timestamp or id).")
    end: str = Field(alias="to", description="…up to and including this.")


class WatermarkRequest(BaseModel):
    value: str = Field(description="A timestamp, TIMESTAMP/ID (with a tiebreaker), or an id.")
    source_table: str | None = Field(None, description="Only this mark of a job with several.")


class RollbackRequest(BaseModel):
    run_id: int = Field(description="The successful run whose marks to restore.")


# ---------------------------------------------------------------------------- jobs


@router.get("/jobs", summary="Every job, with its last run", responses=ERRORS)
def list_jobs(project: ProjectDep, _: Reader) -> list[dict[str, Any]]:
    return [job_json(job, run) for job, run in project.store.latest_status(active_only=False)]


@router.get(
    "/jobs/{job_id}", summary="One job: its row, definition, marks, last run", responses=ERRORS
)
def get_job(job_id: str, project: ProjectDep, _: Reader) -> dict[str, Any]:
    job = project.store.get_job(job_id)
    runs = project.store.list_runs(job_id=job_id, limit=1)
    spec = project.config.jobs.get(job_id)
    live = project.store.live_run(job_id)
    backfill = project.store.live_run(job_id, backfill=True)
    return {
        **job_json(job, runs[0] if runs else None),
        "definition": scrub_json(spec.model_dump(mode="json", exclude={"job_id"}))
        if spec
        else None,
        "watermarks": [w.to_json() for w in project.store.get_watermarks(job_id)],
        "live_run_id": live.run_id if live else None,
        "live_backfill_run_id": backfill.run_id if backfill else None,
    }


@router.post("/jobs/{job_id}/enable", summary="Make a job active (admin)", responses=ADMIN_ERRORS)
def enable_job(job_id: str, request: Request, project: ProjectDep, _: Admin) -> dict[str, Any]:
    job = project.enable(job_id)
    note_outcome(request, "enabled")
    return job_json(job, None)


@router.post(
    "/jobs/{job_id}/disable", summary="Make a job inactive (admin)", responses=ADMIN_ERRORS
)
def disable_job(job_id: str, request: Request, project: ProjectDep, _: Admin) -> dict[str, Any]:
    job = project.disable(job_id)
    note_outcome(request, "disabled")
    return job_json(job, None)


@router.post(
    "/jobs/{job_id}/runs",
    status_code=202,
    summary="Start a run now (admin)",
    description=(
        "Starts a run with `triggered_by = 'api'` in a process of its own and answers at once "
        "with its `etl_job_runs` row (`running`). A retried request with the same "
        "`Idempotency-Key` answers with the same run. 409 when the job already has a live run."
    ),
    responses={**ADMIN_ERRORS, 409: {"description": "The job already has a live run."}},
)
def start_run(
    job_id: str,
    request: Request,
    project: ProjectDep,
    _: Admin,
    key: IdempotencyKey = None,
    body: RunRequest | None = None,
) -> Response:
    project.job(job_id)
    payload = {"full_refresh": bool(body and body.full_refresh)}
    return _start(request, project, job_id, "run", payload, key)


@router.post(
    "/jobs/{job_id}/backfills",
    status_code=202,
    summary="Load a past window again, marks untouched (admin)",
    description=(
        "Loads `(from, to]` of an incremental SQL job in a run of its own that does not move "
        "the watermark; it may run beside the job's regular runs, never beside another backfill "
        "of the job (409). Answers at once, like starting a run."
    ),
    responses={**ADMIN_ERRORS, 409: {"description": "A backfill of the job is live."}},
)
def start_backfill(
    job_id: str,
    body: BackfillRequest,
    request: Request,
    project: ProjectDep,
    _: Admin,
    key: IdempotencyKey = None,
) -> Response:
    project.backfill_window(job_id, body.start, body.end)
    payload = {"from": body.start, "to": body.end}
    return _start(request, project, job_id, "backfill", payload, key)


def _start(
    request: Request,
    project: Project,
    job_id: str,
    kind: str,
    payload: dict[str, Any],
    key: str | None,
) -> Response:
    replay = _replay(project, job_id, kind, key)
    if replay is None:
        try:
            run_id = request.app.state.launcher.launch(
                {"kind": kind, "job_id": job_id, **payload, "idempotency_key": key}
            )
            run = project.run_record(run_id)
        except DuplicateRequestError:  # the same request, retried while the first started
            replay = _replay(project, job_id, kind, key)
            if replay is None:
                raise
    headers = {"Location": f"/api/v1/runs/{(replay or run).run_id}"}
    if replay is not None:
        note_outcome(request, f"run {replay.run_id} (Idempotency-Key replayed)")
        headers["Idempotent-Replayed"] = "true"
        return JSONResponse(run_json(replay), status_code=202, headers=headers)
    note_outcome(request, f"run {run.run_id} started")
    return JSONResponse(run_json(run), status_code=202, headers=headers)


def _replay(project: Project, job_id: str, kind: str, key: str | None) -> RunRecord | None:
    if not key:
        return None
    run = project.store.run_by_idempotency_key(key)
    if run is None:
        return None
    if run.job_id != job_id or run.is_backfill != (kind == "backfill"):
        raise ConfigError(
            f"this Idempotency-Key already started run {run.run_id} of {run.job_id}; "
            "use a new key for another request"
        )
    return run


# ---------------------------------------------------------------------------- runs


@router.get("/runs", summary="Runs, newest first (like `highmark runs`)", responses=ERRORS)
def list_runs(
    project: ProjectDep,
    _: Reader,
    job_id: str | None = None,
    status: RunStatus | None = None,
    since: Annotated[str | None, Query(description="e.g. 24h, 30m, 7d")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
) -> list[dict[str, Any]]:
    return [
        run_json(r)
        for r in project.runs(job_id, status=status, since=_duration(since), limit=limit)
    ]


@router.get("/runs/{run_id}", summary="One run", responses=ERRORS)
def get_run(run_id: int, project: ProjectDep, _: Reader) -> dict[str, Any]:
    return run_json(project.run_record(run_id))


@router.post(
    "/runs/{run_id}/cancel",
    status_code=202,
    summary="Ask a live run to stop (admin)",
    description="It ends `cancelled` after its current batch, wherever it runs.",
    responses=ADMIN_ERRORS,
)
def cancel_run(run_id: int, request: Request, project: ProjectDep, _: Admin) -> dict[str, Any]:
    project.run_record(run_id)
    run = project.cancel(str(run_id))
    note_outcome(request, f"run {run.run_id} asked to stop")
    return run_json(run)


@router.get(
    "/failures", summary="Failed runs (the reference's failures of the last day)", responses=ERRORS
)
def failures(
    project: ProjectDep,
    _: Reader,
    since: Annotated[str, Query(description="e.g. 24h, 7d")] = "24h",
    job_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
) -> list[dict[str, Any]]:
    runs = project.runs(job_id, status=RunStatus.FAILED, since=_duration(since), limit=limit)
    return [run_json(r) for r in runs]


@router.get("/status", summary="The latest run of every active job", responses=ERRORS)
def status(project: ProjectDep, _: Reader) -> list[dict[str, Any]]:
    return [status_json(job, run) for job, run in project.status()]


# ---------------------------------------------------------------------------- marks and checkpoints


@router.get(
    "/jobs/{job_id}/watermark", summary="The job's marks (etl_watermarks rows)", responses=ERRORS
)
def get_watermark(job_id: str, project: ProjectDep, _: Reader) -> list[dict[str, Any]]:
    return [w.to_json() for w in project.watermarks(job_id)]


@router.put(
    "/jobs/{job_id}/watermark", summary="Set the job's mark by hand (admin)", responses=ADMIN_ERRORS
)
def set_watermark(
    job_id: str, body: WatermarkRequest, request: Request, project: ProjectDep, who: Admin
) -> list[dict[str, Any]]:
    records = project.set_watermark(
        job_id, body.value, source_table=body.source_table, changed_by=_by(who)
    )
    note_outcome(request, f"watermark set to {body.value}")
    return [w.to_json() for w in records]


@router.delete(
    "/jobs/{job_id}/watermark",
    status_code=204,
    summary="Forget the job's marks (admin)",
    responses=ADMIN_ERRORS,
)
def reset_watermark(job_id: str, request: Request, project: ProjectDep, who: Admin) -> Response:
    project.reset_watermark(job_id, changed_by=_by(who))
    note_outcome(request, "watermark reset")
    return Response(status_code=204)


@router.post(
    "/jobs/{job_id}/watermark/rollback",
    summary="Put the marks back to what a run left (admin)",
    responses=ADMIN_ERRORS,
)
def rollback_watermark(
    job_id: str, body: RollbackRequest, request: Request, project: ProjectDep, who: Admin
) -> list[dict[str, Any]]:
    records = project.rollback_watermark(job_id, body.run_id, changed_by=_by(who))
    note_outcome(request, f"watermark rolled back to run {body.run_id}")
    return [w.to_json() for w in records]


@router.get(
    "/jobs/{job_id}/watermark/history", summary="How the job's marks moved", responses=ERRORS
)
def watermark_history(
    job_id: str,
    project: ProjectDep,
    _: Reader,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
) -> list[dict[str, Any]]:
    return [c.to_json() for c in project.watermark_history(job_id, limit=limit)]


@router.get(
    "/jobs/{job_id}/schema-changes",
    summary="What runs changed in the job's target tables (like `highmark schema history`)",
    description=(
        "Rows of `etl_schema_changes`, oldest first (the last `limit`): each column added, "
        "widened, or no longer in the source (`add`, `widen`, `drop`), with the run that did it."
    ),
    responses=ERRORS,
)
def schema_changes(
    job_id: str,
    project: ProjectDep,
    _: Reader,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
) -> list[dict[str, Any]]:
    return [c.to_json() for c in project.schema_history(job_id, limit=limit)]


@router.get("/jobs/{job_id}/checkpoint", summary="The job's checkpoint_data", responses=ERRORS)
def get_checkpoint(job_id: str, project: ProjectDep, _: Reader) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "checkpoint_data": project.checkpoint(job_id),
        "backfill_checkpoint": project.backfill_checkpoint(job_id),
    }


@router.delete(
    "/jobs/{job_id}/checkpoint",
    status_code=204,
    summary="Clear the checkpoint: an interrupted run is not resumed (admin)",
    responses=ADMIN_ERRORS,
)
def reset_checkpoint(job_id: str, request: Request, project: ProjectDep, _: Admin) -> Response:
    project.reset_checkpoint(job_id)
    note_outcome(request, "checkpoint cleared")
    return Response(status_code=204)


# ---------------------------------------------------------------------------- operations


@router.get(
    "/metrics",
    summary="Prometheus metrics (no token needed with api.metrics_public: true)",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}},
)
def metrics(request: Request, project: ProjectDep) -> Response:
    if not project.config.api.metrics_public:
        reader(request)
    from prometheus_client import CONTENT_TYPE_LATEST

    return Response(project.metrics(), media_type=CONTENT_TYPE_LATEST)


@router.get("/health", summary="Whether the server can use its control store", responses=ERRORS)
def health(project: ProjectDep, _: Reader) -> JSONResponse:
    return _health(project, detailed=True)


def _health(project: Project, *, detailed: bool) -> JSONResponse:
    try:
        now = project.store.now()
    except HighmarkError as exc:
        body: dict[str, Any] = {"status": "unavailable"}
        if detailed:
            body["detail"] = str(exc)
        return JSONResponse(body, status_code=503)
    body = {"status": "ok"}
    if detailed:
        body.update(version=__version__, control_store="up", control_store_time=now.isoformat())
    return JSONResponse(body)


health_router = APIRouter()


@health_router.get("/healthz", summary="Liveness for load balancers (no token; says ok or not)")
def healthz(project: ProjectDep) -> JSONResponse:
    return _health(project, detailed=False)


def _duration(text: str | None) -> str | None:
    if text is None:
        return None
    try:
        parse_duration(text)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return text


def _by(principal: Principal) -> str:
    return f"api:{principal.name}"
